"""A node spun by an executor of its own, torn down in the order that does not hang.

Destroying a node that the global executor (``rclpy.spin_once(node)``) has
seen can hang in ``destroy_node`` on the Kilted wheels; removing the node from
its own executor and shutting that down first does not.  Fast DDS can still
hang while closing on a busy machine, so the teardown is bounded
(``processes.bounded_teardown``) and a tool's exit code is passed through
``processes.leave``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import rclpy
from rclpy.executors import SingleThreadedExecutor

from gradunc_ros.processes import bounded_teardown


@contextmanager
def own_node(name: str) -> Iterator[tuple[rclpy.node.Node, SingleThreadedExecutor]]:
    """rclpy initialised, a node and its executor; everything shut down on exit."""
    rclpy.init()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        close_ros(node, executor, f"ROS node {name}")


def close_ros(node: rclpy.node.Node | None, executor: SingleThreadedExecutor | None, what: str) -> None:
    """The node's executor, the node, then rclpy itself, in a teardown bounded in time (either may be None)."""

    def teardown() -> None:
        if executor is not None:
            if node is not None:
                executor.remove_node(node)
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

    bounded_teardown(teardown, what)


def watch_diagnostics(running: Callable[[], bool], linger: float = 1.0, name: str = "gradunc_monitor") -> dict:
    """The latest key/value pairs a node publishes on /diagnostics, listened to while ``running()``
    and ``linger`` seconds more."""
    from diagnostic_msgs.msg import DiagnosticArray

    latest: dict[str, float] = {}

    def on_status(message: DiagnosticArray) -> None:
        for entry in message.status:
            latest.update({kv.key: float(kv.value) for kv in entry.values})

    with own_node(name) as (node, executor):
        node.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
        while running():
            executor.spin_once(timeout_sec=0.2)
        end = time.monotonic() + linger
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.2)
    return latest
