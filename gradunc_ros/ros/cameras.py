"""One camera the node serves: its topics, the newest-frame slot, and the counts its status reports.

Plain Python (no rclpy): the node fills in publishers and subscriptions, the
worker takes frames from the slot.  Every count is changed under the node's
lock.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

MAX_REPORTED_REASONS = 64  # per camera; beyond it bad frames are still counted, no longer logged


@dataclass
class Camera:
    topic: str  # resolved (and remapped) camera topic
    compressed: bool
    prefix: str  # where the outputs go: <prefix>/labels, ...
    info_topic: str  # where the camera's driver publishes its sensor_msgs/CameraInfo
    publishers: dict = field(default_factory=dict)
    subscription: object = None  # of the camera topic, while active
    reliability: str = ""  # of that subscription: best_effort or reliable
    info: object = None  # the newest CameraInfo, republished with each processed frame's header
    pending: object = None  # the newest frame, waiting for the worker
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad: int = 0
    failed: int = 0  # decoded but not inferred (out of memory, inference error)
    lazy_skipped: int = 0  # not inferred: no output had a subscriber (parameter lazy)
    last_frame_at: float | None = None  # time.monotonic() of the newest frame
    processed_at_last_status: int = 0
    bad_at_last_status: int = 0
    failed_at_last_status: int = 0
    lazy_at_last_status: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=600))
    reported: set = field(default_factory=set)

    def take_frame(self, msg) -> None:
        """A new frame replaces the one waiting, which then counts as dropped (never a backlog)."""
        self.received += 1
        self.last_frame_at = time.monotonic()
        if self.pending is not None:
            self.dropped += 1
        self.pending = msg

    def first_report(self, reason: str) -> bool:
        """Count a bad frame; True when its kind of reason (numbers aside) is new and still reported: frames
        whose sizes vary from frame to frame must neither flood the log nor grow this set on a long run."""
        self.bad += 1
        kind = re.sub(r"\d+", "#", reason)
        if kind in self.reported or len(self.reported) >= MAX_REPORTED_REASONS:
            return False
        self.reported.add(kind)
        return True

    def status(self, period: float) -> dict[str, float]:
        """The counts and latencies for /diagnostics; the 'recent' ones since the previous call."""
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else np.full(1, np.nan)
        values = {
            "received": self.received, "processed": self.processed, "dropped": self.dropped,
            "bad_frames": self.bad, "failed": self.failed, "lazy_skipped": self.lazy_skipped,
            "rate_hz": (self.processed - self.processed_at_last_status) / period,
            "recent_bad_frames": self.bad - self.bad_at_last_status,
            "recent_failed": self.failed - self.failed_at_last_status,
            "recent_lazy_skipped": self.lazy_skipped - self.lazy_at_last_status,
            "seconds_since_frame": -1.0 if self.last_frame_at is None else time.monotonic() - self.last_frame_at,
            "latency_p50_ms": float(np.percentile(latencies, 50)),
            "latency_p95_ms": float(np.percentile(latencies, 95)),
            "latency_p99_ms": float(np.percentile(latencies, 99)),
        }  # fmt: skip
        self.processed_at_last_status = self.processed
        self.bad_at_last_status, self.failed_at_last_status = self.bad, self.failed
        self.lazy_at_last_status = self.lazy_skipped
        return values


def status_level(values: dict[str, float], stale_after: float) -> tuple[str, str]:
    """("ok" or "warn", message) for a camera's status values."""
    silent = values["seconds_since_frame"]
    if silent < 0:
        return "warn", "no frames yet"
    if silent > stale_after:
        return "warn", f"no frames for {silent:.1f} s"
    if values["recent_failed"]:  # since the last status: a warning clears once frames are good again
        return "warn", "frames failed (see the log)"
    if values["recent_bad_frames"]:
        return "warn", "bad frames skipped"
    if values["recent_lazy_skipped"] and not values["rate_hz"]:
        return "ok", "lazy: no subscriber to the outputs, inference skipped"
    return "ok", "ok"
