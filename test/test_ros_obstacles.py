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


def test_a_missing_transform_is_a_refusal_that_names_it_and_is_waited_for_seldom(monkeypatch) -> None:
    import gradunc_ros.ros.obstacles as obstacles

    class LookupException(Exception):  # noqa: N818 - tf2's name
        pass

    now = [100.0]
    monkeypatch.setattr(obstacles.time, "monotonic", lambda: now[0])
    buffer = Buffer(error=LookupException('"base_footprint" passed to lookupTransform does not exist'))
    mounts = TfMount(None, "base_footprint", buffer=buffer)
    said = set()
    for step in (0.0, 0.1, 0.2, obstacles.TF_RETRY + 0.1):
        now[0] = 100.0 + step
        with pytest.raises(
            GeometryError, match="no transform from ground_frame 'base_footprint' to 'cam_optical'"
        ) as e:
            mounts.mount(_header())
        said.add(str(e.value))
    assert len(said) == 1  # the same words each frame: the node says them once
    # waited at first; while missing not on every frame, but again after TF_RETRY
    assert [asked[3] for asked in buffer.asked] == [int(TF_WAIT * 1e9), 0, 0, int(TF_WAIT * 1e9)]
    other = SimpleNamespace(frame_id="other_optical", stamp=_header().stamp)
    with pytest.raises(GeometryError):
        mounts.mount(other)
    assert buffer.asked[-1][3] == int(TF_WAIT * 1e9)  # another camera's wait is its own


class _Publisher:
    def __init__(self, topic: str, sent: dict) -> None:
        self.topic, self.sent = topic, sent

    def publish(self, message) -> None:
        self.sent.setdefault(self.topic.rsplit("/", 1)[-1], []).append(message)

    def get_subscription_count(self) -> int:
        return 1


class _Node:
    """What ObstacleOutputs asks of its lifecycle node."""

    def __init__(self) -> None:
        self.sent: dict = {}
        self.warnings: list[str] = []

    def create_lifecycle_publisher(self, _type, topic: str, _qos) -> _Publisher:
        return _Publisher(topic, self.sent)

    def resolve_topic_name(self, topic: str) -> str:
        return topic

    def get_logger(self):
        return SimpleNamespace(warning=self.warnings.append)


def test_a_frame_without_its_transform_keeps_its_semantic_outputs_and_loses_only_the_obstacles(monkeypatch) -> None:
    import threading

    import gradunc_ros.ros.obstacles as obstacles
    from gradunc_ros.geometry.obstacles import ObstacleSettings
    from gradunc_ros.streams.cameras import Camera

    failing = Buffer(error=RuntimeError("no such frame"))
    monkeypatch.setattr(obstacles, "TfMount", lambda node, frame: TfMount(node, frame, buffer=failing))
    node = _Node()
    camera = Camera("/cam/image_raw", False, "/cam/gradunc", "/cam/camera_info")
    camera.info = SimpleNamespace(k=[50.0, 0, 3.5, 0, 50.0, 2.5, 0, 0, 1], p=[0.0] * 12, width=8, height=6)
    settings = ObstacleSettings(decimation=1, semantic=True, ground_plane=True, ground_frame="base_footprint")
    outputs = obstacles.ObstacleOutputs(node, [camera], [], settings, 0.0, 0.0, None, threading.Lock())
    score = np.zeros((6, 8), np.float32)
    prediction = SimpleNamespace(labels=np.zeros((6, 8), np.uint8), score=score)
    mask = np.zeros((6, 8), np.uint8)
    mask[4:, 2:5] = 255
    header = _header()
    outputs.publish(camera, header, prediction, mask, 0.5, 9)
    assert set(node.sent) == {"semantic_labels", "confidence"}  # published; no ground-plane cloud without TF
    assert outputs.status(camera)[0]["obstacle_frames_refused"] == 1
    assert len(node.warnings) == 1 and "no transform from ground_frame 'base_footprint'" in node.warnings[0]
