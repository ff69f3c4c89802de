"""Without depth: where each OoD component touches a flat ground, from the camera's mount.

The camera's optical frame (x right, y down, z forward) is ``height`` metres
above a flat ground whose up direction, in that frame, is the unit vector
``up`` (a ``Mount``).  Pitched down by ``pitch`` radians without roll, ``up``
is ``(0, -cos(pitch), -sin(pitch))``; from TF, it is the ground frame's z axis
seen from the optical frame (``mount_from_transform``), roll included.  The
ray of pixel (u, v), ``d = ((u - cx)/fx, (v - cy)/fy, 1)``, meets the ground
at ``t d`` with ``t = height / -(up . d)``, where that is positive (below the
horizon).

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

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .intrinsics import GeometryError, Intrinsics


@dataclass(frozen=True)
class Mount:
    """Where the camera is above the ground: ``height`` metres, the ground's ``up`` in the optical frame."""

    height: float
    up: tuple[float, float, float]

    @classmethod
    def from_pitch(cls, height: float, pitch: float) -> Mount:
        """A camera ``height`` metres up, looking down by ``pitch`` radians, without roll."""
        return cls(height, (0.0, -float(np.cos(pitch)), -float(np.sin(pitch))))


def mount_from_transform(translation: Sequence[float], rotation: Sequence[float]) -> Mount:
    """The mount from the transform that takes ground-frame points into the optical frame (tf2's
    ``lookup_transform(optical_frame, ground_frame, ...)``): ``translation`` (x, y, z) and ``rotation`` a
    quaternion (x, y, z, w).  The ground frame's origin lies on the ground and its z axis points up
    (REP 120's base_footprint)."""
    x, y, z, w = (float(v) for v in rotation)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not norm > 0:
        raise GeometryError("the ground-to-camera transform's rotation is not a quaternion (norm 0)")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    rotation_matrix = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    up = rotation_matrix[:, 2]  # the ground frame's z axis, in the optical frame
    camera_in_ground = -rotation_matrix.T @ np.asarray(translation, float)
    height = float(camera_in_ground[2])
    if not height > 0:
        raise GeometryError(f"the camera is {height:.3f} m above the ground frame's origin: not above the ground")
    return Mount(height, (float(up[0]), float(up[1]), float(up[2])))


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
    rows: np.ndarray, cols: np.ndarray, camera: Intrinsics, mount: Mount, obstacle_height: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 float32 points in the optical frame, the mask of the pixels whose ray meets the ground)."""
    if not mount.height > 0:
        raise GeometryError(f"the camera height above the ground must be positive, got {mount.height}")
    up = np.asarray(mount.up, np.float64)
    dx = (cols.astype(np.float64) - camera.cx) / camera.fx
    dy = (rows.astype(np.float64) - camera.cy) / camera.fy
    denominator = -(up[0] * dx + up[1] * dy + up[2])
    meets = denominator > 1e-6
    t = mount.height / denominator[meets]
    points = np.stack([t * dx[meets], t * dy[meets], t], axis=1)
    return (points + obstacle_height * up).astype(np.float32), meets
