"""Frames per second of ``gradunc-bag evaluate`` over a set of bags: 1 and 2 local workers, and a local Ray.

    .venv/bin/python benchmarks/fleet_throughput.py [--input ../shared/data/camvid --bags 4 --frames 20
        --configs local:1,local:2,ray:2]

The CamVid val frames (with their labels) are cut into ``--bags`` bags of
``--frames`` frames each; every configuration evaluates the same bags with the
shipped model into a fresh results folder, one after the other.  Printed per
configuration: the wall time of the whole command (start-up, model loading,
hashing, merging and, for Ray, starting and stopping it, all included) and its
frames/s; and the engine's frames/s (the summary's ``frames_per_s``: frames
over the time from handing the bags to the engine until the last came back,
so the workers' or Ray's start-up and model loading are in, hashing and
merging not).  The merged metrics of every configuration are compared with
the first's.  With a Ray configuration, Ray's own cost is timed apart too: a
local ``ray.init`` as the engine starts it, and ``ray.shutdown``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradunc_ros.tools.bag_offline import frames_in, write_frames_bag


def _bags(root: Path, count: int, frames: int, into: Path) -> list[Path]:
    images = frames_in(root / "val" / "images")
    if len(images) < count * frames:
        raise SystemExit(f"fleet_throughput: {root} has {len(images)} val frames, fewer than {count} x {frames}")
    options = argparse.Namespace(rate=10.0, storage="mcap", frame_id="camera", compressed=True,
                                 topic="/camera/image_raw", label_topic="/camera/labels_gt")  # fmt: skip
    bags = []
    for k in range(count):
        bags.append(into / f"drive_{k}")
        write_frames_bag(images[k * frames : (k + 1) * frames], root / "val" / "labels", bags[-1], options)
    return bags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))
    parser.add_argument("--bags", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--configs", default="local:1,local:2,ray:2", help="engine:workers, comma-separated")
    args = parser.parse_args()
    root = Path(args.input)
    if not (root / "val" / "images").is_dir():
        print(f"fleet_throughput: no CamVid frames at {root} (--input)", file=sys.stderr)
        return 1
    print(f"{args.bags} bags x {args.frames} CamVid val frames (480x360 JPEG), the shipped model, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print("| engine | workers | wall s | frames/s (wall) | frames/s (engine) | merged metrics as the first |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    first = None
    with tempfile.TemporaryDirectory(prefix="fleet_bench_") as scratch:
        bags = _bags(root, args.bags, args.frames, Path(scratch))
        for config in args.configs.split(","):
            engine, workers = config.split(":")
            out = Path(scratch) / f"out_{engine}_{workers}"
            command = [sys.executable, "-m", "gradunc_ros.tools.bag", "evaluate", *map(str, bags), "--engine",
                       engine, "--workers", workers, "--out", str(out), "--no-progress"]  # fmt: skip
            started = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            wall = time.monotonic() - started
            if result.returncode != 0:
                print(f"fleet_throughput: {config} failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 1
            summary = json.loads(result.stdout)
            metrics = {key: summary[key] for key in ("pixel", "component")}
            first = first or metrics
            frames = summary["frames_scored"]
            same = "yes" if metrics == first else f"no (AuPRC {summary['pixel']['auprc']:.6f})"
            print(
                f"| {engine} | {workers} | {wall:.1f} | {frames / wall:.2f} | {summary['frames_per_s']:.2f} | {same} |"
            )
    if any(config.startswith("ray:") for config in args.configs.split(",")):
        _time_ray()
    return 0


def _time_ray() -> None:
    """Ray's own cost: a local ``ray.init`` as the engine starts it, and ``ray.shutdown``."""
    import logging

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = time.monotonic()
    ray.init(num_cpus=2, object_store_memory=128 << 20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    ready = time.monotonic()
    ray.shutdown()
    print(f"Ray alone: ray.init {ready - started:.1f} s, ray.shutdown {time.monotonic() - ready:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
