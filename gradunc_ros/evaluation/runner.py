"""Run a pipeline over an OoD data set and score every requested uncertainty map.

All scores of a frame come from one forward pass (``HeadSettings`` list
through ``SegmentationPipeline.predict_batch(extra_scores=...)``).  Scores
are kept in memory per frame (float32) for the exact pooled metrics: plan
on 4 bytes per pixel per score (and per gradient factor).

Beyond the metrics of each score: the factor report (each gradient score's
class factor ``||s - y||_p`` and input factor ``||input||_p`` scored alone,
and which way the input factor points on this model), and a frame bootstrap
of every score's AuPRC and of its ratio to the best softmax baseline
(``bootstrap.py``), from which the default score is chosen (``choose_default``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..imageio import read_rgb
from ..pipeline import SegmentationPipeline
from ..uncertainty import HeadSettings
from .bootstrap import BINS, DRAWS, SEED, bin_frames, bootstrap_auprc, frame_draws, full_set_auprc, interval
from .datasets import IGNORE, OodDataset
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
    factors: dict[str, dict] = field(default_factory=dict)  # gradient score (weights) name -> factor metrics
    bootstrap: dict = field(default_factory=dict)  # how the intervals were drawn
    default: dict = field(default_factory=dict)  # the score chosen as default, and why
    gradient_scores: set[str] = field(default_factory=set)


def _histogram(score_maps: list[np.ndarray], labels: list[np.ndarray], bins: int = 60) -> dict:
    values = np.concatenate([s[lab != IGNORE] for s, lab in zip(score_maps, labels, strict=True)])
    kinds = np.concatenate([lab[lab != IGNORE] for lab in labels])
    finite = np.isfinite(values)
    try:
        edges = np.histogram_bin_edges(values[finite], bins=bins)
    except ValueError:  # a (nearly) constant score, e.g. of a random model: one bin around it
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
        edges = np.array([low - 0.5, high + 0.5])
    return {
        "edges": edges.tolist(),
        "in_distribution": np.histogram(values[finite & (kinds == 0)], edges)[0].tolist(),
        "ood": np.histogram(values[finite & (kinds == 1)], edges)[0].tolist(),
    }


def _factor_settings(settings: Sequence[HeadSettings]) -> list[HeadSettings]:
    """One weights-gradient setting per (score, mode, p) of the last-layer gradient scores asked for."""
    wanted = {HeadSettings(s.score, s.p, s.mode): None for s in settings if s.is_gradient_score and s.layer == "last"}
    return list(wanted)


def evaluate(
    pipeline: SegmentationPipeline,
    dataset: OodDataset,
    settings: Sequence[HeadSettings],
    max_frames: int | None = None,
    examples: int = 4,
    progress: Callable = lambda items, **_: items,
    factors: bool = True,
    draws: int = DRAWS,
    seed: int = SEED,
    bins: int = BINS,
) -> Evaluation:
    """Pixel and component OoD metrics per score; with semantic labels also mIoU, ECE,
    misclassification AuROC, AuSE and segment-wise quality (MetaSeg features: segment sizes and
    the statistics of that one score).  With ``factors``, the factor report of the gradient
    scores; with ``draws`` > 0, bootstrap intervals of the AuPRC and the default choice."""
    frames = dataset.frames[:max_frames]
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError("each score may be asked for once")
    factor_settings = _factor_settings(settings) if factors else []
    maps: dict[str, list[np.ndarray]] = {name: [] for name in names}
    class_factors: dict[str, list[np.ndarray]] = {s.name: [] for s in factor_settings}
    input_factors: dict[float, list[np.ndarray]] = {s.p: [] for s in factor_settings}
    ood_labels, predictions, targets, errors, segment_iou = [], [], [], [], []
    segment_rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    semantic = dataset.semantic_targets
    num_classes = len(pipeline.loaded.class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    calibration = CalibrationBins()
    result = Evaluation(dataset=dataset.name, frames=len(frames))
    result.gradient_scores = {s.name for s in settings if s.is_gradient_score}
    example_every = max(1, len(frames) // max(1, examples))
    for index, frame in enumerate(progress(frames, desc="frames", unit="frame")):
        image = read_rgb(frame.image)
        prediction = pipeline.predict_batch(
            [image], keep_logits=semantic is not None, extra_scores=settings, factors=factor_settings
        )[0]
        raw = dataset.raw_labels(frame)
        labels = dataset.ood_labels[raw]
        if labels.shape != image.shape[:2]:
            raise ValueError(f"frame {frame.name}: label {labels.shape} and image {image.shape[:2]} differ in size")
        ood_labels.append(labels)
        for name in names:
            maps[name].append(prediction.scores[name])
        for one in factor_settings:
            class_part, input_part = prediction.factors[one.name]
            class_factors[one.name].append(class_part)
            if len(input_factors[one.p]) == index:  # the same for every score of this p
                input_factors[one.p].append(input_part)
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
    weights = frame_draws(len(frames), draws, seed) if draws else None
    binning_errors, draws_of = [], {}
    for name in progress(names, desc="metrics", unit="score"):
        counts = pixel_counts(maps[name], ood_labels)
        metrics = metrics_from_counts(counts)
        metrics.update(component_metrics(maps[name], ood_labels, min_pred=dataset.min_pred, min_gt=dataset.min_gt))
        if semantic is not None:
            metrics["misclassification_auroc"] = misclassification_auroc(maps[name], predictions, targets)
            pooled = np.concatenate([m.ravel() for m in maps[name]])
            metrics["ause"] = sparsification(pooled, pooled_error)["ause"]
            metrics.update(meta_scores(np.concatenate(segment_rows[name]), np.concatenate(segment_iou)))
        if weights is not None:
            binned = bin_frames(maps[name], ood_labels, bins)
            draws_of[name] = bootstrap_auprc(binned, weights)
            metrics["auprc_ci95"] = interval(draws_of[name])
            binning_errors.append(abs(full_set_auprc(binned) - metrics["auprc"]))
        result.scores[name] = metrics
        result.counts[name] = counts
        result.histograms[name] = _histogram(maps[name], ood_labels)
        maps[name] = []  # the maps are no longer needed: free them as we go
    for one in progress(factor_settings, desc="factors", unit="score"):
        result.factors[one.name] = _factor_metrics(class_factors.pop(one.name), input_factors[one.p], ood_labels)
    if weights is not None:
        result.bootstrap = _ratios(result, draws_of, draws, seed, bins, max(binning_errors, default=0.0))
        result.default = choose_default(result.scores, result.gradient_scores)
    return result


def _ood_metrics(score_maps: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    metrics = metrics_from_counts(pixel_counts(score_maps, labels))
    return {key: metrics[key] for key in ("auprc", "auroc", "fpr95")}


def _factor_metrics(class_maps: list[np.ndarray], input_maps: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    """The class and input factors scored alone (high = OoD), and which way the input factor points."""
    input_high = _ood_metrics(input_maps, labels)
    points = "high = OoD" if input_high["auroc"] >= 0.5 else "low = OoD"
    report = {"class_factor": _ood_metrics(class_maps, labels), "input_factor": input_high, "input_points": points}
    if points == "low = OoD":
        report["input_factor_negated"] = _ood_metrics([-m for m in input_maps], labels)
    return report


def _ratios(result: Evaluation, draws_of: dict[str, np.ndarray], draws: int, seed: int, bins: int, error: float):
    """Each score's AuPRC over the best softmax baseline's (by point AuPRC), draw by draw."""
    baselines = [name for name in result.scores if name not in result.gradient_scores]
    if not baselines:
        return {"draws": draws, "seed": seed, "bins": bins, "largest_binning_error": error}
    best = max(baselines, key=lambda name: result.scores[name]["auprc"])
    for name, metrics in result.scores.items():
        metrics["auprc_ratio_to_best_softmax"] = metrics["auprc"] / result.scores[best]["auprc"]
        with np.errstate(invalid="ignore", divide="ignore"):
            metrics["ratio_ci95"] = interval(draws_of[name] / draws_of[best])
    return {"draws": draws, "seed": seed, "bins": bins, "best_softmax": best, "largest_binning_error": error}


DEFAULT_RULE = (
    "the best AuPRC on this set; a gradient score instead when its AuPRC reaches the lower end of the best "
    "score's 95 % bootstrap interval (the tie-break favours the method this package is for)"
)


def choose_default(scores: dict[str, dict], gradient_scores: set[str]) -> dict:
    """The default score by DEFAULT_RULE, from metrics with ``auprc_ci95``."""
    best = max(scores, key=lambda name: scores[name]["auprc"])
    low = scores[best]["auprc_ci95"][0]
    qualifying = sorted(
        (name for name in gradient_scores if scores[name]["auprc"] >= low), key=lambda name: -scores[name]["auprc"]
    )
    chosen = best if best in gradient_scores or not qualifying else qualifying[0]
    return {
        "score": chosen,
        "best": best,
        "rule": DEFAULT_RULE,
        "auprc": scores[chosen]["auprc"],
        "auprc_ci95": scores[chosen]["auprc_ci95"],
        "fpr95": scores[chosen]["fpr95"],
        "best_auprc_ci95": scores[best]["auprc_ci95"],
        "gradient_scores_within_interval": qualifying,
    }
