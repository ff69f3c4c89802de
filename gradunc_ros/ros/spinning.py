"""A node spun by an executor of its own, torn down in the order that does not hang.

Destroying a node that the global executor (``rclpy.spin_once(node)``) has
seen can hang in ``destroy_node`` on the Kilted wheels; removing the node from
its own executor and shutting that down first does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.executors import SingleThreadedExecutor


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
        executor.remove_node(node)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
