"""The node's subscriptions to its cameras and their camera_info, and the QoS it subscribes with.

``input_reliability: auto`` decides from the camera's publishers before
subscribing: reliable when every publisher offers it (a reliable reader gets
large frames that best effort loses on the stock transports, see
docs/ros_env.md), else best effort, which matches any publisher.  Until
discovery shows a publisher there is no subscription (the status says it is
waiting), so a reliable stream's first frames are never lost to a best-effort
start.  The subscription is made again only when what the publishers offer
changes; when the last publisher leaves, the subscription stays as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..streams.cameras import Camera
from .publishing import qos_profile

FOLLOW_PERIOD = 0.2  # seconds between looks at the graph (auto): how late a new publisher can be seen
RELIABILITY_NAMES = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}


@dataclass
class DepthInput:
    """A camera's registered depth topic: subscribed like its camera (the same reliability rule)."""

    topic: str
    subscription: object = None
    reliability: str = ""
    subscribed_at: float | None = None


class CameraInputs:
    def __init__(
        self,
        node: LifecycleNode,
        cameras: list[Camera],
        reliability: str,
        on_frame: Callable[[Camera, object], None],
        depth: dict[int, DepthInput] | None = None,
        on_depth: Callable[[Camera, object], None] | None = None,
    ) -> None:
        """``depth``: camera index -> its depth topic; ``on_depth`` receives their frames."""
        self._node = node
        self._cameras = cameras
        self._reliability = reliability  # best_effort, reliable or auto
        # every subscribed stream: (holder of subscription and reliability, message type, callback)
        self._streams = [
            (camera, CompressedImage if camera.compressed else Image, lambda m, c=camera: on_frame(c, m))
            for camera in cameras
        ]
        for index, stream in (depth or {}).items():
            self._streams.append((stream, Image, lambda m, c=cameras[index]: on_depth(c, m)))
        self._info_subscriptions: list = []
        self._timer = None
        self._no_publisher_said: set[str] = set()

    def start(self) -> None:
        for camera in self._cameras:
            self._info_subscriptions.append(
                self._node.create_subscription(
                    CameraInfo, camera.info_topic, lambda m, c=camera: _keep_info(c, m), qos_profile_sensor_data
                )
            )
        if self._reliability != "auto":
            for stream, kind, callback in self._streams:
                self._subscribe(stream, kind, callback, self._reliability)
        if self._reliability == "auto":
            self.follow_publishers()
            self._timer = self._node.create_timer(FOLLOW_PERIOD, self.follow_publishers)

    def stop(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        for stream, _kind, _callback in self._streams:
            if stream.subscription is not None:
                self._node.destroy_subscription(stream.subscription)
                stream.subscription, stream.reliability, stream.subscribed_at = None, "", None
        for subscription in self._info_subscriptions:
            self._node.destroy_subscription(subscription)
        self._info_subscriptions = []

    def offered(self, stream: Camera | DepthInput) -> list[str]:
        """The reliability each publisher of the stream's topic offers (best_effort or reliable)."""
        infos = self._node.get_publishers_info_by_topic(stream.topic)
        return [RELIABILITY_NAMES.get(info.qos_profile.reliability, "best_effort") for info in infos]

    def follow_publishers(self) -> None:
        """auto: subscribe once publishers show, again only when what they offer changes."""
        log = self._node.get_logger()
        for stream, kind, callback in self._streams:
            offered = self.offered(stream)
            if not offered:
                if stream.subscription is not None and stream.topic not in self._no_publisher_said:
                    self._no_publisher_said.add(stream.topic)
                    log.info(f"{stream.topic}: no publisher left; the {stream.reliability} subscription stays")
                continue
            self._no_publisher_said.discard(stream.topic)
            matching = "reliable" if all(r == "reliable" for r in offered) else "best_effort"
            if stream.subscription is not None and matching == stream.reliability:
                continue
            if stream.subscription is not None:
                self._node.destroy_subscription(stream.subscription)
            self._subscribe(stream, kind, callback, matching)
            count = f"{len(offered)} publisher offers" if len(offered) == 1 else f"{len(offered)} publishers offer"
            log.info(f"{stream.topic}: subscribed {matching}: its {count} {', '.join(sorted(set(offered)))}")

    def _subscribe(self, stream, kind, callback, reliability: str) -> None:
        qos = qos_profile_sensor_data if reliability == "best_effort" else qos_profile("reliable", 5)
        stream.subscription = self._node.create_subscription(kind, stream.topic, callback, qos)
        stream.reliability = reliability
        if stream.subscribed_at is None:  # the first subscription: a camera's first frame is awaited from here
            stream.subscribed_at = time.monotonic()


def _keep_info(camera: Camera, message: CameraInfo) -> None:
    camera.info = message  # one reference swap: the worker reads whichever is newest
