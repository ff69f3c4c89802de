"""A model card: what travels with a model's weights, apart from its architecture.

Class names and colours, which classes are known (trained) and which are
ignored, the input normalisation and size, and optionally where the logits
and the last layer are.  As torchvision keeps categories and transforms on
its weights, not on its architectures, the card belongs to weights: it lies
beside them as ``<weights name>.card.yaml`` (or is named explicitly); the
project's ``.safetensors`` files carry the class names and the input size in
their metadata.

A YAML card (every key optional)::

    class_names: [road, car, person]      # else class_0, class_1, ...
    colours: [[128, 64, 128], [0, 0, 142], [220, 20, 60]]  # else generated
    known_classes: [0, 1]                 # ids trained as in-distribution; default: all
    ignore_classes: [255]                 # label ids the training ignored
    mean: [0.485, 0.456, 0.406]           # per channel, in the network's channel order and pixel_scale's units
    std: [0.229, 0.224, 0.225]            # default: ImageNet's (scaled to pixel_scale, in channel_order)
    channel_order: rgb                    # or bgr (Caffe-style and many mmsegmentation models)
    pixel_scale: 1.0                      # pixels run from 0 to this before (x - mean) / std: 1.0 or 255.0
    input_size: 512x512                   # WIDTHxHEIGHT the model was trained at; default: each image's own
    input_multiple: 32                    # height and width are rounded to multiples of it
    output_key: out                       # where the logits are in the output (default: out, logits, .logits)
    last_layer: decode_head.classifier    # module path; default: found by the probe; none: no last layer
    factory_arguments: {num_classes: 3}   # keyword arguments of a model factory
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .palettes import IMAGENET_MEAN, IMAGENET_STD
from .preprocess import parse_size

Colour = tuple[int, int, int]
CARD_SUFFIX = ".card.yaml"
CHANNEL_ORDERS = ("rgb", "bgr")
NO_LAST_LAYER = "none"  # the card's word for a model without a single last layer


class CardError(ValueError):
    """A model card that cannot be used, with the reason in words."""


@dataclass(frozen=True)
class ModelCard:
    """What a caller needs besides the architecture.  ``None`` in a field means "not said": the loader fills
    it (class count from the model's output, generated colours, ...) and says so once (``defaulted``)."""

    class_names: tuple[str, ...] | None = None
    colours: tuple[Colour, ...] | None = None
    known_classes: tuple[int, ...] | None = None
    ignore_classes: tuple[int, ...] = ()
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: str = "rgb"
    pixel_scale: float = 1.0
    input_size: tuple[int, int] | None = None  # (height, width)
    input_multiple: int | None = None
    output_key: str | None = None
    last_layer: str | None = None  # a module path, NO_LAST_LAYER, or None: found by the probe
    factory_arguments: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where the card came from, for messages
    said: tuple[str, ...] = ()  # the keys a card file said (a value equal to a default counts as said)

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise CardError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}; got {self.channel_order!r}")
        if not (
            isinstance(self.pixel_scale, (int, float)) and self.pixel_scale > 0 and math.isfinite(self.pixel_scale)
        ):
            raise CardError(f"pixel_scale must be a positive number (1.0 or 255.0); got {self.pixel_scale!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or not all(math.isfinite(v) for v in value)):
                raise CardError(f"{name} must be three finite numbers; got {value!r}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise CardError(f"std must be positive; got {self.std!r}")
        if self.class_names is not None and self.colours is not None and len(self.colours) != len(self.class_names):
            raise CardError(f"{len(self.colours)} colours for {len(self.class_names)} classes")
        if self.input_multiple is not None and self.input_multiple < 1:
            raise CardError(f"input_multiple must be >= 1; got {self.input_multiple}")

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def over(self, base: ModelCard) -> ModelCard:
        """This card, with what it does not say taken from ``base`` (a card beside weights over the
        weights' own metadata over an architecture's usual card)."""
        keys = self.said or [f.name for f in fields(self) if getattr(self, f.name) != f.default]
        said = {key: getattr(self, key) for key in keys if key not in ("factory_arguments", "source", "said")}
        merged = replace(base, **said, said=tuple(sorted({*base.said, *said})))
        return replace(merged, factory_arguments={**base.factory_arguments, **self.factory_arguments})


def card_path_for(weights: Path) -> Path:
    """``model.safetensors`` -> ``model.card.yaml`` beside it."""
    return weights.with_name(weights.stem + CARD_SUFFIX)


def read_card(path: str | Path) -> ModelCard:
    """A YAML model card, or CardError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"model card {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CardError(f"model card {path} is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, Mapping):
        raise CardError(f"model card {path} must be a mapping of keys to values")
    try:
        return card_from_mapping(document, source=str(path))
    except CardError as error:
        raise CardError(f"model card {path}: {error}") from None


def card_from_mapping(values: Mapping[str, Any], source: str = "") -> ModelCard:
    """A card from a mapping (a YAML card, or a weights file's metadata), refusing unknown keys."""
    known = {f.name for f in fields(ModelCard)} - {"source", "said"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CardError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    parsed: dict[str, Any] = {"source": source, "said": tuple(sorted(k for k, v in values.items() if v is not None))}
    try:
        for key, value in values.items():
            if value is None:
                continue
            parsed[key] = _PARSERS.get(key, lambda v: v)(value)
    except (TypeError, ValueError) as error:
        raise CardError(f"{key}: {error}") from None
    return ModelCard(**parsed)


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        return parse_size(value)
    width, height = (int(v) for v in value)
    return height, width


def _colours(value: Any) -> tuple[Colour, ...]:
    colours = tuple(tuple(int(c) for c in colour) for colour in value)
    if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colours):
        raise ValueError("each colour is three numbers from 0 to 255")
    return colours  # type: ignore[return-value]


def _arguments(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("a mapping of keyword arguments")
    return dict(value)


_PARSERS = {
    "class_names": lambda v: tuple(str(n) for n in v),
    "colours": _colours,
    "known_classes": lambda v: tuple(int(i) for i in v),
    "ignore_classes": lambda v: tuple(int(i) for i in v),
    "mean": lambda v: tuple(float(x) for x in v),
    "std": lambda v: tuple(float(x) for x in v),
    "channel_order": lambda v: str(v).lower(),
    "pixel_scale": float,
    "input_size": _size,
    "input_multiple": int,
    "output_key": str,
    "last_layer": str,
    "factory_arguments": _arguments,
}


def generated_colours(count: int, base: tuple[Colour, ...] = ()) -> tuple[Colour, ...]:
    """``base``, extended with distinct generated colours up to ``count``."""
    extra = tuple(((37 * i) % 256, (91 * i + 50) % 256, (173 * i + 100) % 256) for i in range(len(base), count))
    return (tuple(base) + extra)[:count]


def completed(card: ModelCard, num_classes: int) -> tuple[ModelCard, list[str]]:
    """The card with every field the pipeline needs filled, for a model with ``num_classes`` outputs, and
    what had to be assumed (each said once in the log); CardError when the card's class count differs."""
    if card.class_names is not None and len(card.class_names) != num_classes:
        raise CardError(
            f"the model card{' ' + card.source if card.source else ''} names {len(card.class_names)} classes but "
            f"the model outputs {num_classes}"
        )
    assumed = []
    names = card.class_names
    if names is None:
        names = tuple(f"class_{i}" for i in range(num_classes))
        assumed.append(f"class names class_0 .. class_{num_classes - 1}")
    colours = card.colours
    if colours is None:
        colours = generated_colours(num_classes)
        assumed.append("generated colours")
    mean, std = card.mean, card.std
    if mean is None or std is None:
        order = slice(None, None, -1 if card.channel_order == "bgr" else 1)
        mean = mean or tuple(card.pixel_scale * v for v in IMAGENET_MEAN[order])
        std = std or tuple(card.pixel_scale * v for v in IMAGENET_STD[order])
        assumed.append("ImageNet normalisation")
    filled = replace(card, class_names=names, colours=colours, mean=mean, std=std)
    return filled, assumed
