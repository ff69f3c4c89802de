"""The node's process: start it, spin until SIGINT or SIGTERM, stop; ``main.py`` is the executable."""

from __future__ import annotations

from collections.abc import Callable

import rclpy

from .node import GraduncNode, StartError
from .spinning import close_ros


def run(args: list[str] | None = None, stop_requested: Callable[[], bool] = lambda: False) -> int:
    """Start, spin until SIGINT or SIGTERM, stop; exit code 1 with 'cannot start: <reason>' when it cannot.
    ``stop_requested`` says that a signal came before rclpy took the signals over (``main``)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)  # its signal handlers shut the context down, then call the entry point's
    node = executor = None
    code = 0
    try:
        node = GraduncNode()
        executor = SingleThreadedExecutor()  # our own: tearing down the global one can hang (ros/spinning.py)
        executor.add_node(node)
        if not stop_requested():
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # noqa: BLE001 - anything before spinning is a start-up fault
        if stop_requested() or not rclpy.ok():
            pass  # a signal during start-up shut the context down under it: a stop, not a fault
        elif node is not None:
            raise
        else:
            reason = str(error) if isinstance(error, StartError) else f"{type(error).__name__}: {error}"
            rclpy.logging.get_logger("gradunc_node").fatal(f"cannot start: {reason}")
            code = 1
    finally:
        if node is not None:
            node.shutdown()  # the model and the device memory go first, whatever the middleware does next
        close_ros(node, executor, "gradunc_node's ROS middleware")
    return code
