"""gradunc-eval: OoD segmentation metrics of a model on a data set, for many scores from one forward pass each.

Writes results.json, results.md (a table, best AuPRC first) and plots
(curves.png, histograms.png, examples.png) to --out.
"""

from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from gradunc_ros.evaluation.bootstrap import DRAWS, SEED
from gradunc_ros.evaluation.datasets import DATASET_KINDS, read_ood_dataset
from gradunc_ros.evaluation.report import default_text, markdown_table, write_report
from gradunc_ros.evaluation.runner import evaluate
from gradunc_ros.models import describe_models
from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    add_sweep_options,
    assemble_sweep,
    non_negative_int,
    one_line_errors,
    output_folder,
    positive_int,
    sweep_from,
)
from gradunc_ros.uncertainty import GRADIENTS_OF, SCORES, HeadSettings
from gradunc_ros.uncertainty.pgn import MODES

# What gradunc-eval computes unless told: every score, the paper's p values, both modes, the last layer's three
# parameter sets, at the last layer's resolution.
SWEEP_DEFAULTS = {
    "score": list(SCORES), "p": [0.1, 0.3, 0.5, 1.0, 2.0], "mode": list(MODES), "resolution": ["last_layer"],
    "layer": ["last"], "gradient_of": list(GRADIENTS_OF),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(
        prog="gradunc-eval",
        description=__doc__,
        epilog="data set kinds:\n" + "\n".join(f"  {k:16} {v}" for k, v in DATASET_KINDS.items())
        + "\n\nregistered models:\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--dataset", default="camvid", choices=sorted(DATASET_KINDS), help="layout of --data")
    parser.add_argument("--data", required=True, help="data set folder")
    parser.add_argument("--split", default="val", help="split, where the layout has splits (default: val)")
    add_model_options(parser)
    add_sweep_options(parser, SWEEP_DEFAULTS, aliases={"p": "--p", "gradient_of": "--gradient-of"})
    parser.add_argument("--max-frames", type=positive_int, help="only the first N frames")
    parser.add_argument(
        "--bootstrap", type=non_negative_int, default=DRAWS, help=f"frame bootstrap draws (default {DRAWS}; 0: none)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the bootstrap (default {SEED})")
    parser.add_argument("--no-factors", action="store_true", help="leave out the factor report")
    parser.add_argument("--out", type=output_folder, required=True, help="output folder")
    args = parser.parse_args(argv)
    settings = sweep_from(args)
    if not settings:
        parser.error("no valid score setting in these combinations (the penultimate layer: weights, last_layer)")
    return one_line_errors("gradunc-eval", lambda: run(args, settings))


def run(args: argparse.Namespace, settings: list[HeadSettings]) -> int:
    dataset = read_ood_dataset(args.dataset, args.data, args.split)
    assembly = assemble_sweep(args, settings, "gradunc-eval", start=HeadSettings())
    loaded, pipeline = assembly.loaded, assembly.pipeline
    evaluation = evaluate(
        pipeline, dataset, settings, args.max_frames, progress=tqdm,
        factors=not args.no_factors and pipeline.head.has_layer_input,  # the report needs the layer's input
        draws=args.bootstrap, seed=args.seed,
    )  # fmt: skip
    weights = os.path.relpath(loaded.weights) if loaded.weights else "random"
    extra = {"model": loaded.name, "weights": weights, "device": str(pipeline.device)}
    written = write_report(evaluation, args.out, loaded.colours, extra)
    print(markdown_table(evaluation))
    if evaluation.default:
        print(default_text(evaluation))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
