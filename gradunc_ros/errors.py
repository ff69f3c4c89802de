"""Errors as the one line a tool prints (no ROS, no CLI: the tools and the fleet's tasks alike)."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """An error as one line: KeyError without its quotes, long library messages cut at the first line."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(error).__name__
