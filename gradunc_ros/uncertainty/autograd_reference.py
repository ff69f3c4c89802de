"""Per-pixel gradient norms by autograd: the ground truth the closed forms are checked against.

Slow (one Jacobian row per pixel) and meant for small inputs: tests and
``gradunc-selfcheck``.  Independent of the closed forms: it differentiates
the per-pixel cross-entropy and takes the norm of the raw gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacrev


def pseudo_label(logits: Tensor, label: str, dim: int = 1) -> Tensor:
    """One-hot of the prediction, or the uniform distribution, shaped like ``logits``."""
    if label == "onehot":
        index = logits.argmax(dim=dim, keepdim=True)
        return torch.zeros_like(logits).scatter(dim, index, 1.0)
    if label == "uniform":
        return torch.full_like(logits, 1.0 / logits.shape[dim])
    raise ValueError(f"unknown label {label!r}")


def autograd_log_pgn(forward: Callable[[Tensor], Tensor], weight: Tensor, p: float, label: str, dim: int = 1) -> Tensor:
    """``log ||d L_pixel / d weight||_p`` for every output position, in float64.

    ``forward(weight)`` returns logits with classes along ``dim``; the pseudo
    label is fixed from the logits at ``weight`` (it is not differentiated).
    """
    weight = weight.detach().to(torch.float64)
    target = pseudo_label(forward(weight).detach(), label, dim)

    def per_pixel_loss(w: Tensor) -> Tensor:
        log_probs = torch.log_softmax(forward(w), dim=dim)
        return -(target * log_probs).sum(dim=dim)

    grid_shape = target.sum(dim=dim).shape
    jacobian = jacrev(lambda w: per_pixel_loss(w).reshape(-1))(weight)  # pixels x weight shape
    summed = jacobian.reshape(jacobian.shape[0], -1).abs().pow(p).sum(dim=1)
    # detach: the Jacobian still hangs on the module's other parameters (e.g. the bias)
    return (summed.log() / p).reshape(grid_shape).detach()


def largest_log_difference(closed: Tensor, truth: Tensor) -> float:
    """max |log closed - log truth|, counting both -inf (a zero gradient) as equal."""
    both_zero = torch.isneginf(closed) & torch.isneginf(truth)
    difference = (closed.double() - truth).abs().masked_fill(both_zero, 0.0)
    return float(difference.nan_to_num(nan=float("inf")).max())
