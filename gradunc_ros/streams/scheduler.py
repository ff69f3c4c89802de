"""Which waiting frames the inference worker takes next: fair to every camera when the node is overloaded.

Each camera keeps only its newest frame (a slot): a frame replaced before the
worker took it is lost, never queued.  When the worker cannot keep up, which
camera loses is the scheduler's choice.  Taking every waiting frame in each
pass leaves that choice to chance and to the cameras' rates: a 30 Hz camera
and a 5 Hz one both get one frame per pass, so the fast one loses most of its
frames and the slow one none.

The rule here: each camera's *served share* is the fraction of its recent
frames (those of the last ``window`` seconds) that the worker took.  A pass
takes the waiting camera with the lowest share (the oldest frame first on a
tie), and with it every other waiting camera whose share exceeds it by at
most ``margin`` of it (relative: at shares of 25 % a half-point lead is a
fiftieth), so that cameras of equal standing still share one batch.  A
camera ahead of the others waits a pass, which makes that pass shorter for
the ones behind.  Under no load every share is 1 and every pass takes every
waiting frame, as before.  A frame that has waited ``MAX_WAIT`` joins the
next pass whatever its camera's share: a slow or triggered camera's frame,
which nothing replaces, would otherwise wait for as long as a faster camera
stays behind (a camera faster than 2 Hz replaces its frame before then, so
this does not touch the balance between them).

The window is the same span of time for every camera, not the same number
of frames: over its last 100 frames a 5 Hz camera remembers 20 s and a 10 Hz
one 10 s, so a slow start (a model warming up, a busy machine) kept the
slower cameras behind, and favoured, long after the faster one had forgotten
it.  Over DDS on the busy CI machine that cost a 10 Hz camera 17 % of its
share beside two 5 Hz ones; on the simulated clock, three slow passes at the
start gave 0.356 / 0.356 / 0.311 over 100 frames, 0.333 / 0.333 / 0.328
over 20 s (test_streams_scheduler.py).  The margin is 2 %: at 5 % the
faster camera settled up to 8 % behind on the simulated clock (30 and 5 Hz),
at 2 % within 3.2 % (5/5/10, 30/5, 10/10/20 Hz; slow start, steady, noisy).

A camera silent for ``FORGET_AFTER`` starts its share afresh: its losses
from before say nothing about now, and carried over they would put it ahead
of the cameras beside it for as long as its window holds them (SHARE_WINDOW).

Frames lost in a burst (``Camera.take_frame``: replaced right after they
came, the transport having held them up) do not lower a share: no choice of
camera could have saved them (only a queue could, by inferring a frame its
successor has already replaced, late), and holding the other cameras back for
them only makes every camera lose more.  Measured with two reliable 480x360
cameras published from one process at 5 Hz, whose first camera's frames the
stock transports deliver in bunches: counting bunched losses, the node
processed 61 % and 64 % (127 frames in 20 s); not counting them, 72 % and
92 % (167 frames), as many as taking every waiting frame in each pass.

Plain Python (no rclpy), one lock and one condition: the ROS callbacks only
``offer``, the worker ``take``s.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .cameras import Camera

SHARE_WINDOW = 20.0  # seconds of every camera's recent frames behind its share: the same span for every rate
SHARE_MAX_FRAMES = 4000  # per camera, whatever its rate: memory and the time a share takes stay bounded
MAX_WAIT = 0.5  # seconds: a frame waiting this long joins the next pass whatever its camera's share
FORGET_AFTER = 2.0  # seconds without a frame after which a camera's share starts afresh
SHARE_MARGIN = 0.02  # cameras whose served shares differ by at most this fraction of the lowest share a pass


@dataclass
class Taken:
    """A frame the worker took: its camera, the message and when it arrived (time.monotonic())."""

    camera: Camera
    message: object
    arrived: float


class FrameScheduler:
    def __init__(
        self,
        cameras: Sequence[Camera],
        window: float = SHARE_WINDOW,
        margin: float = SHARE_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cameras = list(cameras)
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._margin = margin
        self._clock = clock
        self._stopping = False
        # per camera: what became of its recent frames, taken by the worker or lost in its slot
        self._outcomes = {id(camera): _Outcomes(window) for camera in self.cameras}

    def offer(self, camera: Camera, message: object) -> None:
        """A camera's new frame (from a callback: never blocks beyond the lock)."""
        self.offer_together([(camera, message)])

    def offer_together(self, frames: Sequence[tuple[Camera, object]]) -> None:
        """New frames of several cameras, waiting before the worker looks (so that they can share a pass)."""
        with self.lock:
            now = self._clock()
            for camera, message in frames:
                if camera.last_frame_at is not None and now - camera.last_frame_at > FORGET_AFTER:
                    self._outcomes[id(camera)].clear()
                if camera.take_frame(message, now) == "busy":
                    self._outcomes[id(camera)].add(now, taken=False)  # lost: the worker was busy elsewhere
            self._wake.notify()

    def served_share(self, camera: Camera) -> float:
        """The fraction of the camera's recent frames that the worker took (1.0 before any)."""
        return self._outcomes[id(camera)].share(self._clock())

    def choose(self) -> list[Camera]:
        """The waiting cameras the next pass takes (call with the lock held)."""
        waiting = [camera for camera in self.cameras if camera.pending is not None]
        if not waiting:
            return []
        now = self._clock()
        share = {id(camera): self._outcomes[id(camera)].share(now) for camera in waiting}  # one instant for all
        waiting.sort(key=lambda camera: (share[id(camera)], camera.pending_since))
        lowest = share[id(waiting[0])]
        overdue = now - MAX_WAIT
        return [
            camera
            for camera in waiting
            if share[id(camera)] <= lowest * (1 + self._margin) + 1e-9 or camera.pending_since <= overdue
        ]

    def take(self, timeout: float = 0.5) -> list[Taken] | None:
        """Block until frames wait (the fair choice of them, removed from their slots) or until ``stop``
        (None).  Returns [] after ``timeout`` with nothing waiting, so the worker can look around."""
        with self.lock:
            if not self._stopping and not any(camera.pending is not None for camera in self.cameras):
                self._wake.wait(timeout)
            if self._stopping:
                return None
            taken = []
            now = self._clock()
            for camera in self.choose():
                taken.append(Taken(camera, camera.pending, camera.pending_since))
                camera.pending = None
                self._outcomes[id(camera)].add(now, taken=True)
            return taken

    @property
    def stopping(self) -> bool:
        """``stop`` was called (and no ``reopen`` since)."""
        return self._stopping

    def reopen(self) -> None:
        """Take frames again after ``stop`` (the node activated once more)."""
        with self.lock:
            self._stopping = False

    def stop(self) -> None:
        """Wake the worker to end; frames still waiting are let go (not counted as dropped)."""
        with self.lock:
            self._stopping = True
            for camera in self.cameras:
                camera.pending = None
            self._wake.notify_all()


class _Outcomes:
    """One camera's frames of the last ``seconds`` (at most SHARE_MAX_FRAMES): taken or lost."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._items: deque[tuple[float, bool]] = deque()
        self._taken = 0

    def add(self, now: float, taken: bool) -> None:
        self._items.append((now, taken))
        self._taken += taken
        self._forget(now)

    def share(self, now: float) -> float:
        self._forget(now)
        return self._taken / len(self._items) if self._items else 1.0

    def clear(self) -> None:
        self._items.clear()
        self._taken = 0

    def _forget(self, now: float) -> None:
        while self._items and (self._items[0][0] < now - self._seconds or len(self._items) > SHARE_MAX_FRAMES):
            self._taken -= self._items.popleft()[1]
