"""Cost of the obstacle outputs per frame on the CPU: depth projection, the semantic outputs, the ground plane.

    .venv/bin/python benchmarks/obstacles.py [--sizes 640x480,1280x720 --decimations 1,2,4 --runs 50]

A synthetic frame (a wall at 3 m, a box at 1.5 m covering a ninth of the image,
the box flagged OoD; 16UC1 depth) through ``geometry.obstacles.frame_obstacles``
as the node calls it; medians of ``--runs`` calls after 5 warm-up calls, in
milliseconds, one thread (the node's worker thread runs it).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np

from gradunc_ros.geometry.intrinsics import Intrinsics
from gradunc_ros.geometry.obstacles import ObstacleSettings, frame_obstacles


def _frame(width: int, height: int):
    metres = np.full((height, width), 3.0)
    top, left = height // 3, width // 3
    metres[top : 2 * top, left : 2 * left] = 1.5
    mask = np.zeros((height, width), np.uint8)
    mask[top : 2 * top, left : 2 * left] = 255
    score = np.where(mask > 0, 2.0, -2.0).astype(np.float32)
    prediction = SimpleNamespace(labels=np.zeros((height, width), np.uint8), score=score)
    camera = Intrinsics(0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2, width, height)
    return (np.rint(metres * 1000).astype(np.uint16), "16UC1"), mask, prediction, camera


def _median_ms(call, runs: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--decimations", default="1,2,4")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print("| frame | decimation | obstacle cloud (depth) ms | with the semantic outputs ms | ground plane ms "
          "| points |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        depth, mask, prediction, camera = _frame(width, height)
        for step in (int(d) for d in args.decimations.split(",")):
            plain = ObstacleSettings(decimation=step)
            semantic = ObstacleSettings(decimation=step, semantic=True)
            ground = ObstacleSettings(decimation=step, ground_plane=True, camera_height=1.0, camera_pitch=0.1)
            cloud = frame_obstacles(plain, camera, prediction, mask, 0.0, 12, depth)["obstacles"]
            frame = (camera, prediction, mask)
            times = [
                _median_ms(lambda s=s, d=d, f=frame: frame_obstacles(s, *f, 0.0, 12, d), args.runs)
                for s, d in ((plain, depth), (semantic, depth), (ground, None))
            ]
            print(f"| {size} | {step} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | {cloud['width']} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
