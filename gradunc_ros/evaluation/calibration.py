"""Choosing the node's OoD threshold (mask: ``score > threshold``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import pixel_metrics, strictly_above


def threshold_for_false_positive_rate(in_distribution: Sequence[np.ndarray], target_fpr: float) -> float:
    """The lowest threshold whose mask ``score > threshold`` flags at most ``target_fpr`` of the given
    in-distribution pixels (no OoD labels needed).  Non-finite scores count as pixels too."""
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    values = np.sort(np.concatenate([np.asarray(s, dtype=np.float32).ravel() for s in in_distribution]))
    if values.size == 0:
        raise ValueError("no in-distribution pixels")
    allowed = int(np.floor(target_fpr * values.size))
    return float(values[values.size - allowed - 1])


def best_f1_threshold(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    """The pixel-level best-F1 threshold of a labelled set, as a ``score > threshold`` value."""
    return strictly_above(pixel_metrics(scores, labels)["best_f1_threshold"])
