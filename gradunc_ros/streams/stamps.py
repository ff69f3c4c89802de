"""Message stamps as integer nanoseconds: exact keys for matching frames (floats of seconds are not)."""

from __future__ import annotations


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp (rclpy's or rosbags' alike) in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
