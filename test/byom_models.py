"""Models written as other code bases write them, for the bring-your-own-model tests and benchmarks.

Named as factories (``byom_models:torchvision_style``) with ``model_path`` this
folder, as a user names theirs; nothing here is registered with the package.
Every factory seeds its own weights, so that the node's process and the test
build the same model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _seeded(seed: int):
    torch.manual_seed(seed)


class _Backbone(nn.Module):
    """Three stride-2 convs: features at strides 4 (for the auxiliary head) and 8 (for the classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(16, 24, 3, 2, 1), nn.BatchNorm2d(24), nn.ReLU())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        aux = self.layer1(self.stem(x))
        return {"aux": aux, "out": self.layer2(aux)}


class _FCNHead(nn.Sequential):
    """torchvision's FCNHead shape: conv3x3 -> BN -> ReLU -> dropout -> conv1x1 to the classes."""

    def __init__(self, channels: int, num_classes: int) -> None:
        inner = channels // 2
        super().__init__(
            nn.Conv2d(channels, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv2d(inner, num_classes, 1),
        )  # fmt: skip


class TorchvisionStyleSegmenter(nn.Module):
    """As torchvision's segmentation models: ``{"out", "aux"}``, both upsampled inside ``forward`` (bilinear,
    align_corners False), the auxiliary classifier registered last."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = _Backbone()
        self.classifier = _FCNHead(24, num_classes)
        self.aux_classifier = _FCNHead(16, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        out = F.interpolate(self.classifier(features["out"]), size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_classifier(features["aux"]), size, mode="bilinear", align_corners=False)
        return {"out": out, "aux": aux}


def torchvision_style(num_classes: int = 6, seed: int = 0) -> nn.Module:
    _seeded(seed)
    model = TorchvisionStyleSegmenter(num_classes)
    for module in model.modules():  # running statistics that are not the identity, as a trained net has
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model


class _Slow(TorchvisionStyleSegmenter):
    """Every forward pass takes at least ``SLOW_SECONDS``: a bag of it lasts long enough, on any machine,
    for a test to act in its middle."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        import time

        time.sleep(SLOW_SECONDS)
        return super().forward(x)


SLOW_SECONDS = 0.05


def slow_segmenter(num_classes: int = 6) -> nn.Module:
    _seeded(0)
    return _Slow(num_classes)


SEGFORMER_TINY = dict(
    num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
    num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=32,
)  # fmt: skip


def segformer(num_classes: int = 5, seed: int = 0, variant: str = "tiny") -> nn.Module:
    """Hugging Face's SegformerForSemanticSegmentation from a config, random weights, nothing downloaded:
    ``tiny`` for tests, ``b0`` (MiT-b0, the config's defaults) for the benchmark.  Logits at H/4."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    _seeded(seed)
    config = SegformerConfig(num_labels=num_classes, **(SEGFORMER_TINY if variant == "tiny" else {}))
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():  # the margins of a trained classifier, not a random one's near-ties between classes
        model.decode_head.classifier.weight.mul_(30.0)
    return model


def segformer_b0(num_classes: int = 19) -> nn.Module:
    return segformer(num_classes, variant="b0")


# --- models the probe must refuse, and factories that fail ------------------------------------------------


class _Summed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, 2, 1)
        self.first, self.second = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.first(features) + self.second(features)


class _SlidingWindow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, 1, 1)
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        windows = (x[..., :half], x[..., half:])
        return torch.cat([self.classifier(self.features(window)) for window in windows], -1)


class _Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))  # N x HW x C: a token list, not a logit map


def summed_classifiers() -> nn.Module:
    _seeded(0)
    return _Summed()


def sliding_window() -> nn.Module:
    _seeded(0)
    return _SlidingWindow()


def sigmoid_head() -> nn.Module:
    _seeded(0)
    return _Sigmoid()


def token_output() -> nn.Module:
    _seeded(0)
    return _Tokens()


def raising_factory() -> nn.Module:
    raise RuntimeError("the checkpoint server is unreachable")


def hanging_factory() -> nn.Module:
    """A factory stuck as a model server that never answers is (bounded: 10 minutes)."""
    import time

    time.sleep(600)
    raise RuntimeError("the model server never answered")


def not_a_model() -> str:
    return "a model"


class _TracedDifferently(nn.Module):
    """A Python branch on the data before the classifier: PyTorch's tracer sees one side only, so an ONNX
    export of it computes something else than the model does on real frames."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, 1, 1)
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.features(x))
        if bool(x.abs().sum() > 0):
            features = features.flip(1)
        return self.classifier(features)


def traced_differently() -> nn.Module:
    _seeded(0)
    return _TracedDifferently()
