"""Build a registered model and load its weights: the shipped default, a ``.safetensors`` or a ``.pth``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from torch import nn

from .checkpoints import CheckpointError, load_weights, read_state_dict
from .registry import Colour, ModelSpec, get_spec

DEFAULT_WEIGHTS = "erfnet_camvid.safetensors"


def default_weights_path() -> Path:
    """The model shipped inside the package (``gradunc_ros/weights``)."""
    return Path(str(resources.files("gradunc_ros") / "weights" / DEFAULT_WEIGHTS))


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
    """The model in eval mode on the CPU, weights loaded exactly (or random weights when ``weights`` is None
    and a ``name`` is given).  With neither, the shipped default model.  Raises CheckpointError or KeyError
    with the reason in words."""
    if name is None and weights is None:
        weights = default_weights_path()
        if not weights.is_file():
            raise CheckpointError(f"the shipped default model {weights} is missing from this installation")
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
