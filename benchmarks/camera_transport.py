"""How many camera frames reach gradunc_node from a stock camera process, per transport option (prints a table).

    .venv/bin/python benchmarks/camera_transport.py [--width 1920 --height 1080 --rate 30 --seconds 10
        --options stock,reliable_camera,reliable,node_profile,node_profile_reliable,compressed,large_data]

A camera process (no transport variable, as an ordinary driver) publishes
frames at a fixed rate; gradunc_node runs on the shipped model (network input
320x240) with one transport option at a time; the node's own /diagnostics
say how many frames it received, processed and dropped (busy), and its
stamp-to-publish latency.  Options:

- stock:                 rgb8, best effort camera, node defaults (input_reliability auto: best effort here);
- reliable_camera:       the camera publishes reliable (rclcpp's default QoS), node defaults (auto: reliable);
- best_effort_input:     the camera publishes reliable, node input_reliability:=best_effort;
- reliable:              reliable camera and node input_reliability:=reliable;
- node_profile:          node alone with benchmarks/fastdds_node_profile.xml (stock transports,
                         4 MiB socket buffers, 32 MB shared-memory segment), best effort;
- node_profile_reliable: the same, reliable camera and input;
- compressed:            the camera publishes JPEG (quality 90) CompressedImages, best effort;
- large_data:            FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in the camera and the node (system-wide).

The column "stock peer sees node" says whether this process, a stock participant
(LARGE_DATA when the option is), received the node's /diagnostics.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rosbench import camera_process, isolate, node_env, run_cameras, start_node  # noqa: E402

PROFILE = str(Path(__file__).with_name("fastdds_node_profile.xml"))
# option: (camera reliable, camera compressed, node input_reliability, node profile, LARGE_DATA everywhere)
OPTIONS = {
    "stock": (False, False, "auto", None, False),
    "reliable_camera": (True, False, "auto", None, False),
    "best_effort_input": (True, False, "best_effort", None, False),
    "reliable": (True, False, "reliable", None, False),
    "node_profile": (False, False, "auto", PROFILE, False),
    "node_profile_reliable": (True, False, "reliable", PROFILE, False),
    "compressed": (False, True, "auto", None, False),
    "large_data": (False, False, "auto", None, True),
}


def measure(args: argparse.Namespace, option: str) -> dict[str, float]:
    from gradunc_ros.ros.spinning import watch_diagnostics

    camera_reliable, compressed, input_reliability, profile, large_data = OPTIONS[option]
    env = isolate(large_data=large_data)
    topic = "/camera/image_raw"
    parameters = {
        "image_topics": f"[{topic}{'/compressed' if compressed else ''}]", "input_size": "320x240",
        "status_period": "0.5", "input_reliability": input_reliability,
        "lazy": "false",  # nobody subscribes to the outputs here: infer anyway
    }  # fmt: skip
    node = start_node(parameters, node_env(env, profile), Path(args.log_dir) / f"transport_{option}.log")
    time.sleep(5.0)  # model load and discovery
    camera = camera_process(
        __file__, [topic], args.width, args.height, args.rate, args.seconds, env, camera_reliable, compressed
    )
    latest = watch_diagnostics(lambda: camera.poll() is None, 2.0, "benchmark_monitor")
    node.terminate()
    node.wait(timeout=30)
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="benchmark", choices=("benchmark", "camera"))
    parser.add_argument("--topics", default="/camera/image_raw", help="(camera role)")
    parser.add_argument("--reliable", action="store_true", help="(camera role)")
    parser.add_argument("--compressed", action="store_true", help="(camera role)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--sizes", default="", help="WxH,...: a row per size and option (default: --width, --height)")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--log-dir", default="/tmp")
    args = parser.parse_args()
    if args.role == "camera":
        run_cameras(
            args.topics.split(","), args.width, args.height, args.rate, args.seconds, args.reliable, args.compressed
        )
        return
    sizes = args.sizes.split(",") if args.sizes else [f"{args.width}x{args.height}"]
    sent = int(args.rate * args.seconds)
    print(f"camera at {args.rate:g} Hz for {args.seconds:g} s ({sent} frames)")
    print("| frame | option | received by the node | processed | dropped (node busy) | p50 ms | p95 ms "
          "| stock peer sees node |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for size in sizes:
        args.width, args.height = (int(v) for v in size.split("x"))
        for option in args.options.split(","):
            values = measure(args, option)
            seen = "yes" if values else "no"
            print(f"| {size} | {option} | {values.get('received', 0):.0f} | {values.get('processed', 0):.0f} "
                  f"| {values.get('dropped', 0):.0f} | {values.get('latency_p50_ms', float('nan')):.0f} "
                  f"| {values.get('latency_p95_ms', float('nan')):.0f} | {seen} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
