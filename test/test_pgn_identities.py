"""Known identities (docs/method.md, section 1) and the paper's code transcribed directly (reference mode)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import LOG_TOLERANCE, P_VALUES
from torch import nn

from gradunc_ros.uncertainty import PgnOptions, class_log_norm, pgn, pgn_penultimate
from gradunc_ros.uncertainty.autograd_reference import largest_log_difference


def _probs(generator: torch.Generator, classes: int = 7) -> torch.Tensor:
    return torch.softmax(3 * torch.randn(2, classes, 5, 4, dtype=torch.float64, generator=generator), dim=1)


def test_onehot_p1_is_twice_one_minus_max_softmax(generator: torch.Generator) -> None:
    probs = _probs(generator)
    expected = torch.log(2 * (1 - probs.amax(dim=1)))
    assert torch.allclose(class_log_norm(probs, 1.0), expected, atol=1e-12)


def test_reference_onehot_is_half_the_exact_score_at_p1(generator: torch.Generator) -> None:
    probs, features = _probs(generator), torch.randn(2, 16, 5, 4, dtype=torch.float64, generator=generator)
    exact = pgn(probs, features, 1.0, PgnOptions(mode="exact"))
    reference = pgn(probs, features, 1.0, PgnOptions(mode="reference"))
    assert torch.allclose(reference, exact - math.log(2), atol=LOG_TOLERANCE)


def test_reference_uniform_at_p1_is_the_feature_norm_alone(generator: torch.Generator) -> None:
    probs, features = _probs(generator, classes=9), torch.randn(2, 16, 5, 4, dtype=torch.float64, generator=generator)
    expected = math.log(8 / 9) + features.abs().sum(dim=1).log()
    assert torch.allclose(pgn(probs, features, 1.0, PgnOptions("uniform", "reference")).double(), expected, atol=1e-6)


def _paper_last_layer(probs: torch.Tensor, features: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's grad_heatmap, last layer: torch.norm of its label vectors times the feature norm."""
    delta = F.one_hot(probs.argmax(dim=1), probs.shape[1]).permute(0, 3, 1, 2)
    weight_oh = probs * (1 - delta)
    weight_uni = (probs.shape[1] - 1) / probs.shape[1] * probs
    feature_norm = torch.norm(features.unsqueeze(2), dim=(1, 2), p=p)
    return torch.norm(weight_oh, dim=1, p=p) * feature_norm, torch.norm(weight_uni, dim=1, p=p) * feature_norm


@pytest.mark.parametrize("p", P_VALUES)
def test_reference_mode_equals_the_papers_formulas(p: float, generator: torch.Generator) -> None:
    probs, features = _probs(generator), torch.randn(2, 16, 5, 4, dtype=torch.float64, generator=generator)
    paper_oh, paper_uni = _paper_last_layer(probs, features, p)
    assert (
        largest_log_difference(pgn(probs, features, p, PgnOptions("onehot", "reference")), paper_oh.log())
        <= LOG_TOLERANCE
    )
    assert (
        largest_log_difference(pgn(probs, features, p, PgnOptions("uniform", "reference")), paper_uni.log())
        <= LOG_TOLERANCE
    )


def _paper_penultimate(probs, features_before, tail, p, label):
    """The paper's second-to-last-layer heat map: p = 0.5 for the first factor, gamma only,
    ReLU mask from the BN applied to W's input, 3x3 patches with padding 1."""
    if label == "onehot":
        delta = F.one_hot(probs.argmax(dim=1), probs.shape[1]).permute(0, 3, 1, 2)
        weight = probs * (1 - delta)
    else:
        weight = (probs.shape[1] - 1) / probs.shape[1] * probs
    kernel_t = tail[3].weight.squeeze(3).permute(2, 1, 0)  # 1 x D x C
    back = torch.sum(weight[:, None, None] * kernel_t[:, :, None, :, None, None], dim=3)  # N x D x 1 x h x w
    relu_deriv = (tail[1](features_before) >= 0).to(probs.dtype)[:, :, None]
    gamma = tail[1].weight.unsqueeze(0)
    first = torch.norm(back * relu_deriv * gamma[..., None, None, None], dim=1, p=0.5).squeeze(1)
    n, d, h, w = features_before.shape
    patches = (
        F.unfold(features_before, (3, 3), padding=1).permute(0, 2, 1).reshape(n, h, w, d, 9).permute(0, 3, 1, 2, 4)
    )
    return first * torch.norm(patches, dim=(1, 4), p=p)


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
def test_reference_penultimate_equals_the_papers_formulas(label: str, p: float, generator: torch.Generator) -> None:
    tail = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 1))
    tail = tail.double().eval()
    with torch.no_grad():
        tail[1].running_mean.normal_(generator=generator)
        tail[1].running_var.uniform_(0.3, 3.0, generator=generator)
        tail[1].weight.normal_(generator=generator)
        tail[1].bias.normal_(generator=generator)
        x = torch.randn(2, 8, 5, 4, dtype=torch.float64, generator=generator)
        features = tail[:3](x)
        probs = torch.softmax(tail[3](features), dim=1)
        paper = _paper_penultimate(probs, x, tail, p, label)
    ours = pgn_penultimate(
        probs, features, x, p, PgnOptions(label, "reference"), conv=tail[0], bn=tail[1], last=tail[3]
    )
    assert largest_log_difference(ours, paper.log()) <= LOG_TOLERANCE


def test_reference_penultimate_needs_matching_channels() -> None:
    tail = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 1)).eval()
    x = torch.randn(1, 6, 4, 4)
    features = tail[:3](x)
    probs = torch.softmax(tail[3](features), 1)
    with pytest.raises(ValueError, match="input channels"):
        pgn_penultimate(probs, features, x, 1.0, PgnOptions(mode="reference"), conv=tail[0], bn=tail[1], last=tail[3])


@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("mode", ("exact", "reference"))
def test_logits_and_probabilities_give_the_same_class_norm(label: str, mode: str, generator: torch.Generator) -> None:
    logits = 3 * torch.randn(2, 7, 4, 5, dtype=torch.float64, generator=generator)
    for p in P_VALUES:
        from_probs = class_log_norm(torch.softmax(logits, 1), p, label, mode)
        assert torch.allclose(class_log_norm(logits, p, label, mode, from_logits=True), from_probs, atol=1e-10)


def test_confident_pixels_stay_finite_from_logits() -> None:
    # A logit gap of 200 makes float32 softmax exactly one-hot: s - y would be 0 and its log -inf.
    logits = torch.tensor([200.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    assert torch.isneginf(class_log_norm(torch.softmax(logits, 1), 1.0)).all()
    # ||s - y||_1 = 2 (1 - s_k) = 2 * 2 e^-200 / (1 + 2 e^-200), in the log domain.
    expected = math.log(4) - 200 - math.log1p(2 * math.exp(-200))
    assert class_log_norm(logits, 1.0, from_logits=True).item() == pytest.approx(expected, abs=1e-5)
    reference = class_log_norm(logits, 1.0, mode="reference", from_logits=True).item()
    assert reference == pytest.approx(expected - math.log(2), abs=1e-5)
