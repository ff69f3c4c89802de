"""How many camera frames reach gradunc_node from a separate publisher process (not a test: prints figures).

    .venv/bin/python benchmarks/camera_transport.py [--width 1920 --height 1080 --rate 30 --seconds 10]

Starts gradunc_node (camera QoS best effort, as the launch file's defaults) and a
camera process publishing rgb8 frames at a fixed rate, once with the stock
Fast DDS transports and once with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in both
processes (what gradunc.launch.py sets), and reads the node's own count of
frames received from /diagnostics.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def camera(width: int, height: int, rate: float, seconds: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("benchmark_camera")
    publisher = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    frame = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    frame.data = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    time.sleep(2.0)  # discovery
    start = time.monotonic()
    for index in range(int(rate * seconds)):
        frame.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(frame)
        time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def measure(args: argparse.Namespace, large_data: bool) -> dict[str, float]:
    env = {**os.environ, "ROS_HOME": tempfile.mkdtemp(), "ROS_DOMAIN_ID": str(150 + int(large_data))}
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if large_data:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    # The monitor in this process must use the same transports as the node it listens to.
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    if large_data:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    node = subprocess.Popen(
        [sys.executable, "-m", "gradunc_ros.ros.node", "--ros-args", "-p", "image_topics:=[/camera/image_raw]",
         "-p", "input_size:=320x240", "-p", "status_period:=0.5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(4.0)  # model load and discovery
    publisher = subprocess.Popen(
        [sys.executable, __file__, "--role", "camera", "--width", str(args.width), "--height", str(args.height),
         "--rate", str(args.rate), "--seconds", str(args.seconds)],
        env=env,
    )  # fmt: skip
    from gradunc_ros.ros.spinning import watch_diagnostics

    latest = watch_diagnostics(lambda: publisher.poll() is None, 2.0, "benchmark_monitor")
    node.terminate()
    node.wait(timeout=30)
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="benchmark", choices=("benchmark", "camera"))
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "camera":
        camera(args.width, args.height, args.rate, args.seconds)
        return
    sent = int(args.rate * args.seconds)
    print("| transports | frames sent | received by the node | processed | dropped (node busy) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for large_data in (False, True):
        values = measure(args, large_data)
        name = "LARGE_DATA (launch default)" if large_data else "stock Fast DDS"
        print(f"| {name} | {sent} | {values.get('received', 0):.0f} | {values.get('processed', 0):.0f} "
              f"| {values.get('dropped', 0):.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
