"""Choosing the node's OoD threshold (mask: ``score > threshold``) and the scale of its confidence image.

The confidence image (``geometry/obstacles.py``) maps a score s to
``P(OoD | s) = 1 / (1 + exp(-(s - t) / scale))`` with t the threshold, so
that the mask (s > t) and the image agree (128 at the threshold).  The scale
is fitted by maximum likelihood on labelled pixels (Platt's scaling with the
centre held at the threshold): then confidence / 255 is a calibrated
probability, as far as the calibration set speaks for the scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


FLOAT32_STEPS = 64  # a scale within this many float32 steps of the threshold is rounding, not a slope
CONFIDENCE_PIXELS = 400_000  # labelled pixels per score setting the scale is fitted on, drawn evenly from every frame


def fit_confidence_scale(scores: np.ndarray, is_ood: np.ndarray, threshold: float) -> float:
    """The scale of ``P(OoD | s) = 1 / (1 + exp(-(s - threshold) / scale))`` of greatest likelihood for these
    pixels (``is_ood`` 1 or True for OoD, 0 for in-distribution); ValueError when it has no finite optimum:
    a class missing, a score that does not rise with OoD, pixels that change class at the threshold as a
    step (the likelihood grows without bound as the scale shrinks), or a score that varies around the
    threshold only in float32 rounding steps (a scale of a few of them: seen, 1e-8 at -0.118)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(is_ood).ravel().astype(np.float64)
    keep = np.isfinite(s)
    x, sign = s[keep] - threshold, 2 * y[keep] - 1
    if not ((sign > 0).any() and (sign < 0).any()):
        raise ValueError("the confidence scale needs OoD and in-distribution pixels with finite scores")
    if np.sum(sign * x) <= 0:  # the log-likelihood's slope at 0: the score does not rise with OoD
        raise ValueError("the score does not rise with OoD on these pixels: no confidence scale fits")

    def log_likelihood(beta: float) -> float:
        return -float(np.sum(np.logaddexp(0.0, -sign * beta * x)))

    spread = float(np.std(x))
    beta = 1.0 / spread  # the inverse scale: the log-likelihood is concave in it, so Newton with a line search
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(sign * beta * x, -500, 500)))  # the probability of the pixel's class
        gradient, curvature = float(np.sum((1 - p) * sign * x)), float(np.sum(p * (1 - p) * x * x))
        if curvature <= 0:
            break
        step, before = gradient / curvature, log_likelihood(beta)
        while beta + step <= 0 or log_likelihood(beta + step) < before:  # halve a step that overshoots
            step /= 2
            if abs(step) <= 1e-12 * beta:
                break
        beta += step
        if abs(gradient) <= 1e-9 * curvature * beta:  # the Newton step is a billionth of beta: converged
            if 1.0 / beta < 1e-3 * spread:
                break  # an optimum so sharp the pixels are as good as separated
            if 1.0 / beta < FLOAT32_STEPS * float(np.spacing(np.float32(abs(threshold)))):
                raise ValueError(
                    "the score changes around the threshold in float32 rounding steps only: no confidence scale "
                    f"fits (the optimum {1.0 / beta:.3g} is within {FLOAT32_STEPS} of them)"
                )
            return 1.0 / beta
    raise ValueError(
        "the pixels change class at the threshold as a step (no finite confidence scale: the likelihood grows "
        "as the scale shrinks)"
    )


def calibration_error(p_ood: np.ndarray, is_ood: np.ndarray, bins: int = 10) -> float:
    """The expected calibration error of predicted OoD probabilities: over ``bins`` equal-width bins of p, the
    pixel-weighted mean of |mean p - share OoD|."""
    p = np.asarray(p_ood, np.float64).ravel()
    y = np.asarray(is_ood, np.float64).ravel()
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / max(counts.sum(), 1))


def _labelled_pixels(labels: Sequence[np.ndarray], per_frame: int) -> list[np.ndarray]:
    """Per frame, the flat indices of up to ``per_frame`` of its labelled pixels (label 0 or 1), drawn
    uniformly (seeded: the same pixels every call)."""
    rng, drawn = np.random.default_rng(0), []
    for label in labels:
        where = np.flatnonzero(label.ravel() <= 1)
        drawn.append(rng.choice(where, per_frame, replace=False) if where.size > per_frame else where)
    return drawn


@dataclass(frozen=True)
class Calibration:
    """Per score setting name: the threshold and, where OoD labels were given, the confidence scale."""

    thresholds: dict[str, float] = field(default_factory=dict)
    confidence_scales: dict[str, float] = field(default_factory=dict)


def calibrate(
    pipeline,
    dataset,
    settings: Sequence,
    target_fpr: float | None = None,
    max_frames: int | None = None,
    group: int = 12,
    progress: Callable = lambda items, **_: items,
) -> Calibration:
    """A threshold per score setting (``HeadSettings.name``): the best pixel F1 on the labelled frames, or
    with ``target_fpr`` the lowest flagging at most that share of in-distribution pixels; with the best F1
    also the confidence scale (``fit_confidence_scale``, on CONFIDENCE_PIXELS drawn evenly) where one fits.
    Scores are computed ``group`` settings at a time (one forward pass per frame and group), so that memory
    holds ``group`` score maps per frame, not one per setting."""
    from ..imageio import read_rgb

    frames = dataset.frames[:max_frames]
    thresholds: dict[str, float] = {}
    scales: dict[str, float] = {}
    per_frame = max(CONFIDENCE_PIXELS // max(len(frames), 1), 1)
    for start in range(0, len(settings), group):
        chunk = list(settings[start : start + group])
        scores: dict[str, list[np.ndarray]] = {one.name: [] for one in chunk}
        labels = []
        for frame in progress(frames, desc=f"scores {start + 1}-{start + len(chunk)} of {len(settings)}"):
            prediction = pipeline.predict_batch([read_rgb(frame.image)], extra_scores=chunk)[0]
            label = dataset.labels(frame) if frame.label is not None else None
            labels.append(label if label is not None else np.zeros(prediction.score.shape, np.uint8))
            for one in chunk:
                scores[one.name].append(prediction.scores[one.name])
        if target_fpr is None:  # the pixels the scales are fitted on: the same for every setting
            drawn = _labelled_pixels(labels, per_frame)
            is_ood = np.concatenate([lab.ravel()[where] == 1 for lab, where in zip(labels, drawn, strict=True)])
        for name, maps in scores.items():
            if target_fpr is None:
                thresholds[name] = best_f1_threshold(maps, labels)
                sample = np.concatenate([s.ravel()[where] for s, where in zip(maps, drawn, strict=True)])
                try:
                    scales[name] = fit_confidence_scale(sample, is_ood, thresholds[name])
                except ValueError:  # e.g. a best-F1 threshold that flags every pixel: the node falls back to 1
                    pass
            else:
                in_distribution = [s[lab == 0] for s, lab in zip(maps, labels, strict=True)]
                thresholds[name] = threshold_for_false_positive_rate(in_distribution, target_fpr)
    return Calibration(thresholds, scales)
