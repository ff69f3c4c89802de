"""The ground plane's mount from TF, with a buffer standing in for tf2_ros's (which has no wheel here):
what the node asks it, and what it makes of the answer or of a missing transform."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS layer needs rclpy")

from test_geometry import quaternion, times  # noqa: E402

from gradunc_ros.geometry.intrinsics import GeometryError  # noqa: E402
from gradunc_ros.ros.obstacles import TF_WAIT, TfMount  # noqa: E402


class Buffer:
    """tf2_ros.Buffer's lookup_transform, answering one transform or raising tf2's error."""

    def __init__(self, transform=None, error: Exception | None = None) -> None:
        self.transform, self.error, self.asked = transform, error, []

    def lookup_transform(self, target_frame, source_frame, time, timeout):
        self.asked.append((target_frame, source_frame, time.nanoseconds, timeout.nanoseconds))
        if self.error is not None:
            raise self.error
        return SimpleNamespace(transform=self.transform)


def _header() -> SimpleNamespace:
    from builtin_interfaces.msg import Time

    return SimpleNamespace(frame_id="cam_optical", stamp=Time(sec=12, nanosec=500))


def test_the_mount_is_looked_up_at_the_frames_stamp_into_its_frame() -> None:
    pitch = math.radians(20.0)
    # base_footprint into the optical frame of a camera 1.5 m up, pitched down: the inverse of (pitch about
    # base y) after (the optical axes' turn), as a quaternion (test_geometry.py composes it the same way)
    axes = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    down = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    into_optical = (down @ axes).T
    level_q = times(quaternion((0, 0, 1), -math.pi / 2), quaternion((1, 0, 0), -math.pi / 2))
    x, y, z, w = times(quaternion((0, 1, 0), pitch), level_q) * np.array([-1, -1, -1, 1])  # inverse
    translation = -into_optical @ np.array([0.0, 0.0, 1.5])
    transform = SimpleNamespace(
        translation=SimpleNamespace(x=translation[0], y=translation[1], z=translation[2]),
        rotation=SimpleNamespace(x=x, y=y, z=z, w=w),
    )
    buffer = Buffer(transform)
    mount = TfMount(None, "base_footprint", buffer=buffer).mount(_header())
    assert buffer.asked == [("cam_optical", "base_footprint", 12 * 10**9 + 500, int(TF_WAIT * 1e9))]
    assert mount.height == pytest.approx(1.5)
    assert np.allclose(mount.up, [0.0, -math.cos(pitch), -math.sin(pitch)])  # as pitch alone gives it


def test_a_missing_transform_is_a_refusal_that_names_it() -> None:
    class LookupException(Exception):  # noqa: N818 - tf2's name
        pass

    buffer = Buffer(error=LookupException('"base_footprint" passed to lookupTransform does not exist'))
    mounts = TfMount(None, "base_footprint", buffer=buffer)
    for _ in range(2):
        with pytest.raises(GeometryError, match="no transform from ground_frame 'base_footprint' to 'cam_optical'"):
            mounts.mount(_header())
    # waited once for it; while it is missing the worker does not wait again on every frame
    assert [asked[3] for asked in buffer.asked] == [int(TF_WAIT * 1e9), 0]
