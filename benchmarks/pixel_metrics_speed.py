"""Time the exact pooled pixel metrics on SegmentMeIfYouCan-sized data (not a test: prints figures).

    .venv/bin/python benchmarks/pixel_metrics_speed.py [--frames 100] [--height 1024] [--width 2048]

Synthetic float32 scores with about 1 % OoD pixels and 5 % void, like a
road-anomaly data set; reports wall time and peak resident memory growth.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from gradunc_ros.evaluation.metrics import component_metrics, pixel_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--components", action="store_true", help="also time the component metrics")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scores, labels = [], []
    for _ in range(args.frames):
        label = np.zeros((args.height, args.width), np.uint8)
        top, left = rng.integers(0, args.height - 150), rng.integers(0, args.width - 150)
        label[top : top + 140, left : left + 140] = 1  # about 1 % OoD
        label[-50:] = 255
        score = rng.normal(size=label.shape).astype(np.float32) + 2.0 * (label == 1)
        scores.append(score)
        labels.append(label)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = pixel_metrics(scores, labels)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pixels = args.frames * args.height * args.width
    print("| frames | size | pixels | pixel_metrics s | peak RSS growth MiB | AuPRC | AuROC |")
    print(f"| {args.frames} | {args.width}x{args.height} | {pixels / 1e6:.0f} M | {seconds:.1f} | {after - before:.0f} "
          f"| {result['auprc']:.4f} | {result['auroc']:.4f} |")  # fmt: skip
    if args.components:
        start = time.perf_counter()
        component_metrics(scores, labels, min_pred=500, min_gt=100)
        print(f"component_metrics: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
