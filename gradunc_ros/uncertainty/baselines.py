"""Softmax baselines with the same convention as PGN: higher = more anomalous.

Each takes logits N x C x h x w and returns float32 N x h x w.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .norms import log_softmax, softmax


def _float_logits(logits: Tensor) -> Tensor:
    return logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)


def msp(logits: Tensor) -> Tensor:
    """1 - maximum softmax probability."""
    probs = softmax(_float_logits(logits), dim=1)
    return (1.0 - probs.amax(dim=1)).to(torch.float32)


def entropy(logits: Tensor) -> Tensor:
    """Shannon entropy of the softmax, in nats."""
    log_probs = log_softmax(_float_logits(logits), dim=1)
    # exp(log p) * log p is 0 * finite where p underflows, never nan.
    return (-(log_probs.exp() * log_probs).sum(dim=1)).to(torch.float32)


def max_logit(logits: Tensor) -> Tensor:
    """The negated maximum logit."""
    return (-_float_logits(logits).amax(dim=1)).to(torch.float32)


BASELINES = {"msp": msp, "entropy": entropy, "max_logit": max_logit}
