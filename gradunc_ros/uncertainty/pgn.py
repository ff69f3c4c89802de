"""Pixel-wise gradient norms (PGN) in closed form (docs/method.md, sections 1 and 2).

For a last layer whose gradient is ``(s - y) outer input``, the entry-wise
p-norm factorises: ``PGN = ||s - y||_p * ||input||_p``.  Every function here
returns float32 of shape N x h x w (or the token shape for linear layers):
``log PGN`` when ``log=True`` (the default, finite for any p in
[P_MIN, P_MAX] = [0.01, 10]) and PGN itself otherwise, which overflows float32 for small p.
A pixel whose gradient is exactly zero has ``log PGN = -inf``.

Labels: ``"onehot"`` (pseudo label = the predicted class) or ``"uniform"``
(y = 1/C).  Modes: ``"exact"`` is the true gradient; ``"reference"`` is what
the paper's code computes (``s * (1 - y)`` and ``(C - 1)/C * s``).

Which parameters the gradient is taken of (``gradient_of``, docs/method.md,
section 1, "Which parameters"):

- ``"weights"``: the last layer's weights, ``||s - y||_p * ||input||_p``;
- ``"bias"``: the last layer's bias, ``||s - y||_p`` (the class factor alone).
  It is also the gradient with respect to the logits, so a layer without a
  bias gets this logit gradient;
- ``"layer"``: weights and bias together, the entry-wise p-norm over both,
  ``||s - y||_p * (||input||_p^p + 1)^(1/p)``; for a layer without a bias
  this is the weights' gradient.

The class side can be given as probabilities (``probs``) or, more robustly,
as logits (``from_logits=True``): a confident pixel whose softmax rounds to
exactly one-hot still gets its true, finite ``log ||s - y||_p`` because the
small entries are kept in the log domain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from .norms import check_p, log_pnorm, log_softmax, logsumexp, patch_log_pnorm, softmax, work_dtype

Label = Literal["onehot", "uniform"]
Mode = Literal["exact", "reference"]
GradientOf = Literal["weights", "bias", "layer"]
LABELS: tuple[str, ...] = ("onehot", "uniform")
MODES: tuple[str, ...] = ("exact", "reference")
GRADIENTS_OF: tuple[str, ...] = ("weights", "bias", "layer")


def predicted_class(scores: Tensor, dim: int = 1, keepdim: bool = False) -> Tensor:
    """``scores.argmax(dim)``, first maximum on ties, as ``max(dim).indices``: on the CPU, argmax over the
    class dimension of an N x C x H x W map is several times slower (measured 13.5 vs 1.8 ms, 9 x 480x360)."""
    return scores.max(dim=dim, keepdim=keepdim).indices


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def class_gradient_factor(probs: Tensor, label: Label = "onehot", mode: Mode = "exact", dim: int = 1) -> Tensor:
    """The class-side vector of the gradient: ``s - y`` (exact) or the paper's stand-in, from probabilities.

    Computed in float32 (float64 stays float64).
    """
    vector, log_scale = scaled_class_vector(probs, label, mode, dim)
    return vector * log_scale.exp()


def scaled_class_vector(
    probs: Tensor, label: Label = "onehot", mode: Mode = "exact", dim: int = 1, from_logits: bool = False
) -> tuple[Tensor, Tensor]:
    """``(v, log_scale)`` with ``s - y`` (or the reference stand-in) ``= exp(log_scale) * v``.

    For the one-hot label ``v`` is scaled so that its predicted entry is -1
    (exact) or 0 (reference) and the others sum to 1: it stays representable
    however confident the pixel is.  ``log_scale`` has the grid shape with
    ``dim`` kept (size 1).
    """
    _check_choice("label", label, LABELS)
    _check_choice("mode", mode, MODES)
    scores = probs.to(work_dtype(probs))
    num_classes = scores.shape[dim]
    if label == "uniform":
        s = softmax(scores, dim=dim) if from_logits else scores
        zero = torch.zeros_like(s.narrow(dim, 0, 1))
        if mode == "exact":
            return s - 1.0 / num_classes, zero
        return s, zero + math.log((num_classes - 1) / num_classes)
    log_s = log_softmax(scores, dim=dim) if from_logits else torch.log(scores)
    predicted = predicted_class(scores, dim, keepdim=True)
    log_others = log_s.scatter(dim, predicted, -math.inf)
    # log(1 - s_k) as the log of the sum of the other probabilities: no cancellation near s_k = 1.
    log_rest = logsumexp(log_others, dim=dim, keepdim=True)
    finite = torch.isfinite(log_rest)
    others = torch.where(finite, torch.exp(log_others - torch.where(finite, log_rest, 0.0)), 0.0)
    predicted_entry = -1.0 if mode == "exact" else 0.0
    return others.scatter(dim, predicted, predicted_entry), log_rest


def class_log_norm(
    probs: Tensor, p: float, label: Label = "onehot", mode: Mode = "exact", dim: int = 1, from_logits: bool = False
) -> Tensor:
    """``log ||s - y||_p`` over the class dimension (``probs`` are logits when ``from_logits``)."""
    if label == "onehot":  # straight in the log domain: the same value as below, in fewer passes
        _check_choice("mode", mode, MODES)
        p = check_p(p)
        scores = probs.to(work_dtype(probs))
        log_s = log_softmax(scores, dim=dim) if from_logits else torch.log(scores)
        predicted = predicted_class(scores, dim, keepdim=True)
        log_others = log_s.scatter(dim, predicted, -math.inf)
        terms = p * log_others
        if mode == "exact":  # the predicted entry |s_k - 1|^p = (sum of the others)^p
            terms = terms.scatter(dim, predicted, p * logsumexp(log_others, dim=dim, keepdim=True))
        return logsumexp(terms, dim=dim) / p
    vector, log_scale = scaled_class_vector(probs, label, mode, dim, from_logits)
    return log_pnorm(vector, p, dim=dim) + log_scale.squeeze(dim)


def _finish(log_score: Tensor, log: bool) -> Tensor:
    return (log_score if log else torch.exp(log_score)).to(torch.float32)


def combine_factors(class_part: Tensor, feature_part: Tensor, p: float, gradient_of: GradientOf = "weights") -> Tensor:
    """``log`` of the gradient norm from its factors ``log ||s - y||_p`` and ``log ||input||_p``.

    weights: their sum; bias: the class factor alone; layer: the p-norm over
    weights and bias, ``log ||s - y||_p + log(||input||_p^p + 1) / p`` (an
    input of norm 0, log -inf, leaves the bias part).
    """
    _check_choice("gradient_of", gradient_of, GRADIENTS_OF)
    if gradient_of == "bias":
        return class_part
    feature_part = feature_part.to(class_part.dtype)
    if gradient_of == "weights":
        return class_part + feature_part
    return class_part + torch.logaddexp(p * feature_part, torch.zeros_like(feature_part)) / p


def effective_gradient_of(layer: nn.Module, gradient_of: GradientOf) -> GradientOf:
    """The whole layer of a layer without a bias is its weights (the bias part does not exist)."""
    return "weights" if gradient_of == "layer" and getattr(layer, "bias", None) is None else gradient_of


def _class_part(probs: Tensor, p: float, options: PgnOptions, dim: int = 1) -> Tensor:
    return class_log_norm(probs, p, options.label, options.mode, dim=dim, from_logits=options.from_logits)


def _score(
    class_part: Tensor, feature_part: Callable[[], Tensor], p: float, options: PgnOptions
) -> Tensor | tuple[Tensor, Tensor]:
    """The score, or with ``factors`` both log factors (float32); the input factor only when it is needed."""
    if options.factors:
        return class_part.to(torch.float32), feature_part().to(torch.float32)
    if options.gradient_of == "bias":
        return _finish(class_part, options.log)
    return _finish(combine_factors(class_part, feature_part(), p, options.gradient_of), options.log)


def _check_grid(probs: Tensor, features_grid: tuple[int, ...], what: str) -> None:
    if probs.dim() != 4:
        raise ValueError(f"probs must be N x C x h x w, got shape {tuple(probs.shape)}")
    if tuple(features_grid) != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(
            f"{what} give a N x h x w grid of {tuple(features_grid)} but probs have "
            f"{(probs.shape[0], *probs.shape[2:])}"
        )


@dataclass(frozen=True)
class PgnOptions:
    """What every closed form below (and the fused kernel, ``fused.fused_scores``) is asked for, besides p.

    ``label``: the pseudo label, "onehot" or "uniform"; ``mode``: "exact" or "reference" (the paper's
    code); ``gradient_of``: "weights", "bias" or "layer"; ``from_logits``: the class side is given as
    logits, not probabilities (more robust: a pixel whose softmax rounds to one-hot keeps its finite
    class factor); ``log``: return log PGN (False: PGN itself, which overflows float32 at small p);
    ``factors``: return the two log factors (class, input) of the weights' gradient instead."""

    label: Label = "onehot"
    mode: Mode = "exact"
    gradient_of: GradientOf = "weights"
    from_logits: bool = False
    log: bool = True
    factors: bool = False

    def __post_init__(self) -> None:
        _check_choice("label", self.label, LABELS)
        _check_choice("mode", self.mode, MODES)
        _check_choice("gradient_of", self.gradient_of, GRADIENTS_OF)


EXACT_ONEHOT = PgnOptions()


# Every pgn_* below returns N x h x w float32 (the token shape for linear layers): log PGN, PGN itself, or
# the two log factors, as ``options`` say.


def pgn(
    probs: Tensor, features: Tensor, p: float, options: PgnOptions = EXACT_ONEHOT
) -> Tensor | tuple[Tensor, Tensor]:
    """PGN for a 1x1 conv last layer: ``||s - y||_p * ||features||_p`` per pixel (weights).

    ``probs`` is N x C x h x w (softmax of the layer's output), ``features``
    N x D x h x w (the layer's input).
    """
    p = check_p(p)
    if features.dim() != 4:
        raise ValueError(f"features must be N x D x h x w, got shape {tuple(features.shape)}")
    _check_grid(probs, (features.shape[0], *features.shape[2:]), "features")
    class_part = _class_part(probs, p, options)
    return _score(class_part, lambda: log_pnorm(features, p, dim=1), p, options)


def pgn_conv(
    probs: Tensor,
    features: Tensor,
    p: float,
    *,
    kernel_size: tuple[int, int],
    padding: tuple[int, int] | str = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    stride: tuple[int, int] = (1, 1),
    padding_mode: str = "zeros",
    options: PgnOptions = EXACT_ONEHOT,
) -> Tensor | tuple[Tensor, Tensor]:
    """PGN for a k x k conv last layer: ``||s - y||_p * ||input patch||_p`` (weights).

    ``features`` is the conv's input (N x D x H x W); ``probs`` is at the
    conv's output resolution.  Geometry arguments are the layer's own.
    """
    p = check_p(p)
    patch = patch_log_pnorm(
        features, p, kernel_size, padding=padding, dilation=dilation, stride=stride, padding_mode=padding_mode
    )
    _check_grid(probs, tuple(patch.shape), "the conv's output")
    return _score(_class_part(probs, p, options), lambda: patch, p, options)


def transposed_input_index(out_size: int, in_size: int, stride: int, padding: int) -> tuple[Tensor, Tensor]:
    """For a transposed conv with kernel == stride: the one input index behind each output index.

    Returns (index clamped into range, mask of outputs that have an input).
    Outputs added by ``output_padding`` see no input (only the bias).
    """
    full = torch.arange(out_size) + padding
    source = torch.div(full, stride, rounding_mode="floor")
    valid = source < in_size
    return source.clamp(max=in_size - 1), valid


def transposed_feature_log_norm(
    features: Tensor, p: float, out_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """``log ||input pixel||_p`` behind each output pixel of a transposed conv with kernel == stride."""
    feature_norm = log_pnorm(features, p, dim=1)  # N x H x W at the input resolution
    rows, rows_valid = transposed_input_index(out_size[0], features.shape[2], stride[0], padding[0])
    cols, cols_valid = transposed_input_index(out_size[1], features.shape[3], stride[1], padding[1])
    device = feature_norm.device
    expanded = feature_norm.index_select(1, rows.to(device)).index_select(2, cols.to(device))
    valid = (rows_valid[:, None] & cols_valid[None, :]).to(device)
    return expanded.masked_fill(~valid, float("-inf"))


def pgn_transposed(
    probs: Tensor,
    features: Tensor,
    p: float,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
    options: PgnOptions = EXACT_ONEHOT,
) -> Tensor | tuple[Tensor, Tensor]:
    """PGN for a transposed conv whose kernel equals its stride (ERFNet's output layer).

    Each output pixel sees one input pixel through one kernel tap, so
    ``PGN = ||s - y||_p * ||features(input pixel)||_p`` (weights).
    """
    p = check_p(p)
    if features.dim() != 4 or probs.dim() != 4:
        raise ValueError("probs and features must both be 4-D (N x C x h x w, N x D x H x W)")
    if probs.shape[0] != features.shape[0]:
        raise ValueError("probs and features differ in batch size")
    class_part = _class_part(probs, p, options)

    def feature_part() -> Tensor:
        return transposed_feature_log_norm(features, p, tuple(probs.shape[2:]), stride, padding)

    return _score(class_part, feature_part, p, options)


def pgn_linear(
    probs: Tensor, tokens: Tensor, p: float, options: PgnOptions = EXACT_ONEHOT
) -> Tensor | tuple[Tensor, Tensor]:
    """PGN for a linear layer on tokens: ``probs`` ... x C, ``tokens`` ... x D (channels last)."""
    p = check_p(p)
    if probs.shape[:-1] != tokens.shape[:-1]:
        raise ValueError(f"probs {tuple(probs.shape)} and tokens {tuple(tokens.shape)} differ in leading shape")
    class_part = _class_part(probs, p, options, dim=-1)
    return _score(class_part, lambda: log_pnorm(tokens, p, dim=-1), p, options)


def pgn_penultimate(
    probs: Tensor,
    last_input: Tensor,
    conv_input: Tensor,
    p: float,
    options: PgnOptions = EXACT_ONEHOT,
    *,
    conv: nn.Conv2d,
    bn: nn.BatchNorm2d,
    last: nn.Conv2d,
) -> Tensor:
    """PGN with respect to the second-to-last conv W of a ``W -> BN -> ReLU -> 1x1 K`` tail.

    Exact (docs/method.md, section 2): ``||g||_p * ||P||_p`` with ``P`` the input
    patch of W and ``g = (K^T (s - y)) * 1[phi > 0] * gamma / sqrt(var + eps)``,
    ``phi = last_input`` (the ReLU output).  Reference: what the paper's code
    does: p = 0.5 for ``g``, gamma without the variance, and the ReLU mask
    ``BN(conv_input) >= 0`` (BN applied to W's input, which needs as many
    input as output channels).  BN is taken in inference form (running stats).
    ``probs`` are logits when ``options.from_logits``; the gradient is always W's (no factors).
    """
    p = check_p(p)
    if options.gradient_of != "weights" or options.factors:
        raise ValueError("the second-to-last layer's gradient is its weights' (gradient_of weights, no factors)")
    mode = options.mode
    if last.kernel_size != (1, 1) or last.stride != (1, 1) or last.groups != 1:
        raise ValueError("the last layer must be a 1x1 conv with stride 1 and one group")
    if conv.groups != 1:
        raise ValueError("grouped second-to-last convs are not supported")
    if bn.running_var is None:
        raise ValueError("the batch norm has no running statistics")
    dtype = work_dtype(probs)
    vector, log_scale = scaled_class_vector(probs, options.label, mode, dim=1, from_logits=options.from_logits)
    kernel = last.weight.detach()[:, :, 0, 0].to(dtype)  # C x D
    back = torch.einsum("cd,nchw->ndhw", kernel, vector)  # K^T (s - y), up to exp(log_scale)
    gamma = bn.weight.detach().to(dtype) if bn.weight is not None else torch.ones_like(bn.running_var, dtype=dtype)
    if mode == "exact":
        scale = gamma / torch.sqrt(bn.running_var.to(dtype) + bn.eps)
        mask = last_input > 0
        first = log_pnorm(back * mask * scale[None, :, None, None], p, dim=1)
    else:
        if conv_input.shape[1] != bn.num_features:
            raise ValueError(
                "reference mode applies the BN to W's input, which needs "
                f"{bn.num_features} input channels, got {conv_input.shape[1]}"
            )
        mask = _batch_norm_inference(conv_input.to(dtype), bn) >= 0
        first = log_pnorm(back * mask * gamma[None, :, None, None], 0.5, dim=1)
    second = patch_log_pnorm(
        conv_input,
        p,
        conv.kernel_size,
        padding=conv.padding,
        dilation=conv.dilation,
        stride=conv.stride,
        padding_mode=conv.padding_mode,
    )
    _check_grid(probs, tuple(second.shape), "W's output")
    return _finish(first + log_scale.squeeze(1) + second.to(dtype), options.log)


def _batch_norm_inference(x: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    weight = bn.weight.detach().to(x.dtype) if bn.weight is not None else None
    bias = bn.bias.detach().to(x.dtype) if bn.bias is not None else None
    return torch.nn.functional.batch_norm(
        x, bn.running_mean.to(x.dtype), bn.running_var.to(x.dtype), weight, bias, False, 0.0, bn.eps
    )


def closed_form_for(layer: nn.Module) -> tuple[Callable[..., Tensor | tuple[Tensor, Tensor]], dict]:
    """The pgn_* function for this kind of last layer and the layer's own geometry arguments for it.

    1x1 conv: ``pgn``; k x k conv: ``pgn_conv`` (the unfolded patch);
    transposed conv with kernel == stride: ``pgn_transposed``; linear
    (channels last): ``pgn_linear``.
    """
    if isinstance(layer, nn.Linear):
        return pgn_linear, {}
    if isinstance(layer, nn.ConvTranspose2d):
        if layer.kernel_size != layer.stride or layer.dilation != (1, 1) or layer.groups != 1:
            raise ValueError(
                "a transposed-conv last layer needs kernel == stride, dilation 1 and one group; "
                f"got kernel {layer.kernel_size}, stride {layer.stride}, dilation {layer.dilation}"
            )
        return pgn_transposed, {"stride": layer.stride, "padding": layer.padding}
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError("grouped last layers do not factorise; use a conv with groups=1")
        if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding in ((0, 0), "valid", "same"):
            return pgn, {}
        geometry = {
            "kernel_size": layer.kernel_size, "padding": layer.padding, "dilation": layer.dilation,
            "stride": layer.stride, "padding_mode": layer.padding_mode,
        }  # fmt: skip
        return pgn_conv, geometry
    raise TypeError(f"no closed form for a last layer of type {type(layer).__name__}")


def pgn_for_layer(
    layer: nn.Module, probs: Tensor, layer_input: Tensor, p: float, options: PgnOptions = EXACT_ONEHOT
) -> Tensor | tuple[Tensor, Tensor]:
    """PGN for whatever kind of last layer ``layer`` is (1x1 or k x k conv, transposed conv, linear).

    ``probs`` is the softmax of the layer's output (its logits when ``options.from_logits``).  ``gradient_of``
    "layer" on a layer without a bias is its weights' gradient; "bias" there is the logit gradient.
    """
    closed_form, geometry = closed_form_for(layer)
    options = replace(options, gradient_of=effective_gradient_of(layer, options.gradient_of))
    return closed_form(probs, layer_input, p, options=options, **geometry)
