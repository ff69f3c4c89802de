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

from collections.abc import Callable

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..streams.cameras import Camera
from .publishing import qos_profile

FOLLOW_PERIOD = 0.2  # seconds between looks at the graph (auto): how late a new publisher can be seen
RELIABILITY_NAMES = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}


class CameraInputs:
    def __init__(
        self, node: LifecycleNode, cameras: list[Camera], reliability: str, on_frame: Callable[[Camera, object], None]
    ) -> None:
        self._node = node
        self._cameras = cameras
        self._reliability = reliability  # best_effort, reliable or auto
        self._on_frame = on_frame
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
                self._subscribe(camera, self._reliability)
        if self._reliability == "auto":
            self.follow_publishers()
            self._timer = self._node.create_timer(FOLLOW_PERIOD, self.follow_publishers)

    def stop(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        for camera in self._cameras:
            if camera.subscription is not None:
                self._node.destroy_subscription(camera.subscription)
                camera.subscription, camera.reliability = None, ""
        for subscription in self._info_subscriptions:
            self._node.destroy_subscription(subscription)
        self._info_subscriptions = []

    def offered(self, camera: Camera) -> list[str]:
        """The reliability each publisher of the camera topic offers (best_effort or reliable)."""
        infos = self._node.get_publishers_info_by_topic(camera.topic)
        return [RELIABILITY_NAMES.get(info.qos_profile.reliability, "best_effort") for info in infos]

    def follow_publishers(self) -> None:
        """auto: subscribe once publishers show, again only when what they offer changes."""
        log = self._node.get_logger()
        for camera in self._cameras:
            offered = self.offered(camera)
            if not offered:
                if camera.subscription is not None and camera.topic not in self._no_publisher_said:
                    self._no_publisher_said.add(camera.topic)
                    log.info(f"{camera.topic}: no publisher left; the {camera.reliability} subscription stays")
                continue
            self._no_publisher_said.discard(camera.topic)
            matching = "reliable" if all(r == "reliable" for r in offered) else "best_effort"
            if camera.subscription is not None and matching == camera.reliability:
                continue
            if camera.subscription is not None:
                self._node.destroy_subscription(camera.subscription)
            self._subscribe(camera, matching)
            count = f"{len(offered)} publisher{'s' if len(offered) > 1 else ''}"
            log.info(f"{camera.topic}: subscribed {matching}: its {count} offer {', '.join(sorted(set(offered)))}")

    def _subscribe(self, camera: Camera, reliability: str) -> None:
        qos = qos_profile_sensor_data if reliability == "best_effort" else qos_profile("reliable", 5)
        kind = CompressedImage if camera.compressed else Image
        camera.subscription = self._node.create_subscription(
            kind, camera.topic, lambda m, c=camera: self._on_frame(c, m), qos
        )
        camera.reliability = reliability


def _keep_info(camera: Camera, message: CameraInfo) -> None:
    camera.info = message  # one reference swap: the worker reads whichever is newest
