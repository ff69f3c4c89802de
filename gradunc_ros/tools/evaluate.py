"""gradunc-eval: OoD segmentation metrics of a model on a data set, for many scores from one forward pass each.

Writes results.json, results.md (a table, best AuPRC first) and plots
(curves.png, histograms.png, examples.png) to --out.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

from tqdm import tqdm

from gradunc_ros.evaluation.bootstrap import DRAWS, SEED
from gradunc_ros.evaluation.datasets import DATASET_KINDS, read_ood_dataset
from gradunc_ros.evaluation.report import default_text, markdown_table, write_report
from gradunc_ros.evaluation.runner import evaluate
from gradunc_ros.models import describe_models, model_names
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    load_from,
    non_negative_int,
    one_line_errors,
    output_folder,
    positive_int,
)
from gradunc_ros.uncertainty import SCORES, HeadSettings
from gradunc_ros.uncertainty.head import GRADIENT_SCORES
from gradunc_ros.uncertainty.pgn import GRADIENTS_OF, MODES


def score_settings(
    scores: list[str], ps: list[float], modes: list[str], layers: list[str], gradients_of: list[str] = ("weights",)
) -> list[HeadSettings]:
    """Baselines once each; gradient scores for every p, mode, layer and parameter set (the penultimate
    layer only for its weights)."""
    settings = []
    for score in scores:
        if score in GRADIENT_SCORES:
            settings += [
                HeadSettings(score, p, mode, "last_layer", layer, gradient_of)
                for p, mode, layer, gradient_of in itertools.product(ps, modes, layers, gradients_of)
                if layer == "last" or gradient_of == "weights"
            ]
        else:
            settings.append(HeadSettings(score))
    return settings


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
    add_model_options(parser, model_names())
    parser.add_argument("--scores", nargs="+", default=list(SCORES), choices=SCORES, help="scores (default: all)")
    parser.add_argument(
        "--p", nargs="+", type=float, default=[0.1, 0.3, 0.5, 1.0, 2.0], help="p values of gradient scores"
    )
    parser.add_argument("--modes", nargs="+", default=["exact", "reference"], choices=MODES)
    parser.add_argument("--layers", nargs="+", default=["last"], choices=("last", "penultimate"))
    parser.add_argument(
        "--gradient-of",
        nargs="+",
        default=list(GRADIENTS_OF),
        choices=GRADIENTS_OF,
        help="the last layer's weights, its bias (the class factor alone), or the whole layer (default: all)",
    )
    parser.add_argument("--max-frames", type=positive_int, help="only the first N frames")
    parser.add_argument(
        "--bootstrap", type=non_negative_int, default=DRAWS, help=f"frame bootstrap draws (default {DRAWS}; 0: none)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the bootstrap (default {SEED})")
    parser.add_argument("--no-factors", action="store_true", help="leave out the factor report")
    parser.add_argument("--out", type=output_folder, required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        settings = score_settings(args.scores, args.p, args.modes, args.layers, args.gradient_of)
    except ValueError as error:
        parser.error(str(error))
    return one_line_errors("gradunc-eval", lambda: run(args, settings))


def run(args: argparse.Namespace, settings: list[HeadSettings]) -> int:
    dataset = read_ood_dataset(args.dataset, args.data, args.split)
    loaded = load_from(args)
    pipeline = SegmentationPipeline(loaded, HeadSettings(), device=args.device, input_size=args.input_size)
    evaluation = evaluate(
        pipeline, dataset, settings, args.max_frames, progress=tqdm, factors=not args.no_factors,
        draws=args.bootstrap, seed=args.seed,
    )  # fmt: skip
    weights = os.path.relpath(loaded.weights) if loaded.weights else "random"
    extra = {"model": loaded.spec.name, "weights": weights, "device": str(pipeline.device)}
    written = write_report(evaluation, args.out, loaded.colours, extra)
    print(markdown_table(evaluation))
    if evaluation.default:
        print(default_text(evaluation))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
