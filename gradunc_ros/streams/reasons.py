"""Reasons said once each: a stream whose frames fail the same way must not flood the log.

Numbers are masked (a frame of 641x480 and one of 642x480 fail for one reason), and only so many kinds
are kept: frames whose sizes vary from frame to frame must not grow the set on a long run either.
"""

from __future__ import annotations

import re

MAX_REASONS = 64  # kinds remembered; beyond them failures are still counted, no longer said


class ReasonLog:
    def __init__(self, limit: int = MAX_REASONS) -> None:
        self._said: set[str] = set()
        self._limit = limit

    def first(self, reason: str) -> bool:
        """True when this kind of reason (numbers aside) is new and still to be said."""
        kind = re.sub(r"\d+", "#", reason)
        if kind in self._said or len(self._said) >= self._limit:
            return False
        self._said.add(kind)
        return True
