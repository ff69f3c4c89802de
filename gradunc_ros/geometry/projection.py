"""Pixels with depth to points in the camera's optical frame (x right, y down, z forward), vectorised.

``x = (u - cx) z / fx``, ``y = (v - cy) z / fy`` for pixel column u and row
v (pixel centres), z the depth in metres.  Decimation keeps every n-th row
and column, starting at 0, before anything else: the count of candidate
pixels is ``ceil(H / n) * ceil(W / n)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .intrinsics import GeometryError, Intrinsics


@dataclass
class Points:
    """N points and what each pixel said: ``xyz`` N x 3 float32 metres, ``score`` N float32, ``label`` N int."""

    xyz: np.ndarray
    score: np.ndarray
    label: np.ndarray


def _grid(height: int, width: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(0, height, step, dtype=np.float32), np.arange(0, width, step, dtype=np.float32)


def check_aligned(depth: np.ndarray, shape: tuple[int, int]) -> None:
    if depth.shape != shape:
        raise GeometryError(
            f"depth image is {depth.shape[1]}x{depth.shape[0]}, the camera image {shape[1]}x{shape[0]}: the depth "
            "must be registered to the colour camera (depth_image_proc register)"
        )


def project_masked(
    depth_m: np.ndarray,
    mask: np.ndarray,
    score: np.ndarray,
    labels: np.ndarray,
    camera: Intrinsics,
    decimation: int = 1,
) -> Points:
    """The points of the pixels where ``mask`` is set and the depth is valid (``depth_in_metres``)."""
    if decimation < 1:
        raise GeometryError(f"decimation must be at least 1, got {decimation}")
    check_aligned(depth_m, mask.shape)
    camera.check_size(mask.shape[1], mask.shape[0], "the camera image")
    step = slice(None, None, decimation)
    z = depth_m[step, step]
    keep = (mask[step, step] > 0) & np.isfinite(z)
    rows, cols = np.nonzero(keep)
    z = z[rows, cols]
    v = rows.astype(np.float32) * decimation
    u = cols.astype(np.float32) * decimation
    xyz = np.empty((z.size, 3), np.float32)
    xyz[:, 0] = (u - camera.cx) * z / camera.fx
    xyz[:, 1] = (v - camera.cy) * z / camera.fy
    xyz[:, 2] = z
    return Points(xyz, score[step, step][rows, cols].astype(np.float32), labels[step, step][rows, cols])


def project_all(depth_m: np.ndarray, camera: Intrinsics, decimation: int = 1) -> np.ndarray:
    """h x w x 3 float32 points of every (decimated) pixel, NaN where the depth is invalid: an organised,
    pixel-aligned cloud (what the semantic segmentation costmap layer reads beside the label image)."""
    camera.check_size(depth_m.shape[1], depth_m.shape[0], "the depth image")
    rows, cols = _grid(*depth_m.shape, decimation)
    z = depth_m[::decimation, ::decimation]
    points = np.empty((*z.shape, 3), np.float32)
    points[..., 0] = (cols[None, :] - camera.cx) * z / camera.fx
    points[..., 1] = (rows[:, None] - camera.cy) * z / camera.fy
    points[..., 2] = z
    return points
