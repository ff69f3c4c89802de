"""Colour images for people: class colours over the camera image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def colourise(labels: np.ndarray, colours: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """H x W class ids to H x W x 3 uint8 RGB; ids without a colour are black."""
    table = np.zeros((max(256, len(colours)), 3), dtype=np.uint8)
    table[: len(colours)] = np.asarray(colours, dtype=np.uint8)
    return table[labels]


def blend(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``alpha`` of the colour image over the RGB camera image."""
    if image.shape != colour.shape:
        raise ValueError(f"image {image.shape} and colour {colour.shape} differ in shape")
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
