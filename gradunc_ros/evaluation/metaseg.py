"""Segment-wise prediction quality, the MetaSeg protocol (docs/method.md, section 4).

Segments are connected components (8-connectivity) of equal predicted
class.  Each segment gets features: its size, inner and boundary sizes
(inner pixels have all 8 neighbours in the segment), their ratios, and the
mean and variance of a heat map over the segment, its inner and its
boundary pixels.  The target is MetaSeg's adjusted IoU with the ground
truth.  A logistic regression separates segments with IoU 0 from the
rest (AuROC) and a linear regression predicts the IoU (R^2), over 5 random
80/20 splits with z-scored features.  Void pixels count in no size.
"""

from __future__ import annotations

import cv2
import numpy as np

from .datasets import IGNORE
from .metrics import pixel_metrics


def segment_ids(prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H x W segment id map 0..S-1, predicted class of each segment)."""
    ids = np.zeros(prediction.shape, dtype=np.int64)
    classes, offset = [], 0
    for c in np.unique(prediction):
        count, components = cv2.connectedComponents((prediction == c).astype(np.uint8), connectivity=8)
        mask = components > 0
        ids[mask] = components[mask] - 1 + offset
        classes += [int(c)] * (count - 1)
        offset += count - 1
    return ids, np.asarray(classes, dtype=np.int64)


def inner_mask(ids: np.ndarray) -> np.ndarray:
    """Pixels whose 8 neighbours lie in the same segment (image borders count as outside)."""
    padded = np.pad(ids, 1, constant_values=-1)
    h, w = ids.shape
    inner = np.ones(ids.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inner &= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == ids
    return inner


def adjusted_iou(ids: np.ndarray, classes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MetaSeg's IoU_adj of each segment: ground truth of the segment's class that lies in other
    segments of the same class does not count against it."""
    segments = classes.size
    valid = target != IGNORE
    size = np.bincount(ids[valid], minlength=segments).astype(np.float64)
    hit = valid & (target == classes[ids])  # segment pixels on ground truth of their own class
    intersection = np.bincount(ids[hit], minlength=segments).astype(np.float64)
    union_extra = np.zeros(segments)  # |K'| - |K' in other same-class segments| - |k & K'|, per segment
    for c in np.unique(classes):
        count, gt = cv2.connectedComponents((target == c).astype(np.uint8), connectivity=8)
        if count <= 1:
            continue
        gt_size = np.bincount(gt.ravel(), minlength=count)
        predicted_c = classes[ids] == c
        in_class_segments = np.bincount(gt[predicted_c], minlength=count)
        of_class = predicted_c & (gt > 0)
        pairs = np.unique(ids[of_class] * count + gt[of_class])
        # A touching component's pixels outside every segment of class c are misses of this segment.
        np.add.at(union_extra, pairs // count, (gt_size - in_class_segments)[pairs % count])
    denominator = size + union_extra
    return np.where(denominator > 0, intersection / np.maximum(denominator, 1), 0.0)


def segment_features(ids: np.ndarray, heat_maps: dict[str, np.ndarray], valid: np.ndarray) -> np.ndarray:
    """One row per segment: sizes and ratios, then mean and variance of each heat map over
    the segment, its inner and its boundary pixels."""
    segments = int(ids.max()) + 1
    inner = inner_mask(ids) & valid
    boundary = ~inner & valid
    columns = []
    counts = {}
    for name, region in (("all", valid), ("inner", inner), ("boundary", boundary)):
        counts[name] = np.bincount(ids[region], minlength=segments).astype(np.float64)
    columns += [counts["all"], counts["inner"], counts["boundary"]]
    columns += [counts["all"] / np.maximum(counts["boundary"], 1), counts["inner"] / np.maximum(counts["boundary"], 1)]
    for heat in heat_maps.values():
        heat = np.nan_to_num(heat.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        for name, region in (("all", valid), ("inner", inner), ("boundary", boundary)):
            n = np.maximum(counts[name], 1)
            mean = np.bincount(ids[region], weights=heat[region], minlength=segments) / n
            square = np.bincount(ids[region], weights=heat[region] ** 2, minlength=segments) / n
            columns += [mean, np.maximum(square - mean**2, 0.0)]
    return np.stack(columns, axis=1)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((x.shape[0], 1)), x])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 100) -> np.ndarray:
    """Newton-Raphson for L2-regularised logistic regression (intercept not penalised)."""
    x = _with_intercept(x)
    weights = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ weights, -30, 30)))
        gradient = x.T @ (p - y) + penalty * weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights


def meta_scores(features: np.ndarray, iou: np.ndarray, splits: int = 5, seed: int = 0) -> dict[str, float]:
    """Meta classification AuROC (IoU = 0 or not) and meta regression R^2, mean and std over splits."""
    rng = np.random.default_rng(seed)
    aurocs, r2s = [], []
    zero = (iou == 0).astype(np.float64)
    for _ in range(splits):
        order = rng.permutation(iou.size)
        cut = int(0.8 * iou.size)
        train, test = order[:cut], order[cut:]
        x_train, x_test = _standardise(features[train], features[test])
        if 0 < zero[train].mean() < 1 and 0 < zero[test].mean() < 1:
            logits = _with_intercept(x_test) @ fit_logistic(x_train, zero[train])
            aurocs.append(pixel_metrics([logits[None]], [zero[test][None].astype(np.uint8)])["auroc"])
        coefficients, *_ = np.linalg.lstsq(_with_intercept(x_train), iou[train], rcond=None)
        residual = iou[test] - _with_intercept(x_test) @ coefficients
        total = np.sum((iou[test] - iou[test].mean()) ** 2)
        r2s.append(1.0 - np.sum(residual**2) / total if total > 0 else float("nan"))
    nan = float("nan")
    return {
        "meta_auroc": float(np.mean(aurocs)) if aurocs else nan,
        "meta_auroc_std": float(np.std(aurocs)) if aurocs else nan,
        "meta_r2": float(np.nanmean(r2s)) if r2s else nan,
        "meta_r2_std": float(np.nanstd(r2s)) if r2s else nan,
        "segments": int(iou.size),
    }
