"""gradunc_node: cameras in; semantic labels, uncertainty and OoD obstacle masks out.

Callbacks never block: each camera keeps only its newest frame in a slot; a
worker thread decodes, runs one forward pass for the frames that are ready
(batched when they share a size), and publishes.  A frame replaced in its
slot before the worker took it is counted as dropped.  Every output carries
its input's header.  See config/gradunc.yaml for the parameters.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ..models import load_model
from ..models.preprocess import parse_size
from ..overlay import blend, colourise
from ..pipeline import SegmentationPipeline, free_device_memory, is_out_of_memory
from ..postprocess import ood_mask
from .codec import ImageDecodeError, array_to_image, compressed_to_rgb, image_to_rgb
from .parameters import PARAMETERS, RuntimeSettings, declare_all, runtime_settings
from .topics import OUTPUTS, output_prefixes

RUNTIME = [name for name, spec in PARAMETERS.items() if not spec[2]]
MAX_REPORTED_REASONS = 64  # per camera; beyond it bad frames are still counted, no longer logged


@dataclass
class Camera:
    topic: str
    compressed: bool
    prefix: str
    publishers: dict = field(default_factory=dict)
    pending: object = None  # the newest frame, waiting for the worker
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad: int = 0
    failed: int = 0  # decoded but not inferred (out of memory, inference error)
    last_frame_at: float | None = None  # time.monotonic() of the newest frame
    processed_at_last_status: int = 0
    bad_at_last_status: int = 0
    failed_at_last_status: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=600))
    reported: set = field(default_factory=set)


def _qos(reliability: str, depth: int) -> QoSProfile:
    if reliability == "best_effort":
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
    if reliability == "reliable":
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(f"reliability must be best_effort or reliable, got {reliability!r}")


class GraduncNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("gradunc_node", **kwargs)
        # OpenCV's own warnings (e.g. for every truncated PNG) would repeat per frame; ours say it once.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        declare_all(self)
        value = self._value
        loaded = load_model(value("model") or None, value("weights") or None, num_classes=value("num_classes") or None)
        self._class_names, self._colours = loaded.class_names, loaded.colours
        self._settings = runtime_settings({n: value(n) for n in RUNTIME}, loaded.class_names)
        if value("cpu_threads"):
            torch.set_num_threads(int(value("cpu_threads")))
        input_size = parse_size(value("input_size")) if value("input_size") else None
        self._pipeline = SegmentationPipeline(
            loaded,
            self._settings.head,
            device=value("device"),
            input_size=input_size,
            fused=value("fused_head"),
            precision=value("precision"),
        )
        self._max_pixels = int(value("max_image_pixels"))
        self._stale_after = float(value("stale_after"))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        topics = [topic.strip() for topic in value("image_topics") if topic.strip()]
        if not topics:
            raise ValueError("image_topics is empty: give at least one camera topic")
        input_qos = qos_profile_sensor_data if value("input_reliability") == "best_effort" else _qos("reliable", 5)
        output_qos = _qos(value("output_reliability"), 10)
        self._cameras = []
        for topic, prefix in zip(topics, output_prefixes(topics), strict=True):
            camera = Camera(topic, topic.endswith("/compressed"), prefix)
            for name in OUTPUTS:
                camera.publishers[name] = self.create_publisher(Image, f"{prefix}/{name}", output_qos)
            kind = CompressedImage if camera.compressed else Image
            self.create_subscription(kind, topic, lambda msg, c=camera: self._on_frame(c, msg), input_qos)
            self._cameras.append(camera)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._status_period = float(value("status_period"))
        self.create_timer(self._status_period, self._publish_status)
        self.create_timer(float(value("log_period")), self._log_summary)
        self._worker = threading.Thread(target=self._work, name="gradunc_inference", daemon=True)
        self._worker.start()
        where = str(self._pipeline.device)
        if self._pipeline.device.type == "cpu":
            where += f" ({torch.get_num_threads()} threads)"
        fused = "fused Triton head" if self._pipeline.fused_active else "plain PyTorch head"
        self.get_logger().info(
            f"{loaded.spec.name} ({loaded.weights}) on {where}, {value('precision')}, {fused}; "
            + "; ".join(f"{c.topic} -> {c.prefix}/{{{','.join(OUTPUTS)}}}" for c in self._cameras)
        )

    def _value(self, name: str):
        return self.get_parameter(name).value

    # --- callbacks: never block -------------------------------------------------------------------

    def _on_frame(self, camera: Camera, msg) -> None:
        with self._lock:
            camera.received += 1
            camera.last_frame_at = time.monotonic()
            if camera.pending is not None:
                camera.dropped += 1
            camera.pending = msg
            self._wake.notify()

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        values = {n: self._value(n) for n in RUNTIME}
        values.update({p.name: p.value for p in parameters if p.name in values})
        try:
            settings = runtime_settings(values, self._class_names)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        with self._lock:
            self._settings = settings
        return SetParametersResult(successful=True)

    # --- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not any(c.pending is not None for c in self._cameras):
                    self._wake.wait(0.5)
                if self._stopping:
                    return
                taken = [(c, c.pending) for c in self._cameras if c.pending is not None]
                for camera, _ in taken:
                    camera.pending = None
                settings = self._settings
            try:
                self._process(taken, settings)
            except Exception as error:  # noqa: BLE001 - one bad batch must not stop the node
                if not self.context.ok():  # shutting down (SIGINT): the publishers are gone, nothing failed
                    return
                self._fail([camera for camera, _ in taken], f"{type(error).__name__}: {error}")
            del taken

    def _process(self, taken: list, settings: RuntimeSettings) -> None:
        if self._pipeline.settings != settings.head:
            self._pipeline.settings = settings.head
        by_size: dict[tuple, list] = {}
        for camera, msg in taken:
            try:
                if camera.compressed:
                    image = compressed_to_rgb(msg, self._max_pixels)
                else:
                    image = image_to_rgb(msg, self._max_pixels)
            except ImageDecodeError as error:
                self._reject(camera, str(error))
                continue
            by_size.setdefault(image.shape, []).append((camera, msg, image))
        for group in by_size.values():
            self._infer_and_publish(group, settings)

    def _infer_and_publish(self, group: list, settings: RuntimeSettings) -> None:
        """One forward pass for frames of one size; out of memory: frees memory, then one frame at a time."""
        try:
            predictions = self._pipeline.predict_batch([image for _, _, image in group])
            out_of_memory = False
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block: the traceback no longer holds the failed tensors
            free_device_memory()
            if len(group) > 1:
                for item in group:
                    self._infer_and_publish([item], settings)
            else:
                height, width = group[0][2].shape[:2]
                self._fail([group[0][0]], f"out of memory on a {width}x{height} frame (memory freed)")
            return
        for (camera, msg, image), prediction in zip(group, predictions, strict=True):
            self._publish(camera, msg.header, image, prediction, settings)

    def _fail(self, cameras: list[Camera], reason: str) -> None:
        with self._lock:
            for camera in cameras:
                camera.failed += 1
        topics = ", ".join(camera.topic for camera in cameras)
        self.get_logger().error(f"{topics}: frame skipped: {reason}", throttle_duration_sec=5.0)

    def _reject(self, camera: Camera, reason: str) -> None:
        # One log line per camera and kind of reason: frames whose sizes vary from frame to frame must
        # neither flood the log nor grow this set without bound on a long run.
        kind = re.sub(r"\d+", "#", reason)
        with self._lock:
            camera.bad += 1
            first = kind not in camera.reported and len(camera.reported) < MAX_REPORTED_REASONS
            if first:
                camera.reported.add(kind)
        if first:
            self.get_logger().warn(f"{camera.topic}: skipping frames: {reason}")

    def _publish(self, camera: Camera, header, image: np.ndarray, prediction, settings: RuntimeSettings) -> None:
        publishers = camera.publishers
        publishers["labels"].publish(array_to_image(prediction.labels, "mono8", header))
        publishers["uncertainty"].publish(array_to_image(prediction.score.astype(np.float32), "32FC1", header))
        mask = ood_mask(prediction.score, prediction.labels, settings.mask)
        publishers["ood_mask"].publish(array_to_image(mask, "mono8", header))
        if settings.publish_overlay:
            overlay = blend(image, colourise(prediction.labels, self._colours))
            overlay[mask > 0] = (255, 0, 255)
            publishers["overlay"].publish(array_to_image(overlay, "rgb8", header))
        now = self.get_clock().now().nanoseconds
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        with self._lock:
            camera.processed += 1
            camera.latencies_ms.append((now - stamp) / 1e6)

    # --- status -------------------------------------------------------------------------------------

    def _camera_status(self, camera: Camera) -> dict[str, float]:
        with self._lock:
            latencies = np.asarray(camera.latencies_ms) if camera.latencies_ms else np.full(1, np.nan)
            rate = (camera.processed - camera.processed_at_last_status) / self._status_period
            recent_bad = camera.bad - camera.bad_at_last_status
            recent_failed = camera.failed - camera.failed_at_last_status
            camera.processed_at_last_status = camera.processed
            camera.bad_at_last_status, camera.failed_at_last_status = camera.bad, camera.failed
            return {
                "received": camera.received, "processed": camera.processed, "dropped": camera.dropped,
                "bad_frames": camera.bad, "failed": camera.failed, "rate_hz": rate,
                "recent_bad_frames": recent_bad, "recent_failed": recent_failed,
                "seconds_since_frame": -1.0 if camera.last_frame_at is None
                else time.monotonic() - camera.last_frame_at,
                "latency_p50_ms": float(np.percentile(latencies, 50)),
                "latency_p95_ms": float(np.percentile(latencies, 95)),
                "latency_p99_ms": float(np.percentile(latencies, 99)),
            }  # fmt: skip

    def _publish_status(self) -> None:
        message = DiagnosticArray()
        message.header.stamp = self.get_clock().now().to_msg()
        for camera in self._cameras:
            values = self._camera_status(camera)
            status = DiagnosticStatus(name=f"gradunc_node: {camera.topic}", hardware_id=str(self._pipeline.device))
            status.level, status.message = self._level(values)
            status.values = [KeyValue(key=k, value=f"{v:.6g}") for k, v in values.items()]
            message.status.append(status)
        self._diagnostics.publish(message)

    def _level(self, values: dict[str, float]) -> tuple[bytes, str]:
        silent = values["seconds_since_frame"]
        if silent < 0:
            return DiagnosticStatus.WARN, "no frames yet"
        if silent > self._stale_after:
            return DiagnosticStatus.WARN, f"no frames for {silent:.1f} s"
        if values["recent_failed"]:  # since the last status: a warning clears once frames are good again
            return DiagnosticStatus.WARN, "frames failed (see the log)"
        if values["recent_bad_frames"]:
            return DiagnosticStatus.WARN, "bad frames skipped"
        return DiagnosticStatus.OK, "ok"

    def _log_summary(self) -> None:
        for camera in self._cameras:
            with self._lock:
                latencies = list(camera.latencies_ms)
                counts = (camera.received, camera.processed, camera.dropped, camera.bad, camera.failed)
            p95 = f"{np.percentile(latencies, 95):.1f} ms" if latencies else "n/a"
            self.get_logger().info(
                f"{camera.topic}: received {counts[0]}, processed {counts[1]}, dropped {counts[2]}, "
                f"bad {counts[3]}, failed {counts[4]}, stamp-to-publish p95 {p95}"
            )

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self._worker.join(timeout=10.0)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = executor = None
    code = 0
    try:
        node = GraduncNode()
        executor = SingleThreadedExecutor()  # our own: tearing down the global one can hang (ros/spinning.py)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # noqa: BLE001 - anything before spinning is a start-up fault
        if node is not None:
            raise
        rclpy.logging.get_logger("gradunc_node").fatal(f"cannot start: {type(error).__name__}: {error}")
        code = 1
    finally:
        if node is not None:
            node.shutdown()
            if executor is not None:
                executor.remove_node(node)
                executor.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    import sys

    sys.exit(main())
