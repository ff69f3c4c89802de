"""Run a pipeline over an OoD data set and score every requested uncertainty map.

All scores of a frame come from one forward pass (``HeadSettings`` list
through ``SegmentationPipeline.predict_batch(extra_scores=...)``).  Scores
are kept in memory per frame (float32) for the exact pooled metrics: plan
on 4 bytes per pixel per score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..pipeline import SegmentationPipeline
from ..uncertainty import HeadSettings
from .datasets import IGNORE, OodDataset, read_rgb
from .indistribution import CalibrationBins, brier_error, misclassification_auroc, sparsification
from .metaseg import adjusted_iou, meta_scores, segment_features, segment_ids
from .metrics import PixelCounts, component_metrics, metrics_from_counts, pixel_counts
from .segmentation import confusion_matrix, iou_per_class


@dataclass
class Evaluation:
    """What one run produced: per-score metrics and the data behind the plots."""

    dataset: str
    frames: int
    scores: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, PixelCounts] = field(default_factory=dict)
    in_distribution: dict = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    histograms: dict[str, dict] = field(default_factory=dict)


def _histogram(score_maps: list[np.ndarray], labels: list[np.ndarray], bins: int = 60) -> dict:
    values = np.concatenate([s[lab != IGNORE] for s, lab in zip(score_maps, labels, strict=True)])
    kinds = np.concatenate([lab[lab != IGNORE] for lab in labels])
    finite = np.isfinite(values)
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    return {
        "edges": edges.tolist(),
        "in_distribution": np.histogram(values[finite & (kinds == 0)], edges)[0].tolist(),
        "ood": np.histogram(values[finite & (kinds == 1)], edges)[0].tolist(),
    }


def evaluate(
    pipeline: SegmentationPipeline,
    dataset: OodDataset,
    settings: Sequence[HeadSettings],
    max_frames: int | None = None,
    examples: int = 4,
    progress: Callable = lambda items, **_: items,
) -> Evaluation:
    """Pixel and component OoD metrics per score; with semantic labels also mIoU, ECE,
    misclassification AuROC, AuSE and segment-wise quality (MetaSeg features: segment sizes and
    the statistics of that one score)."""
    frames = dataset.frames[:max_frames]
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError("each score may be asked for once")
    maps: dict[str, list[np.ndarray]] = {name: [] for name in names}
    ood_labels, predictions, targets, errors, segment_iou = [], [], [], [], []
    segment_rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    semantic = dataset.semantic_targets
    num_classes = len(pipeline.loaded.class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    calibration = CalibrationBins()
    result = Evaluation(dataset=dataset.name, frames=len(frames))
    example_every = max(1, len(frames) // max(1, examples))
    for index, frame in enumerate(progress(frames, desc="frames", unit="frame")):
        image = read_rgb(frame.image)
        prediction = pipeline.predict_batch([image], keep_logits=semantic is not None, extra_scores=settings)[0]
        raw = dataset.raw_labels(frame)
        labels = dataset.ood_labels[raw]
        if labels.shape != image.shape[:2]:
            raise ValueError(f"frame {frame.name}: label {labels.shape} and image {image.shape[:2]} differ in size")
        ood_labels.append(labels)
        for name in names:
            maps[name].append(prediction.scores[name])
        if semantic is not None:
            target = semantic[raw]
            probs = torch.softmax(torch.from_numpy(prediction.logits), dim=0).numpy()
            confusion += confusion_matrix(prediction.labels, target, num_classes)
            calibration.add(probs.max(axis=0), prediction.labels, target)
            predictions.append(prediction.labels)
            targets.append(target)
            errors.append(brier_error(probs, target).astype(np.float32))
            ids, classes = segment_ids(prediction.labels)
            valid = target != IGNORE
            kept = np.bincount(ids[valid], minlength=classes.size) > 0  # segments wholly in void are dropped
            segment_iou.append(adjusted_iou(ids, classes, target)[kept])
            for name in names:
                segment_rows[name].append(segment_features(ids, {name: prediction.scores[name]}, valid)[kept])
        if index % example_every == 0 and len(result.examples) < examples:
            result.examples.append(
                {"name": frame.name, "image": image, "labels": prediction.labels, "scores": prediction.scores,
                 "ood": labels}
            )  # fmt: skip
    if semantic is not None:
        ious = iou_per_class(confusion)
        result.in_distribution = {
            "miou": float(np.nanmean(ious)),
            "iou": dict(zip(pipeline.loaded.class_names, map(float, ious), strict=True)),
            "ece": calibration.ece(),
        }
        pooled_error = np.concatenate([e.ravel() for e in errors])
    for name in progress(names, desc="metrics", unit="score"):
        counts = pixel_counts(maps[name], ood_labels)
        metrics = metrics_from_counts(counts)
        metrics.update(component_metrics(maps[name], ood_labels, min_pred=dataset.min_pred, min_gt=dataset.min_gt))
        if semantic is not None:
            metrics["misclassification_auroc"] = misclassification_auroc(maps[name], predictions, targets)
            pooled = np.concatenate([m.ravel() for m in maps[name]])
            metrics["ause"] = sparsification(pooled, pooled_error)["ause"]
            metrics.update(meta_scores(np.concatenate(segment_rows[name]), np.concatenate(segment_iou)))
        result.scores[name] = metrics
        result.counts[name] = counts
        result.histograms[name] = _histogram(maps[name], ood_labels)
    return result
