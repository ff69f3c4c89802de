"""Weights files: round trips, other code bases' layouts, and clear errors for every misfit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradunc_ros.models import CheckpointError, get_architecture, load_model, read_state_dict, save_safetensors


@pytest.fixture
def erfnet_pair(generator: torch.Generator):
    model = get_architecture("erfnet").build()
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model, torch.randn(1, 3, 48, 64, generator=generator)


def test_safetensors_round_trip_is_exact_and_self_describing(tmp_path: Path, erfnet_pair) -> None:
    model, image = erfnet_pair
    path = save_safetensors(model, tmp_path / "m.safetensors", model_name="erfnet", class_names=["a"] * 9)
    loaded = load_model(weights=path)  # no name: the file says which architecture it is
    assert loaded.name == "erfnet" and loaded.class_names == ("a",) * 9
    with torch.no_grad():
        assert torch.equal(loaded.model(image), model(image))


def test_float16_file_is_half_the_size_and_close(tmp_path: Path, erfnet_pair) -> None:
    model, image = erfnet_pair
    full = save_safetensors(model, tmp_path / "f32.safetensors", model_name="erfnet", class_names=["a"] * 9)
    half = save_safetensors(
        model, tmp_path / "f16.safetensors", model_name="erfnet", class_names=["a"] * 9, dtype=torch.float16
    )
    assert half.stat().st_size < 0.55 * full.stat().st_size
    state, metadata = read_state_dict(half)
    assert state["decoder.output_conv.weight"].dtype == torch.float16 and metadata["model"] == "erfnet"
    loaded = load_model(weights=half)
    assert next(loaded.model.parameters()).dtype == torch.float32
    with torch.no_grad():
        reference, rounded = model(image), loaded.model(image)
    assert (rounded - reference).abs().max() < 1e-2 * reference.abs().max()


def test_pth_with_state_dict_and_data_parallel_prefix_loads_unchanged(tmp_path: Path, erfnet_pair) -> None:
    model, image = erfnet_pair
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "nvidia_style.pth")
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    for name in ("nvidia_style.pth", "bare.pth"):
        loaded = load_model("erfnet", tmp_path / name)
        with torch.no_grad():
            assert torch.equal(loaded.model(image), model(image))


def test_pth_needs_the_architecture_named(tmp_path: Path, erfnet_pair) -> None:
    torch.save(erfnet_pair[0].state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="does not say which architecture"):
        load_model(weights=tmp_path / "bare.pth")


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path: Path, erfnet_pair) -> None:
    state = dict(erfnet_pair[0].state_dict())
    del state["encoder.layers.3.bn1.weight"]
    state["encoder.extra.weight"] = torch.zeros(3)
    state["decoder.layers.1.conv3x1_1.weight"] = torch.zeros(64, 64, 1, 3)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as error:
        load_model("erfnet", tmp_path / "broken.pth")
    message = str(error.value)
    assert "1 missing key(s): encoder.layers.3.bn1.weight" in message
    assert "1 unexpected key(s): encoder.extra.weight" in message
    assert "decoder.layers.1.conv3x1_1.weight (64, 64, 1, 3) != (64, 64, 3, 1)" in message


def test_class_count_mismatch_says_so(tmp_path: Path) -> None:
    other = get_architecture("erfnet").build(20)
    torch.save(other.state_dict(), tmp_path / "cityscapes20.pth")
    with pytest.raises(CheckpointError, match="trained for 20 classes but erfnet is set up for 9"):
        load_model("erfnet", tmp_path / "cityscapes20.pth")
    assert len(load_model("erfnet", tmp_path / "cityscapes20.pth", num_classes=20).class_names) == 20
    deeplab = get_architecture("deeplabv3plus_resnet18").build(5)
    torch.save(deeplab.state_dict(), tmp_path / "five.pth")
    with pytest.raises(CheckpointError, match="trained for 5 classes but deeplabv3plus_resnet18 is set up for 19"):
        load_model("deeplabv3plus_resnet18", tmp_path / "five.pth")


def test_missing_corrupt_and_foreign_files_fail_clearly(tmp_path: Path, erfnet_pair) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("erfnet", tmp_path / "nope.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model("erfnet", tmp_path / "corrupt.safetensors")
    path = save_safetensors(erfnet_pair[0], tmp_path / "ok.safetensors", model_name="erfnet", class_names=["a"] * 9)
    (tmp_path / "truncated.safetensors").write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model("erfnet", tmp_path / "truncated.safetensors")
    torch.save({"note": "not weights"}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_model("erfnet", tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="holds a 'erfnet' model, not 'deeplabv3plus_resnet18'"):
        load_model("deeplabv3plus_resnet18", path)


def test_class_names_travel_in_the_metadata(tmp_path: Path, erfnet_pair) -> None:
    names = [f"c{i}" for i in range(9)]
    path = save_safetensors(erfnet_pair[0], tmp_path / "m.safetensors", model_name="erfnet", class_names=names)
    assert json.loads(read_state_dict(path)[1]["class_names"]) == names
    assert load_model(weights=path).class_names == tuple(names)
