"""DeepLabV3+ as in NVIDIA semantic-segmentation (sdcnet branch), the paper's networks.

Module names follow ``network/deepv3.py`` (``DeepV3Plus``, ``DeepWV3Plus``),
``network/Resnet.py`` and ``network/wider_resnet.py`` so that their
checkpoints load unchanged: trunk ``layer0``-``layer4`` (ResNet) or
``mod1``-``mod7`` (WideResNet38), then ``aspp``, ``bot_fine``, ``bot_aspp``
and the head ``final`` = conv3x3-BN-ReLU-conv3x3-BN-ReLU-conv1x1.  The
gradient is taken of ``final.6`` (1x1); the penultimate variant uses
``final.3`` and ``final.4``.  Logits are upsampled bilinearly with
``align_corners=True``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def initialise(*modules: nn.Module) -> None:
    """Kaiming-normal convs and linears, unit batch norms (what the reference code does at start)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


# --- ResNet trunk (network/Resnet.py names) ----------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


RESNET_DEPTHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet-18": (BasicBlock, (2, 2, 2, 2)),
    "resnet-50": (Bottleneck, (3, 4, 6, 3)),
    "resnet-101": (Bottleneck, (3, 4, 23, 3)),
}


def _resnet_stage(block: type[nn.Module], in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out_planes = planes * block.expansion  # type: ignore[attr-defined]
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
        )
    layers = [block(in_planes, planes, stride, downsample)]
    layers += [block(out_planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _dilate(stage: nn.Module, dilation: int) -> None:
    """Variant D: trade a stage's stride for dilation in its 3x3 convs (output stride 8)."""
    for name, module in stage.named_modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            module.dilation, module.padding, module.stride = (dilation, dilation), (dilation, dilation), (1, 1)
        elif name.endswith("downsample.0"):
            module.stride = (1, 1)


# --- ASPP and the decoder (network/deepv3.py names) --------------------------------------------


class AtrousSpatialPyramidPooling(nn.Module):
    """Image pooling, a 1x1 conv and three dilated 3x3 convs, concatenated (5 x reduction channels)."""

    def __init__(self, in_dim: int, reduction_dim: int = 256, rates: tuple[int, ...] = (12, 24, 36)) -> None:
        super().__init__()
        self.features = nn.ModuleList(
            [conv_bn_relu(in_dim, reduction_dim, 1)] + [conv_bn_relu(in_dim, reduction_dim, 3, r) for r in rates]
        )
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = conv_bn_relu(in_dim, reduction_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = upsample(self.img_conv(self.img_pooling(x)), x.shape[2:])
        return torch.cat([pooled] + [branch(x) for branch in self.features], dim=1)


def _final_block(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 256, 3, padding=1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, num_classes, 1, bias=False),
    )


class DeepV3Plus(nn.Module):
    """DeepLabV3+ with a dilated ResNet trunk (variant D, output stride 8) and the m1 skip (stride 4)."""

    def __init__(self, num_classes: int, trunk: str = "resnet-50", skip_num: int = 48) -> None:
        super().__init__()
        if trunk not in RESNET_DEPTHS:
            raise ValueError(f"unknown trunk {trunk!r}; choose from {', '.join(RESNET_DEPTHS)}")
        block, depths = RESNET_DEPTHS[trunk]
        expansion = block.expansion  # type: ignore[attr-defined]
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        planes, in_planes, stages = (64, 128, 256, 512), 64, []
        for index, (width, depth) in enumerate(zip(planes, depths, strict=True)):
            stages.append(_resnet_stage(block, in_planes, width, depth, stride=1 if index == 0 else 2))
            in_planes = width * expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        _dilate(self.layer3, 2)
        _dilate(self.layer4, 4)
        self.aspp = AtrousSpatialPyramidPooling(512 * expansion, 256)
        self.bot_fine = nn.Conv2d(64 * expansion, skip_num, 1, bias=False)
        self.bot_aspp = nn.Conv2d(1280, 256, 1, bias=False)
        self.final = _final_block(256 + skip_num, num_classes)
        for stage in (self.layer0, *stages):
            for m in stage.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        initialise(self.aspp, self.bot_aspp, self.bot_fine, self.final)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.layer1(self.layer0(x))
        deep = self.layer4(self.layer3(self.layer2(x1)))
        up = upsample(self.bot_aspp(self.aspp(deep)), x1.shape[2:])
        return upsample(self.final(torch.cat([self.bot_fine(x1), up], dim=1)), x.shape[2:])


# --- WideResNet38 trunk (network/wider_resnet.py names) -----------------------------------------


def bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block: two 3x3 convs, or a 1x1-3x3-1x1 bottleneck when three widths are given."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        stride: int = 1,
        dilation: int = 1,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.bn1 = bn_relu(in_channels)
        if len(channels) == 2:
            first = nn.Conv2d(in_channels, channels[0], 3, stride, padding=dilation, dilation=dilation, bias=False)
            layers = [
                ("conv1", first),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation, dilation=dilation, bias=False)),
            ]
            if dropout is not None:
                layers.insert(2, ("dropout", nn.Dropout2d(dropout)))
        else:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 1, stride=stride, bias=False)),
                ("bn2", bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=dilation, dilation=dilation, bias=False)),
                ("bn3", bn_relu(channels[1])),
                ("conv3", nn.Conv2d(channels[1], channels[2], 1, bias=False)),
            ]
            if dropout is not None:
                layers.insert(4, ("dropout", nn.Dropout2d(dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        if stride != 1 or in_channels != channels[-1]:
            self.proj_conv = nn.Conv2d(in_channels, channels[-1], 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.bn1(x)
        shortcut = self.proj_conv(activated) if hasattr(self, "proj_conv") else x
        return self.convs(activated) + shortcut


WRN38_STRUCTURE = (3, 3, 6, 3, 1, 1)
WRN38_CHANNELS = ((128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048), (1024, 2048, 4096))


class DeepWV3Plus(nn.Module):
    """DeepLabV3+ with the dilated WideResNet38-A2 trunk (output stride 8), skip from mod2 (stride 2)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.mod1 = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 64, 3, padding=1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for mod_id, (count, widths) in enumerate(zip(WRN38_STRUCTURE, WRN38_CHANNELS, strict=True)):
            dilation = 2 if mod_id == 3 else 4 if mod_id > 3 else 1
            dropout = {4: 0.3, 5: 0.5}.get(mod_id)
            blocks = []
            for block_id in range(count):
                stride = 2 if block_id == 0 and mod_id == 2 else 1
                block = IdentityResidualBlock(in_channels, widths, stride, dilation, dropout)
                blocks.append((f"block{block_id + 1}", block))
                in_channels = widths[-1]
            self.add_module(f"mod{mod_id + 2}", nn.Sequential(OrderedDict(blocks)))
        self.aspp = AtrousSpatialPyramidPooling(4096, 256)
        self.bot_fine = nn.Conv2d(128, 48, 1, bias=False)
        self.bot_aspp = nn.Conv2d(1280, 256, 1, bias=False)
        self.final = _final_block(256 + 48, num_classes)
        initialise(self.final)

    def forward(self, x: Tensor) -> Tensor:
        m2 = self.mod2(self.pool2(self.mod1(x)))
        deep = self.mod3(self.pool3(m2))
        for stage in (self.mod4, self.mod5, self.mod6, self.mod7):
            deep = stage(deep)
        up = upsample(self.bot_aspp(self.aspp(deep)), m2.shape[2:])
        return upsample(self.final(torch.cat([self.bot_fine(m2), up], dim=1)), x.shape[2:])
