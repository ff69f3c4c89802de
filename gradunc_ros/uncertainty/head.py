"""The head: logits, labels and one uncertainty score from a single forward pass.

It wraps any ``nn.Module`` that maps images to N x C x H x W logits.  A
forward hook on the named last layer captures that layer's input (the
features) and output (its logits at its own resolution); the score is then
computed in closed form, so no backward pass and no retraining is needed.

Resolutions (method.md, section 1):
- ``"last_layer"`` (the paper's): the score at the last layer's resolution,
  pseudo label from the low-resolution logits, then bilinearly upsampled as
  a norm (not as its log) to the output size;
- ``"output"``: exact at the output resolution, for a 1x1 conv last layer
  followed by bilinear upsampling of the logits (the 1x1 conv commutes with
  the upsampling, so the gradient's input is the upsampled features).

``fused="auto"`` (or ``"triton"``) attaches :class:`~.fused.FusedLastLayer` to
the last layer: where Triton runs (CUDA), an exact last-layer score of a
1x1 or kernel == stride transposed last layer then comes from the same kernel
that computes the logits, from one read of the features (``fused.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from .baselines import BASELINES
from .fused import FUSED_CHOICES, FusedLastLayer, fusable_layer, triton_runs_on
from .pgn import MODES, class_log_norm, pgn_for_layer, pgn_penultimate, predicted_class
from .resample import log_bilinear_resize, log_pnorm_of_upsampled

GRADIENT_SCORES = {"pgn_oh": "onehot", "pgn_uni": "uniform"}
SCORES: tuple[str, ...] = (*GRADIENT_SCORES, *BASELINES)
RESOLUTIONS: tuple[str, ...] = ("last_layer", "output")
LAYERS: tuple[str, ...] = ("last", "penultimate")


@dataclass(frozen=True)
class HeadSettings:
    """What the head computes; every field is validated on construction.

    score: one of SCORES; higher always means more anomalous.
    p: exponent of the gradient norm, any p > 0 (the paper uses 0.1 to 2).
    mode: "exact" gradient or the paper's "reference" code.
    resolution: "last_layer" (the paper's) or "output" (exact, 1x1 last layers).
    layer: gradient of the "last" layer's weights or of the "penultimate" conv.
    """

    # Defaults: the scores that won on CamVid-OoD val with the shipped model
    # (results/camvid_val/results.md): max_logit overall, p = 0.1 for the gradient scores.
    score: str = "max_logit"
    p: float = 0.1
    mode: str = "exact"
    resolution: str = "last_layer"
    layer: str = "last"

    def __post_init__(self) -> None:
        for name, allowed in (("score", SCORES), ("mode", MODES), ("resolution", RESOLUTIONS), ("layer", LAYERS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not math.isfinite(self.p) or self.p <= 0:
            raise ValueError(f"p must be a finite number > 0; got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))
        if self.layer == "penultimate" and self.resolution != "last_layer":
            raise ValueError("the penultimate-layer score is defined at the last layer's resolution only")

    @property
    def is_gradient_score(self) -> bool:
        return self.score in GRADIENT_SCORES

    @property
    def name(self) -> str:
        """A short unique name, e.g. ``pgn_oh_exact_p0.3`` or ``entropy``."""
        if not self.is_gradient_score:
            return self.score
        suffix = "" if self.layer == "last" else "_penultimate"
        suffix += "" if self.resolution == "last_layer" else "_output"
        return f"{self.score}_{self.mode}_p{self.p:g}{suffix}"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> HeadSettings:
        """Build from a dict (e.g. a parameter file), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown head setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(values))


@dataclass
class HeadOutput:
    """One forward pass: logits as the model returned them (N x C x H x W),
    labels (N x H x W, int64) and the score (N x H x W, float32).

    Gradient scores are ``log PGN`` (natural log; -inf where the gradient is
    exactly zero); baselines are in their own units."""

    logits: Tensor
    labels: Tensor
    score: Tensor


class GradientUncertaintyHead(nn.Module):
    """Wraps ``model`` and returns :class:`HeadOutput` from one forward pass.

    ``last_layer`` names the module (``model.get_submodule`` path) whose
    weights the gradient is taken of: a 1x1 or k x k ``Conv2d``, a
    ``ConvTranspose2d`` with kernel == stride, or a ``Linear``.  For the
    penultimate variant, also name the conv W and the batch norm between W
    and the ReLU that feeds the last layer.  ``align_corners`` is how the
    model upsamples its logits (and how the paper upsamples the score).
    """

    def __init__(
        self,
        model: nn.Module,
        last_layer: str,
        settings: HeadSettings | None = None,
        *,
        penultimate_conv: str | None = None,
        penultimate_bn: str | None = None,
        align_corners: bool = True,
        fused: str = "off",
    ) -> None:
        super().__init__()
        if fused not in FUSED_CHOICES:
            raise ValueError(f"fused must be one of {', '.join(FUSED_CHOICES)}, got {fused!r}")
        self.model = model
        self.align_corners = align_corners
        self.last_layer = model.get_submodule(last_layer)
        self.penultimate_conv = model.get_submodule(penultimate_conv) if penultimate_conv else None
        self.penultimate_bn = model.get_submodule(penultimate_bn) if penultimate_bn else None
        self._captured: dict[str, Tensor] = {}
        self._wanted: dict[str, bool] = {}  # what the pass in progress needs captured
        self.last_layer.register_forward_hook(self._capture_last)
        self.fused: FusedLastLayer | None = None
        if fused != "off" and fusable_layer(self.last_layer):
            self.fused = FusedLastLayer.attach(self.last_layer)
        elif fused == "triton":
            raise ValueError(f"the fused head cannot compute this last layer ({type(self.last_layer).__name__})")
        if self.penultimate_conv is not None:
            self.penultimate_conv.register_forward_hook(self._capture_penultimate)
        self.settings = settings or HeadSettings()

    @property
    def settings(self) -> HeadSettings:
        return self._settings

    @settings.setter
    def settings(self, value: HeadSettings) -> None:
        """Change what is computed between frames (e.g. a run-time parameter update)."""
        self._check_supported(value)
        self._settings = value

    def _check_supported(self, settings: HeadSettings) -> None:
        if settings.layer == "penultimate":
            if not isinstance(self.penultimate_conv, nn.Conv2d) or not isinstance(self.penultimate_bn, nn.BatchNorm2d):
                raise ValueError(
                    "the penultimate score needs penultimate_conv (Conv2d) and penultimate_bn (BatchNorm2d)"
                )
            if not isinstance(self.last_layer, nn.Conv2d):
                raise ValueError("the penultimate score needs a 1x1 Conv2d last layer")

    def _capture_last(self, _module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self._wanted.get("last"):
            self._captured["last_input"] = inputs[0]
            self._captured["last_output"] = output

    def _capture_penultimate(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        if self._wanted.get("penultimate"):
            self._captured["conv_input"] = inputs[0]

    def forward(self, images: Tensor) -> HeadOutput:
        logits, labels, (score,) = self.forward_many(images, [self._settings])
        return HeadOutput(logits=logits, labels=labels, score=score)

    @torch.no_grad()
    def forward_many(
        self, images: Tensor, settings_list: Sequence[HeadSettings]
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One forward pass, several scores: (logits, labels, one score per entry of ``settings_list``)."""
        for settings in settings_list:
            self._check_supported(settings)
        gradient = [s for s in settings_list if s.is_gradient_score]
        fuse = len(set(gradient)) == 1 and self._fusable(gradient[0], images.device)
        if fuse:
            self.fused.request = (gradient[0].p, GRADIENT_SCORES[gradient[0].score])
        self._wanted = {
            "last": bool(gradient) and not fuse,
            "penultimate": any(s.is_gradient_score and s.layer == "penultimate" for s in settings_list),
        }
        self._captured.clear()
        try:
            logits = self.model(images)
            if not isinstance(logits, Tensor) or logits.dim() != 4:
                raise TypeError("the wrapped model must return N x C x H x W logits as one tensor")
            labels = predicted_class(logits)
            scores = [
                self._gradient_score(s, logits) if s.is_gradient_score else BASELINES[s.score](logits)
                for s in settings_list
            ]
        finally:
            self._captured.clear()
            self._wanted = {}
            if self.fused is not None:
                self.fused.request = self.fused.score = None
        return logits, labels, scores

    def _fusable(self, settings: HeadSettings, device: torch.device) -> bool:
        """The kernel computes this score here: exact, last layer, at its own resolution, Triton usable."""
        wanted = (settings.mode, settings.layer, settings.resolution)
        if self.fused is None or wanted != ("exact", "last", "last_layer"):
            return False
        return triton_runs_on(device)

    def _gradient_score(self, settings: HeadSettings, logits: Tensor) -> Tensor:
        size = tuple(logits.shape[-2:])
        if self.fused is not None and self.fused.score is not None:
            return log_bilinear_resize(self.fused.score, size, self.align_corners)
        if "last_input" not in self._captured:
            raise RuntimeError("the last layer did not run in the model's forward pass")
        label = GRADIENT_SCORES[settings.score]
        features = self._captured["last_input"]
        low_logits = self._captured["last_output"]
        if settings.resolution == "output" and tuple(low_logits.shape[-2:]) != size:
            return self._output_resolution_score(settings, label, logits, features)
        if isinstance(self.last_layer, nn.Linear) and low_logits.dim() != 4:
            raise ValueError("a linear last layer must see a channels-last N x h x w x D map, not a token list")
        if settings.layer == "penultimate":
            low = pgn_penultimate(
                low_logits,
                features,
                self._captured["conv_input"],
                settings.p,
                conv=self.penultimate_conv,
                bn=self.penultimate_bn,
                last=self.last_layer,
                label=label,
                mode=settings.mode,
                from_logits=True,
            )
        else:
            low = pgn_for_layer(
                self.last_layer, low_logits, features, settings.p, label, settings.mode, from_logits=True
            )
        return log_bilinear_resize(low, size, self.align_corners)

    def _output_resolution_score(self, settings: HeadSettings, label: str, logits: Tensor, features: Tensor) -> Tensor:
        layer = self.last_layer
        if not (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)):
            raise ValueError("the exact output-resolution score needs a 1x1 conv last layer")
        feature_norm = log_pnorm_of_upsampled(features, tuple(logits.shape[-2:]), settings.p, self.align_corners)
        class_norm = class_log_norm(logits, settings.p, label, settings.mode, from_logits=True)
        return (class_norm + feature_norm).to(torch.float32)
