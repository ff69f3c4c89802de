"""Exact mode: every closed form equals the per-pixel autograd gradient norm (docs/method.md, section 1)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import LOG_TOLERANCE, P_VALUES
from torch import nn
from torch.func import functional_call

from gradunc_ros.uncertainty import PgnOptions, class_log_norm, pgn, pgn_for_layer, pgn_penultimate
from gradunc_ros.uncertainty.autograd_reference import autograd_log_pgn, largest_log_difference

LAST_LAYERS = {
    "conv1x1": lambda: nn.Conv2d(9, 6, 1, bias=False),
    "conv1x1-bias": lambda: nn.Conv2d(9, 6, 1),
    "conv3x3-pad1": lambda: nn.Conv2d(5, 4, 3, padding=1),
    "conv3x3-dilated": lambda: nn.Conv2d(5, 4, 3, padding=2, dilation=2, bias=False),
    "conv5x3-same": lambda: nn.Conv2d(5, 4, (5, 3), padding="same", dilation=(1, 2)),
    "conv3x3-valid": lambda: nn.Conv2d(5, 4, 3),
    "conv3x3-reflect": lambda: nn.Conv2d(5, 4, 3, padding=1, padding_mode="reflect"),
    "conv3x3-circular": lambda: nn.Conv2d(5, 4, 3, padding=1, padding_mode="circular"),
    "conv3x3-stride2": lambda: nn.Conv2d(5, 4, 3, padding=1, stride=2),
    "transposed2x2": lambda: nn.ConvTranspose2d(7, 4, 2, stride=2),
    "transposed3x3-cropped": lambda: nn.ConvTranspose2d(7, 4, 3, stride=3, padding=1, output_padding=2),
}
INPUT_CHANNELS = {"conv1x1": 9, "conv1x1-bias": 9, "transposed2x2": 7, "transposed3x3-cropped": 7}


def _closed_and_autograd(
    layer: nn.Module, x: torch.Tensor, p: float, label: str, from_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        logits = layer(x)
    class_side = logits if from_logits else torch.softmax(logits, dim=-1 if isinstance(layer, nn.Linear) else 1)
    closed = pgn_for_layer(layer, class_side, x, p, PgnOptions(label, from_logits=from_logits))
    truth = autograd_log_pgn(
        lambda w: functional_call(layer, {"weight": w}, (x,)),
        layer.weight,
        p,
        label,
        dim=-1 if isinstance(layer, nn.Linear) else 1,
    )
    return closed, truth


@pytest.mark.parametrize("from_logits", (False, True), ids=("probs", "logits"))
@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("kind", sorted(LAST_LAYERS))
def test_conv_last_layers_match_autograd(kind, label, p, from_logits, generator: torch.Generator) -> None:
    layer = LAST_LAYERS[kind]().double()
    x = torch.randn(2, INPUT_CHANNELS.get(kind, 5), 5, 6, dtype=torch.float64, generator=generator)
    closed, truth = _closed_and_autograd(layer, x, p, label, from_logits)
    assert closed.dtype == torch.float32
    assert closed.shape == truth.shape
    assert largest_log_difference(closed, truth) <= LOG_TOLERANCE


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("shape", ((3, 11, 8), (13, 8)), ids=("tokens", "flat"))
def test_linear_on_tokens_matches_autograd(
    shape: tuple[int, ...], label: str, p: float, generator: torch.Generator
) -> None:
    layer = nn.Linear(8, 5).double()
    x = torch.randn(*shape, dtype=torch.float64, generator=generator)
    closed, truth = _closed_and_autograd(layer, x, p, label)
    assert closed.shape == shape[:-1]
    assert largest_log_difference(closed, truth) <= LOG_TOLERANCE


def test_cropped_transposed_outputs_without_input_have_zero_gradient(generator: torch.Generator) -> None:
    # kernel = stride = 3, padding 1, output_padding 2: the last output row/column sees no input.
    layer = LAST_LAYERS["transposed3x3-cropped"]().double()
    x = torch.randn(1, 7, 3, 3, dtype=torch.float64, generator=generator)
    closed, truth = _closed_and_autograd(layer, x, 1.0, "onehot")
    assert torch.isneginf(truth[0, -1]).all() and torch.isneginf(closed[0, -1]).all()
    assert torch.isfinite(closed[0, :-1, :-1]).all()


@pytest.mark.parametrize("p", P_VALUES)
def test_bias_gradient_is_the_class_factor_and_leaves_the_kernel_part_alone(
    p: float, generator: torch.Generator
) -> None:
    with_bias = nn.Conv2d(6, 4, 1).double()
    without_bias = nn.Conv2d(6, 4, 1, bias=False).double()
    with torch.no_grad():
        without_bias.weight.copy_(with_bias.weight)
        with_bias.bias.zero_()  # same logits, so the same pseudo label
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, generator=generator)
    kernel_with = autograd_log_pgn(
        lambda w: functional_call(with_bias, {"weight": w}, (x,)), with_bias.weight, p, "onehot"
    )
    kernel_without = autograd_log_pgn(
        lambda w: functional_call(without_bias, {"weight": w}, (x,)), without_bias.weight, p, "onehot"
    )
    bias_part = autograd_log_pgn(lambda b: functional_call(with_bias, {"bias": b}, (x,)), with_bias.bias, p, "onehot")
    probs = torch.softmax(with_bias(x), dim=1).detach()
    assert torch.allclose(kernel_with, kernel_without, atol=1e-12)
    assert largest_log_difference(class_log_norm(probs, p), bias_part) <= LOG_TOLERANCE


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize(
    "conv",
    (
        lambda: nn.Conv2d(6, 7, 3, padding=1, bias=False),
        lambda: nn.Conv2d(6, 7, 3, padding=2, dilation=2),
        lambda: nn.Conv2d(6, 7, 1),
    ),
    ids=("3x3", "3x3-dilated", "1x1"),
)
@pytest.mark.parametrize("affine", (True, False), ids=("affine", "plain-bn"))
def test_penultimate_matches_autograd(conv, affine: bool, label: str, p: float, generator: torch.Generator) -> None:
    tail = nn.Sequential(conv(), nn.BatchNorm2d(7, affine=affine), nn.ReLU(), nn.Conv2d(7, 5, 1)).double().eval()
    with torch.no_grad():
        tail[1].running_mean.normal_(generator=generator)
        tail[1].running_var.uniform_(0.3, 3.0, generator=generator)
        if affine:
            tail[1].weight.normal_(generator=generator)
            tail[1].bias.normal_(generator=generator)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        features = tail[:3](x)
        logits = tail[3](features)
    closed = pgn_penultimate(
        torch.softmax(logits, 1), features, x, p, PgnOptions(label), conv=tail[0], bn=tail[1], last=tail[3]
    )
    from_logits = pgn_penultimate(
        logits, features, x, p, PgnOptions(label, from_logits=True), conv=tail[0], bn=tail[1], last=tail[3]
    )
    truth = autograd_log_pgn(lambda w: functional_call(tail, {"0.weight": w}, (x,)), tail[0].weight, p, label)
    assert largest_log_difference(closed, truth) <= LOG_TOLERANCE
    assert largest_log_difference(from_logits, truth) <= LOG_TOLERANCE


@pytest.mark.parametrize("seed", range(5))
def test_unseen_random_shapes_and_scales(seed: int) -> None:
    """Random sizes, class counts and feature scales, drawn fresh per seed."""
    g = torch.Generator().manual_seed(1000 + seed)
    c, d, h, w = (int(v) for v in torch.randint(2, 12, (4,), generator=g))
    p = float(torch.empty(1).uniform_(0.05, 4.0, generator=g))
    scale = float(10 ** torch.empty(1).uniform_(-2, 2, generator=g))
    layer = nn.Conv2d(d, c, 1).double()
    x = scale * torch.randn(1, d, h, w, dtype=torch.float64, generator=g)
    for label in ("onehot", "uniform"):
        closed, truth = _closed_and_autograd(layer, x, p, label)
        assert largest_log_difference(closed, truth) <= LOG_TOLERANCE, (c, d, h, w, p, scale, label)


def test_float16_and_bfloat16_inputs_give_float32_scores(generator: torch.Generator) -> None:
    logits = torch.randn(1, 5, 4, 4, generator=generator)
    features = torch.randn(1, 32, 4, 4, generator=generator)
    exact = pgn(torch.softmax(logits, 1), features, 0.5)
    for dtype in (torch.float16, torch.bfloat16):
        low = pgn(torch.softmax(logits, 1).to(dtype), features.to(dtype), 0.5)
        assert low.dtype == torch.float32
        assert torch.allclose(low, exact, atol=0.05)  # only the inputs were rounded


def test_no_overflow_at_p_005_with_2048_features(generator: torch.Generator) -> None:
    features = 5 * torch.randn(1, 2048, 3, 3, generator=generator)
    probs = torch.softmax(torch.randn(1, 19, 3, 3, generator=generator), 1)
    for label in ("onehot", "uniform"):
        for mode in ("exact", "reference"):
            score = pgn(probs, features, 0.05, PgnOptions(label, mode))
            assert torch.isfinite(score).all()
            assert (score > math.log(torch.finfo(torch.float32).max)).all()  # the norm itself would overflow


def test_log_false_returns_the_norm(generator: torch.Generator) -> None:
    probs = torch.softmax(torch.randn(2, 4, 3, 3, generator=generator), 1)
    features = torch.randn(2, 8, 3, 3, generator=generator)
    assert torch.allclose(pgn(probs, features, 2.0, PgnOptions(log=False)), pgn(probs, features, 2.0).exp(), rtol=1e-6)


def test_mismatched_inputs_and_unsupported_layers_are_refused() -> None:
    probs = torch.softmax(torch.randn(1, 4, 3, 3), 1)
    with pytest.raises(ValueError, match="grid"):
        pgn(probs, torch.randn(1, 8, 3, 4), 1.0)
    with pytest.raises(ValueError, match="label"):
        pgn(probs, torch.randn(1, 8, 3, 3), 1.0, PgnOptions(label="soft"))
    with pytest.raises(ValueError, match="groups"):
        pgn_for_layer(nn.Conv2d(8, 4, 1, groups=4), probs, torch.randn(1, 8, 3, 3), 1.0)
    with pytest.raises(ValueError, match="kernel == stride"):
        pgn_for_layer(nn.ConvTranspose2d(8, 4, 3, stride=2), probs, torch.randn(1, 8, 2, 2), 1.0)
    with pytest.raises(TypeError, match="no closed form"):
        pgn_for_layer(nn.Identity(), probs, torch.randn(1, 8, 3, 3), 1.0)
