"""A model ready to run: built (registered architecture or the user's factory), weights loaded, card completed,
last layer measured.  One function, ``load_model``, for the node and every tool.

Which weights (``resolve_weights``): neither model nor weights: the shipped
default; a registered model without weights: its shipped weights, or an error
where none are shipped; ``random``: random weights; a file: that file.  A
factory without weights gives its model as the factory builds it.

Which card: an explicit one, else ``<weights name>.card.yaml`` beside the
weights, over the weights' own metadata (``.safetensors`` written here), over
the architecture's checkpoint card; what none says is assumed (``class_i``
names, generated colours, ImageNet normalisation) and listed in
``LoadedModel.assumed``, for the caller to say once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from ..uncertainty import GradientUncertaintyHead, HeadSettings
from .card import Colour, ModelCard, card_from_mapping, card_path_for, completed, read_card
from .checkpoints import CheckpointError, class_count_in, load_weights, read_state_dict
from .factory import build_from_factory, is_factory_reference
from .probe import LastLayer, probe_last_layer, probe_size
from .registry import Architecture, get_architecture

DEFAULT_MODEL = "erfnet"
# Asks for random weights explicitly (tests, smoke runs): never what an empty weights setting means.
RANDOM_WEIGHTS = "random"
FACTORY_INPUT_MULTIPLE = 32  # a factory model's input is rounded to this unless its card says (most nets' stride)


def shipped_weights_path(file_name: str) -> Path:
    """A weights file shipped inside the package (``gradunc_ros/weights``)."""
    return Path(str(resources.files("gradunc_ros") / "weights" / file_name))


def default_weights_path() -> Path:
    """The default model shipped inside the package."""
    return shipped_weights_path(get_architecture(DEFAULT_MODEL).shipped_weights)


def resolve_weights(name: str | None, weights: str | Path | None) -> tuple[str | None, Path | None]:
    """(model name, weights file or None for none to load) by the rule every tool and the node follow (see
    the module's docstring)."""
    if weights is not None and str(weights) == RANDOM_WEIGHTS:
        return name or DEFAULT_MODEL, None
    if weights is not None and str(weights) != "":
        return name, Path(weights)
    if is_factory_reference(name):
        return name, None
    architecture = get_architecture(name or DEFAULT_MODEL)
    if architecture.shipped_weights is None:
        raise CheckpointError(
            f"no weights are shipped for {architecture.name}: give a weights file (--weights, node parameter "
            f"weights), or '{RANDOM_WEIGHTS}' for random weights"
        )
    path = shipped_weights_path(architecture.shipped_weights)
    if not path.is_file():
        raise CheckpointError(f"the shipped weights {path} of {architecture.name} are missing from this installation")
    return architecture.name, path


@dataclass
class LoadedModel:
    """A model in eval mode on the CPU with what running it needs."""

    name: str  # a registered architecture, a factory reference, or an ONNX file's model
    model: nn.Module | None  # None for an ONNX file (``graph``)
    card: ModelCard  # completed: class names, colours, mean and std are set
    last_layer: LastLayer
    weights: Path | None
    input_multiple: int
    penultimate_conv: str | None = None
    penultimate_bn: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    assumed: list[str] = field(default_factory=list)  # what no card said (to be said once in the log)
    # An ONNX file in its runtime instead of ``model`` (deploy.onnx_model.ExportedGraph: it makes the head).
    graph: Any = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.card.class_names

    @property
    def colours(self) -> tuple[Colour, ...]:
        return self.card.colours

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The (height, width) the weights were trained and validated at, if the card says."""
        return self.card.input_size

    def make_head(self, settings: HeadSettings | None = None, fused: str = "off") -> GradientUncertaintyHead:
        """The gradient-uncertainty head around this model, with its measured last layer and named tail (on
        whatever device and dtype the model is now); for an ONNX file, the graph's (deploy.onnx_model)."""
        last = self.last_layer
        if self.graph is not None:
            return self.graph.make_head(last, settings)
        return GradientUncertaintyHead(
            self.model,
            last.path,
            settings,
            penultimate_conv=self.penultimate_conv,
            penultimate_bn=self.penultimate_bn,
            align_corners=last.align_corners,
            fused=fused,
            last_layer_at_output=last.at_output,
            output_key=self.card.output_key,
        )

    def describe(self) -> str:
        """Which model, from where, with its last layer: the first part of the start line."""
        weights = self.weights or ("the factory's own weights" if is_factory_reference(self.name) else "random weights")
        return f"{self.name} ({weights}; {self.last_layer.describe()})"


def load_model(
    name: str | None = None,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    card: str | Path | ModelCard | None = None,
    model_path: str | Path | None = None,
) -> LoadedModel:
    """The model that ``name`` (a registered name or ``package.module:function``; ``model_path``: a folder to
    import it from) and ``weights`` name, with its card (``card``: a YAML path or a card; default: beside the
    weights).  Raises a ValueError (CheckpointError, CardError, FactoryError, ProbeError) or KeyError with the
    reason in words."""
    name, weights = resolve_weights(name or None, weights)
    state, metadata = read_state_dict(weights) if weights is not None else ({}, {})
    stored_name = metadata.get("model")
    if name and stored_name and name != stored_name:
        raise CheckpointError(f"{weights} holds a {stored_name!r} model, not {name!r}")
    model_name = name or stored_name
    if model_name is None:
        raise CheckpointError(f"{weights} does not say which architecture it is: name it (e.g. --model)")
    architecture = None if is_factory_reference(model_name) else get_architecture(model_name)
    given = _card_of(card, weights, metadata)
    if architecture is not None:
        given = given.over(architecture.checkpoint_card)
        if num_classes is not None and num_classes != given.num_classes:
            given = replace(given, class_names=None, colours=None)
        model = _build_registered(architecture, given, num_classes, state, weights)
        multiple, declared = architecture.input_multiple, given.last_layer or architecture.last_layer
    else:
        model = build_from_factory(model_name, model_path, given.factory_arguments)
        if weights is not None:
            load_weights(model, state, source=str(weights))
        multiple, declared = given.input_multiple or FACTORY_INPUT_MULTIPLE, given.last_layer
    model.eval()
    measured = probe_last_layer(
        model, probe_size(given.input_size, multiple), output_key=given.output_key, declared=declared
    )
    filled, assumed = completed(given, measured.num_classes)
    return LoadedModel(
        name=model_name,
        model=model,
        card=filled,
        last_layer=measured,
        weights=weights,
        input_multiple=given.input_multiple or multiple,
        penultimate_conv=architecture.penultimate_conv if architecture else None,
        penultimate_bn=architecture.penultimate_bn if architecture else None,
        metadata=metadata,
        assumed=assumed,
    )


def _card_of(card: str | Path | ModelCard | None, weights: Path | None, metadata: dict[str, str]) -> ModelCard:
    """The card the caller named, or the one beside the weights, over the weights' own metadata."""
    own = _metadata_card(metadata, weights)
    if isinstance(card, ModelCard):
        return card.over(own)
    if card:
        return read_card(card).over(own)
    if weights is not None and card_path_for(weights).is_file():
        return read_card(card_path_for(weights)).over(own)
    return own


def _metadata_card(metadata: dict[str, str], weights: Path | None) -> ModelCard:
    """The card fields a ``.safetensors`` written here carries (``class_names`` as JSON, ``input_size``)."""
    values = {}
    if "class_names" in metadata:
        values["class_names"] = json.loads(metadata["class_names"])
    if metadata.get("input_size"):
        values["input_size"] = metadata["input_size"]
    return card_from_mapping(values, source=str(weights)) if values else ModelCard()


def _build_registered(
    architecture: Architecture, card: ModelCard, num_classes: int | None, state: dict, weights: Path | None
) -> nn.Module:
    """The architecture for the card's (or ``num_classes``) class count, the weights loaded exactly."""
    count = num_classes or card.num_classes
    model = architecture.build(count)
    if weights is not None:
        last = model.get_submodule(architecture.last_layer)
        trained = class_count_in(state, architecture.last_layer, isinstance(last, nn.ConvTranspose2d))
        if trained is not None and trained != count:
            raise CheckpointError(
                f"{weights} was trained for {trained} classes but {architecture.name} is set up for {count}; "
                "give the class count of the checkpoint (--num-classes; node parameter num_classes)"
            )
        load_weights(model, state, source=str(weights))
    return model
