"""A registry of segmentation architectures: how to build each, and what only its code can say.

An :class:`Architecture` holds the builder, the module path of its last layer
(and of the penultimate conv/BN where its tail has that shape), the input
multiple and the weights the package ships for it.  What belongs to weights
(classes, colours, normalisation, input size) is a model card
(``card.py``), not part of the architecture: ``checkpoint_card`` is only the
card assumed for checkpoints of the code base an architecture mirrors when
the weights come without one.  The geometry (stride, how the logits are
upsampled) is measured by the probe at load time (``probe.py``).  Callers
never branch on architecture names.  Models that are not registered load
through a factory (``factory.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .card import ModelCard
from .palettes import (
    CAMVID_CLASSES,
    CAMVID_COLOURS,
    CAMVID_KNOWN,
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLOURS,
    IMAGENET_MEAN,
    IMAGENET_STD,
)

# Both code bases normalise with ImageNet's statistics, RGB, 0-1.
CAMVID_CARD = ModelCard(
    class_names=CAMVID_CLASSES[:CAMVID_KNOWN], colours=CAMVID_COLOURS[:CAMVID_KNOWN], mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)  # fmt: skip
CITYSCAPES_CARD = ModelCard(
    class_names=CITYSCAPES_CLASSES, colours=CITYSCAPES_COLOURS, ignore_classes=(255,), mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)  # fmt: skip


@dataclass(frozen=True)
class Architecture:
    """One registered architecture.

    ``last_layer`` is the module path of the layer whose weights the gradient
    is taken of (the probe checks it); ``penultimate_conv``/``penultimate_bn``
    name the conv and batch norm before the ReLU that feeds it (None where the
    tail has no such shape).  ``input_multiple``: height and width must be
    multiples of it.  ``shipped_weights``: the file in ``gradunc_ros/weights``
    loaded when this model is named without weights; None: the package ships
    none (weights must then be given).
    """

    name: str
    description: str
    builder: Callable[[int], nn.Module]
    last_layer: str
    input_multiple: int
    checkpoint_card: ModelCard
    penultimate_conv: str | None = None
    penultimate_bn: str | None = None
    shipped_weights: str | None = None

    def build(self, num_classes: int | None = None) -> nn.Module:
        """A model with random weights, in eval mode (``num_classes`` default: its checkpoint card's)."""
        return self.builder(num_classes or self.checkpoint_card.num_classes).eval()


_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    if architecture.name in _REGISTRY:
        raise ValueError(f"model {architecture.name!r} is registered twice")
    _REGISTRY[architecture.name] = architecture
    return architecture


def get_architecture(name: str) -> Architecture:
    """A registered architecture, or a KeyError that lists the registered names (and how to bring a model of
    one's own)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}; or a factory package.module:function"
        ) from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> str:
    """One line per registered model, for --help texts."""
    return "\n".join(
        f"  {arch.name:28} {arch.description}" for arch in sorted(_REGISTRY.values(), key=lambda a: a.name)
    )


def _erfnet(num_classes: int) -> nn.Module:
    from .erfnet import ERFNet

    return ERFNet(num_classes)


register(
    Architecture(
        name="erfnet",
        description="ERFNet, real-time; last layer a 2x2 transposed conv (Eromera/erfnet_pytorch names)",
        builder=_erfnet,
        checkpoint_card=CAMVID_CARD,
        last_layer="decoder.output_conv",
        input_multiple=8,
        shipped_weights="erfnet_camvid.safetensors",
    )
)


def _deeplab(trunk: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from .deeplab import DeepV3Plus

        return DeepV3Plus(num_classes, trunk=trunk)

    return build


def _deeplab_wrn38(num_classes: int) -> nn.Module:
    from .deeplab import DeepWV3Plus

    return DeepWV3Plus(num_classes)


_DEEPLAB_TAIL = {"last_layer": "final.6", "penultimate_conv": "final.3", "penultimate_bn": "final.4"}

for _trunk, _note in (("18", "light member"), ("50", "the paper's ResNet trunk"), ("101", "")):
    register(
        Architecture(
            name=f"deeplabv3plus_resnet{_trunk}",
            description=f"DeepLabV3+, ResNet-{_trunk} trunk{', ' + _note if _note else ''} (NVIDIA DeepV3Plus names)",
            builder=_deeplab(f"resnet-{_trunk}"),
            checkpoint_card=CITYSCAPES_CARD,
            input_multiple=8,
            **_DEEPLAB_TAIL,
        )
    )

register(
    Architecture(
        name="deeplabv3plus_wrn38",
        description="DeepLabV3+, WideResNet38 trunk, the paper's main net (NVIDIA DeepWV3Plus names)",
        builder=_deeplab_wrn38,
        checkpoint_card=CITYSCAPES_CARD,
        input_multiple=8,
        **_DEEPLAB_TAIL,
    )
)
