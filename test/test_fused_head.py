"""The fused Triton head against the plain PyTorch path (the reference).

Without a GPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set
here before the kernel module is first imported); with CUDA the same tests run
the compiled kernel on the GPU.  Skipped when the triton package is absent.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import pytest
import torch
from torch import nn

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type != "cuda":
    # Before triton is first imported (it reads this then); harmless elsewhere: CPU pipelines use the
    # interpreter only when gradunc_ros.uncertainty.fused.interpreter_on_cpu is set, as below.
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton", reason="the triton package is not installed")

from conftest import P_VALUES  # noqa: E402

import gradunc_ros.uncertainty.fused as fused_module  # noqa: E402
from gradunc_ros.models import load_model  # noqa: E402
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings, PgnOptions, pgn_for_layer  # noqa: E402
from gradunc_ros.uncertainty.autograd_reference import largest_log_difference  # noqa: E402
from gradunc_ros.uncertainty.fused import FusedLastLayer, fusable_layer, fused_scores, triton_runs_on  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # log 0 = -inf, interpreted


@pytest.fixture(autouse=True)
def interpreter_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_module, "interpreter_on_cpu", True)
    if not triton_runs_on(DEVICE):
        pytest.skip("triton was imported before TRITON_INTERPRET could be set: run this module on its own")


LAYERS = {
    "conv1x1": lambda: nn.Conv2d(40, 9, 1),
    "conv1x1-no-bias-19": lambda: nn.Conv2d(16, 19, 1, bias=False),
    "conv1x1-k300": lambda: nn.Conv2d(300, 5, 1),  # K not a multiple of the block: masked tail
    "transposed2x2": lambda: nn.ConvTranspose2d(16, 9, 2, stride=2),
    "transposed3x3-2classes": lambda: nn.ConvTranspose2d(24, 2, 3, stride=3),
}
# float32: log differences from rounding, amplified by 1/p; bf16/f16: the same data, other summation order.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-3, torch.float16: 2e-3}


def _reference(
    layer: nn.Module,
    features: torch.Tensor,
    p: float,
    label: str,
    dtype: torch.dtype,
    gradient_of: str = "weights",
    mode: str = "exact",
):
    """The plain path in float64 on the same (rounded) weights and features the kernel sees."""
    exact = copy.deepcopy(layer).cpu().to(dtype).double()
    x = features.to(dtype).double()
    with torch.no_grad():
        logits = exact(x)
        return logits, pgn_for_layer(exact, logits, x, p, PgnOptions(label, mode, gradient_of, from_logits=True))


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.float16), ids=str)
@pytest.mark.parametrize("label", ("onehot", "uniform"))
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_kernel_equals_the_plain_path(kind: str, label: str, dtype, generator) -> None:
    if dtype == torch.bfloat16 and DEVICE.type != "cuda":
        pytest.skip("Triton's interpreter reads bfloat16 wrongly (NumPy has no bfloat16): checked on CUDA only")
    layer = LAYERS[kind]()
    channels = layer.in_channels
    features = torch.randn(2, channels, 5, 7, generator=generator) * 3
    features[0, :, 0, 0] = 0  # a pixel with zero features: score -inf in both
    features[1, : channels // 2, 1, 1] = 0  # exact zeros among the entries: they add nothing
    for p in P_VALUES:
        logits, score = fused_scores(layer.to(DEVICE, dtype), features.to(DEVICE, dtype), p, PgnOptions(label))
        ref_logits, ref_score = _reference(layer, features, p, label, dtype)
        assert logits.dtype == score.dtype == torch.float32
        assert logits.shape == ref_logits.shape and score.shape == ref_score.shape
        assert torch.allclose(
            logits.cpu().double(), ref_logits, rtol=1e-3, atol=1e-3 if dtype != torch.float32 else 1e-5
        )
        assert largest_log_difference(score.cpu(), ref_score) <= TOLERANCE[dtype], (p, label)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16), ids=str)
@pytest.mark.parametrize(
    ("gradient_of", "mode"), [("bias", "exact"), ("layer", "exact"), ("weights", "reference"), ("bias", "reference")]
)
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_kernel_computes_the_bias_and_whole_layer_gradients_and_reference_mode(
    kind: str, gradient_of: str, mode: str, dtype, generator
) -> None:
    layer = LAYERS[kind]()
    features = torch.randn(2, layer.in_channels, 4, 5, generator=generator) * 3
    features[0, :, 0, 0] = 0  # no input: the whole layer's gradient is the bias part alone
    for label in ("onehot", "uniform"):
        for p in (0.1, 0.5, 2.0):
            layer_, x = layer.to(DEVICE, dtype), features.to(DEVICE, dtype)
            _, score = fused_scores(layer_, x, p, PgnOptions(label, mode, gradient_of))
            _, ref_score = _reference(layer, features, p, label, dtype, gradient_of, mode)
            # Exact uniform label: s_c - 1/C cancels where s_c is near 1/C, and 1/p = 10 amplifies the float32
            # rounding of the difference in the log; either path (kernel or plain) loses digits there.
            uniform_exact = (label, mode, dtype) == ("uniform", "exact", torch.float32)
            tolerance = 2e-4 if uniform_exact else TOLERANCE[dtype]
            assert largest_log_difference(score.cpu(), ref_score) <= tolerance, (p, label, tolerance)


def test_large_and_tiny_features_neither_overflow_nor_underflow() -> None:
    layer = nn.Conv2d(64, 9, 1)
    with torch.no_grad():
        layer.weight.mul_(1e-15)  # moderate logits: the extremes are in the feature norm alone
    features = torch.randn(1, 64, 4, 4)
    features[..., :2, :] *= 1e15  # |f|^4 alone would overflow float32
    features[..., 2:, :] *= 1e-15  # and underflow
    for p in (0.1, 4.0):
        for gradient_of in ("weights", "layer"):
            _, score = fused_scores(layer.to(DEVICE), features.to(DEVICE), p, PgnOptions(gradient_of=gradient_of))
            _, ref = _reference(layer.cpu(), features, p, "onehot", torch.float32, gradient_of)
            assert torch.isfinite(score).all()
            assert largest_log_difference(score.cpu(), ref) <= 1e-4


def test_only_layers_the_kernel_computes_are_fused() -> None:
    assert fusable_layer(nn.Conv2d(8, 3, 1)) and fusable_layer(nn.ConvTranspose2d(8, 3, 2, stride=2))
    assert not fusable_layer(nn.Conv2d(8, 3, 3, padding=1))
    assert not fusable_layer(nn.ConvTranspose2d(8, 3, 3, stride=2))
    assert not fusable_layer(nn.ConvTranspose2d(8, 3, 2, stride=2, padding=1))
    with pytest.raises(ValueError, match="cannot compute"):
        FusedLastLayer(nn.Linear(8, 3))


@pytest.mark.parametrize("model_name", ("erfnet", "deeplabv3plus_resnet18"))
@pytest.mark.parametrize("score", ("pgn_oh", "pgn_uni"))
def test_fused_head_equals_the_plain_head_on_real_architectures(model_name: str, score: str, generator) -> None:
    _fused_equals_plain(model_name, HeadSettings(score=score, p=0.3), generator)


@pytest.mark.parametrize(
    ("model_name", "settings"),
    [("erfnet", DEFAULT_SCORE), ("deeplabv3plus_resnet18", HeadSettings("pgn_oh", 0.3, gradient_of="layer"))],
    ids=("erfnet-default", "deeplab-layer"),
)
def test_the_default_score_and_the_whole_layer_are_fused_too(model_name: str, settings, generator) -> None:
    _fused_equals_plain(model_name, settings, generator)


def _fused_equals_plain(model_name: str, plain_settings: HeadSettings, generator) -> None:
    torch.manual_seed(0)
    loaded = load_model(model_name, "random", num_classes=9)
    model = loaded.model.to(DEVICE)
    last_layer = loaded.last_layer.path
    score = plain_settings.score
    plain = loaded.make_head(plain_settings, fused="off")
    image = torch.randn(2, 3, 64, 96, generator=generator).to(DEVICE)
    exact_model = copy.deepcopy(model).cpu().double()
    exact = dataclasses.replace(loaded, model=exact_model).make_head(plain_settings, fused="off")
    truth = exact(image.cpu().double()).score
    expected = plain(image)
    fused = loaded.make_head(plain_settings, fused="triton")
    assert model.get_submodule(last_layer)._gradunc_fused is fused.fused
    assert list(model.state_dict()) == list(exact_model.state_dict())  # the model's structure is unchanged
    got = fused(image)
    assert torch.allclose(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(got.labels, expected.labels)
    # As accurate as the plain float32 path: both against the same head in float64 (pgn_uni loses
    # digits where s_c is close to 1/C, in either path).
    plain_error = largest_log_difference(expected.score.cpu(), truth)
    assert largest_log_difference(got.score.cpu(), truth) <= 2 * plain_error + 1e-5
    # Scores the kernel does not compute still come from the plain path, through the same model.
    for other in (HeadSettings(score="max_logit"), HeadSettings(score=score, resolution="output")):
        fused.settings = plain.settings = other
        assert torch.allclose(fused(image).score, plain(image).score, atol=1e-5, rtol=1e-5), other


def test_selfcheck_checks_the_fused_kernel_where_it_runs(capsys: pytest.CaptureFixture) -> None:
    from gradunc_ros.tools.selfcheck import main

    assert main(["--device", DEVICE.type, "--p", "0.1", "1"]) == 0
    out = capsys.readouterr().out
    assert "fused transposed 2x2/2" in out and "fused Triton head: largest relative error" in out


def test_the_packed_weights_follow_changes_of_the_layer(generator) -> None:
    layer = nn.Conv2d(16, 9, 1).to(DEVICE)
    fused = FusedLastLayer(layer)
    fused.request = (0.5, PgnOptions())
    features = torch.randn(1, 16, 4, 4, generator=generator).to(DEVICE)
    first = layer(features)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in place, as load_state_dict does
        layer.bias.add_(1.0)
    second = layer(features)
    _, expected = fused_scores(layer, features, 0.5)  # packed afresh
    assert not torch.allclose(first, second)
    assert torch.equal(fused.score, expected)
