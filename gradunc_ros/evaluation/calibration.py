"""Choosing the node's OoD threshold (mask: ``score > threshold``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def calibrate_thresholds(
    pipeline,
    dataset,
    settings: Sequence,
    target_fpr: float | None = None,
    max_frames: int | None = None,
    group: int = 12,
    progress: Callable = lambda items, **_: items,
) -> dict[str, float]:
    """A threshold per score setting (``HeadSettings.name``): the best pixel F1 on the labelled frames, or
    with ``target_fpr`` the lowest flagging at most that share of in-distribution pixels.  Scores are
    computed ``group`` settings at a time (one forward pass per frame and group), so that memory holds
    ``group`` score maps per frame, not one per setting."""
    from ..imageio import read_rgb

    frames = dataset.frames[:max_frames]
    thresholds: dict[str, float] = {}
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
        for name, maps in scores.items():
            if target_fpr is None:
                thresholds[name] = best_f1_threshold(maps, labels)
            else:
                in_distribution = [s[lab == 0] for s, lab in zip(maps, labels, strict=True)]
                thresholds[name] = threshold_for_false_positive_rate(in_distribution, target_fpr)
    return thresholds
