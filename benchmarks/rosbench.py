"""What the ROS benchmarks share: an isolated DDS set-up, gradunc_node as a process, a camera process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def isolate(domain: int, large_data: bool = True) -> dict:
    """Environment for the node and camera processes; this process joins the same domain and transports."""
    env = {**os.environ, "ROS_HOME": tempfile.mkdtemp(prefix="gradunc_bench_"), "ROS_DOMAIN_ID": str(domain)}
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if large_data:  # what gradunc.launch.py sets: without it large frames do not get through (README)
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    shared = [name for name in ("ROS_DOMAIN_ID", "ROS_HOME", "FASTDDS_BUILTIN_TRANSPORTS") if name in env]
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    os.environ.update({name: env[name] for name in shared})
    return env


def start_node(parameters: dict[str, str], env: dict, log: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "gradunc_ros.ros.node", "--ros-args"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    output = log.open("w") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def resident_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_cameras(topics: list[str], width: int, height: int, rate: float, seconds: float, reliable: bool) -> None:
    """Publish rgb8 frames on every topic at ``rate``, stamped with the time of publishing."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("benchmark_cameras")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data
    publishers = [node.create_publisher(Image, topic, qos) for topic in topics]
    frame = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    small = np.random.default_rng(0).integers(0, 256, (-(-height // 16), -(-width // 16), 3), np.uint8)
    frame.data = np.ascontiguousarray(np.kron(small, np.ones((16, 16, 1), np.uint8))[:height, :width]).tobytes()
    time.sleep(2.0)  # discovery
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        frame.header.stamp = node.get_clock().now().to_msg()
        for publisher in publishers:
            publisher.publish(frame)
        time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def camera_process(
    script: str,
    topics: list[str],
    width: int,
    height: int,
    rate: float,
    seconds: float,
    env: dict,
    reliable: bool = False,
) -> subprocess.Popen:
    """``script`` --role camera ...: the camera runs in a process of its own, as a driver would."""
    command = [
        sys.executable,
        script,
        "--role",
        "camera",
        "--topics",
        ",".join(topics),
        "--width",
        str(width),
        "--height",
        str(height),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ]
    if reliable:
        command.append("--reliable")
    return subprocess.Popen(command, env=env)
