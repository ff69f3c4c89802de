"""The ``gradunc_node`` executable: SIGINT or SIGTERM at any moment ends it with exit code 0.

Importing the node loads PyTorch, OpenCV and rclpy, which takes a second or
more, and Python's own SIGINT handler would raise KeyboardInterrupt wherever
the import happens to be, even inside a C++ callback of PyTorch's, which then
aborts the process.  So this small module takes both signals first and only
notes them; the node stops at the next safe point (after the imports, after
start-up, or when rclpy, whose handlers call this one, shuts its context).
"""

from __future__ import annotations

import signal
import sys

_signals: list[int] = []


def _note(signum: int, _frame) -> None:
    _signals.append(signum)


def stop_requested() -> bool:
    """SIGINT or SIGTERM arrived since the entry point ran."""
    return bool(_signals)


def main(args: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _note)
    signal.signal(signal.SIGTERM, _note)
    from gradunc_ros.processes import leave

    from .entry import run

    if stop_requested():
        return 0
    return leave(run(args, stop_requested))


if __name__ == "__main__":
    sys.exit(main())
