"""A private ROS graph for tools and tests that start their own nodes (the demo, the bag tools' tests,
the benchmarks): never the user's.

On a robot's computer the shell's ``ROS_DOMAIN_ID`` is the live system's: a
demo that kept it would publish its frames on ``/camera/image_raw`` into that
system and record that system's frames.  So the environment made here picks
a domain on which no node is seen (probed, localhost only), keeps discovery
on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; Humble's
``ROS_LOCALHOST_ONLY=1``) and the stock Fast DDS transports, whatever the
shell says.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable

# Fast DDS refuses domains above 232 (its port numbers run out); leave the low ones to users.
DOMAINS = range(101, 233)
# Variables that would put this process on another graph or transport than the stock one.
FOREIGN = (
    "ROS_STATIC_PEERS",
    "ROS_DISCOVERY_SERVER",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "ROS_SECURITY_ENABLE",
)


def _local_graph(env: dict, localhost: bool = True) -> dict:
    for name in FOREIGN:
        env.pop(name, None)
    env.pop("ROS_LOCALHOST_ONLY", None)  # newer distributions warn when both variables are set
    if not localhost:
        env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    elif os.environ.get("ROS_DISTRO") == "humble":  # Humble knows only the older variable
        env["ROS_LOCALHOST_ONLY"] = "1"
    else:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


def nodes_seen(domain: int, seconds: float) -> list[str]:
    """The ROS nodes seen on ``domain`` (localhost only) within ``seconds``."""
    import rclpy
    from rclpy.context import Context

    saved = {name: os.environ.get(name) for name in (*FOREIGN, "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    os.environ.update(_local_graph({}))
    for name in FOREIGN:
        os.environ.pop(name, None)
    context = Context()
    try:
        rclpy.init(context=context, domain_id=domain, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
        node = rclpy.create_node(
            "gradunc_domain_probe", context=context, enable_rosout=False, start_parameter_services=False
        )
        try:
            deadline = time.monotonic() + seconds
            while True:
                others = [n for n, _ in node.get_node_names_and_namespaces() if n != "gradunc_domain_probe"]
                if others or time.monotonic() > deadline:
                    return others
                time.sleep(0.05)
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_domain(candidates: Iterable[int] | None = None, seconds: float = 1.0) -> int:
    """The first domain (from a start that differs between processes) on which no node is seen."""
    order = list(candidates) if candidates is not None else list(DOMAINS)
    start = os.getpid() % len(order)
    for domain in order[start:] + order[:start]:
        if not nodes_seen(domain, seconds):
            return domain
    raise RuntimeError(f"every ROS domain from {order[0]} to {order[-1]} has nodes on it: none is free")


def private_ros_env(
    base: dict | None = None, home: str | None = None, domain: int | None = None, localhost: bool = True
) -> dict:
    """An environment for child processes on a private graph: a free domain, localhost discovery, stock
    transports, ROS logs under ``home`` (a new temporary folder by default).  ``localhost=False`` keeps
    the default discovery range (the transport benchmarks: Fast DDS's LARGE_DATA transports carry far
    fewer large frames with localhost-only discovery)."""
    env = _local_graph(dict(os.environ if base is None else base), localhost)
    env["ROS_DOMAIN_ID"] = str(free_domain() if domain is None else domain)
    env["ROS_HOME"] = home or tempfile.mkdtemp(prefix="gradunc_ros_home_")
    env["ROS_LOG_DIR"] = os.path.join(env["ROS_HOME"], "log")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def join_graph(env: dict) -> None:
    """Put this process on the graph of ``env`` (before its first rclpy.init)."""
    for name in FOREIGN:
        os.environ.pop(name, None)
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    keep = ("ROS_DOMAIN_ID", "ROS_HOME", "ROS_LOG_DIR", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")
    os.environ.update({name: env[name] for name in keep if name in env})
