"""Weights in and out: the project's own ``.safetensors`` and other code bases' ``.pth``.

A ``.safetensors`` file written here carries its model name and class names
in the metadata, so it is self-describing.  A ``.pth`` file may hold a bare
state dict or a dict with ``state_dict`` (NVIDIA semantic-segmentation), with
keys possibly prefixed ``module.`` (DataParallel); both load unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the reason in words."""


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state dict and the metadata (empty for ``.pth``) of a weights file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            return state, metadata
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as error:  # corrupt or foreign files fail in many ways
        raise CheckpointError(f"weights file {path} cannot be read: {error}") from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"weights file {path} holds no state dict (a mapping of names to tensors)")
    return {_strip_data_parallel(key): value for key, value in loaded.items()}, {}


def _strip_data_parallel(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def load_weights(model: nn.Module, state: Mapping[str, Tensor], source: str = "the checkpoint") -> None:
    """Load ``state`` into ``model`` exactly, or raise CheckpointError naming every problem."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if state[key].shape != expected[key].shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped key(s): {_first(misshaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(state[key].to(tensor.dtype))


def _first(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def class_count_in(state: Mapping[str, Tensor], last_layer: str, transposed: bool) -> int | None:
    """The number of classes the checkpoint's last layer was trained for, if it has one."""
    weight = state.get(f"{last_layer}.weight")
    if weight is None:
        return None
    return int(weight.shape[1] if transposed else weight.shape[0])


def save_safetensors(
    model: nn.Module,
    path: str | Path,
    *,
    model_name: str,
    class_names: tuple[str, ...] | list[str],
    dtype: torch.dtype | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write the model's state dict (optionally cast, e.g. float16) with self-describing metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    metadata = {"model": model_name, "class_names": json.dumps(list(class_names)), **(extra or {})}
    save_file(state, str(path), metadata=metadata)
    return path
