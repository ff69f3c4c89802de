"""sensor_msgs/PointCloud2 layouts as plain fields, without sensor_msgs_py (no wheel of it here).

``cloud_fields`` returns the message's fields but the header; ``PointField``
entries come as (name, offset, datatype, count) with the datatype codes of
sensor_msgs/PointField (FLOAT32 = 7, UINT32 = 6).  Little or big endian as
this machine is, flagged in ``is_bigendian``.
"""

from __future__ import annotations

import sys

import numpy as np

FLOAT32, UINT32 = 7, 6
OBSTACLE_FIELDS = (("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("score", 12, FLOAT32, 1),
                   ("label", 16, UINT32, 1))  # fmt: skip
XYZ_FIELDS = OBSTACLE_FIELDS[:3]
_OBSTACLE_DTYPE = np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("score", "f4"), ("label", "u4")])


def _fields(points: np.ndarray, layout: tuple, height: int, width: int, dense: bool) -> dict:
    return {
        "height": height, "width": width, "fields": layout, "is_bigendian": sys.byteorder == "big",
        "point_step": points.dtype.itemsize, "row_step": points.dtype.itemsize * width, "data": points.tobytes(),
        "is_dense": dense,
    }  # fmt: skip


def obstacle_cloud(xyz: np.ndarray, score: np.ndarray, label: np.ndarray) -> dict:
    """An unorganised cloud (height 1) of N points with x, y, z, score and label, all finite."""
    points = np.empty(len(xyz), _OBSTACLE_DTYPE)
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    points["score"], points["label"] = score, label
    return _fields(points, OBSTACLE_FIELDS, 1, len(points), dense=True)


def organised_cloud(points: np.ndarray) -> dict:
    """An organised h x w cloud of x, y, z (NaN where there is no depth: not dense)."""
    packed = np.ascontiguousarray(points, dtype=np.float32).view(np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4")]))
    return _fields(packed[..., 0], XYZ_FIELDS, points.shape[0], points.shape[1], dense=False)


def read_cloud(fields: dict) -> np.ndarray:
    """The points of cloud fields (as this module or a received message give them) as a structured array,
    for tests and tools: one named column per field."""
    names = [f[0] if isinstance(f, tuple) else f.name for f in fields["fields"]]
    offsets = [f[1] if isinstance(f, tuple) else f.offset for f in fields["fields"]]
    kinds = [f[2] if isinstance(f, tuple) else f.datatype for f in fields["fields"]]
    order = ">" if fields["is_bigendian"] else "<"
    codes = {FLOAT32: f"{order}f4", UINT32: f"{order}u4"}
    dtype = np.dtype({"names": names, "formats": [codes[k] for k in kinds], "offsets": offsets,
                      "itemsize": fields["point_step"]})  # fmt: skip
    return np.frombuffer(bytes(fields["data"]), dtype).reshape(fields["height"], fields["width"])
