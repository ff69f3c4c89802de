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
    return autograd_log_gradient_norm(lambda params: forward(params["weight"]), {"weight": weight}, p, label, dim)


def autograd_log_gradient_norm(
    forward: Callable[[dict[str, Tensor]], Tensor], parameters: dict[str, Tensor], p: float, label: str, dim: int = 1
) -> Tensor:
    """``log`` of the entry-wise p-norm of ``d L_pixel / d parameters`` over all the given tensors
    together (e.g. a layer's weight and bias), for every output position, in float64."""
    parameters = {name: tensor.detach().to(torch.float64) for name, tensor in parameters.items()}
    target = pseudo_label(forward(parameters).detach(), label, dim)

    def per_pixel_loss(params: dict[str, Tensor]) -> Tensor:
        log_probs = torch.log_softmax(forward(params), dim=dim)
        return -(target * log_probs).sum(dim=dim)

    grid_shape = target.sum(dim=dim).shape
    jacobians = jacrev(lambda params: per_pixel_loss(params).reshape(-1))(parameters)  # name: pixels x shape
    summed = sum(j.reshape(j.shape[0], -1).abs().pow(p).sum(dim=1) for j in jacobians.values())
    # detach: the Jacobian still hangs on the module's other parameters
    return (summed.log() / p).reshape(grid_shape).detach()


def largest_log_difference(closed: Tensor, truth: Tensor) -> float:
    """max |log closed - log truth|, counting both -inf (a zero gradient) as equal."""
    both_zero = torch.isneginf(closed) & torch.isneginf(truth)
    difference = (closed.double() - truth).abs().masked_fill(both_zero, 0.0)
    return float(difference.nan_to_num(nan=float("inf")).max())
