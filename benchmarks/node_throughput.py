"""Node throughput and latency: camera processes at a fixed rate into gradunc_node (prints a table).

    .venv/bin/python benchmarks/node_throughput.py [--sizes 640x480,1920x1080,2048x1024 --cameras 1,2,4
        --rate 30 --seconds 20 --warmup 5 --device auto]

For each camera count and frame size: a camera process publishes rgb8 frames
(best effort, as a camera driver does) on N topics at ``--rate``; gradunc_node
runs with the shipped model on ``--device`` (stock transports, as the launch
file's default; --large-data puts both processes on LARGE_DATA).  From the node's own /diagnostics: frames received,
processed and dropped after the warm-up (per camera, summed), the processing
rate, and stamp-to-publish latency p50/p95/p99 (over the node's last 600
frames per camera; the worst camera is shown).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rosbench import camera_process, isolate, node_env, run_cameras, start_node  # noqa: E402


def measure(args: argparse.Namespace, cameras: int, width: int, height: int) -> dict[str, float]:
    from diagnostic_msgs.msg import DiagnosticArray

    from gradunc_ros.ros.spinning import own_node

    env = isolate(large_data=args.large_data)
    topics = [f"/camera_{i}/image_raw" for i in range(cameras)]
    parameters = {"image_topics": "[" + ", ".join(topics) + "]", "device": args.device, "status_period": "0.5",
                  "lazy": "false"}  # nobody subscribes to the outputs here: infer anyway  # fmt: skip
    if args.input_size:
        parameters["input_size"] = args.input_size
    parameters.update(item.split("=", 1) for item in args.param)
    log = Path(args.log_dir) / f"node_{cameras}x{width}x{height}.log"
    node = start_node(parameters, node_env(env, args.node_profile), log)
    latest: dict[str, dict[str, float]] = {}

    def on_status(message: DiagnosticArray) -> None:
        for entry in message.status:
            latest[entry.name] = {kv.key: float(kv.value) for kv in entry.values}

    with own_node("throughput_monitor") as (monitor, executor):
        monitor.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
        deadline = time.monotonic() + 120
        while len(latest) < cameras and time.monotonic() < deadline:  # model loaded, node reporting
            executor.spin_once(timeout_sec=0.2)
        camera = camera_process(
            __file__, topics, width, height, args.rate, args.warmup + args.seconds, env, reliable=args.reliable
        )
        warm_at = time.monotonic() + 2.0 + args.warmup  # the camera waits 2 s for discovery
        while time.monotonic() < warm_at:
            executor.spin_once(timeout_sec=0.1)
        at_warm = {name: dict(values) for name, values in latest.items()}
        while camera.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # the node's last reports
            executor.spin_once(timeout_sec=0.1)
    node.terminate()
    node.wait(timeout=30)
    totals = {"sent": args.rate * args.seconds * cameras}
    for key in ("received", "processed", "dropped", "undecodable"):
        totals[key] = sum(latest[n][key] - at_warm.get(n, {}).get(key, 0.0) for n in latest)
    for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        totals[key] = max(values[key] for values in latest.values())
    totals["rate_hz"] = totals["processed"] / args.seconds / cameras
    totals["cameras"] = {
        name.removeprefix("gradunc_node: "): {
            key: latest[name][key] - at_warm.get(name, {}).get(key, 0.0)
            for key in ("received", "processed", "dropped", "dropped_in_bursts")
        }
        | {"latency_p50_ms": latest[name]["latency_p50_ms"]}
        for name in sorted(latest)
    }
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="benchmark", choices=("benchmark", "camera"))
    parser.add_argument("--topics", default="/camera_0/image_raw", help="(camera role)")
    parser.add_argument("--reliable", action="store_true", help="the cameras publish reliable (rclcpp's default)")
    parser.add_argument("--width", type=int, default=640, help="(camera role)")
    parser.add_argument("--height", type=int, default=480, help="(camera role)")
    parser.add_argument("--sizes", default="640x480,1920x1080,2048x1024")
    parser.add_argument("--cameras", default="1,2,4")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--input-size", default="", help="network input WxH (default: the model's, 320x240)")
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="another node parameter")
    parser.add_argument("--per-camera", action="store_true", help="a row per camera: its processed share")
    parser.add_argument("--node-profile", default="", help="a Fast DDS XML profile for the node alone")
    parser.add_argument("--large-data", action="store_true", help="LARGE_DATA transports in every process")
    args = parser.parse_args()
    if args.role == "camera":
        run_cameras(args.topics.split(","), args.width, args.height, args.rate, args.seconds, args.reliable)
        return
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; camera rate {args.rate:g} Hz; {args.seconds:g} s measured after {args.warmup:g} s warm-up")
    print("| cameras | frame | sent | received | processed | dropped | undecodable | processed Hz per camera "
          "| p50 ms | p95 ms | p99 ms |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cameras in (int(c) for c in args.cameras.split(",")):
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            r = measure(args, cameras, width, height)
            print(f"| {cameras} | {size} | {r['sent']:.0f} | {r['received']:.0f} | {r['processed']:.0f} "
                  f"| {r['dropped']:.0f} | {r['undecodable']:.0f} | {r['rate_hz']:.1f} | {r['latency_p50_ms']:.1f} "
                  f"| {r['latency_p95_ms']:.1f} | {r['latency_p99_ms']:.1f} |", flush=True)  # fmt: skip
            if args.per_camera:
                for topic, c in r["cameras"].items():
                    share = c["processed"] / c["received"] if c["received"] else float("nan")
                    print(f"|   | {topic} | | {c['received']:.0f} | {c['processed']:.0f} ({share:.0%}) "
                          f"| {c['dropped']:.0f} ({c['dropped_in_bursts']:.0f} in bursts) | | "
                          f"| {c['latency_p50_ms']:.1f} | | |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
