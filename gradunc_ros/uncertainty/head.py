"""The head: logits, labels and one uncertainty score from a single forward pass.

It wraps any ``nn.Module`` that maps images to N x C x H x W logits.  A
forward hook on the named last layer captures that layer's input (the
features) and output (its logits at its own resolution); the score is then
computed in closed form, so no backward pass and no retraining is needed.

Resolutions (docs/method.md, section 1):
- ``"last_layer"`` (the paper's): the score at the last layer's resolution,
  pseudo label from the low-resolution logits, then bilinearly upsampled as
  a norm (not as its log) to the output size;
- ``"output"``: exact at the output resolution, for a 1x1 conv last layer
  followed by bilinear upsampling of the logits (the 1x1 conv commutes with
  the upsampling, so the gradient's input is the upsampled features).

``fused="auto"`` (or ``"triton"``) attaches :class:`~.fused.FusedLastLayer` to
the last layer: where Triton runs (CUDA), a last-layer gradient score (exact or
reference, of the weights, the bias or both) of a 1x1 or kernel == stride
transposed last layer then comes from the same kernel
that computes the logits, from one read of the features (``fused.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .baselines import BASELINES
from .fused import FUSED_CHOICES, FusedLastLayer, fusable_layer, triton_runs_on
from .model_output import logits_of
from .pgn import (
    PgnOptions,
    class_log_norm,
    closed_form_for,
    combine_factors,
    effective_gradient_of,
    pgn_for_layer,
    pgn_penultimate,
    predicted_class,
)
from .resample import log_bilinear_resize, log_pnorm_of_upsampled
from .settings import DEFAULT_SCORE, GRADIENT_SCORES, HeadSettings


@dataclass
class HeadOutput:
    """One forward pass: logits as the model returned them (N x C x H x W),
    labels (N x H x W, int64) and the score (N x H x W, float32).

    Gradient scores are ``log PGN`` (natural log; -inf where the gradient is
    exactly zero); baselines are in their own units."""

    logits: Tensor
    labels: Tensor
    score: Tensor


class CheckedSettings:
    """A head's ``settings``, checked by its ``check_supported`` whenever they are set (e.g. a run-time parameter
    update): what the model cannot compute is refused before it is used."""

    @property
    def settings(self) -> HeadSettings:
        return self._settings

    @settings.setter
    def settings(self, value: HeadSettings) -> None:
        self.check_supported(value)
        self._settings = value

    def check_supported(self, settings: HeadSettings) -> None:
        raise NotImplementedError


class GradientUncertaintyHead(CheckedSettings, nn.Module):
    """Wraps ``model`` and returns :class:`HeadOutput` from one forward pass.

    ``last_layer`` names the module (``model.get_submodule`` path) whose
    weights the gradient is taken of: a 1x1 or k x k ``Conv2d``, a
    ``ConvTranspose2d`` with kernel == stride, or a ``Linear``; None where the
    model has no single last layer (then only the softmax baselines and the
    bias gradient, which is the logits' gradient, are computed, from the
    returned logits).  ``output_key``: where the logits are in the model's
    output (``model_output.logits_of``: a tensor, a mapping, ``.logits``, a
    tuple).  For the
    penultimate variant, also name the conv W and the batch norm between W
    and the ReLU that feeds the last layer.  ``align_corners`` is how the
    model upsamples its logits (and how the paper upsamples the score).
    ``last_layer_at_output``: the last layer's output is the model's output (ERFNet), so
    "output" resolution is the last layer's own; None when unknown (checked on each pass).
    """

    def __init__(
        self,
        model: nn.Module,
        last_layer: str | None,
        settings: HeadSettings | None = None,
        *,
        penultimate_conv: str | None = None,
        penultimate_bn: str | None = None,
        align_corners: bool = True,
        fused: str = "off",
        last_layer_at_output: bool | None = None,
        output_key: str | None = None,
    ) -> None:
        super().__init__()
        if fused not in FUSED_CHOICES:
            raise ValueError(f"fused must be one of {', '.join(FUSED_CHOICES)}, got {fused!r}")
        self.model = model
        self.align_corners = align_corners
        self.output_key = output_key
        self.last_layer = model.get_submodule(last_layer) if last_layer else None
        self.last_layer_at_output = last_layer_at_output
        self.penultimate_conv = model.get_submodule(penultimate_conv) if penultimate_conv else None
        self.penultimate_bn = model.get_submodule(penultimate_bn) if penultimate_bn else None
        self._captured: dict[str, Tensor] = {}
        self._capture_for_pass: dict[str, bool] = {}  # what the pass in progress needs captured
        self._hooks = []  # removed by close(): heads made one after another on one model leave none behind
        if self.last_layer is not None:
            self._hooks.append(self.last_layer.register_forward_hook(self._capture_last))
        self.fused: FusedLastLayer | None = None
        if fused != "off" and self.last_layer is not None and fusable_layer(self.last_layer):
            self.fused = FusedLastLayer.attach(self.last_layer)
        elif fused == "triton":
            raise ValueError(f"the fused head cannot compute this last layer ({type(self.last_layer).__name__})")
        if self.penultimate_conv is not None:
            self._hooks.append(self.penultimate_conv.register_forward_hook(self._capture_penultimate))
        self.settings = settings or DEFAULT_SCORE

    def close(self) -> None:
        """Take this head's hooks off the model (the model is left as it was given)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    @property
    def has_layer_input(self) -> bool:
        """The last layer's input is captured: the weight gradients and the factor report can be computed."""
        return self.last_layer is not None

    def check_supported(self, settings: HeadSettings) -> None:
        """ValueError with the reason when this model cannot compute ``settings``."""
        if self.last_layer is None and settings.is_gradient_score and settings.gradient_of != "bias":
            raise ValueError(
                f"gradient_of {settings.gradient_of} needs the last layer's input, and this model has no single last "
                "layer (the model card says last_layer: none): gradient_of bias and the softmax baselines run"
            )
        if self.last_layer is not None and settings.is_gradient_score and settings.layer == "last":
            closed_form_for(self.last_layer)  # a layer kind the closed forms do not cover: refused now, not per frame
        if settings.layer == "penultimate":
            if not isinstance(self.penultimate_conv, nn.Conv2d) or not isinstance(self.penultimate_bn, nn.BatchNorm2d):
                raise ValueError(
                    "the penultimate score needs a conv -> batch norm -> ReLU -> 1x1 conv tail, which this model "
                    "does not name (penultimate_conv, penultimate_bn)"
                )
            if not isinstance(self.last_layer, nn.Conv2d):
                raise ValueError("the penultimate score needs a 1x1 Conv2d last layer")
        # The bias gradient at the output resolution is s - y of the output logits whatever the layer (bilinear
        # weights sum to 1, so the bias passes the upsampling unchanged); the weights' needs a 1x1 conv.
        below_output = self.last_layer_at_output is False and settings.gradient_of != "bias"
        if settings.is_gradient_score and settings.resolution == "output" and below_output:
            if not _is_pointwise_conv(self.last_layer):
                raise ValueError(
                    "the exact output-resolution score needs a 1x1 conv last layer, or a last layer whose output "
                    f"is the model's output; this one is a {type(self.last_layer).__name__} below the output "
                    "resolution: use resolution last_layer"
                )

    def computes(self, settings: HeadSettings, device: torch.device) -> str:
        """What runs for ``settings`` on ``device``, in words (the node's start and change log lines)."""
        if not settings.is_gradient_score:
            return f"{settings.score} from the logits (no gradient head)"
        how = "fused Triton head" if self._fusable(settings, device) else "plain PyTorch head"
        return f"{settings.name} ({how})"

    def _capture_last(self, _module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self._capture_for_pass.get("last"):
            self._captured["last_input"] = inputs[0]
            self._captured["last_output"] = output

    def _capture_penultimate(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        if self._capture_for_pass.get("penultimate"):
            self._captured["conv_input"] = inputs[0]

    def forward(self, images: Tensor) -> HeadOutput:
        logits, labels, (score,), _ = self.forward_many(images, [self._settings])
        return HeadOutput(logits=logits, labels=labels, score=score)

    @torch.no_grad()
    def forward_many(
        self, images: Tensor, settings_list: Sequence[HeadSettings], factors: Sequence[HeadSettings] = ()
    ) -> tuple[Tensor, Tensor, list[Tensor], list[tuple[Tensor, Tensor]]]:
        """One forward pass, several scores: (logits, labels, one score per entry of ``settings_list``,
        the two log factors (class, input) of the last layer's weight gradient per entry of ``factors``,
        at the output size: the factor report of ``gradunc-eval``)."""
        for settings in (*settings_list, *factors):
            self.check_supported(settings)
        if any(not s.is_gradient_score or s.layer != "last" for s in factors):
            raise ValueError("factors exist for gradient scores of the last layer only")
        gradient = [s for s in settings_list if s.is_gradient_score]
        fuse = not factors and len(set(gradient)) == 1 and self._fusable(gradient[0], images.device)
        if fuse:
            one = gradient[0]
            self.fused.request = (one.p, PgnOptions(GRADIENT_SCORES[one.score], one.mode, one.gradient_of))
        self._capture_for_pass = {
            "last": (bool(gradient) and not fuse) or bool(factors),
            "penultimate": any(s.is_gradient_score and s.layer == "penultimate" for s in settings_list),
        }
        self._captured.clear()
        try:
            logits = logits_of(self.model(images), self.output_key)
            labels = predicted_class(logits)
            scores = [
                self._gradient_score(s, logits) if s.is_gradient_score else BASELINES[s.score](logits)
                for s in settings_list
            ]
            factor_maps = [self._gradient_score(s, logits, factors=True) for s in factors]
        finally:
            self._captured.clear()
            self._capture_for_pass = {}
            if self.fused is not None:
                self.fused.request = self.fused.score = None
        return logits, labels, scores, factor_maps

    def _fusable(self, settings: HeadSettings, device: torch.device) -> bool:
        """The kernel computes this score here: last layer, at its own resolution, Triton usable."""
        if self.fused is None or (settings.layer, settings.resolution) != ("last", "last_layer"):
            return False
        return triton_runs_on(device)

    def _gradient_score(
        self, settings: HeadSettings, logits: Tensor, factors: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        size = tuple(logits.shape[-2:])
        if not factors and self.fused is not None and self.fused.score is not None:
            return log_bilinear_resize(self.fused.score, size, self.align_corners)
        label = GRADIENT_SCORES[settings.score]
        if self.last_layer is None:  # check_supported allows the bias gradient only: the logits' gradient
            if factors:
                raise ValueError("the factor report needs the last layer's input, and this model has no last layer")
            return class_log_norm(logits, settings.p, label, settings.mode, from_logits=True).to(torch.float32)
        if "last_input" not in self._captured:
            raise RuntimeError("the last layer did not run in the model's forward pass")
        features = self._captured["last_input"]
        low_logits = self._captured["last_output"]
        if settings.resolution == "output" and tuple(low_logits.shape[-2:]) != size:
            return self._output_resolution_score(settings, label, logits, features, factors)
        if isinstance(self.last_layer, nn.Linear) and low_logits.dim() != 4:
            raise ValueError("a linear last layer must see a channels-last N x h x w x D map, not a token list")
        if settings.layer == "penultimate":
            if factors:
                raise ValueError("the factor report covers last-layer scores only")
            options = PgnOptions(label, settings.mode, from_logits=True)
            conv_input = self._captured["conv_input"]
            low = pgn_penultimate(
                low_logits, features, conv_input, settings.p, options,
                conv=self.penultimate_conv, bn=self.penultimate_bn, last=self.last_layer,
            )  # fmt: skip
        else:
            options = PgnOptions(label, settings.mode, settings.gradient_of, from_logits=True, factors=factors)
            low = pgn_for_layer(self.last_layer, low_logits, features, settings.p, options)
        if factors:
            return tuple(log_bilinear_resize(part, size, self.align_corners) for part in low)
        return log_bilinear_resize(low, size, self.align_corners)

    def _output_resolution_score(
        self, settings: HeadSettings, label: str, logits: Tensor, features: Tensor, factors: bool
    ) -> Tensor | tuple[Tensor, Tensor]:
        layer = self.last_layer
        class_norm = class_log_norm(logits, settings.p, label, settings.mode, from_logits=True).to(torch.float32)
        if settings.gradient_of == "bias" and not factors:
            return class_norm
        if not _is_pointwise_conv(layer):
            raise ValueError("the exact output-resolution score needs a 1x1 conv last layer")
        feature_norm = log_pnorm_of_upsampled(features, tuple(logits.shape[-2:]), settings.p, self.align_corners)
        if factors:
            return class_norm, feature_norm.to(torch.float32)
        gradient_of = effective_gradient_of(layer, settings.gradient_of)
        return combine_factors(class_norm, feature_norm, settings.p, gradient_of).to(torch.float32)


def _is_pointwise_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
