"""The head: one forward pass gives logits, labels and the score, equal to autograd at both resolutions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import LOG_TOLERANCE
from torch import nn
from torch.func import functional_call

from gradunc_ros.uncertainty import (
    BASELINES,
    DEFAULT_SCORE,
    GradientUncertaintyHead,
    HeadSettings,
    PgnOptions,
    log_bilinear_resize,
    pgn,
)
from gradunc_ros.uncertainty.autograd_reference import autograd_log_pgn, largest_log_difference

REPO = Path(__file__).resolve().parents[1]


def _randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.normal_(1.0, 0.3, generator=generator)
                module.bias.normal_(generator=generator)


class TinyDeepLabTail(nn.Module):
    """A stride-2 stem, then DeepLabV3+'s final block (conv-BN-ReLU x2, 1x1 conv), bilinear upsampling."""

    def __init__(self, classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.final = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, classes, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.final(self.stem(x)), x.shape[-2:], mode="bilinear", align_corners=True)


class TinyTransposedNet(nn.Module):
    """ERFNet-style: the last layer is a 2x2 transposed conv with stride 2 producing full-resolution logits."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.output_conv = nn.ConvTranspose2d(6, classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_conv(self.encoder(x))


class TinyChannelsLastNet(nn.Module):
    """A linear classifier on a channels-last feature map, then upsampled."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.classifier(self.encoder(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.interpolate(low, x.shape[-2:], mode="bilinear", align_corners=True)


@pytest.fixture
def deeplab(generator: torch.Generator) -> TinyDeepLabTail:
    model = TinyDeepLabTail().double().eval()
    _randomise_batch_norms(model, generator)
    return model


@pytest.fixture
def image(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(2, 3, 10, 12, dtype=torch.float64, generator=generator)


@pytest.mark.parametrize("score,label", (("pgn_oh", "onehot"), ("pgn_uni", "uniform")))
@pytest.mark.parametrize("mode", ("exact", "reference"))
def test_last_layer_resolution_is_the_low_resolution_score_upsampled(deeplab, image, score, label, mode) -> None:
    head = GradientUncertaintyHead(deeplab, "final.6", HeadSettings(score=score, p=0.3, mode=mode))
    out = head(image)
    with torch.no_grad():
        features = deeplab.final[:6](deeplab.stem(image))
        low_probs = torch.softmax(deeplab.final[6](features), dim=1)
        expected = log_bilinear_resize(pgn(low_probs, features, 0.3, PgnOptions(label, mode)), (10, 12), True)
        logits = deeplab(image)
    assert torch.equal(out.logits, logits)
    assert torch.equal(out.labels, logits.argmax(dim=1))
    assert out.score.dtype == torch.float32 and out.score.shape == (2, 10, 12)
    assert largest_log_difference(out.score, expected) <= LOG_TOLERANCE


@pytest.mark.parametrize("p", (0.1, 0.5, 2.0))
@pytest.mark.parametrize("score,label", (("pgn_oh", "onehot"), ("pgn_uni", "uniform")))
def test_output_resolution_equals_autograd_of_the_full_resolution_loss(deeplab, image, score, label, p) -> None:
    head = GradientUncertaintyHead(deeplab, "final.6", HeadSettings(score=score, p=p, resolution="output"))
    out = head(image)
    with torch.no_grad():
        features = deeplab.final[:6](deeplab.stem(image))
    last = deeplab.final[6]

    def full_resolution_logits(weight: torch.Tensor) -> torch.Tensor:
        low = functional_call(last, {"weight": weight}, (features,))
        return F.interpolate(low, (10, 12), mode="bilinear", align_corners=True)

    truth = autograd_log_pgn(full_resolution_logits, last.weight, p, label)
    assert largest_log_difference(out.score, truth) <= LOG_TOLERANCE


@pytest.mark.parametrize("score,label", (("pgn_oh", "onehot"), ("pgn_uni", "uniform")))
def test_penultimate_score_equals_autograd_of_the_second_to_last_conv(deeplab, image, score, label) -> None:
    settings = HeadSettings(score=score, p=0.5, layer="penultimate")
    head = GradientUncertaintyHead(deeplab, "final.6", settings, penultimate_conv="final.3", penultimate_bn="final.4")
    out = head(image)
    with torch.no_grad():
        conv_input = deeplab.final[:3](deeplab.stem(image))
    tail = deeplab.final[3:]
    low_truth = autograd_log_pgn(
        lambda w: functional_call(tail, {"3.weight": w}, (conv_input,)), tail[0].weight, 0.5, label
    )
    assert largest_log_difference(out.score, log_bilinear_resize(low_truth, (10, 12), True)) <= LOG_TOLERANCE


@pytest.mark.parametrize("resolution", ("last_layer", "output"))
def test_transposed_last_layer_at_full_resolution(image, resolution: str) -> None:
    model = TinyTransposedNet().double().eval()
    out = GradientUncertaintyHead(model, "output_conv", HeadSettings("pgn_oh", p=1.0, resolution=resolution))(image)
    with torch.no_grad():
        features = model.encoder(image)
    truth = autograd_log_pgn(
        lambda w: functional_call(model.output_conv, {"weight": w}, (features,)),
        model.output_conv.weight,
        1.0,
        "onehot",
    )
    assert out.score.shape == (2, 10, 12)
    assert largest_log_difference(out.score, truth) <= LOG_TOLERANCE


def test_linear_last_layer_on_a_channels_last_map(image) -> None:
    model = TinyChannelsLastNet().double().eval()
    out = GradientUncertaintyHead(model, "classifier", HeadSettings("pgn_oh", p=0.3))(image)
    with torch.no_grad():
        features = model.encoder(image).permute(0, 2, 3, 1)
    truth = autograd_log_pgn(
        lambda w: functional_call(model.classifier, {"weight": w}, (features,)),
        model.classifier.weight,
        0.3,
        "onehot",
        dim=-1,
    )
    assert largest_log_difference(out.score, log_bilinear_resize(truth, (10, 12), True)) <= LOG_TOLERANCE


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_scores_come_from_the_output_logits(deeplab, image, name: str) -> None:
    out = GradientUncertaintyHead(deeplab, "final.6", HeadSettings(score=name))(image)
    assert torch.equal(out.score, BASELINES[name](out.logits))


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_precision_models_give_float32_scores_close_to_float32(generator, dtype) -> None:
    model = TinyDeepLabTail(width=32).eval()
    _randomise_batch_norms(model, generator)
    image = torch.randn(1, 3, 32, 40, generator=generator)
    head = GradientUncertaintyHead(model, "final.6", HeadSettings("pgn_oh", p=0.5))
    reference = head(image).score
    head.model.to(dtype)
    low = head(image.to(dtype))
    assert low.score.dtype == torch.float32 and torch.isfinite(low.score).all()
    assert low.logits.dtype == dtype
    # Same ranking up to the rounding of half precision.
    correlation = torch.corrcoef(torch.stack([reference.flatten(), low.score.flatten()]))[0, 1]
    assert correlation > 0.98


def test_settings_change_between_frames_and_bad_settings_are_refused(deeplab, image) -> None:
    head = GradientUncertaintyHead(deeplab, "final.6")
    first = head(image).score
    head.settings = HeadSettings(score="pgn_oh", p=2.0)
    assert not torch.allclose(head(image).score, first)
    head.settings = HeadSettings(score="entropy")
    assert torch.equal(head(image).score, BASELINES["entropy"](deeplab(image)))
    for bad in ({"score": "pgn"}, {"p": 0}, {"p": float("nan")}, {"mode": "approx"}, {"resolution": "full"}):
        with pytest.raises(ValueError):
            HeadSettings(**bad)
    with pytest.raises(ValueError, match="penultimate"):
        head.settings = HeadSettings(layer="penultimate")
    with pytest.raises(ValueError, match="unknown head setting"):
        HeadSettings.from_mapping({"score": "pgn_oh", "q": 1})
    with pytest.raises(ValueError, match="1x1"):
        GradientUncertaintyHead(TinyTransposedNet(), "encoder.0", HeadSettings("pgn_oh", resolution="output"))(
            torch.randn(1, 3, 8, 8)
        )


def test_shipped_parameter_file_holds_valid_head_settings() -> None:
    params = yaml.safe_load((REPO / "config" / "gradunc.yaml").read_text())["/**/gradunc_node"]["ros__parameters"]
    keys = ("score", "p", "mode", "resolution", "layer", "gradient_of")
    settings = HeadSettings.from_mapping({key: params[key] for key in keys})
    assert settings == DEFAULT_SCORE  # the file documents the defaults


def test_many_scores_from_one_pass_equal_single_passes(deeplab, image) -> None:
    settings = [
        HeadSettings(score="pgn_oh", p=0.1),
        HeadSettings(score="pgn_uni", p=2.0, mode="reference"),
        HeadSettings(score="pgn_oh", p=0.5, layer="penultimate"),
        HeadSettings(score="max_logit"),
    ]
    head = GradientUncertaintyHead(deeplab, "final.6", penultimate_conv="final.3", penultimate_bn="final.4")
    calls = []
    handle = deeplab.stem.register_forward_hook(lambda *_: calls.append(1))
    logits, labels, scores, _ = head.forward_many(image, settings)
    assert len(calls) == 1  # one forward pass for every score
    handle.remove()
    for one, score in zip(settings, scores, strict=True):
        head.settings = one
        assert torch.equal(head(image).score, score), one.name
    assert torch.equal(labels, logits.argmax(1))
    assert [s.name for s in settings] == [
        "pgn_oh_exact_p0.1",
        "pgn_uni_reference_p2",
        "pgn_oh_exact_p0.5_penultimate",
        "max_logit",
    ]
