"""How sure a ranking of scores is: a bootstrap over frames of the pooled AuPRC.

Frames, not pixels, are the independent units (neighbouring pixels of one
frame, and one object, move together), so each draw resamples whole frames
with replacement and pools their pixels, as the metric pools a data set.
All scores see the same draws, so the ratio of two scores' AuPRC is paired.

Exact AuPRC over every distinct threshold would cost a sort of all pixels per
draw and score; instead each frame's OoD and in-distribution pixels are
counted once in ``bins`` score bins whose edges are quantiles of the OoD
scores (equal numbers of OoD pixels per bin).  A draw is then a weighted sum
of frame histograms.  The AuPRC of the binned counts treats pixels of one bin
as tied; ``binning_error`` says how far that moves the full-set AuPRC from
the exact value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import VOID

DRAWS = 1000
SEED = 0
BINS = 4096


@dataclass(frozen=True)
class BinnedFrames:
    """Per frame, OoD (``positives``) and in-distribution (``negatives``) pixel counts per score bin,
    bins ordered from the highest scores to the lowest: F x B each."""

    positives: np.ndarray
    negatives: np.ndarray


def bin_frames(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], bins: int = BINS) -> BinnedFrames:
    """Count each frame's pixels (void excluded) in bins whose edges are quantiles of the OoD scores."""
    pairs = list(zip(scores, labels, strict=True))
    positive = np.concatenate([np.asarray(s)[np.asarray(lab) == 1].ravel() for s, lab in pairs])
    finite = positive[np.isfinite(positive)]
    if finite.size == 0:
        raise ValueError("no finite OoD scores: nothing to bin")
    edges = np.unique(np.quantile(finite.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    count = edges.size + 1  # bin b holds edges[b - 1] <= s < edges[b]; -inf and +inf fall in the end bins
    pos, neg = [], []
    for score, label in pairs:
        score, label = np.asarray(score), np.asarray(label)
        where = np.searchsorted(edges, score[label != VOID].astype(np.float64), side="right")
        kind = label[label != VOID]
        pos.append(np.bincount(where[kind == 1], minlength=count))
        neg.append(np.bincount(where[kind == 0], minlength=count))
    return BinnedFrames(np.asarray(pos)[:, ::-1].astype(np.float64), np.asarray(neg)[:, ::-1].astype(np.float64))


def binned_auprc(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Step-sum average precision of pooled bin counts (... x B, bins from high to low score), one
    value per row; NaN where a row has no OoD pixel."""
    tp = np.cumsum(positives, axis=-1)
    fp = np.cumsum(negatives, axis=-1)
    total = tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall_step = positives / total
        precision = np.where(tp > 0, tp / (tp + fp), 0.0)
        return np.where(total[..., 0] > 0, np.sum(recall_step * precision, axis=-1), np.nan)


def frame_draws(frames: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """draws x frames multiplicities: each row resamples the frames with replacement."""
    if frames < 1 or draws < 1:
        raise ValueError("the bootstrap needs at least one frame and one draw")
    rng = np.random.default_rng(seed)
    return rng.multinomial(frames, np.full(frames, 1.0 / frames), size=draws).astype(np.float64)


def bootstrap_auprc(binned: BinnedFrames, weights: np.ndarray) -> np.ndarray:
    """The AuPRC of each draw (a row of ``weights``: how often each frame is drawn)."""
    return binned_auprc(weights @ binned.positives, weights @ binned.negatives)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values (NaN draws left out)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, (tail, 100 - tail))
    return float(low), float(high)


def full_set_auprc(binned: BinnedFrames) -> float:
    """The binned AuPRC of all frames once: compared with the exact value, the binning's error."""
    return float(binned_auprc(binned.positives.sum(0), binned.negatives.sum(0)))
