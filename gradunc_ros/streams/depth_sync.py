"""A camera's depth frames, matched to its colour frames by stamp: exactly, or nearest within a tolerance.

The depth image registered to a colour camera (depth_image_proc's register,
or a driver's aligned depth) carries the colour frame's stamp, so exact
matching is the default; drivers that stamp depth and colour apart need a
tolerance (``depth_sync_tolerance``).  The newest ``KEEP`` depth frames are
kept; a colour frame with no depth frame within the tolerance is counted as
unmatched.  A frame waits for its depth frame only while the depth stream is
alive (a depth frame within ``LIVE_FOR``): a depth topic never published, or
stopped, must not hold up the worker, which serves every camera, on each
frame.  Plain Python: the node's depth callback puts, the worker matches, both
under the scheduler's lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .stamps import stamp_ns

KEEP = 30  # depth frames: 1 s at 30 Hz, more than the worker's delay behind the camera
LIVE_FOR = 1.0  # seconds after the last depth frame during which a frame may wait for its own


class DepthFrames:
    def __init__(self, tolerance_s: float = 0.0, keep: int = KEEP, clock: Callable[[], float] = time.monotonic) -> None:
        self._frames: OrderedDict[int, object] = OrderedDict()
        self._clock = clock
        self._last_put_at: float | None = None
        self._tolerance_ns = int(round(tolerance_s * 1e9))
        self._keep = keep
        self.received = 0
        self.matched = 0
        self.unmatched = 0
        self._reported = (0, 0)  # matched, unmatched at the last ``recent``

    def put(self, message) -> None:
        self.received += 1
        self._last_put_at = self._clock()
        self._frames[stamp_ns(message.header)] = message
        self._frames.move_to_end(stamp_ns(message.header))
        while len(self._frames) > self._keep:
            self._frames.popitem(last=False)

    def may_still_come(self, header) -> bool:
        """The depth stream is alive and no depth frame as new as this frame (within the tolerance) has come
        yet."""
        if self._last_put_at is None or self._clock() - self._last_put_at > LIVE_FOR:
            return False
        newest = next(reversed(self._frames), None)
        return newest is None or newest < stamp_ns(header) - self._tolerance_ns

    def recent(self) -> tuple[int, int]:
        """(matched, unmatched) since the previous call."""
        matched, unmatched = self.matched - self._reported[0], self.unmatched - self._reported[1]
        self._reported = (self.matched, self.unmatched)
        return matched, unmatched

    def match(self, header) -> object | None:
        """The depth frame of a colour frame's header (exact stamp, else the nearest within the tolerance),
        or None, counted as unmatched."""
        stamp = stamp_ns(header)
        found = self._frames.get(stamp)
        if found is None and self._tolerance_ns > 0 and self._frames:
            nearest = min(self._frames, key=lambda s: abs(s - stamp))
            if abs(nearest - stamp) <= self._tolerance_ns:
                found = self._frames[nearest]
        if found is None:
            self.unmatched += 1
        else:
            self.matched += 1
        return found
