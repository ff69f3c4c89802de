"""The ``gradunc_node`` executable: SIGINT or SIGTERM at any moment ends it with exit code 0.

Importing the node loads PyTorch, OpenCV and rclpy, which takes a second or
more; a signal in that time would otherwise end the process with a
traceback.  So this small module takes the signals first, then imports the
node (which hands them to rclpy once it starts).
"""

from __future__ import annotations

import signal
import sys


def _interrupt(_signum: int, _frame) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    from gradunc_ros.processes import leave

    try:
        from .node import run

        return leave(run(args))
    except KeyboardInterrupt:  # before rclpy took the signals over, or while it let one through
        return leave(0)


if __name__ == "__main__":
    sys.exit(main())
