"""Architectures: module names and shapes as in the reference code bases, and hand-checked small pieces.

Expected names and shapes come from reading Eromera/erfnet_pytorch ``train/erfnet.py`` and NVIDIA
semantic-segmentation ``network/deepv3.py``, ``Resnet.py`` and ``wider_resnet.py``; a checkpoint from
those code bases loads only when every key and shape agrees.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradunc_ros.models import get_architecture, load_model, model_names
from gradunc_ros.models.deeplab import AtrousSpatialPyramidPooling, DeepV3Plus, IdentityResidualBlock
from gradunc_ros.models.erfnet import DownsamplerBlock, NonBottleneck1d
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_erfnet_names_and_shapes() -> None:
    model = get_architecture("erfnet").build(20)
    shapes = _shapes(model)
    expected = {
        "encoder.initial_block.conv.weight": (13, 3, 3, 3),  # DownsamplerBlock(3, 16): 16 - 3 conv channels
        "encoder.initial_block.bn.running_var": (16,),
        "encoder.layers.0.conv.weight": (48, 16, 3, 3),  # DownsamplerBlock(16, 64)
        "encoder.layers.1.conv3x1_1.weight": (64, 64, 3, 1),
        "encoder.layers.5.conv1x3_2.bias": (64,),
        "encoder.layers.6.conv.weight": (64, 64, 3, 3),  # DownsamplerBlock(64, 128)
        "encoder.layers.14.bn2.weight": (128,),
        "encoder.output_conv.weight": (20, 128, 1, 1),
        "decoder.layers.0.conv.weight": (128, 64, 3, 3),  # transposed: in x out x k x k
        "decoder.layers.3.conv.weight": (64, 16, 3, 3),
        "decoder.layers.5.conv3x1_2.weight": (16, 16, 3, 1),
        "decoder.output_conv.weight": (16, 20, 2, 2),
        "decoder.output_conv.bias": (20,),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert len(model.encoder.layers) == 15 and len(model.decoder.layers) == 6
    assert "encoder.layers.15.conv3x1_1.weight" not in shapes
    dilations = [model.encoder.layers[i].conv3x1_2.dilation[0] for i in range(7, 15)]
    assert dilations == [2, 4, 8, 16, 2, 4, 8, 16]
    last = model.get_submodule(get_architecture("erfnet").last_layer)
    assert isinstance(last, torch.nn.ConvTranspose2d) and last.kernel_size == last.stride == (2, 2)


def test_deeplab_resnet50_names_shapes_and_dilation() -> None:
    model = get_architecture("deeplabv3plus_resnet50").build()
    shapes = _shapes(model)
    expected = {
        "layer0.0.weight": (64, 3, 7, 7),
        "layer0.1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.3.conv3.weight": (512, 128, 1, 1),
        "layer3.5.bn3.weight": (1024,),
        "layer4.0.downsample.1.num_batches_tracked": (),
        "aspp.img_conv.0.weight": (256, 2048, 1, 1),
        "aspp.features.0.0.weight": (256, 2048, 1, 1),
        "aspp.features.3.1.running_var": (256,),
        "bot_fine.weight": (48, 256, 1, 1),
        "bot_aspp.weight": (256, 1280, 1, 1),
        "final.0.weight": (256, 304, 3, 3),
        "final.4.weight": (256,),
        "final.6.weight": (19, 256, 1, 1),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "final.6.bias" not in shapes and not any(k.startswith(("fc.", "conv1.", "layer5")) for k in shapes)
    assert "layer3.22.conv1.weight" in _shapes(get_architecture("deeplabv3plus_resnet101").build())
    # Variant D: layer3 and layer4 trade stride for dilation 2 and 4; ASPP rates doubled for stride 8.
    assert model.layer3[0].conv2.dilation == (2, 2) and model.layer3[0].conv2.stride == (1, 1)
    assert model.layer3[0].downsample[0].stride == (1, 1)
    assert model.layer4[2].conv2.dilation == (4, 4) and model.layer4[0].downsample[0].stride == (1, 1)
    assert [model.aspp.features[i][0].dilation[0] for i in (1, 2, 3)] == [12, 24, 36]


def test_deeplab_wrn38_names_shapes_and_dilation() -> None:
    model = get_architecture("deeplabv3plus_wrn38").build()
    shapes = _shapes(model)
    expected = {
        "mod1.conv1.weight": (64, 3, 3, 3),
        "mod2.block1.bn1.0.weight": (64,),
        "mod2.block1.convs.conv1.weight": (128, 64, 3, 3),
        "mod2.block1.proj_conv.weight": (128, 64, 1, 1),
        "mod3.block3.convs.bn2.0.running_mean": (256,),
        "mod4.block6.convs.conv2.weight": (512, 512, 3, 3),
        "mod5.block1.convs.conv2.weight": (1024, 512, 3, 3),
        "mod6.block1.convs.conv3.weight": (2048, 1024, 1, 1),
        "mod7.block1.convs.conv3.weight": (4096, 2048, 1, 1),
        "mod7.block1.proj_conv.weight": (4096, 2048, 1, 1),
        "aspp.features.1.0.weight": (256, 4096, 3, 3),
        "bot_fine.weight": (48, 128, 1, 1),
        "final.6.weight": (19, 256, 1, 1),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert "mod2.block2.proj_conv.weight" not in shapes  # same width, stride 1: identity shortcut
    assert not any(k.startswith(("bn_out", "classifier", "mod8")) for k in shapes)
    assert model.mod4.block1.convs.conv1.stride == (2, 2)
    assert model.mod5.block1.convs.conv1.dilation == (2, 2) and model.mod7.block1.convs.conv2.dilation == (4, 4)
    assert isinstance(model.mod6.block1.convs.dropout, torch.nn.Dropout2d)


def test_identity_residual_block_by_hand(generator: torch.Generator) -> None:
    block = IdentityResidualBlock(4, (6, 6)).double().eval()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, generator=generator)
    activated = F.relu(block.bn1[0](x))
    inner = block.convs.conv2(F.relu(block.convs.bn2[0](block.convs.conv1(activated))))
    assert torch.allclose(block(x), inner + block.proj_conv(activated))
    same = IdentityResidualBlock(6, (6, 6)).double().eval()
    y = torch.randn(1, 6, 5, 5, dtype=torch.float64, generator=generator)
    assert torch.allclose(same(y), same.convs(F.relu(same.bn1[0](y))) + y)


def test_erfnet_blocks_by_hand(generator: torch.Generator) -> None:
    down = DownsamplerBlock(3, 16).double().eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=generator)
    expected = F.relu(down.bn(torch.cat([down.conv(x), F.max_pool2d(x, 2)], dim=1)))
    assert torch.allclose(down(x), expected)
    block = NonBottleneck1d(4, 0.0, 2).double().eval()
    y = torch.randn(1, 4, 9, 9, dtype=torch.float64, generator=generator)
    inner = F.relu(block.bn1(block.conv1x3_1(F.relu(block.conv3x1_1(y)))))
    inner = block.bn2(block.conv1x3_2(F.relu(block.conv3x1_2(inner))))
    assert torch.allclose(block(y), F.relu(inner + y))


def test_aspp_concatenates_pooled_and_dilated_branches(generator: torch.Generator) -> None:
    aspp = AtrousSpatialPyramidPooling(8, 4).double().eval()
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64, generator=generator)
    out = aspp(x)
    assert out.shape == (2, 20, 6, 7)
    pooled = aspp.img_conv(x.mean(dim=(2, 3), keepdim=True))
    assert torch.allclose(out[:, :4], pooled.expand(-1, -1, 6, 7))
    assert torch.allclose(out[:, 8:12], aspp.features[1](x))


def test_deeplab_forward_is_the_documented_composition(generator: torch.Generator) -> None:
    model = DeepV3Plus(5, trunk="resnet-18").double().eval()
    x = torch.randn(1, 3, 64, 48, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        x1 = model.layer1(model.layer0(x))
        deep = model.layer4(model.layer3(model.layer2(x1)))
        assert deep.shape[-2:] == (8, 6)  # output stride 8
        up = F.interpolate(model.bot_aspp(model.aspp(deep)), x1.shape[2:], mode="bilinear", align_corners=True)
        low = model.final(torch.cat([model.bot_fine(x1), up], dim=1))
        assert low.shape[-2:] == (16, 12)  # the head works at stride 4
        expected = F.interpolate(low, (64, 48), mode="bilinear", align_corners=True)
        assert torch.allclose(model(x), expected)


@pytest.mark.parametrize("name", ["erfnet", "deeplabv3plus_resnet18"])  # one of each tail kind; the rest is slow
def test_models_run_under_the_head(name: str, generator: torch.Generator) -> None:
    loaded = load_model(name, "random", num_classes=6)
    image = torch.randn(1, 3, 48, 64, generator=generator)
    for settings in (
        HeadSettings("pgn_oh"),
        HeadSettings("pgn_uni", resolution="output"),
        HeadSettings(),
        DEFAULT_SCORE,
    ):
        out = loaded.make_head(settings)(image)
        assert out.logits.shape == (1, 6, 48, 64) and out.score.shape == (1, 48, 64)
        assert torch.isfinite(out.score).all()
    if loaded.penultimate_conv:
        head = loaded.make_head(HeadSettings(score="pgn_oh", layer="penultimate"))
        assert torch.isfinite(head(image).score).all()


def test_the_probe_measures_the_registered_tails() -> None:
    erfnet = load_model("erfnet", "random").last_layer
    assert (erfnet.path, erfnet.at_output, erfnet.stride) == ("decoder.output_conv", True, 1.0)
    deeplab = load_model("deeplabv3plus_resnet18", "random").last_layer
    assert (deeplab.path, deeplab.at_output, deeplab.align_corners, deeplab.stride) == ("final.6", False, True, 4.0)


def test_registry_lists_every_family() -> None:
    assert set(model_names()) == {
        "erfnet", "deeplabv3plus_resnet18", "deeplabv3plus_resnet50", "deeplabv3plus_resnet101", "deeplabv3plus_wrn38",
    }  # fmt: skip
    with pytest.raises(KeyError, match="registered: deeplabv3plus_resnet101"):
        get_architecture("segformer")
