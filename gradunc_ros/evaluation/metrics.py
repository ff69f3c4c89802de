"""OoD segmentation metrics as the SegmentMeIfYouCan benchmark defines them (docs/method.md, section 3).

Pixel level, pooled over a data set, exact (no binning) and tie-aware:
every distinct score is a threshold, and all pixels sharing a score move
together.  Memory stays at one frame's worth of temporaries beyond the
inputs: the (rare) OoD scores are gathered and sorted once, and the
in-distribution pixels are counted per frame against them.

- ``auprc``: average precision as the step sum
  ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (as scikit-learn's
  ``average_precision_score``; the older benchmark code used a trapezoid);
- ``auroc``: trapezoid of TPR over FPR, computed exactly as the
  Mann-Whitney statistic ``P(s_ood > s_in) + P(s_ood = s_in) / 2``;
- ``fpr95``: FPR at the first (highest) threshold whose TPR reaches 0.95;
- ``best_f1_threshold``: the threshold maximising ``2TP / (2TP + FP + FN)``,
  for the mask ``score >= threshold``.

Labels per pixel: 0 in-distribution, 1 OoD, 255 void (excluded everywhere).
Scores: higher = more anomalous.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

VOID = 255
# The benchmark's own taus, unrounded: its 8th is 0.6000000000000001, so an sIoU or PPV of exactly 0.6 is
# below it (road-anomaly-benchmark, segment-level metrics: np.linspace(0.25, 0.75, 11, endpoint=True)).
TAUS = tuple(float(t) for t in np.linspace(0.25, 0.75, 11, endpoint=True))


def _frames(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]):
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score maps but {len(labels)} label maps")
    for index, (score, label) in enumerate(zip(scores, labels, strict=True)):
        score, label = np.asarray(score), np.asarray(label)
        if score.shape != label.shape or score.ndim != 2:
            raise ValueError(f"frame {index}: score {score.shape} and labels {label.shape} must be equal 2-D shapes")
        unknown = ~np.isin(label, (0, 1, VOID))
        if unknown.any():
            raise ValueError(f"frame {index}: labels must be 0, 1 or 255, found {np.unique(label[unknown])[:5]}")
        if np.isnan(score[label != VOID]).any():
            raise ValueError(f"frame {index}: scores contain NaN")
        yield score, label


@dataclass(frozen=True)
class PixelCounts:
    """Counts at every distinct OoD score, thresholds from high to low (mask ``score >= threshold``)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    positives: int
    negatives: int
    auroc: float

    @property
    def recall(self) -> np.ndarray:
        return self.tp / self.positives

    @property
    def precision(self) -> np.ndarray:
        return self.tp / (self.tp + self.fp)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.negatives


class PixelCountsBuilder:
    """``pixel_counts`` in two phases, for data sets that never sit in memory at once (a fleet's bags).

    First every OoD score of the set (rare pixels: they are kept), then the in-distribution pixels of the
    frames in any grouping and order (``add``), e.g. one bag at a time.  The counts are integers, so the
    result is exactly ``pixel_counts`` of all the frames in one call.
    """

    def __init__(self, ood_scores: Sequence[np.ndarray]) -> None:
        parts = [np.asarray(part).ravel() for part in ood_scores]
        positive = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.float32)  # dtype kept: no new ties
        if positive.size == 0:
            raise ValueError("no OoD pixels (label 1): the pixel metrics are undefined")
        if np.isnan(positive).any():
            raise ValueError("OoD scores contain NaN")
        self._positives = int(positive.size)
        self.thresholds, first = np.unique(positive, return_index=True)  # ascending distinct OoD scores
        # OoD pixels scoring >= each threshold: all from the first occurrence on.
        self._tp = (positive.size - first).astype(np.float64)
        # OoD pixels scoring <= thresholds[j - 1], for j = 0..m (index 0: none).
        self._at_most = np.concatenate([first, [positive.size]])
        self._negatives_per_bin = np.zeros(self.thresholds.size + 1, dtype=np.int64)
        self._greater = self._ties = self._negatives = 0

    def _count_frame(self, frame: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, int, int, int]:
        score, label = frame
        negative = np.sort(np.asarray(score)[np.asarray(label) == 0])  # sorted keys: a fast search
        thresholds, at_most = self.thresholds, self._at_most
        # bin j = number of thresholds <= s: the negative counts as FP for thresholds 0..j-1.
        bins = np.searchsorted(thresholds, negative, side="right")
        # Mann-Whitney: OoD pixels above each negative, and half of those equal to it.
        below_or_equal = at_most[bins]
        previous = np.maximum(bins - 1, 0)
        below = np.where((bins > 0) & (thresholds[previous] == negative), at_most[previous], below_or_equal)
        greater = self._positives * negative.size - int(below_or_equal.sum(dtype=np.int64))
        ties = int((below_or_equal - below).sum(dtype=np.int64))
        return np.bincount(bins, minlength=thresholds.size + 1), greater, ties, negative.size

    def add(self, scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], checked: bool = False) -> None:
        """The in-distribution pixels of these frames (their OoD pixels were in ``ood_scores``);
        ``checked``: the frames passed ``ood_scores_of`` already."""
        frames = zip(scores, labels, strict=True) if checked else _frames(scores, labels)
        # NumPy's sort and search release the GIL: frames are counted on every core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for frame_bins, greater, ties, count in pool.map(self._count_frame, frames):
                self._negatives_per_bin += frame_bins
                self._greater, self._ties, self._negatives = (
                    self._greater + greater,
                    self._ties + ties,
                    self._negatives + count,
                )

    def result(self) -> PixelCounts:
        if self._negatives == 0:
            raise ValueError("no in-distribution pixels (label 0): the pixel metrics are undefined")
        fp = np.cumsum(self._negatives_per_bin[::-1])[::-1][1:].astype(np.float64)  # negatives >= thresholds[i]
        auroc_sum = self._greater + 0.5 * self._ties
        return PixelCounts(
            thresholds=self.thresholds[::-1],
            tp=self._tp[::-1],
            fp=fp[::-1],
            positives=self._positives,
            negatives=self._negatives,
            auroc=auroc_sum / (self._positives * self._negatives),
        )


def ood_scores_of(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The OoD pixels' scores of each frame (checked as every metric checks its frames)."""
    return [score[label == 1] for score, label in _frames(scores, labels)]


def pixel_counts(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> PixelCounts:
    """TP and FP at each distinct OoD score, and the exact AuROC, in two passes over the frames."""
    builder = PixelCountsBuilder(ood_scores_of(scores, labels))
    builder.add(scores, labels, checked=True)
    return builder.result()


def pixel_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """AuPRC, AuROC, FPR95, best F1 and its threshold over all non-void pixels of all frames."""
    return metrics_from_counts(pixel_counts(scores, labels))


def metrics_from_counts(counts: PixelCounts) -> dict[str, float]:
    recall, precision = counts.recall, counts.precision
    auprc = float(np.sum(np.diff(recall, prepend=0.0) * precision))
    reached = np.nonzero(recall >= 0.95 - 1e-12)[0]
    fpr95 = float(counts.fpr[reached[0]]) if reached.size else 1.0
    f1 = 2 * counts.tp / (counts.tp + counts.fp + counts.positives)
    best = int(np.argmax(f1))
    return {
        "auprc": auprc,
        "auroc": counts.auroc,
        "fpr95": fpr95,
        "best_f1": float(f1[best]),
        "best_f1_threshold": float(counts.thresholds[best]),
        "ood_pixels": counts.positives,
        "in_distribution_pixels": counts.negatives,
    }


def strictly_above(threshold: float) -> float:
    """The threshold d for which ``score > d`` selects exactly ``score >= threshold`` (float32 scores)."""
    return float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return count - 1, components  # component ids 1..count-1; 0 is background


def frame_components(
    score: np.ndarray, label: np.ndarray, threshold: float, min_pred: int, min_gt: int
) -> tuple[list[float], list[float]]:
    """sIoU of each ground-truth component and PPV of each predicted component in one frame.

    The order of operations is the benchmark's: components of the ground truth and of the
    prediction ``score > threshold`` (void removed) first; predicted components under
    ``min_pred`` pixels dropped; ground-truth components under ``min_gt`` pixels made void;
    then every count is taken inside the remaining region of interest.  (As in the benchmark,
    the size rule also applies to the background "component" 0, which only matters for frames
    smaller than ``min_gt`` pixels.)
    """
    gt_count, gt = _components(label == 1)
    pred_count, pred = _components((score > threshold) & (label != VOID))
    pred_sizes = np.bincount(pred.ravel(), minlength=pred_count + 1)
    pred = np.where(pred_sizes[pred] < min_pred, 0, pred)
    gt_sizes = np.bincount(gt.ravel(), minlength=gt_count + 1)
    roi = (label != VOID) & (gt_sizes[gt] >= min_gt)
    g, p = gt[roi], pred[roi]
    pred_area = np.bincount(p, minlength=pred_count + 1)  # inside the region of interest
    on_gt = np.bincount(p[g > 0], minlength=pred_count + 1)  # predicted pixels lying on any object
    siou = []
    for k in np.unique(g[g > 0]):
        component = g == k
        touching = np.unique(p[component])
        touching = touching[touching > 0]
        intersection = np.count_nonzero(component & (p > 0))
        union = int(pred_area[touching].sum())
        on_other_objects = int(on_gt[touching].sum()) - intersection
        siou.append(intersection / (union + np.count_nonzero(component) - intersection - on_other_objects))
    ppv = [on_gt[j] / pred_area[j] for j in np.unique(p[p > 0])]
    return siou, ppv


def component_metrics(
    scores: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    threshold: float | None = None,
    min_pred: int = 500,
    min_gt: int = 100,
) -> dict[str, float]:
    """Component-level sIoU, PPV and F1 over the taus 0.25..0.75 (SMIYC), pooled over frames.

    ``threshold`` defaults to just below the pixel-level best-F1 threshold,
    so that the predicted mask ``score > threshold`` is the best-F1 mask.  Defaults ``min_pred=500``,
    ``min_gt=100`` are RoadAnomaly21's (RoadObstacle21: 50 and 10).
    """
    frames = list(_frames(scores, labels))
    if threshold is None:  # the best-F1 mask (score >= t) as the benchmark's "score > d"
        best = pixel_metrics([s for s, _ in frames], [lab for _, lab in frames])["best_f1_threshold"]
        threshold = strictly_above(best)
    siou, ppv = component_lists([s for s, _ in frames], [lab for _, lab in frames], threshold, min_pred, min_gt)
    return component_figures(siou, ppv, threshold)


def component_lists(
    scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], threshold: float, min_pred: int, min_gt: int
) -> tuple[list[float], list[float]]:
    """The sIoU of every ground-truth component and the PPV of every predicted one, frame after frame:
    lists of several groups of frames, joined in order, are those of all the frames."""
    all_siou: list[float] = []
    all_ppv: list[float] = []
    for score, label in _frames(scores, labels):
        siou, ppv = frame_components(score, label, threshold, min_pred, min_gt)
        all_siou += siou
        all_ppv += ppv
    return all_siou, all_ppv


def component_figures(siou: Sequence[float], ppv: Sequence[float], threshold: float) -> dict[str, float]:
    """Mean sIoU and PPV, and F1 at each tau, of the pooled component lists."""
    siou_arr, ppv_arr = np.asarray(siou, dtype=np.float64), np.asarray(ppv, dtype=np.float64)
    f1 = {}
    for tau in TAUS:
        tp = int(np.count_nonzero(siou_arr >= tau))
        fn = siou_arr.size - tp
        fp = int(np.count_nonzero(ppv_arr < tau))
        f1[f"{tau:.2f}"] = 2 * tp / (2 * tp + fn + fp) if (tp + fn + fp) else 0.0
    return {
        "siou": float(siou_arr.mean()) if siou_arr.size else 0.0,
        "ppv": float(ppv_arr.mean()) if ppv_arr.size else 0.0,
        "f1_mean": float(np.mean(list(f1.values()))),
        "f1_per_tau": f1,
        "threshold": float(threshold),
        "gt_components": int(siou_arr.size),
        "predicted_components": int(ppv_arr.size),
    }
