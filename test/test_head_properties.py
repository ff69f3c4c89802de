"""Property-based tests of the head: random layer shapes, input sizes, p and labels against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

pytest.importorskip("hypothesis", reason="hypothesis is not installed (requirements/dev.txt)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradunc_ros.uncertainty import GradientUncertaintyHead, HeadSettings, PgnOptions, pgn_for_layer  # noqa: E402
from gradunc_ros.uncertainty.autograd_reference import autograd_log_pgn, largest_log_difference  # noqa: E402


@st.composite
def last_layers(draw) -> nn.Module:
    features, classes = draw(st.integers(1, 12)), draw(st.integers(2, 7))
    kind = draw(st.sampled_from(["conv1x1", "conv", "transposed"]))
    bias = draw(st.booleans())
    if kind == "conv1x1":
        return nn.Conv2d(features, classes, 1, bias=bias)
    if kind == "conv":
        kernel = draw(st.integers(1, 3))
        return nn.Conv2d(features, classes, kernel, padding=draw(st.integers(0, kernel // 2)), bias=bias)
    stride = draw(st.integers(1, 3))
    return nn.ConvTranspose2d(features, classes, stride, stride=stride, bias=bias)


@settings(max_examples=60, deadline=None)
@given(
    layer=last_layers(),
    batch=st.integers(1, 2),
    height=st.integers(3, 6),
    width=st.integers(3, 6),
    p=st.floats(0.1, 3.0),
    label=st.sampled_from(["onehot", "uniform"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_closed_form_equals_autograd_for_random_layers(layer, batch, height, width, p, label, seed) -> None:
    torch.manual_seed(seed)
    layer = layer.double()
    x = torch.randn(batch, layer.in_channels, height, width, dtype=torch.float64)
    with torch.no_grad():
        logits = layer(x)
    closed = pgn_for_layer(layer, logits, x, p, PgnOptions(label, from_logits=True))
    truth = autograd_log_pgn(lambda w: functional_call(layer, {"weight": w}, (x,)), layer.weight, p, label)
    assert closed.shape == truth.shape
    assert largest_log_difference(closed, truth) <= 1e-5


class TinySegmenter(nn.Module):
    def __init__(self, classes: int, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, features, 3, stride=2, padding=1), nn.ReLU())
        self.last = nn.Conv2d(features, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.last(self.body(x)), x.shape[-2:], mode="bilinear", align_corners=True)


@settings(max_examples=40, deadline=None)
@given(
    classes=st.integers(2, 20),
    height=st.integers(2, 40),
    width=st.integers(2, 40),
    score=st.sampled_from(["pgn_oh", "pgn_uni", "msp", "entropy", "max_logit"]),
    p=st.floats(0.05, 4.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_head_outputs_have_the_image_size_and_are_never_nan(classes, height, width, score, p, seed) -> None:
    torch.manual_seed(seed)
    head = GradientUncertaintyHead(TinySegmenter(classes, 8).eval(), "last", HeadSettings(score=score, p=p))
    out = head(torch.randn(2, 3, height, width) * 5)
    assert out.logits.shape == (2, classes, height, width)
    assert out.labels.shape == out.score.shape == (2, height, width) and out.score.dtype == torch.float32
    assert not torch.isnan(out.score).any() and not torch.isposinf(out.score).any()
    assert torch.equal(out.labels, out.logits.argmax(dim=1))
