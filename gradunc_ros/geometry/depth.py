"""Depth images in metres, REP 118: 16UC1 in millimetres or 32FC1 in metres; invalid depth is NaN.

Invalid: 0 (no return), NaN, +-inf, negative values.  Values outside the
range limits are NaN as well, so every later step treats them alike.
"""

from __future__ import annotations

import numpy as np

from .intrinsics import GeometryError

DEPTH_ENCODINGS = ("16UC1", "32FC1", "mono16")  # mono16 is 16UC1 under another name (openni drivers)


def depth_in_metres(array: np.ndarray, encoding: str, min_range: float = 0.0, max_range: float = np.inf) -> np.ndarray:
    """H x W float32 metres, NaN where the depth is invalid or outside [min_range, max_range]."""
    if encoding not in DEPTH_ENCODINGS:
        raise GeometryError(f"depth encoding {encoding!r} is not one of {', '.join(DEPTH_ENCODINGS)} (REP 118)")
    if array.ndim != 2:
        raise GeometryError(f"a depth image has one channel, got shape {array.shape}")
    if encoding == "32FC1":
        metres = array.astype(np.float32, copy=True)
    else:
        metres = array.astype(np.float32) * np.float32(0.001)
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(metres) | (metres <= 0) | (metres < min_range) | (metres > max_range)
    metres[invalid] = np.nan
    return metres
