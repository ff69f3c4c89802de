"""gradunc-infer: images in; per image an .npz (labels, score[, logits]) and a colour overlay PNG.

Everything is at the image's own resolution.  Scores: higher = more
anomalous; gradient scores (pgn_oh, pgn_uni) are the natural log of the
gradient norm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gradunc_ros.evaluation.datasets import read_rgb
from gradunc_ros.models import CheckpointError, describe_models, model_names
from gradunc_ros.overlay import blend, colourise
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.tools.common import add_model_options, add_score_options, load_from, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradunc-infer",
        description=__doc__,
        epilog="registered models:\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser, model_names())
    add_score_options(parser)
    parser.add_argument("--save-logits", action="store_true", help="also store C x H x W float32 logits")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        loaded = load_from(args)
        pipeline = SegmentationPipeline(loaded, settings_from(args), device=args.device, input_size=args.input_size)
    except (CheckpointError, KeyError, RuntimeError, ValueError) as error:
        print(f"gradunc-infer: {error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(args.images, desc="images", unit="image", disable=len(args.images) < 2):
        try:
            image = read_rgb(path)
        except OSError as error:
            print(f"gradunc-infer: skipping {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        prediction = pipeline.predict(image, keep_logits=args.save_logits)
        stem = out / Path(path).stem
        arrays = {"labels": prediction.labels, "score": prediction.score}
        if prediction.logits is not None:
            arrays["logits"] = prediction.logits
        np.savez_compressed(stem.with_suffix(".npz"), **arrays)
        overlay = blend(image, colourise(prediction.labels, loaded.colours))
        cv2.imwrite(str(stem.with_suffix(".png")), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    print(f"wrote {len(args.images) - failed} result(s) to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
