"""The paper's in-distribution uncertainty metrics (docs/method.md, section 4).

- misclassification detection: AuROC of the score separating wrongly from
  correctly classified pixels;
- ECE: 10 equal-width confidence bins, ``sum n_bin |acc - conf| / N``;
- AuSE, standard sparsification: remove pixels in order of decreasing
  uncertainty and track the mean Brier error of those kept; AuSE is the area
  between that curve and the oracle's (ordered by the true error).  (The
  paper's code averaged the uncertainty instead of the error; this is the
  standard definition.)

Pixels whose target is IGNORE (255) are left out everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .datasets import IGNORE
from .metrics import pixel_metrics


def misclassification_auroc(
    scores: Sequence[np.ndarray], predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]
) -> float:
    """AuROC of ``scores`` for detecting pixels where the prediction is wrong (nan if all are right or all wrong)."""
    labels = [np.where(t == IGNORE, 255, (p != t).astype(np.uint8)) for p, t in zip(predictions, targets, strict=True)]
    if not any((lab == 0).any() for lab in labels) or not any((lab == 1).any() for lab in labels):
        return float("nan")
    return pixel_metrics(scores, labels)["auroc"]


class CalibrationBins:
    """Streaming expected calibration error over equal-width confidence bins."""

    def __init__(self, bins: int = 10) -> None:
        self.bins = bins
        self.count = np.zeros(bins, dtype=np.int64)
        self.confidence = np.zeros(bins)
        self.correct = np.zeros(bins)

    def add(self, confidence: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> None:
        keep = target != IGNORE
        conf = confidence[keep].astype(np.float64)
        index = np.clip((conf * self.bins).astype(np.int64), 0, self.bins - 1)  # confidence 1.0 in the top bin
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence += np.bincount(index, weights=conf, minlength=self.bins)
        self.correct += np.bincount(index, weights=(prediction[keep] == target[keep]), minlength=self.bins)

    def ece(self) -> float:
        total = self.count.sum()
        if total == 0:
            raise ValueError("no pixels were added")
        return float(np.abs(self.correct - self.confidence).sum() / total)


def brier_error(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel ``sum_c (s_c - onehot_c)^2`` for C x H x W probabilities and H x W targets (IGNORE: nan)."""
    valid = target != IGNORE
    safe = np.where(valid, target, 0).astype(np.int64)
    squared = np.square(probs.astype(np.float64)).sum(axis=0)
    true_prob = np.take_along_axis(probs, safe[None], axis=0)[0].astype(np.float64)
    return np.where(valid, squared - 2 * true_prob + 1.0, np.nan)


def sparsification(uncertainty: np.ndarray, error: np.ndarray, fractions: int = 100) -> dict[str, float | list[float]]:
    """Sparsification curves and AuSE for pooled 1-D uncertainty and error (nan errors dropped)."""
    keep = ~np.isnan(error)
    u, e = uncertainty[keep].astype(np.float64), error[keep].astype(np.float64)
    if e.size == 0:
        raise ValueError("no pixels to sparsify")
    steps = np.arange(fractions) / fractions  # fraction removed: 0, 1/F, ..., (F-1)/F
    removed = np.floor(steps * e.size).astype(np.int64)

    def curve(order: np.ndarray) -> np.ndarray:
        kept_sums = e.sum() - np.concatenate([[0.0], np.cumsum(e[order])])[removed]
        return kept_sums / (e.size - removed)

    by_uncertainty = curve(np.argsort(-u, kind="stable"))
    oracle = curve(np.argsort(-e, kind="stable"))
    normaliser = by_uncertainty[0] if by_uncertainty[0] > 0 else 1.0
    area = float(np.trapezoid(by_uncertainty - oracle, steps) / normaliser)
    return {"ause": area, "fractions": steps.tolist(), "curve": by_uncertainty.tolist(), "oracle": oracle.tolist()}
