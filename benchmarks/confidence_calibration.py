"""How calibrated the node's confidence image is: on held-out frames, its P(OoD) against the share of OoD pixels.

    .venv/bin/python benchmarks/confidence_calibration.py [--data ../shared/data/camvid --split val]
        [--table FILE] [--max-frames N]

For the node's default score with the shipped model: the threshold and the
confidence scale of the threshold table (``gradunc-calibrate --best-f1
--table`` fits the scale on CamVid-OoD train), and P(OoD | s) = 1 / (1 +
exp(-(s - threshold) / scale)) on every labelled pixel of the split; beside it
the scale 1 the node used before the fit.  Prints the expected calibration
error (10 bins) and, for the fitted scale, the reliability table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gradunc_ros.assembly import ModelRequest, assemble
from gradunc_ros.evaluation.calibration import calibration_error
from gradunc_ros.evaluation.datasets import read_ood_dataset
from gradunc_ros.imageio import read_rgb
from gradunc_ros.thresholds import read_table
from gradunc_ros.uncertainty.settings import DEFAULT_SCORE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/camvid")
    parser.add_argument("--split", default="val")
    parser.add_argument("--table", type=Path, help="threshold table (default: the shipped model's)")
    parser.add_argument("--max-frames", type=int)
    args = parser.parse_args()
    built = assemble(ModelRequest(), DEFAULT_SCORE, device="cpu")
    table = read_table(args.table) if args.table else built.thresholds
    name = built.pipeline.settings.canonical.name
    threshold, scale = table.thresholds[name], table.confidence_scales[name]
    dataset = read_ood_dataset("camvid", args.data, args.split)
    scores, is_ood = [], []
    for frame in dataset.frames[: args.max_frames]:
        score = built.pipeline.predict_batch([read_rgb(frame.image)])[0].score
        label = dataset.labels(frame)
        keep = (label <= 1) & np.isfinite(score)
        scores.append(score[keep].astype(np.float64))
        is_ood.append(label[keep] == 1)
    s, y = np.concatenate(scores), np.concatenate(is_ood)
    frames = len(scores)
    print(f"{name} on {frames} frames of {dataset.name}: {s.size} labelled pixels, {y.mean():.2%} OoD")
    print(f"threshold {threshold:.4g}, fitted scale {scale:.4g} ({table.how})")
    print("| scale | expected calibration error (10 bins) | mean P(OoD) | OoD share |")
    print("| --- | ---: | ---: | ---: |")
    fitted = None
    for label, value in ((f"fitted {scale:.3g}", scale), ("1 (before the fit)", 1.0)):
        p = 1.0 / (1.0 + np.exp(-np.clip((s - threshold) / value, -500, 500)))
        fitted = p if fitted is None else fitted
        print(f"| {label} | {calibration_error(p, y):.4f} | {p.mean():.4f} | {y.mean():.4f} |")
    print("\nReliability of the fitted scale:\n")
    print("| P(OoD) bin | pixels | mean P(OoD) | OoD share |")
    print("| --- | ---: | ---: | ---: |")
    which = np.minimum((fitted * 10).astype(int), 9)
    for b in range(10):
        inside = which == b
        if inside.any():
            print(f"| {b / 10:.1f}-{(b + 1) / 10:.1f} | {inside.sum()} | {fitted[inside].mean():.3f} | "
                  f"{y[inside].mean():.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
