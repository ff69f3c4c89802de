"""A registry of segmentation architectures, each with what a caller needs to run it.

Callers never branch on architecture names: they read the :class:`ModelSpec`
(classes, colours, normalisation, output stride, which module is the last
layer) and call its builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .palettes import (
    CAMVID_CLASSES,
    CAMVID_COLOURS,
    CAMVID_KNOWN,
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLOURS,
    IMAGENET_MEAN,
    IMAGENET_STD,
)

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    ``last_layer`` is the module path of the layer whose weights the gradient
    is taken of; ``penultimate_conv``/``penultimate_bn`` name the conv and
    batch norm before the ReLU that feeds it (None where the tail has no
    such shape).  ``output_stride`` is the input size over the last layer's
    output size.  ``input_multiple``: height and width must be multiples of it.
    ``align_corners``: how the net upsamples its logits to the input size.
    ``shipped_weights``: the file in ``gradunc_ros/weights`` loaded when this model is named
    without weights; None: the package ships none (weights must then be given).
    """

    name: str
    description: str
    builder: Callable[[int], nn.Module]
    class_names: tuple[str, ...]
    colours: tuple[Colour, ...]
    last_layer: str
    output_stride: int
    input_multiple: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    penultimate_conv: str | None = None
    penultimate_bn: str | None = None
    align_corners: bool = True
    shipped_weights: str | None = None

    def build(self, num_classes: int | None = None) -> nn.Module:
        """A model with random weights, in eval mode."""
        return self.builder(num_classes or len(self.class_names)).eval()


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a KeyError that lists the registered names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def describe_models() -> str:
    """One line per registered model, for --help texts."""
    return "\n".join(
        f"  {spec.name:28} {spec.description}" for spec in sorted(_REGISTRY.values(), key=lambda s: s.name)
    )


def _erfnet(num_classes: int) -> nn.Module:
    from .erfnet import ERFNet

    return ERFNet(num_classes)


register(
    ModelSpec(
        name="erfnet",
        description="ERFNet, real-time; last layer a 2x2 transposed conv (Eromera/erfnet_pytorch names)",
        builder=_erfnet,
        class_names=CAMVID_CLASSES[:CAMVID_KNOWN],
        colours=CAMVID_COLOURS[:CAMVID_KNOWN],
        last_layer="decoder.output_conv",
        output_stride=1,
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
        ModelSpec(
            name=f"deeplabv3plus_resnet{_trunk}",
            description=f"DeepLabV3+, ResNet-{_trunk} trunk{', ' + _note if _note else ''} (NVIDIA DeepV3Plus names)",
            builder=_deeplab(f"resnet-{_trunk}"),
            class_names=CITYSCAPES_CLASSES,
            colours=CITYSCAPES_COLOURS,
            output_stride=4,
            input_multiple=8,
            **_DEEPLAB_TAIL,
        )
    )

register(
    ModelSpec(
        name="deeplabv3plus_wrn38",
        description="DeepLabV3+, WideResNet38 trunk, the paper's main net (NVIDIA DeepWV3Plus names)",
        builder=_deeplab_wrn38,
        class_names=CITYSCAPES_CLASSES,
        colours=CITYSCAPES_COLOURS,
        output_stride=2,
        input_multiple=8,
        **_DEEPLAB_TAIL,
    )
)
