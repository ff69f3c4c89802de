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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rosbench import camera_process, isolate, run_cameras, start_node  # noqa: E402


def measure(args: argparse.Namespace, large_data: bool) -> dict[str, float]:
    from gradunc_ros.ros.spinning import watch_diagnostics

    env = isolate(150 + int(large_data), large_data)
    parameters = {"image_topics": "[/camera/image_raw]", "input_size": "320x240", "status_period": "0.5"}
    node = start_node(parameters, env)
    time.sleep(4.0)  # model load and discovery
    camera = camera_process(__file__, ["/camera/image_raw"], args.width, args.height, args.rate, args.seconds, env)
    latest = watch_diagnostics(lambda: camera.poll() is None, 2.0, "benchmark_monitor")
    node.terminate()
    node.wait(timeout=30)
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="benchmark", choices=("benchmark", "camera"))
    parser.add_argument("--topics", default="/camera/image_raw", help="(camera role)")
    parser.add_argument("--reliable", action="store_true", help="(camera role)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "camera":
        run_cameras(args.topics.split(","), args.width, args.height, args.rate, args.seconds, args.reliable)
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
