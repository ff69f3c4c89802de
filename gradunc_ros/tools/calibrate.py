"""gradunc-calibrate: pick the node's OoD threshold and write a parameter YAML the node and launch file accept.

Two ways: --target-fpr F uses in-distribution pixels only (no OoD labels
needed: the threshold flags at most F of them), --best-f1 uses a labelled
set (the pixel-level best-F1 threshold, and the scale of the node's
confidence image fitted to the same labels).  The mask is score > threshold.

With --table it calibrates every score setting at once (the --scores x --ps x
--modes x --resolutions x --gradients-of) and writes a threshold table; saved beside the
weights as <weights name>.thresholds.yaml, the node, gradunc-bag evaluate and
gradunc-infer use it for whichever score runs (thresholds.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

import yaml
from tqdm import tqdm

from gradunc_ros.evaluation.calibration import calibrate
from gradunc_ros.evaluation.datasets import DATASET_KINDS, read_ood_dataset
from gradunc_ros.streams.topics import PARAMETER_FILE_KEY
from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    add_score_options,
    add_sweep_options,
    assemble_sweep,
    one_line_errors,
    output_file,
    positive_int,
    settings_from,
    sweep_from,
)
from gradunc_ros.tools.evaluate import SWEEP_DEFAULTS


def _target_fpr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(
        prog="gradunc-calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="camvid", choices=sorted(DATASET_KINDS), help="layout of --data")
    parser.add_argument("--data", required=True, help="data set folder")
    parser.add_argument("--split", default="val")
    add_model_options(parser)
    add_score_options(parser)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--target-fpr", type=_target_fpr, help="largest share of in-distribution pixels flagged")
    how.add_argument("--best-f1", action="store_true", help="best pixel F1 on the labelled set")
    parser.add_argument("--max-frames", type=positive_int)
    parser.add_argument(
        "--table", action="store_true", help="every score setting of the lists below: write a threshold table"
    )
    add_sweep_options(parser.add_argument_group("with --table"), {**SWEEP_DEFAULTS, "layer": ["last"]})
    parser.add_argument("--out", type=output_file, required=True, help="parameter YAML (or threshold table) to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from gradunc_ros.thresholds import write_table

    wanted = sweep_from(args) if args.table else [settings_from(args)]
    if not wanted:
        raise ValueError("no valid score setting in these combinations (the penultimate layer: weights, last_layer)")
    dataset = read_ood_dataset(args.dataset, args.data, args.split)
    assembly = assemble_sweep(args, wanted, "gradunc-calibrate")
    loaded, pipeline = assembly.loaded, assembly.pipeline
    frames = len(dataset.frames[: args.max_frames])
    how = (
        "best pixel F1" if args.best_f1 else f"at most {args.target_fpr:g} of in-distribution pixels flagged"
    ) + f", {frames} frames of {dataset.name}"
    found = calibrate(
        pipeline, dataset, wanted, args.target_fpr, args.max_frames, progress=lambda items, **kw: tqdm(items, **kw)
    )
    thresholds, scales = found.thresholds, found.confidence_scales
    if args.table:
        weights = str(loaded.weights.name if loaded.weights else "")
        write_table(args.out, thresholds, how, loaded.name, weights, scales)
        unfitted = len(thresholds) - len(scales)
        fitted = f" and {len(scales)} confidence scales" + (f" (none fits the other {unfitted})" if unfitted else "")
        print(f"{len(thresholds)} thresholds{fitted} ({how}); wrote {args.out}")
        return 0
    settings = wanted[0]
    threshold = thresholds[settings.name]
    params = {**asdict(settings), "threshold": threshold, "threshold_score": settings.name}
    if settings.name in scales:  # the confidence image's scale, fitted with the threshold
        params["confidence_scale"] = scales[settings.name]
    comment = f"# gradunc-calibrate: {how}\n"
    args.out.write_text(comment + yaml.safe_dump({PARAMETER_FILE_KEY: {"ros__parameters": params}}, sort_keys=False))
    print(f"threshold {threshold:.6g} ({how}); wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return one_line_errors("gradunc-calibrate", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
