"""The node's status: one /diagnostics entry per camera, a warning when a camera goes silent, summary lines.

Per camera: the counts (received, processed, dropped and dropped in bursts,
undecodable, inference failed, lazily skipped), the served share the fair
scheduler balances, the rate, the stamp-to-publish latency and how many
publishers it has.  A camera silent for ``stale_after`` warns on
/diagnostics and, once per silence, in the log, with the likely cause
(``streams.cameras.silence``).
"""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode

from ..streams.cameras import Camera, Transport, status_level
from ..streams.scheduler import FrameScheduler
from .transport import uses_large_data

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN}


class StatusReporter:
    def __init__(
        self, node: LifecycleNode, scheduler: FrameScheduler, offered, stale_after: float, period: float, extra=None
    ) -> None:
        """``extra``: camera -> (more values, a warning or ""), read under the scheduler's lock (obstacles)."""
        self._node = node
        self._extra = extra
        self._scheduler = scheduler
        self._offered = offered  # camera -> the reliabilities its publishers offer
        self._stale_after = stale_after
        self._period = period
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._large_data = uses_large_data()
        self._silent_said: dict[str, str] = {}  # camera topic -> the warning logged for its current silence
        self._extra_said: dict[str, float] = {}  # camera -> depth frames matched when its warning was logged

    def close(self) -> None:
        self._node.destroy_publisher(self._publisher)

    def publish(self, active: bool, device: str, threshold_missing: bool, worker_alive: bool = True) -> None:
        message = DiagnosticArray()
        message.header.stamp = self._node.get_clock().now().to_msg()
        for camera in self._scheduler.cameras:
            with self._scheduler.lock:
                values = camera.status(self._period)
                values["served_share"] = self._scheduler.served_share(camera)
                last_frame = camera.last_frame_size
                more, extra_warning = self._extra(camera) if self._extra is not None else ({}, "")
            values.update(more)
            status = DiagnosticStatus(name=f"gradunc_node: {camera.topic}", hardware_id=device)
            if not active:
                status.level, status.message = DiagnosticStatus.OK, "inactive (lifecycle): not subscribed"
            else:
                offered = self._offered(camera)
                values["publishers"] = len(offered)
                transport = Transport(offered, camera.reliability, last_frame, camera.compressed, self._large_data)
                level, status.message = status_level(values, self._stale_after, transport)
                status.level = LEVELS[level]
                self._say_silence(camera, status.message if level == "warn" and offered else "")
                if threshold_missing:
                    status.level = DiagnosticStatus.WARN
                    status.message += "; no OoD mask: no threshold for this score"
                if extra_warning:
                    status.level = DiagnosticStatus.WARN
                    status.message += f"; {extra_warning}"
                self._say_extra(camera, extra_warning, values.get("depth_matched", 0.0))
                if not worker_alive:  # never expected: the worker survives failing passes
                    status.level, status.message = DiagnosticStatus.ERROR, "the inference worker has stopped"
            status.values = [KeyValue(key=k, value=f"{v:.6g}") for k, v in values.items()]
            message.status.append(status)
        self._publisher.publish(message)

    def _say_silence(self, camera: Camera, warning: str) -> None:
        """Log a silent camera with publishers once per silence (its cause may change: then again)."""
        said = self._silent_said.get(camera.topic, "")
        cause = warning.split(": ", 1)[-1]  # the seconds change every report, the cause rarely
        if warning and cause != said:
            self._node.get_logger().warning(f"{camera.topic}: {warning}")
            self._silent_said[camera.topic] = cause
        elif not warning and said:
            self._node.get_logger().info(f"{camera.topic}: frames arrive again")
            del self._silent_said[camera.topic]

    def _say_extra(self, camera: Camera, warning: str, matched: float) -> None:
        """Log the obstacle outputs' warning (depth that does not match) when it starts, and when depth frames
        match again (``matched``: the camera's depth frames matched so far)."""
        said = self._extra_said.get(camera.topic)
        if warning and said is None:
            self._node.get_logger().warning(f"{camera.topic}: {warning}")
            self._extra_said[camera.topic] = matched
        elif not warning and said is not None and matched > said:  # not merely silent: matching again
            self._node.get_logger().info(f"{camera.topic}: depth frames match again")
            del self._extra_said[camera.topic]

    def log_summary(self) -> None:
        for camera in self._scheduler.cameras:
            with self._scheduler.lock:
                latencies = list(camera.latencies_ms)
                share = self._scheduler.served_share(camera)
                counts = (
                    camera.received, camera.processed, camera.dropped, camera.dropped_in_bursts, camera.undecodable,
                    camera.inference_failed,
                )  # fmt: skip
            p95 = f"{np.percentile(latencies, 95):.1f} ms" if latencies else "n/a"
            self._node.get_logger().info(
                f"{camera.topic}: received {counts[0]}, processed {counts[1]} (recent share {share:.0%}), dropped "
                f"{counts[2]} (in bursts {counts[3]}), undecodable {counts[4]}, inference failed {counts[5]}, "
                f"stamp-to-publish p95 {p95}"
            )
