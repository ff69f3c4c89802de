"""Build a registered model and load its weights: the shipped default, a ``.safetensors`` or a ``.pth``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from torch import nn

from .checkpoints import CheckpointError, load_weights, read_state_dict
from .registry import Colour, ModelSpec, get_spec

DEFAULT_MODEL = "erfnet"
# Asks for random weights explicitly (tests, smoke runs): never what an empty weights setting means.
RANDOM_WEIGHTS = "random"


def shipped_weights_path(file_name: str) -> Path:
    """A weights file shipped inside the package (``gradunc_ros/weights``)."""
    return Path(str(resources.files("gradunc_ros") / "weights" / file_name))


def default_weights_path() -> Path:
    """The default model shipped inside the package."""
    return shipped_weights_path(get_spec(DEFAULT_MODEL).shipped_weights)


def resolve_weights(name: str | None, weights: str | Path | None) -> tuple[str | None, Path | None]:
    """(model name, weights file or None for random weights) by the rule every tool and the node follow:

    - neither: the shipped default model;
    - a model without weights: that model's shipped weights, or an error where the package ships none;
    - ``weights="random"``: random weights (of ``name``, or of the default model's architecture);
    - a weights file: that file (its own metadata may name the model).
    """
    if weights is not None and str(weights) == RANDOM_WEIGHTS:
        return name or DEFAULT_MODEL, None
    if weights is not None and str(weights) != "":
        return name, Path(weights)
    spec = get_spec(name or DEFAULT_MODEL)
    if spec.shipped_weights is None:
        raise CheckpointError(
            f"no weights are shipped for {spec.name}: give a weights file (--weights, node parameter weights), "
            f"or '{RANDOM_WEIGHTS}' for random weights"
        )
    path = shipped_weights_path(spec.shipped_weights)
    if not path.is_file():
        raise CheckpointError(f"the shipped weights {path} of {spec.name} are missing from this installation")
    return spec.name, path


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: nn.Module
    class_names: tuple[str, ...]
    colours: tuple[Colour, ...]
    weights: Path | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The (height, width) the weights were trained and validated at, if the file says."""
        text = self.metadata.get("input_size")
        if not text:
            return None
        width, height = (int(v) for v in text.split("x"))
        return height, width


def _palette(count: int, base: tuple[Colour, ...]) -> tuple[Colour, ...]:
    """The spec's colours, extended with distinct generated ones when a checkpoint has more classes."""
    extra = tuple(((37 * i) % 256, (91 * i + 50) % 256, (173 * i + 100) % 256) for i in range(len(base), count))
    return (base + extra)[:count]


def load_model(
    name: str | None = None, weights: str | Path | None = None, *, num_classes: int | None = None
) -> LoadedModel:
    """The model in eval mode on the CPU, weights loaded exactly; which weights: ``resolve_weights``.
    Raises CheckpointError or KeyError with the reason in words."""
    name, weights = resolve_weights(name or None, weights)
    state, metadata = read_state_dict(weights) if weights is not None else ({}, {})
    stored_name = metadata.get("model")
    if name and stored_name and name != stored_name:
        raise CheckpointError(f"{weights} holds a {stored_name!r} model, not {name!r}")
    model_name = name or stored_name
    if model_name is None:
        raise CheckpointError(f"{weights} does not say which architecture it is: name it (e.g. --model)")
    spec = get_spec(model_name)
    class_names = tuple(json.loads(metadata["class_names"])) if "class_names" in metadata else spec.class_names
    if num_classes is not None and num_classes != len(class_names):
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    model = spec.build(len(class_names))
    if weights is not None:
        last = model.get_submodule(spec.last_layer)
        key = f"{spec.last_layer}.weight"
        if key in state and state[key].shape != last.weight.shape:
            trained = state[key].shape[1 if isinstance(last, nn.ConvTranspose2d) else 0]
            raise CheckpointError(
                f"{weights} was trained for {trained} classes but {model_name} is set up for {len(class_names)}; "
                "give the class count of the checkpoint (--num-classes; node parameter num_classes)"
            )
        load_weights(model, state, source=str(weights))
    return LoadedModel(
        spec=spec,
        model=model.eval(),
        class_names=class_names,
        colours=_palette(len(class_names), spec.colours),
        weights=Path(weights) if weights is not None else None,
        metadata=metadata,
    )
