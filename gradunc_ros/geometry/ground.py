"""Without depth: where each OoD component touches a flat ground, from the camera's height and pitch.

The camera's optical frame (x right, y down, z forward) is ``height`` metres
above a flat ground and pitched down by ``pitch`` radians (no roll); the
world's up direction is then ``(0, -cos(pitch), -sin(pitch))`` in that frame.
The ray of pixel (u, v), ``d = ((u - cx)/fx, (v - cy)/fy, 1)``, meets the ground
at ``t d`` with ``t = height / (cos(pitch) d_y + sin(pitch))``, where that is
positive (below the horizon).

Per OoD component, its footprint is, in each of its columns, its lowest pixel
(the largest row): where an object standing on the ground meets it.  The
footprint is lifted by ``obstacle_height`` along up, so that an obstacle
layer's ``min_obstacle_height`` filter keeps it.

Failure modes, by construction: an object that does not touch the ground in
the image (hanging, or cut off by the image's lower edge, or hidden behind a
nearer one) is placed where its lowest visible pixel's ray meets the ground,
farther than it is; a slope or a wrong pitch moves every point, more the
farther it is (with the camera 1 m high, a point seen at 10 m lands at 12.1 m
when the configured pitch is 1 degree shallower than the camera's, at 8.5 m
when it is 1 degree steeper); and a ground-plane projection marks what is seen at
each frame, so a mask that shifts from frame to frame smears obstacles across
the costmap (reported for Nav2's ground projection, navigation2 PR 3042):
keep the obstacle layer's clearing on, and prefer depth where there is one.
"""

from __future__ import annotations

import cv2
import numpy as np

from .intrinsics import GeometryError, Intrinsics


def footprint_pixels(mask: np.ndarray, min_area: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of each 8-connected OoD component's lowest pixel per column; components smaller than
    ``min_area`` pixels are left out."""
    count, components, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, cols = np.nonzero(components)
    ids = components[rows, cols]
    keep = stats[ids, cv2.CC_STAT_AREA] >= max(min_area, 1)
    rows, cols, ids = rows[keep], cols[keep], ids[keep]
    # lowest pixel per (component, column): sort by key, take the last (largest row) of each group
    order = np.lexsort((rows, cols, ids))
    rows, cols, ids = rows[order], cols[order], ids[order]
    last = np.ones(rows.size, bool)
    last[:-1] = (ids[1:] != ids[:-1]) | (cols[1:] != cols[:-1])
    return rows[last], cols[last]


def ground_points(
    rows: np.ndarray, cols: np.ndarray, camera: Intrinsics, height: float, pitch: float, obstacle_height: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 float32 points in the optical frame, the mask of the pixels whose ray meets the ground)."""
    if not height > 0:
        raise GeometryError(f"the camera height above the ground must be positive, got {height}")
    dx = (cols.astype(np.float64) - camera.cx) / camera.fx
    dy = (rows.astype(np.float64) - camera.cy) / camera.fy
    denominator = np.cos(pitch) * dy + np.sin(pitch)
    meets = denominator > 1e-6
    t = height / denominator[meets]
    points = np.stack([t * dx[meets], t * dy[meets], t], axis=1)
    up = np.array([0.0, -np.cos(pitch), -np.sin(pitch)])
    return (points + obstacle_height * up).astype(np.float32), meets
