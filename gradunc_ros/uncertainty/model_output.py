"""The logits in whatever a segmentation model returns: people's models do not agree on an output type.

- a tensor (ERFNet, most hand-written nets);
- a mapping: ``key`` when given, else ``out`` (torchvision's segmentation models, which also return
  ``aux``), else ``logits``;
- an object with ``.logits`` (Hugging Face ``SemanticSegmenterOutput``), or with ``key`` as an attribute;
- a tuple or list: its first element (many older code bases return ``(logits, aux)``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

MAPPING_KEYS = ("out", "logits")


class OutputError(TypeError):
    """A model output that holds no N x C x H x W logit map, with what was found instead."""


def logits_of(output: object, key: str | None = None) -> Tensor:
    """The N x C x H x W logits in a model's output (see the module's docstring), or OutputError."""
    found = _pick(output, key)
    if not isinstance(found, Tensor):
        raise OutputError(f"the model's output holds no logit tensor: {_describe(output)}")
    if found.dim() != 4 or not found.is_floating_point():
        raise OutputError(
            f"the model's output is not an N x C x H x W logit map: a {found.dim()}-d {str(found.dtype)[6:]} "
            f"tensor of shape {tuple(found.shape)}"
        )
    return found


def _pick(output: object, key: str | None) -> object:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        keys = (key,) if key else MAPPING_KEYS
        for name in keys:
            if name in output:
                return output[name]
        raise OutputError(
            f"the model returns a mapping without {' or '.join(repr(k) for k in keys)} (keys: "
            f"{', '.join(map(str, output)) or 'none'}): name the logits' key (output_key in the model card)"
        )
    if key and hasattr(output, key):
        return getattr(output, key)
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return output


def _describe(output: object) -> str:
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        return "a mapping of " + ", ".join(f"{k}: {type(v).__name__}" for k, v in output.items())
    return f"a {type(output).__name__}"
