"""Gradients of the last layer's bias and of the whole layer (weights and bias), against autograd.

docs/method.md, section 1, "Which parameters": the bias gradient is ``s - y``, so its norm is the class
factor ``||s - y||_p``; over weights and bias together the entry-wise p-norm is
``||s - y||_p * (||input||_p^p + 1)^(1/p)``.  Exact mode is checked against the per-pixel autograd
gradient, reference mode against a transcription of the paper's stand-ins for ``s - y``.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import LOG_TOLERANCE, P_VALUES
from test_pgn_autograd import INPUT_CHANNELS, LAST_LAYERS
from torch import nn
from torch.func import functional_call

from gradunc_ros.uncertainty import GradientUncertaintyHead, HeadSettings, PgnOptions, class_log_norm, pgn_for_layer
from gradunc_ros.uncertainty.autograd_reference import autograd_log_gradient_norm, largest_log_difference

WITH_BIAS = sorted(kind for kind, make in LAST_LAYERS.items() if make().bias is not None) + ["linear"]
WITHOUT_BIAS = sorted(kind for kind, make in LAST_LAYERS.items() if make().bias is None)


def _layer_and_input(kind: str, generator: torch.Generator) -> tuple[nn.Module, torch.Tensor]:
    if kind == "linear":
        return nn.Linear(8, 5).double(), torch.randn(2, 4, 3, 8, dtype=torch.float64, generator=generator)
    layer = LAST_LAYERS[kind]().double()
    return layer, torch.randn(2, INPUT_CHANNELS.get(kind, 5), 5, 6, dtype=torch.float64, generator=generator)


def _class_dim(layer: nn.Module) -> int:
    return -1 if isinstance(layer, nn.Linear) else 1


def _autograd(layer: nn.Module, x: torch.Tensor, names: tuple[str, ...], p: float, label: str) -> torch.Tensor:
    parameters = {name: getattr(layer, name) for name in names}
    return autograd_log_gradient_norm(
        lambda params: functional_call(layer, params, (x,)), parameters, p, label, dim=_class_dim(layer)
    )


def _closed(layer: nn.Module, x: torch.Tensor, p: float, label: str, gradient_of: str, mode: str = "exact"):
    with torch.no_grad():
        logits = layer(x)
    return pgn_for_layer(layer, logits, x, p, PgnOptions(label, mode, gradient_of, from_logits=True))


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("kind", WITH_BIAS)
def test_bias_and_whole_layer_gradients_match_autograd(kind: str, label: str, p: float, generator) -> None:
    layer, x = _layer_and_input(kind, generator)
    bias = _closed(layer, x, p, label, "bias")
    whole = _closed(layer, x, p, label, "layer")
    assert bias.dtype == whole.dtype == torch.float32
    assert largest_log_difference(bias, _autograd(layer, x, ("bias",), p, label)) <= LOG_TOLERANCE
    assert largest_log_difference(whole, _autograd(layer, x, ("weight", "bias"), p, label)) <= LOG_TOLERANCE


@pytest.mark.parametrize("p", (0.1, 1.0, 2.0))
@pytest.mark.parametrize("kind", WITHOUT_BIAS)
def test_a_layer_without_bias_gets_the_logit_gradient_and_its_weights_as_the_whole_layer(
    kind: str, p: float, generator
) -> None:
    layer, x = _layer_and_input(kind, generator)
    # The same layer with a zero bias has the same logits; its bias gradient is the logit gradient.
    twin = LAST_LAYERS[kind]().double()
    twin.bias = nn.Parameter(torch.zeros(twin.weight.shape[1 if isinstance(twin, nn.ConvTranspose2d) else 0]))
    with torch.no_grad():
        twin.weight.copy_(layer.weight)
    for label in ("onehot", "uniform"):
        logit_gradient = _autograd(twin.double(), x, ("bias",), p, label)
        assert largest_log_difference(_closed(layer, x, p, label, "bias"), logit_gradient) <= LOG_TOLERANCE
        weights = _autograd(layer, x, ("weight",), p, label)
        assert largest_log_difference(_closed(layer, x, p, label, "layer"), weights) <= LOG_TOLERANCE


def test_outputs_without_input_keep_the_bias_gradient(generator) -> None:
    # kernel = stride = 3, output_padding 2: the last row/column sees no input, only the bias.
    layer = LAST_LAYERS["transposed3x3-cropped"]().double()
    x = torch.randn(1, 7, 3, 3, dtype=torch.float64, generator=generator)
    weights = _closed(layer, x, 0.5, "onehot", "weights")
    whole = _closed(layer, x, 0.5, "onehot", "layer")
    bias = _closed(layer, x, 0.5, "onehot", "bias")
    assert torch.isneginf(weights[0, -1]).all()
    assert torch.equal(whole[0, -1], bias[0, -1]) and torch.isfinite(whole).all()


def _reference_class_vector(probs: torch.Tensor, label: str) -> torch.Tensor:
    """The paper's code (docs/method.md, section 1): s * (1 - y) for one-hot, (C - 1)/C * s for uniform."""
    if label == "onehot":
        onehot = torch.zeros_like(probs).scatter(1, probs.argmax(1, keepdim=True), 1.0)
        return probs * (1 - onehot)
    return (probs.shape[1] - 1) / probs.shape[1] * probs


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("kind", ("conv1x1-bias", "conv3x3-pad1", "transposed2x2"))
def test_reference_mode_bias_and_whole_layer_equal_the_papers_stand_in(kind: str, label: str, p: float, generator):
    layer, x = _layer_and_input(kind, generator)
    with torch.no_grad():
        probs = torch.softmax(layer(x), dim=1)
    vector_norm = _reference_class_vector(probs, label).abs().pow(p).sum(1).pow(1 / p)
    input_norm = pgn_for_layer(layer, probs, x, p, PgnOptions(label, log=False)) / class_log_norm(probs, p, label).exp()
    bias = _closed(layer, x, p, label, "bias", "reference")
    whole = _closed(layer, x, p, label, "layer", "reference")
    assert largest_log_difference(bias, vector_norm.log()) <= LOG_TOLERANCE
    expected = vector_norm * (input_norm.double().pow(p) + 1).pow(1 / p)
    assert largest_log_difference(whole, expected.log()) <= 1e-4


def test_tiny_inputs_and_small_p_stay_finite_for_the_whole_layer(generator) -> None:
    layer = nn.Conv2d(16, 5, 1)
    x = torch.randn(1, 16, 4, 4, generator=generator)
    for scale in (1e-30, 1.0, 1e30):
        for p in (0.01, 0.1, 10.0):
            whole = _closed(layer, scale * x, p, "onehot", "layer")
            bias = _closed(layer, scale * x, p, "onehot", "bias")
            assert torch.isfinite(whole).all() and (whole >= bias - 1e-6).all(), (scale, p)


class _Tiny(nn.Module):
    """A stride-2 stem and a 1x1 conv last layer with bias, bilinear upsampling (DeepLab-like)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.last = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.last(self.stem(x)), x.shape[-2:], mode="bilinear", align_corners=True)


@pytest.mark.parametrize("gradient_of", ("bias", "layer"))
def test_the_head_at_output_resolution_matches_autograd(gradient_of: str, generator) -> None:
    model = _Tiny().double().eval()
    image = torch.randn(1, 3, 8, 10, dtype=torch.float64, generator=generator)
    settings = HeadSettings(score="pgn_oh", p=0.3, resolution="output", gradient_of=gradient_of)
    score = GradientUncertaintyHead(model, "last", settings)(image).score
    names = ("bias",) if gradient_of == "bias" else ("weight", "bias")
    truth = autograd_log_gradient_norm(
        lambda params: functional_call(model, {f"last.{n}": t for n, t in params.items()}, (image,)),
        {name: getattr(model.last, name) for name in names},
        0.3,
        "onehot",
    )
    assert largest_log_difference(score, truth) <= LOG_TOLERANCE


def test_settings_name_the_gradient_and_refuse_what_has_no_meaning() -> None:
    assert HeadSettings("pgn_oh", 0.1, gradient_of="bias").name == "pgn_oh_exact_p0.1_bias"
    assert HeadSettings("pgn_uni", 2, "reference", gradient_of="layer").name == "pgn_uni_reference_p2_layer"
    assert HeadSettings("pgn_oh", 0.1).name == "pgn_oh_exact_p0.1"
    with pytest.raises(ValueError, match="gradient_of"):
        HeadSettings("pgn_oh", gradient_of="features")
    with pytest.raises(ValueError, match="penultimate"):
        HeadSettings("pgn_oh", layer="penultimate", gradient_of="bias")
    for p in (0.0, 0.005, 11.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="p must"):
            HeadSettings("pgn_oh", p=p)
