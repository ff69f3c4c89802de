"""Bring your own model: code no one here wrote (Hugging Face's SegFormer, a torchvision-style net) through the
probe, the card, the output adapter and the head, every gradient checked against per-pixel autograd."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import P_VALUES
from torch.func import functional_call, jacrev

from gradunc_ros.models import CardError, CheckpointError, FactoryError, ModelCard, ProbeError, load_model
from gradunc_ros.models.card import card_path_for, read_card
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.uncertainty import HeadSettings, OutputError, log_bilinear_resize, logits_of
from gradunc_ros.uncertainty.autograd_reference import autograd_log_gradient_norm, largest_log_difference

HERE = Path(__file__).parent
TORCHVISION_STYLE, SEGFORMER = "byom_models:torchvision_style", "byom_models:segformer"
PARAMETERS = {"weights": ("weight",), "bias": ("bias",), "layer": ("weight", "bias")}
TOLERANCE = 1e-5  # the head publishes float32 scores (a float64 model inside), against float64 autograd, in log


def _load(reference: str, **kwargs):
    if reference == SEGFORMER:
        pytest.importorskip("transformers", reason="Hugging Face transformers is not installed")
    return load_model(reference, model_path=HERE, **kwargs)


@pytest.fixture(scope="module", params=[TORCHVISION_STYLE, SEGFORMER], ids=["torchvision_style", "segformer"])
def byom(request):
    loaded = _load(request.param)
    loaded.model.double()
    return loaded


def _features(loaded, x: torch.Tensor) -> torch.Tensor:
    """The last layer's input in a plain forward pass (independent of the head's own capture)."""
    captured = {}
    layer = loaded.model.get_submodule(loaded.last_layer.path)
    handle = layer.register_forward_hook(lambda _m, inputs, _o: captured.setdefault("x", inputs[0].detach()))
    with torch.no_grad():
        loaded.model(x)
    handle.remove()
    return captured["x"]


def _reference_vector(logits: torch.Tensor, label: str) -> torch.Tensor:
    """The paper's code's stand-in for s - y (docs/method.md, section 1): s * (1 - onehot) or (C - 1) / C * s."""
    probs = logits.softmax(1)
    if label == "uniform":
        return probs * (logits.shape[1] - 1) / logits.shape[1]
    return probs * (1 - F.one_hot(logits.argmax(1), logits.shape[1]).movedim(-1, 1))


def _truth(layer, features, p: float, label: str, mode: str, gradient_of: str, size=None, corners=False):
    """log ||d loss_pixel / d (the chosen parameters of the layer)||_p by autograd, at the layer's output or
    after the model's bilinear upsampling to ``size``.  Reference mode differentiates the per-pixel
    surrogate <c, z> with the paper's class vector c held fixed: its gradient is c outer input."""
    chosen = {name: getattr(layer, name).detach() for name in PARAMETERS[gradient_of]}

    def logits(params: dict) -> torch.Tensor:
        full = {name: params.get(name, getattr(layer, name).detach()) for name in ("weight", "bias")}
        z = functional_call(layer, full, (features,))
        return z if size is None else F.interpolate(z, size, mode="bilinear", align_corners=corners)

    if mode == "exact":
        return autograd_log_gradient_norm(logits, chosen, p, label)
    vector = _reference_vector(logits(chosen).detach(), label)
    jacobians = jacrev(lambda params: (vector * logits(params)).sum(1).reshape(-1))(chosen)
    summed = sum(j.reshape(j.shape[0], -1).abs().pow(p).sum(1) for j in jacobians.values())
    return (summed.log() / p).reshape(vector.sum(1).shape)


@pytest.mark.parametrize("mode", ["exact", "reference"])
@pytest.mark.parametrize("gradient_of", ["weights", "bias", "layer"])
def test_every_gradient_at_the_last_layers_resolution_equals_autograd(byom, gradient_of, mode, generator) -> None:
    x = torch.randn(1, 3, 32, 48, generator=generator, dtype=torch.float64)
    layer = byom.model.get_submodule(byom.last_layer.path)
    features = _features(byom, x)
    for score, label in (("pgn_oh", "onehot"), ("pgn_uni", "uniform")):
        for p in (0.3, 1.0, 2.0):
            settings = HeadSettings(score, p, mode, gradient_of=gradient_of)
            out = byom.make_head(settings)(x)
            truth = _truth(layer, features, p, label, mode, gradient_of)
            # The head upsamples the score to the model's output as a norm, the way the model upsamples logits.
            expected = log_bilinear_resize(truth, tuple(out.logits.shape[-2:]), byom.last_layer.align_corners)
            assert largest_log_difference(out.score, expected) < TOLERANCE, settings.name


@pytest.mark.parametrize("mode", ["exact", "reference"])
@pytest.mark.parametrize("gradient_of", ["weights", "bias", "layer"])
def test_every_gradient_after_the_models_own_upsampling_equals_autograd(gradient_of, mode, generator) -> None:
    """torchvision-style: logits upsampled inside forward; resolution output is the exact gradient there."""
    loaded = _load(TORCHVISION_STYLE)
    loaded.model.double()
    x = torch.randn(1, 3, 32, 48, generator=generator, dtype=torch.float64)
    layer = loaded.model.get_submodule(loaded.last_layer.path)
    features = _features(loaded, x)
    for p in P_VALUES[1:]:
        settings = HeadSettings("pgn_oh", p, mode, resolution="output", gradient_of=gradient_of)
        out = loaded.make_head(settings)(x)
        assert out.score.shape == (1, 32, 48)
        truth = _truth(layer, features, p, "onehot", mode, gradient_of, size=(32, 48), corners=False)
        assert largest_log_difference(out.score, truth) < TOLERANCE, settings.name


def test_the_segformers_score_is_upsampled_to_the_image_as_a_norm(generator) -> None:
    """SegFormer returns H/4 logits: the pipeline brings the score to the image as a norm (docs/method.md)."""
    loaded = _load(SEGFORMER)
    settings = HeadSettings("pgn_oh", 0.5, gradient_of="layer")
    pipeline = SegmentationPipeline(loaded, settings, device="cpu")
    image = (torch.rand(64, 96, 3, generator=generator) * 255).to(torch.uint8).numpy()
    prediction = pipeline.predict(image, keep_logits=True)
    assert prediction.score.shape == (64, 96) and prediction.logits.shape == (5, 64, 96)
    x = torch.from_numpy(image)[None].permute(0, 3, 1, 2).double() / 255.0
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in (loaded.card.mean, loaded.card.std))
    x = (x - mean) / std
    double = _load(SEGFORMER)
    double.model.double()
    layer = double.model.get_submodule(double.last_layer.path)
    truth = _truth(layer, _features(double, x), 0.5, "onehot", "exact", "layer")
    assert truth.shape == (1, 16, 24)
    expected = log_bilinear_resize(truth, (64, 96), align_corners=False)[0].numpy()
    assert np.abs(prediction.score - expected).max() < 1e-4


def test_the_probe_measures_each_models_last_layer() -> None:
    torchvision = _load(TORCHVISION_STYLE).last_layer
    # The auxiliary classifier runs, has the same 6 outputs and is registered last: it is not the last layer.
    assert (torchvision.path, torchvision.at_output, torchvision.align_corners) == ("classifier.4", False, False)
    assert (torchvision.stride, torchvision.output_stride, torchvision.num_classes) == (8, 1, 6)
    segformer = _load(SEGFORMER).last_layer
    assert (segformer.path, segformer.at_output, segformer.stride, segformer.output_stride) == (
        "decode_head.classifier", True, 4, 4,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        ("summed_classifiers", "layers with 4 outputs: first (ran 1x), second (ran 1x)"),
        ("sliding_window", "classifier (ran 2x)"),
        ("sigmoid_head", "outputs 1 channel (a sigmoid head?)"),
        ("token_output", "not an N x C x H x W logit map"),
        ("raising_factory", "raised RuntimeError: the checkpoint server is unreachable"),
        ("not_a_model", "returned a str, not a torch nn.Module"),
        ("missing_function", "byom_models has no missing_function"),
    ],
)
def test_models_without_a_single_last_layer_or_factories_that_fail_are_refused(factory: str, reason: str) -> None:
    with pytest.raises((ProbeError, FactoryError), match=re.escape(reason)):
        _load(f"byom_models:{factory}")


def test_an_import_that_fails_says_the_modules_own_error(tmp_path: Path) -> None:
    (tmp_path / "broken_user_model.py").write_text("import a_package_that_is_not_installed\n")
    with pytest.raises(FactoryError, match="cannot import broken_user_model .*No module named 'a_package_that_is_"):
        load_model("broken_user_model:build", model_path=tmp_path)
    with pytest.raises(FactoryError, match="neither a registered name nor package.module:function"):
        load_model("not a:reference")
    sys.modules.pop("broken_user_model", None)


def test_the_card_names_or_drops_the_last_layer() -> None:
    # Naming the auxiliary classifier is refused: its output is not the logits.
    with pytest.raises(ProbeError, match="output of aux_classifier.4 is not the model's logits"):
        _load(TORCHVISION_STYLE, card=ModelCard(last_layer="aux_classifier.4"))
    with pytest.raises(ProbeError, match="has no module 'classifier.9'"):
        _load(TORCHVISION_STYLE, card=ModelCard(last_layer="classifier.9"))
    # last_layer: none: the baselines and the bias gradient (from the logits) run, the rest is refused.
    summed = _load("byom_models:summed_classifiers", card=ModelCard(last_layer="none"))
    assert summed.last_layer.path is None
    x = torch.randn(1, 3, 32, 32)
    head = summed.make_head(HeadSettings("pgn_oh", 0.5, gradient_of="bias"))
    logits = logits_of(summed.model(x))
    probs = logits.softmax(1)
    expected = (probs - F.one_hot(logits.argmax(1), 4).movedim(-1, 1)).abs().pow(0.5).sum(1).pow(2).log()
    assert torch.allclose(head(x).score, expected, atol=1e-5)
    assert torch.isfinite(summed.make_head(HeadSettings("entropy"))(x).score).all()
    with pytest.raises(ValueError, match="gradient_of weights needs the last layer's input"):
        summed.make_head(HeadSettings("pgn_oh", gradient_of="weights"))


def test_without_a_card_names_colours_and_normalisation_are_assumed_and_listed() -> None:
    loaded = _load(TORCHVISION_STYLE)
    assert loaded.class_names == tuple(f"class_{i}" for i in range(6))
    assert len(set(loaded.colours)) == 6
    assert loaded.card.mean == (0.485, 0.456, 0.406)
    assert loaded.assumed == ["class names class_0 .. class_5", "generated colours", "ImageNet normalisation"]
    assert load_model().assumed == []  # the shipped model's card says everything


def test_a_card_beside_the_weights_is_read_and_a_wrong_class_count_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "tv.safetensors"
    save_file({k: v.contiguous() for k, v in _load(TORCHVISION_STYLE).model.state_dict().items()}, str(weights))
    names = [f"thing{i}" for i in range(6)]
    card_path_for(weights).write_text(
        f"class_names: {names}\nchannel_order: bgr\npixel_scale: 255\nmean: [100, 110, 120]\nstd: [50, 60, 70]\n"
    )
    loaded = _load(TORCHVISION_STYLE, weights=weights)
    assert loaded.class_names == tuple(names) and "ImageNet normalisation" not in loaded.assumed
    # BGR in 0-255 units: the pipeline's input is (x[..., ::-1] - mean) / std.
    pipeline = SegmentationPipeline(loaded, HeadSettings("entropy"), device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    seen = {}
    handle = loaded.model.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    pipeline.predict(image)
    handle.remove()
    bgr = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    expected = (bgr - torch.tensor([100.0, 110, 120]).view(1, 3, 1, 1)) / torch.tensor([50.0, 60, 70]).view(1, 3, 1, 1)
    assert torch.allclose(seen["x"], expected, atol=1e-4)
    card_path_for(weights).write_text("class_names: [a, b, c]\n")
    with pytest.raises(CardError, match="names 3 classes but the model outputs 6"):
        _load(TORCHVISION_STYLE, weights=weights)
    card_path_for(weights).write_text("class_name: [a, b, c]\n")
    with pytest.raises(CardError, match="unknown key.*class_name"):
        _load(TORCHVISION_STYLE, weights=weights)


def test_factory_weights_load_strictly_with_every_mismatch_named(tmp_path: Path) -> None:
    state = _load(TORCHVISION_STYLE).model.state_dict()
    state.pop("aux_classifier.4.bias")
    state["classifier.4.weight"] = torch.zeros(3, 12, 1, 1)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        _load(TORCHVISION_STYLE, weights=path)
    text = str(error.value)
    assert "1 missing key(s): aux_classifier.4.bias" in text and "1 unexpected key(s): extra.weight" in text
    assert "classifier.4.weight (3, 12, 1, 1) != (6, 12, 1, 1)" in text
    # The factory's arguments come from the card: a model for 3 classes fits that checkpoint's classifier.
    good = _load(TORCHVISION_STYLE, card=ModelCard(factory_arguments={"num_classes": 3, "seed": 1}))
    assert good.last_layer.num_classes == 3


def test_outputs_as_people_return_them() -> None:
    logits = torch.randn(1, 3, 4, 5)

    class Output:  # Hugging Face style: an object with .logits
        def __init__(self) -> None:
            self.logits = logits

    for output in (logits, {"out": logits, "aux": logits + 1}, {"logits": logits}, Output(), (logits, logits + 1)):
        assert logits_of(output) is logits
    assert logits_of({"seg": logits, "out": logits + 1}, key="seg") is logits
    with pytest.raises(OutputError, match="mapping without 'out' or 'logits' .*keys: seg"):
        logits_of({"seg": logits})
    with pytest.raises(OutputError, match="not an N x C x H x W logit map: a 3-d"):
        logits_of(torch.randn(1, 3, 4))
    with pytest.raises(OutputError, match="holds no logit tensor: a str"):
        logits_of("logits")


def test_a_card_file_with_every_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(
        "class_names: [road, car]\ncolours: [[1, 2, 3], [4, 5, 6]]\nknown_classes: [0]\nignore_classes: [255]\n"
        "mean: [0.5, 0.5, 0.5]\nstd: [0.25, 0.25, 0.25]\nchannel_order: RGB\npixel_scale: 1\ninput_size: 640x480\n"
        "input_multiple: 16\noutput_key: seg\nlast_layer: head.conv\nfactory_arguments: {num_classes: 2}\n"
    )
    card = read_card(path)
    assert card.input_size == (480, 640) and card.colours == ((1, 2, 3), (4, 5, 6)) and card.output_key == "seg"
    assert card.factory_arguments == {"num_classes": 2} and card.known_classes == (0,)
    path.write_text("channel_order: grb\n")
    with pytest.raises(CardError, match="channel_order must be one of rgb, bgr"):
        read_card(path)
