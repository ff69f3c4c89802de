"""The metrics of a whole set of bags from their part folders, equal to evaluating all their frames in one
process: the pixel counts are integers summed bag by bag (``PixelCountsBuilder``), the component lists
joined in order.  One bag's frames are in memory at a time, and every bag's OoD scores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from gradunc_ros.evaluation.metrics import (
    PixelCountsBuilder,
    component_figures,
    component_lists,
    metrics_from_counts,
    strictly_above,
)

from .results import LABELLED


def _frames(part: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(part / LABELLED) as arrays:
        count = arrays["stamps"].size
        return [arrays[f"score_{k}"] for k in range(count)], [arrays[f"label_{k}"] for k in range(count)]


def _with_frames(parts: Sequence[Path]) -> Iterator[Path]:
    for part in parts:
        with np.load(part / LABELLED) as arrays:
            if arrays["stamps"].size:
                yield part


def merged_metrics(parts: Sequence[Path], min_pred: int, min_gt: int) -> dict:
    """``pixel`` and ``component`` (as ``component_metrics``: at the set's best-F1 threshold) of the
    labelled frames of these bags' parts, or ``metrics_error`` where they are undefined."""
    parts = list(_with_frames(parts))
    if not parts:
        return {}
    try:
        ood = []
        for part in parts:
            with np.load(part / LABELLED) as arrays:
                ood.append(arrays["ood_scores"])
        builder = PixelCountsBuilder(ood)
        for part in parts:
            builder.add(*_frames(part))
        pixel = metrics_from_counts(builder.result())
    except ValueError as error:  # e.g. no OoD pixel in any labelled frame
        return {"metrics_error": str(error)}
    threshold = strictly_above(pixel["best_f1_threshold"])
    siou: list[float] = []
    ppv: list[float] = []
    for part in parts:
        bag_siou, bag_ppv = component_lists(*_frames(part), threshold, min_pred, min_gt)
        siou += bag_siou
        ppv += bag_ppv
    return {"pixel": pixel, "component": component_figures(siou, ppv, threshold)}
