"""gradunc-infer: images in; per image an .npz (labels, score, ood_mask[, logits]) and a colour overlay PNG.

Everything is at the image's own resolution.  Scores: higher = more
anomalous; gradient scores (pgn_oh, pgn_uni) are the natural log of the
gradient norm.  The OoD mask uses the node's threshold rule: --threshold,
else the threshold calibrated for the score with these weights, else none
(no mask, said once).  Images are decoded as the node decodes compressed
frames: a truncated JPEG is refused, not filled in.  Outputs are named after
the images; images of the same name in different folders are kept apart in
sub-folders of --out mirroring theirs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gradunc_ros.imageio import ImageDecodeError, read_rgb
from gradunc_ros.models import describe_models
from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    add_score_options,
    assemble_from,
    one_line_errors,
    output_folder,
    settings_from,
)


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(
        prog="gradunc-infer",
        description=__doc__,
        epilog="registered models:\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    add_score_options(parser)
    parser.add_argument(
        "--threshold", type=float, help="OoD mask threshold (default: the one calibrated for the score, if any)"
    )
    parser.add_argument("--save-logits", action="store_true", help="also store C x H x W float32 logits")
    parser.add_argument("--out", type=output_folder, required=True, help="output folder (created)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    return parser


def output_stems(images: list[str], out: Path) -> list[Path]:
    """Where each image's outputs go (without suffix): ``out/<stem>`` while the stems are distinct, else
    mirrored below the images' common folder, so that no two images share an output.  The same file
    given twice is a ValueError."""
    paths = [Path(image).resolve() for image in images]
    if len(set(paths)) != len(paths):
        twice = next(str(images[i]) for i, p in enumerate(paths) if paths.index(p) != i)
        raise ValueError(f"{twice} is given more than once")
    if len({p.stem for p in paths}) == len(paths):
        return [out / p.stem for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    stems = [out / p.relative_to(common).parent / p.stem for p in paths]
    if len(set(stems)) != len(stems):  # x.jpg and x.png in one folder: keep the suffix in the name
        stems = [out / p.relative_to(common).parent / p.name.replace(".", "_") for p in paths]
    return stems


def run(args: argparse.Namespace) -> int:
    from gradunc_ros.outputs import render_outputs

    stems = output_stems(args.images, args.out)
    assembly = assemble_from(args, settings_from(args), "gradunc-infer", args.threshold)
    loaded, pipeline, choice = assembly.loaded, assembly.pipeline, assembly.threshold
    mask = choice.mask()
    failed = 0
    for path, stem in tqdm(
        list(zip(args.images, stems, strict=True)), desc="images", unit="image", disable=len(stems) < 2
    ):
        try:
            image = read_rgb(path)
        except (OSError, ImageDecodeError) as error:
            print(f"gradunc-infer: skipping {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        prediction = pipeline.predict(image, keep_logits=args.save_logits)
        outputs = render_outputs(image, prediction, len(loaded.class_names), mask, loaded.colours, overlay=True)
        arrays = {"labels": prediction.labels, "score": prediction.score}
        if "ood_mask" in outputs:
            arrays["ood_mask"] = outputs["ood_mask"][0]
        if prediction.logits is not None:
            arrays["logits"] = prediction.logits
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(stem.with_name(stem.name + ".npz"), **arrays)
        cv2.imwrite(str(stem.with_name(stem.name + ".png")), cv2.cvtColor(outputs["overlay"][0], cv2.COLOR_RGB2BGR))
    print(f"wrote {len(stems) - failed} result(s) to {args.out}" + (f" ({choice.describe()})" if mask else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return one_line_errors("gradunc-infer", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
