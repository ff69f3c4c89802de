"""Which DDS transport this process uses, in words for the node's start line.

Fast DDS's ``LARGE_DATA`` builtin transports are all or nothing: a process
with them and a process without them do not discover each other at all
(docs/ros_env.md), so the node says at start which one it runs with.
"""

from __future__ import annotations

import os


def uses_large_data() -> bool:
    """This process runs Fast DDS's LARGE_DATA builtin transports."""
    return "LARGE_DATA" in os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "").upper()


def describe_transport() -> str:
    import rclpy

    rmw = rclpy.get_rmw_implementation_identifier()
    builtin = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "").strip()
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")
    if not builtin or builtin.upper() == "DEFAULT":
        text = f"transport {rmw}, stock Fast DDS transports"
    else:
        text = f"transport {rmw}, FASTDDS_BUILTIN_TRANSPORTS={builtin} (every process of the system must set it too)"
    if profile:
        text += f", profiles {profile}"
    domain = os.environ.get("ROS_DOMAIN_ID", "0") or "0"
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or (
        "LOCALHOST" if os.environ.get("ROS_LOCALHOST_ONLY") == "1" else ""
    )
    return text + f", domain {domain}" + (f", discovery {scope.lower()}" if scope else "")
