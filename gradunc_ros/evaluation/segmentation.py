"""In-distribution segmentation quality: confusion matrix and IoU."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..imageio import read_label, read_rgb
from .datasets import CAMVID_TRAIN_TARGETS, IGNORE, Frame


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """num_classes x num_classes counts (rows: target, columns: prediction); IGNORE targets skipped."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    keep = target != IGNORE
    t = target[keep].astype(np.int64)
    p = prediction[keep].astype(np.int64)
    for name, values in (("target", t), ("prediction", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds classes outside 0..{num_classes - 1}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class; nan for a class absent from both target and prediction."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def miou_over_frames(
    frames: Sequence[Frame],
    predict_labels: Callable[[np.ndarray], np.ndarray],
    num_classes: int,
    targets: np.ndarray = CAMVID_TRAIN_TARGETS,
    progress: Callable[[Sequence[Frame]], Sequence[Frame]] = lambda frames: frames,
) -> tuple[float, list[float]]:
    """Mean IoU and per-class IoU over frames, pooled over all pixels.

    ``predict_labels`` maps an RGB image to H x W class ids at the image's
    resolution; ``targets`` maps raw label ids to scored ids (IGNORE to skip).
    """
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for frame in progress(frames):
        if frame.label is None:
            raise FileNotFoundError(f"frame {frame.name} has no label image")
        confusion += confusion_matrix(
            predict_labels(read_rgb(frame.image)), targets[read_label(frame.label)], num_classes
        )
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)), [float(v) for v in ious]
