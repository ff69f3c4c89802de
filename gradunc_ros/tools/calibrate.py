"""gradunc-calibrate: pick the node's OoD threshold and write a parameter YAML the node and launch file accept.

Two ways: --target-fpr F uses in-distribution pixels only (no OoD labels
needed: the threshold flags at most F of them), --best-f1 uses a labelled
set (the pixel-level best-F1 threshold).  The mask is score > threshold.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from gradunc_ros.evaluation.calibration import best_f1_threshold, threshold_for_false_positive_rate
from gradunc_ros.evaluation.datasets import DATASET_KINDS, read_ood_dataset, read_rgb
from gradunc_ros.models import CheckpointError, model_names
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.ros.topics import PARAMETER_FILE_KEY
from gradunc_ros.tools.common import add_model_options, add_score_options, load_from, settings_from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradunc-calibrate", description=__doc__)
    parser.add_argument("--dataset", default="camvid", choices=sorted(DATASET_KINDS), help="layout of --data")
    parser.add_argument("--data", required=True, help="data set folder")
    parser.add_argument("--split", default="val")
    add_model_options(parser, model_names())
    add_score_options(parser)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--target-fpr", type=float, help="largest share of in-distribution pixels flagged, e.g. 0.01")
    how.add_argument("--best-f1", action="store_true", help="best pixel F1 on the labelled set")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--out", required=True, help="parameter YAML to write")
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
        dataset = read_ood_dataset(args.dataset, args.data, args.split)
        pipeline = SegmentationPipeline(load_from(args), settings, device=args.device, input_size=args.input_size)
        scores, labels = [], []
        for frame in tqdm(dataset.frames[: args.max_frames], desc="frames", unit="frame"):
            scores.append(pipeline.predict(read_rgb(frame.image)).score)
            labels.append(dataset.labels(frame) if frame.label is not None else np.zeros(scores[-1].shape, np.uint8))
        if args.best_f1:
            threshold, how_text = best_f1_threshold(scores, labels), "best pixel F1"
        else:
            in_distribution = [s[lab == 0] for s, lab in zip(scores, labels, strict=True)]
            threshold = threshold_for_false_positive_rate(in_distribution, args.target_fpr)
            how_text = f"at most {args.target_fpr:g} of in-distribution pixels flagged"
    except (CheckpointError, FileNotFoundError, KeyError, OSError, RuntimeError, ValueError) as error:
        print(f"gradunc-calibrate: {error}", file=sys.stderr)
        return 1
    params = {**asdict(settings), "threshold": threshold}
    comment = f"# gradunc-calibrate: {how_text}, {len(scores)} frames of {dataset.name}\n"
    Path(args.out).write_text(
        comment + yaml.safe_dump({PARAMETER_FILE_KEY: {"ros__parameters": params}}, sort_keys=False)
    )
    print(f"threshold {threshold:.6g} ({how_text}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
