"""The metrics of a whole set of bags from their part folders, equal to evaluating all their frames in one
process: the pixel counts are integers summed bag by bag (``PixelCountsBuilder``), the component lists
joined in bag order.  A few frames are in memory at a time, and every bag's OoD scores."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from gradunc_ros.evaluation.metrics import (
    PixelCountsBuilder,
    component_figures,
    component_lists,
    metrics_from_counts,
    strictly_above,
)

from .results import LABELLED, OOD_SCORES

CHUNK = 8  # labelled frames loaded at a time


def _labelled_chunks(part: Path) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """A part's labelled frames, ``CHUNK`` at a time, as (scores, labels)."""
    files = sorted((part / LABELLED).glob("*.npz"))
    for start in range(0, len(files), CHUNK):
        scores, labels = [], []
        for file in files[start : start + CHUNK]:
            with np.load(file) as arrays:
                scores.append(arrays["score"])
                labels.append(arrays["label"])
        yield scores, labels


def merged_metrics(parts: Sequence[Path], min_pred: int, min_gt: int, beat: Callable[[], None] = lambda: None) -> dict:
    """``pixel`` and ``component`` (as ``component_metrics``: at the set's best-F1 threshold) of the
    labelled frames of these bags' parts, or ``metrics_error`` where they are undefined; {} without any
    labelled frame.  ``beat`` is called after each chunk of frames (a task's sign of life)."""
    parts = [part for part in parts if any((part / LABELLED).glob("*.npz"))]
    if not parts:
        return {}
    try:
        builder = PixelCountsBuilder([np.load(part / OOD_SCORES) for part in parts])
        for part in parts:
            for scores, labels in _labelled_chunks(part):
                builder.add(scores, labels)
                beat()
        pixel = metrics_from_counts(builder.result())
    except ValueError as error:  # e.g. no OoD pixel in any labelled frame
        return {"metrics_error": str(error)}
    threshold = strictly_above(pixel["best_f1_threshold"])
    siou: list[float] = []
    ppv: list[float] = []
    for part in parts:
        for scores, labels in _labelled_chunks(part):
            chunk_siou, chunk_ppv = component_lists(scores, labels, threshold, min_pred, min_gt)
            beat()
            siou += chunk_siou
            ppv += chunk_ppv
    return {"pixel": pixel, "component": component_figures(siou, ppv, threshold)}
