"""What the ROS benchmarks share: an isolated DDS set-up, gradunc_node as a process, a camera process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def isolate(domain: int | None = None, large_data: bool = False, profile: str | None = None) -> dict:
    """Environment for the node and camera processes on a private graph (a free domain unless given, the
    default discovery range); this process joins it.  ``large_data``: Fast DDS's LARGE_DATA transports in
    every process; ``profile``: a Fast DDS XML profile for the node alone (see ``node_env``)."""
    from gradunc_ros.ros.isolation import join_graph, private_ros_env

    env = private_ros_env(domain=domain, localhost=False)  # the transports as a real system has them
    if large_data:  # a system-wide choice: every process of the graph must set it
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    join_graph(env)
    if large_data:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    return env


def node_env(env: dict, profile: str | None) -> dict:
    """The node's environment: ``env``, with a Fast DDS XML profile of its own when given."""
    if not profile:
        return env
    return {**env, "FASTDDS_DEFAULT_PROFILES_FILE": profile, "RMW_FASTRTPS_USE_QOS_FROM_XML": "0"}


def start_node(parameters: dict[str, str], env: dict, log: Path | None = None) -> subprocess.Popen:
    """gradunc_node as a child process that dies with this one."""
    from gradunc_ros.processes import python_module

    arguments = ["--ros-args"]
    for name, value in parameters.items():
        arguments += ["-p", f"{name}:={value}"]
    output = log.open("w") if log is not None else subprocess.DEVNULL
    return python_module("gradunc_ros.ros.main", *arguments, env=env, stdout=output, stderr=subprocess.STDOUT)


def resident_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_cameras(
    topics: list[str], width: int, height: int, rate: float, seconds: float, reliable: bool, compressed: bool = False
) -> None:
    """Publish frames on every topic at ``rate``, stamped with the time of publishing: rgb8 Images, or
    JPEG CompressedImages (quality 90) on ``<topic>/compressed`` as image_transport's compressed plugin."""
    import cv2
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("benchmark_cameras")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data
    small = np.random.default_rng(0).integers(0, 256, (-(-height // 16), -(-width // 16), 3), np.uint8)
    pixels = np.ascontiguousarray(np.kron(small, np.ones((16, 16, 1), np.uint8))[:height, :width])
    if compressed:
        publishers = [node.create_publisher(CompressedImage, topic + "/compressed", qos) for topic in topics]
        frame = CompressedImage(format="jpeg")
        frame.data = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    else:
        publishers = [node.create_publisher(Image, topic, qos) for topic in topics]
        frame = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        frame.data = pixels.tobytes()
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
    compressed: bool = False,
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
    if compressed:
        command.append("--compressed")
    from gradunc_ros.processes import start

    return start(command, env=env)
