"""From a score map to the OoD obstacle mask the node publishes (mono8, 0 or 255)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskSettings:
    """threshold: a pixel is OoD where score > threshold (the score's own scale).
    roi_classes: if not empty, only pixels predicted as one of these classes (e.g. road), after
    dilating that region by roi_dilation pixels so that objects standing on it are included.
    min_area: connected components (8-connectivity) smaller than this many pixels are removed."""

    threshold: float = 0.0
    roi_classes: tuple[int, ...] = ()
    roi_dilation: int = 0
    min_area: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        if self.roi_dilation < 0 or self.min_area < 0:
            raise ValueError("roi_dilation and min_area must not be negative")
        if any(c < 0 for c in self.roi_classes):
            raise ValueError("roi_classes must be class ids >= 0")


def region_of_interest(labels: np.ndarray, classes: Sequence[int], dilation: int) -> np.ndarray:
    """Pixels predicted as one of ``classes``, dilated by ``dilation`` pixels (a disc)."""
    region = np.isin(labels, np.asarray(classes)).astype(np.uint8)
    if dilation > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        region = cv2.dilate(region, disc)
    return region.astype(bool)


def ood_mask(score: np.ndarray, labels: np.ndarray, settings: MaskSettings) -> np.ndarray:
    """H x W uint8, 255 where the pixel is out-of-distribution, else 0."""
    mask = score > settings.threshold
    if settings.roi_classes:
        mask &= region_of_interest(labels, settings.roi_classes, settings.roi_dilation)
    mask = mask.astype(np.uint8)
    if settings.min_area > 1 and mask.any():
        count, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= settings.min_area
        keep[0] = False  # background
        mask = keep[components].astype(np.uint8)
    return mask * 255
