"""OoD obstacles for planners: per camera a PointCloud2 of the OoD pixels (from a registered depth image, or
on the ground plane without one) and, for Nav2's semantic segmentation layer, a pixel-aligned cloud with
its label and confidence images.  The geometry is ``geometry/``; this module subscribes, matches depth to
frames (``streams/depth_sync.py``), wraps the arrays in messages and counts what it refused.
"""

from __future__ import annotations

import dataclasses
import time

from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode
from rclpy.time import Time
from sensor_msgs.msg import Image, PointCloud2, PointField

from ..errors import first_line
from ..geometry.ground import Mount, mount_from_transform
from ..geometry.intrinsics import GeometryError, Intrinsics
from ..geometry.obstacles import ObstacleSettings, frame_obstacles
from ..imageio import ImageDecodeError
from ..streams.cameras import Camera
from ..streams.codec import image_array
from ..streams.depth_sync import DepthFrames
from ..streams.reasons import ReasonLog
from .inputs import DepthInput
from .publishing import image_message

CLOUDS = ("obstacles", "points")
IMAGES = ("semantic_labels", "confidence")


def point_cloud(fields: dict, header) -> PointCloud2:
    message = PointCloud2(**{k: v for k, v in fields.items() if k != "fields"})
    message.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields["fields"]]
    message.header = header
    return message


TF_WAIT = 0.05  # seconds the worker waits for a transform at a frame's stamp
TF_RETRY = 1.0  # seconds: while a camera's transform is missing, the worker waits for it this seldom


class TfMount:
    """The ground plane's mount from TF: ``ground_frame`` (on the ground, z up) to each image's frame_id at
    its stamp.  tf2_ros comes with every ROS 2 install but has no wheel; where it does not import, a
    ground_frame is refused at start (the parameters camera_height and camera_pitch work without it)."""

    def __init__(self, node, ground_frame: str, buffer=None) -> None:
        self._frame = ground_frame
        self._listener = None
        if buffer is None:
            try:
                from tf2_ros.buffer import Buffer
                from tf2_ros.transform_listener import TransformListener
            except ImportError as error:
                raise ValueError(
                    f"ground_frame {ground_frame!r} needs tf2_ros, which does not import here ({first_line(error)}):"
                    " install tf2_ros (ros-<distro>-tf2-ros), or leave ground_frame empty and set camera_height "
                    "and camera_pitch"
                ) from None
            buffer = Buffer()
            self._listener = TransformListener(buffer, node)
        self._buffer = buffer
        self._missing_since: dict[str, float] = {}  # frame_id -> when its last wait ran out (time.monotonic())

    def close(self) -> None:
        if self._listener is not None and hasattr(self._listener, "unregister"):
            self._listener.unregister()
        self._listener = None

    def mount(self, header) -> Mount:
        """The mount at the frame's stamp, or GeometryError saying which transform is missing.  Waits up to
        TF_WAIT for a transform still to come; while one camera's is missing, only once per TF_RETRY (the
        worker serves every camera), and the other cameras' waits are their own."""
        frame, now = header.frame_id, time.monotonic()
        missing_since = self._missing_since.get(frame)
        wait = TF_WAIT if missing_since is None or now - missing_since >= TF_RETRY else 0.0
        try:
            found = self._buffer.lookup_transform(
                frame, self._frame, Time.from_msg(header.stamp), Duration(seconds=wait)
            )
            self._missing_since.pop(frame, None)
        except Exception as error:  # noqa: BLE001 - tf2's Lookup, Connectivity and Extrapolation errors alike
            if wait:
                self._missing_since[frame] = now
            raise GeometryError(  # the same words every frame (tf2's own carry times): said once
                f"no transform from ground_frame {self._frame!r} to {frame!r} at the frame's stamp "
                f"({type(error).__name__}; the ground-plane obstacles of such frames are left out)"
            ) from None
        move, turn = found.transform.translation, found.transform.rotation
        return mount_from_transform((move.x, move.y, move.z), (turn.x, turn.y, turn.z, turn.w))


class ObstacleOutputs:
    def __init__(
        self, node: LifecycleNode, cameras: list[Camera], depth_topics: list[str], settings: ObstacleSettings,
        tolerance: float, wait: float, qos, lock,
    ) -> None:  # fmt: skip
        """``tolerance``: seconds between a depth and a camera frame's stamps that still match; ``wait``: how
        long a processed frame waits for its depth frame when none as new has come yet."""
        if depth_topics and len(depth_topics) != len(cameras):
            raise ValueError(
                f"depth_topics has {len(depth_topics)} entries for {len(cameras)} image_topics: give one per camera, "
                "in their order ('' for a camera without depth)"
            )
        self._node = node
        self._settings = settings
        self._wait = wait
        self._lock = lock
        self.depth = {i: DepthInput(node.resolve_topic_name(t)) for i, t in enumerate(depth_topics) if t.strip()}
        self._frames = {i: DepthFrames(tolerance) for i in self.depth}
        self._index = {id(camera): i for i, camera in enumerate(cameras)}
        self._publishers: dict[int, dict] = {}
        self._refused: dict[int, int] = {}
        self._reasons = {i: ReasonLog() for i in range(len(cameras))}  # refusals said, per camera
        self._tf = TfMount(node, settings.ground_frame) if settings.ground_plane and settings.ground_frame else None
        for i, camera in enumerate(cameras):
            names = []
            if i in self.depth or settings.ground_plane:
                names.append("obstacles")
            if settings.semantic:
                names += (["points"] if i in self.depth else []) + list(IMAGES)
            if names:
                self._publishers[i] = {
                    name: node.create_lifecycle_publisher(
                        PointCloud2 if name in CLOUDS else Image, f"{camera.prefix}/{name}", qos
                    )
                    for name in names
                }

    def has_subscribers(self, camera: Camera) -> bool:
        publishers = self._publishers.get(self._index[id(camera)], {})
        return any(publisher.get_subscription_count() for publisher in publishers.values())

    def topics(self, camera: Camera) -> list[str]:
        return list(self._publishers.get(self._index[id(camera)], {}))

    def destroy(self) -> None:
        if self._tf is not None:
            self._tf.close()
        for publishers in self._publishers.values():
            for publisher in publishers.values():
                self._node.destroy_lifecycle_publisher(publisher)
        self._publishers = {}

    def on_depth(self, camera: Camera, message) -> None:
        with self._lock:
            self._frames[self._index[id(camera)]].put(message)

    def publish(
        self, camera: Camera, header, prediction, mask, threshold: float | None, num_classes: int,
        calibrated_scale: float | None = None,
    ) -> None:  # fmt: skip
        """The obstacle outputs of one processed frame; input they cannot use is counted and said once per
        kind of reason.  ``calibrated_scale``: the confidence scale fitted with the threshold, if any."""
        index = self._index[id(camera)]
        publishers = self._publishers.get(index)
        if not publishers:
            return
        try:
            depth = None
            if index in self.depth:
                message = self._depth_of(index, header)
                if message is None:
                    return  # counted as unmatched
                if message.header.frame_id != header.frame_id:
                    raise GeometryError(
                        f"depth frame_id {message.header.frame_id!r} is not the image's {header.frame_id!r}: the "
                        "depth must be registered to the colour camera"
                    )
                depth = (image_array(message), message.encoding)
            camera_model = Intrinsics.from_camera_info(camera.info)
            settings, mount, no_mount = self._settings, None, ""
            if depth is None and self._tf is not None:
                try:
                    mount = self._tf.mount(header)
                except GeometryError as error:  # the semantic outputs need no TF: only the obstacles go
                    settings, no_mount = dataclasses.replace(settings, ground_plane=False), str(error)
            outputs = frame_obstacles(
                settings, camera_model, prediction, mask, threshold, num_classes, depth, mount, calibrated_scale
            )
        except (GeometryError, ImageDecodeError) as error:
            self._refuse(index, camera, str(error))
            return
        for name, value in outputs.items():
            if name in publishers:
                message = point_cloud(value, header) if name in CLOUDS else image_message(*value, header)
                publishers[name].publish(message)
        if no_mount:
            self._refuse(index, camera, no_mount)

    def _depth_of(self, index: int, header):
        """The frame's depth frame; while none as new as the frame has come, wait up to ``wait`` for it (a
        driver or depth_image_proc may publish depth after colour)."""
        frames = self._frames[index]
        deadline = time.monotonic() + self._wait
        while True:
            with self._lock:
                late = frames.may_still_come(header)
                if not late or time.monotonic() >= deadline:
                    return frames.match(header)
            time.sleep(0.005)

    def _refuse(self, index: int, camera: Camera, reason: str) -> None:
        with self._lock:
            self._refused[index] = self._refused.get(index, 0) + 1
            first = self._reasons[index].first(reason)
        if first:
            self._node.get_logger().warning(f"{camera.topic}: no obstacles from this frame: {reason}")

    def status(self, camera: Camera) -> tuple[dict[str, float], str]:
        """(/diagnostics values, a warning or "") for a camera; call with the lock held."""
        index = self._index[id(camera)]
        if index not in self._publishers:
            return {}, ""
        values = {"obstacle_frames_refused": float(self._refused.get(index, 0))}
        warning = ""
        if index in self._frames:
            frames = self._frames[index]
            values |= {"depth_received": frames.received, "depth_matched": frames.matched,
                       "depth_unmatched": frames.unmatched}  # fmt: skip
            matched, unmatched = frames.recent()
            if unmatched and not matched:  # since the last report: clears once depth matches again
                warning = (
                    f"no depth frame matched the last {unmatched} camera frames ({frames.received} depth frames "
                    "received in all): stamps differ (depth_sync_tolerance) or the depth topic is silent"
                )
        return values, warning
