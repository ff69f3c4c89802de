"""One camera the node serves: its topics, the newest-frame slot, and the counts its status reports.

Plain Python (no rclpy): the node fills in publishers and subscriptions, the
scheduler (``scheduler.py``) fills and empties the slot.  Every count is
changed under the scheduler's lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .reasons import ReasonLog

BURST_FRACTION = 0.25  # a frame replaced this soon (as a share of the usual gap between frames) came in a burst


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
    pending_since: float = 0.0  # when it arrived
    received: int = 0
    processed: int = 0
    dropped: int = 0  # replaced in the slot before the worker took it
    dropped_in_bursts: int = 0  # of those, replaced by a frame that came right after it (BURST_FRACTION)
    undecodable: int = 0  # refused by the codec (encoding, step, size, corrupt data)
    inference_failed: int = 0  # decoded but not inferred (out of memory, inference error)
    lazy_skipped: int = 0  # not inferred: no output had a subscriber (parameter lazy)
    last_frame_at: float | None = None  # time.monotonic() of the newest frame
    subscribed_at: float | None = None  # time.monotonic() of the subscription (the node's inputs set it)
    last_frame_size: str = ""  # "WxH encoding" (or the compressed format) of the newest frame
    processed_at_last_status: int = 0
    undecodable_at_last_status: int = 0
    failed_at_last_status: int = 0
    lazy_at_last_status: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=600))
    arrival_gaps: deque = field(default_factory=lambda: deque(maxlen=32))  # seconds between frames
    reasons: ReasonLog = field(default_factory=ReasonLog)  # undecodable frames' reasons said so far

    def take_frame(self, msg, now: float | None = None) -> str:
        """A new frame replaces the one waiting (never a backlog).  Returns what became of the waiting one:
        "" (none waited), "busy" (replaced while the worker was busy: dropped) or "burst" (dropped too, but
        it had waited less than BURST_FRACTION of the camera's usual gap between frames: the two came
        bunched, held up on the way by a reliable transport repairing lost fragments, and the worker could
        not have taken it)."""
        now = time.monotonic() if now is None else now
        self.received += 1
        if self.last_frame_at is not None:
            self.arrival_gaps.append(now - self.last_frame_at)
        self.last_frame_at = now
        self.last_frame_size = _frame_size(msg)
        replaced = ""
        if self.pending is not None:
            self.dropped += 1
            replaced = "busy"
            usual_gap = float(np.median(self.arrival_gaps)) if len(self.arrival_gaps) >= 4 else 0.0
            if now - self.pending_since < BURST_FRACTION * usual_gap:
                self.dropped_in_bursts += 1
                replaced = "burst"
        self.pending, self.pending_since = msg, now
        return replaced

    def first_report(self, reason: str) -> bool:
        """Count an undecodable frame; True when its kind of reason is new and still to be logged."""
        self.undecodable += 1
        return self.reasons.first(reason)

    def status(self, period: float) -> dict[str, float]:
        """The counts and latencies for /diagnostics; the 'recent' ones since the previous call."""
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else np.full(1, np.nan)
        values = {
            "received": self.received, "processed": self.processed, "dropped": self.dropped,
            "dropped_in_bursts": self.dropped_in_bursts, "undecodable": self.undecodable,
            "inference_failed": self.inference_failed, "lazy_skipped": self.lazy_skipped,
            "rate_hz": (self.processed - self.processed_at_last_status) / period,
            "recent_undecodable": self.undecodable - self.undecodable_at_last_status,
            "recent_inference_failed": self.inference_failed - self.failed_at_last_status,
            "recent_lazy_skipped": self.lazy_skipped - self.lazy_at_last_status,
            "seconds_since_frame": -1.0 if self.last_frame_at is None else time.monotonic() - self.last_frame_at,
            "seconds_subscribed": -1.0 if self.subscribed_at is None else time.monotonic() - self.subscribed_at,
            "latency_p50_ms": float(np.percentile(latencies, 50)),
            "latency_p95_ms": float(np.percentile(latencies, 95)),
            "latency_p99_ms": float(np.percentile(latencies, 99)),
        }  # fmt: skip
        self.processed_at_last_status = self.processed
        self.undecodable_at_last_status, self.failed_at_last_status = self.undecodable, self.inference_failed
        self.lazy_at_last_status = self.lazy_skipped
        return values


@dataclass(frozen=True)
class Transport:
    """What the node knows of a camera's transport, for the silent-camera message."""

    offered: Sequence[str] = ()  # the reliability each of its publishers offers
    subscribed: str = ""  # the reliability it subscribed with, "" while not subscribed
    last_frame: str = ""  # the last frame that ever came ("1280x720 rgb8 (2.8 MB)")
    compressed: bool = False  # the camera topic is a CompressedImage one
    large_data: bool = False  # this process runs Fast DDS's LARGE_DATA transports


def status_level(values: dict[str, float], stale_after: float, transport: Transport = Transport()) -> tuple[str, str]:
    """("ok" or "warn", message) for a camera's status values; a camera silent for ``stale_after`` (since its
    last frame, or since it was subscribed) gets a message naming the likely cause (``silence``)."""
    silent = values["seconds_since_frame"]
    subscribed_for = values.get("seconds_subscribed", -1.0)
    if silent < 0 and 0 <= subscribed_for <= stale_after:
        return "ok", "subscribed, waiting for the first frame"
    if silent < 0 or silent > stale_after:
        return "warn", silence(silent, transport)
    if values["recent_inference_failed"]:  # since the last status: a warning clears once frames are good again
        return "warn", "inference failed on frames (see the log)"
    if values["recent_undecodable"]:
        return "warn", "undecodable frames skipped"
    if values["recent_lazy_skipped"] and not values["rate_hz"]:
        return "ok", "lazy: no subscriber to the outputs, inference skipped"
    return "ok", "ok"


def silence(silent: float, transport: Transport) -> str:
    """Why a camera sends nothing, as far as the node can tell."""
    when = "no frames yet" if silent < 0 else f"no frames for {silent:.1f} s"
    offered, subscribed = transport.offered, transport.subscribed
    if not offered:
        return f"{when}: waiting for a publisher" if not subscribed else f"{when}: no publisher"
    reliable = sum(r == "reliable" for r in offered)
    last = f"; the last one was {transport.last_frame}" if transport.last_frame else ""
    if subscribed == "reliable" and not reliable:
        return (
            f"{when}: its {_count(len(offered), 'publisher offers', 'publishers offer')} best_effort and this "
            "node subscribes reliable, which does not match them (input_reliability auto or best_effort)"
        )
    if subscribed == "best_effort":  # a best-effort reader gets best effort from any writer
        remedies = ["a camera publishing reliable"] + (["compressed images (<topic>/compressed)"] if not
                                                        transport.compressed else [])  # fmt: skip
        if not transport.large_data:
            remedies.append("FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in every process of the system")
        offer = ""
        if reliable:
            offer = f"; {_count(reliable, 'offers', 'offer')} reliable (input_reliability auto or reliable)"
        return (
            f"{when} from {_count(len(offered), 'matched publisher', 'matched publishers')}, received best effort"
            f"{last}{offer}: best-effort frames too large for one datagram are lost whole when a fragment is; "
            f"remedies: {', or '.join(remedies)} (README, Transport)"
        )
    others = len(offered) - reliable
    unmatched = f" ({_count(others, 'best-effort one does', 'best-effort ones do')} not match)" if others else ""
    return (
        f"{when} from {_count(reliable, 'matched reliable publisher', 'matched reliable publishers')}{unmatched}"
        f"{last}: is the camera streaming?"
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _frame_size(msg) -> str:
    """What the transport carried, for the blind-camera warning: "1280x720 rgb8 (2.8 MB)" or "jpeg (412 kB)"."""
    size = len(msg.data) if hasattr(msg, "data") else 0
    amount = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    if hasattr(msg, "width") and hasattr(msg, "encoding"):
        return f"{msg.width}x{msg.height} {msg.encoding} ({amount})"
    return f"{getattr(msg, 'format', '') or 'compressed'} ({amount})"
