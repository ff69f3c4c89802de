"""The last layer found by measurement, not by name: one probe pass with seeded noise at load time.

Every Conv2d, ConvTranspose2d and Linear is hooked.  The last layer is the
module that ran once, has C outputs (C: the channels of the returned logits)
and whose output *is* the returned logits, directly or after one bilinear
resize; which resize (``align_corners`` True or False) fits tells how the
model upsamples, and the sizes tell the stride.  A layer with C outputs
whose output is not the logits, such as torchvision's auxiliary classifier,
is never picked, wherever it is registered.  Summed classifiers, a classifier
run several times per pass (sliding window) and single-channel (sigmoid)
heads are refused with the candidates named.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..uncertainty.model_output import OutputError, logits_of
from .card import NO_LAST_LAYER

HOOKED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
PROBE_SEED = 0
PROBE_LONG_SIDE = 256  # the probe's input: the model's aspect ratio, at most this long (geometry needs no more)
RELATIVE_TOLERANCE = 1e-4


class ProbeError(ValueError):
    """The probe could not tell the last layer, or the model's output is no logit map; the reason in words."""


@dataclass(frozen=True)
class LastLayer:
    """What the probe measured.  ``path`` None: the model has no single last layer (the card says
    ``last_layer: none``): only the baselines and the bias gradient are computed, from the logits."""

    path: str | None
    num_classes: int
    at_output: bool | None  # the layer's output is the model's output (no resize in between)
    align_corners: bool  # how the model resizes the layer's output to its own
    stride: float  # the network input's height over the layer's output height
    output_stride: float  # the network input's height over the returned logits' height

    @classmethod
    def none(cls, num_classes: int, output_stride: float) -> LastLayer:
        """A model without a single last layer: its logits, at their stride, are all there is."""
        return cls(None, num_classes, None, False, output_stride, output_stride)

    def describe(self) -> str:
        if self.path is None:
            return f"no single last layer: {self.num_classes} classes at stride {self.output_stride:g}"
        resize = (
            "its output is the logits"
            if self.at_output
            else (f"resized by the model (bilinear, align_corners={self.align_corners})")
        )
        return f"last layer {self.path} at stride {self.stride:g}, {resize}; {self.num_classes} classes"


def probe_size(input_size: tuple[int, int] | None, multiple: int) -> tuple[int, int]:
    """The probe's (height, width): the input size's aspect, at most PROBE_LONG_SIDE long, multiples of
    ``multiple`` (at least two of them, so that a stride shows)."""
    height, width = input_size or (PROBE_LONG_SIDE, PROBE_LONG_SIDE)
    scale = min(1.0, PROBE_LONG_SIDE / max(height, width))
    return tuple(max(2 * multiple, round(s * scale / multiple) * multiple) for s in (height, width))  # type: ignore[return-value]


@torch.no_grad()
def probe_last_layer(
    model: nn.Module,
    size: tuple[int, int],
    *,
    output_key: str | None = None,
    declared: str | None = None,
) -> LastLayer:
    """Run ``model`` once on seeded noise of ``size`` (height, width) and find its last layer (see the module
    docstring).  ``declared``: a module path the user or the registry names (checked against the
    measurement), or ``none``."""
    outputs: dict[str, list[Tensor]] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.setdefault(name, []).append(out))
        for name, module in model.named_modules()
        if isinstance(module, HOOKED)
    ]
    generator = torch.Generator().manual_seed(PROBE_SEED)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    noise = torch.randn((1, 3, *size), generator=generator).to(device, dtype)
    try:
        try:
            returned = model(noise)
        except Exception as error:  # noqa: BLE001 - a model that fails on its input fails here, said in one line
            raise ProbeError(
                f"the model failed on a 1x3x{size[0]}x{size[1]} input: {type(error).__name__}: {error}"
            ) from error
        logits = logits_of(returned, output_key)
    except OutputError as error:
        raise ProbeError(str(error)) from None
    finally:
        for handle in handles:
            handle.remove()
    classes = class_count(logits.shape[1])
    output_stride = size[0] / logits.shape[-2]
    if declared == NO_LAST_LAYER:
        return LastLayer.none(classes, output_stride)
    maps = {name: [_as_map(o) for o in outs] for name, outs in outputs.items()}
    candidates = {
        name: outs
        for name, outs in maps.items()
        if any(o is not None and classes in (o.shape[1], o.shape[-1]) for o in outs)
    }
    if declared is not None:
        try:
            module = model.get_submodule(declared)
        except AttributeError:
            raise ProbeError(
                f"the model has no module {declared!r} (the last layer its card or registry names)"
            ) from None
        if not isinstance(module, HOOKED):
            raise ProbeError(
                f"{declared} is a {type(module).__name__}; a last layer is a Conv2d, ConvTranspose2d or Linear"
            )
    matches = []
    for name, outs in candidates.items():
        fit = _fit(outs[0], logits) if len(outs) == 1 else None
        if fit is not None:
            matches.append((name, *fit))
    if declared is not None:
        chosen = [m for m in matches if m[0] == declared]
        if not chosen:
            raise ProbeError(
                f"the output of {declared} is not the model's logits, directly or after a bilinear resize "
                f"({_ran(declared, maps)}): the gradient formulas need that; {_hint(candidates, classes)}"
            )
        matches = chosen
    if len(matches) != 1:
        found = "no layer's output is" if not matches else f"{len(matches)} layers' outputs are"
        raise ProbeError(
            f"{found} the returned logits directly or after a bilinear resize; {_hint(candidates, classes)}"
        )
    name, align_corners, error = matches[0]
    layer_height = candidates[name][0].shape[-2]
    return LastLayer(
        path=name,
        num_classes=classes,
        at_output=tuple(candidates[name][0].shape[-2:]) == tuple(logits.shape[-2:]),
        align_corners=align_corners,
        stride=size[0] / layer_height,
        output_stride=output_stride,
    )


def class_count(channels: int) -> int:
    """The logits' channel count as a class count, or ProbeError for a single channel."""
    if channels < 2:
        raise ProbeError(
            "the model outputs 1 channel (a sigmoid head?): the scores need a softmax over at least 2 classes"
        )
    return int(channels)


def _as_map(output: object) -> Tensor | None:
    """A hooked layer's output as N x C x h x w, or None (a token list of a transformer's Linear, ...)."""
    if not isinstance(output, Tensor) or output.dim() != 4:
        return None
    return output


def _fit(output: Tensor, logits: Tensor) -> tuple[bool, float] | None:
    """(align_corners, error) when ``output`` is ``logits`` as it is or after a bilinear resize, else None.
    A Linear on a channels-last map is compared channels-last."""
    if output.shape[1] != logits.shape[1] and output.shape[-1] == logits.shape[1]:
        output = output.permute(0, 3, 1, 2)
    if output.shape[:2] != logits.shape[:2]:
        return None
    reference, tolerance = logits.float(), RELATIVE_TOLERANCE * max(1.0, float(logits.float().abs().max()))
    tries = [(True, output)] if output.shape == logits.shape else [
        (corners, F.interpolate(output.float(), logits.shape[-2:], mode="bilinear", align_corners=corners))
        for corners in (False, True)
    ]  # fmt: skip
    errors = [(corners, float((resized.float() - reference).abs().max())) for corners, resized in tries]
    corners, error = min(errors, key=lambda e: e[1])
    return (corners, error) if error <= tolerance else None


def _ran(name: str, maps: dict[str, list]) -> str:
    count = len(maps.get(name, []))
    return "it did not run" if count == 0 else f"it ran {count} time{'s' * (count != 1)}"


def _hint(candidates: dict[str, list], classes: int) -> str:
    listed = ", ".join(f"{name} (ran {len(outs)}x)" for name, outs in candidates.items()) or "none"
    return (
        f"layers with {classes} outputs: {listed}.  Summed classifiers, a classifier run several times per pass "
        "(sliding window) or logits changed after the layer have no single last layer: name it in the model card "
        "(last_layer: <module path>), or say last_layer: none for the softmax baselines and the bias gradient only"
    )
