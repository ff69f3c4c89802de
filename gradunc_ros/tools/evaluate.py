"""gradunc-eval: OoD segmentation metrics of a model on a data set, for many scores from one forward pass each.

Writes results.json, results.md (a table, best AuPRC first) and plots
(curves.png, histograms.png, examples.png) to --out.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from tqdm import tqdm

from gradunc_ros.evaluation.datasets import DATASET_KINDS, read_ood_dataset
from gradunc_ros.evaluation.report import markdown_table, write_report
from gradunc_ros.evaluation.runner import evaluate
from gradunc_ros.models import CheckpointError, describe_models, model_names
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.tools.common import add_model_options, load_from
from gradunc_ros.uncertainty import SCORES, HeadSettings
from gradunc_ros.uncertainty.head import GRADIENT_SCORES
from gradunc_ros.uncertainty.pgn import MODES


def score_settings(scores: list[str], ps: list[float], modes: list[str], layers: list[str]) -> list[HeadSettings]:
    """Baselines once each; gradient scores for every p, mode and layer."""
    settings = []
    for score in scores:
        if score in GRADIENT_SCORES:
            settings += [
                HeadSettings(score, p, mode, "last_layer", layer)
                for p, mode, layer in itertools.product(ps, modes, layers)
            ]
        else:
            settings.append(HeadSettings(score))
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--max-frames", type=int, help="only the first N frames")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        dataset = read_ood_dataset(args.dataset, args.data, args.split)
        loaded = load_from(args)
        settings = score_settings(args.scores, args.p, args.modes, args.layers)
        pipeline = SegmentationPipeline(loaded, HeadSettings(), device=args.device, input_size=args.input_size)
        evaluation = evaluate(pipeline, dataset, settings, args.max_frames, progress=tqdm)
        extra = {"model": loaded.spec.name, "weights": str(loaded.weights), "device": str(pipeline.device)}
        written = write_report(evaluation, Path(args.out), loaded.colours, extra)
    except (CheckpointError, FileNotFoundError, KeyError, OSError, RuntimeError, ValueError) as error:
        print(f"gradunc-eval: {error}", file=sys.stderr)
        return 1
    print(markdown_table(evaluation))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
