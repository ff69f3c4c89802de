"""gradunc-export: turn trained weights into a shipped model file, and measure it.

Loads the weights, writes them (by default as float16) with metadata (the
network input size and anything given with --note), then measures the mean
IoU of the written file on a CamVid-style split through the same pipeline
that gradunc-infer and the node use, and stores it in the metadata too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from tqdm import tqdm

from gradunc_ros.evaluation.datasets import camvid_frames
from gradunc_ros.evaluation.segmentation import miou_over_frames
from gradunc_ros.models import load_model, save_safetensors
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.tools.common import ToolParser, one_line_errors, output_file, positive_int, size_argument
from gradunc_ros.uncertainty import HeadSettings

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def measure_miou(weights: str, data: str, split: str, input_size: tuple[int, int] | None, device: str) -> dict:
    """Load time, mean IoU and per-class IoU of a weights file, through the inference pipeline."""
    start = time.perf_counter()
    loaded = load_model(weights=weights)
    load_seconds = time.perf_counter() - start
    pipeline = SegmentationPipeline(loaded, HeadSettings(score="msp"), device=device, input_size=input_size)
    frames = camvid_frames(data, split)
    miou, ious = miou_over_frames(
        frames, lambda image: pipeline.predict(image).labels, len(loaded.class_names),
        progress=lambda items: tqdm(items, desc=f"{split} mIoU", unit="frame"),
    )  # fmt: skip
    per_class = dict(zip(loaded.class_names, ious, strict=True))
    return {"split": split, "frames": len(frames), "miou": miou, "iou": per_class, "load_seconds": load_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(prog="gradunc-export", description=__doc__)
    parser.add_argument("--weights", required=True, help="trained weights (.safetensors from gradunc-train, or .pth)")
    parser.add_argument("--model", help="architecture, when the weights file does not say")
    parser.add_argument("--num-classes", type=positive_int, help="class count, when the weights file does not say")
    parser.add_argument("--out", type=output_file, required=True, help="the .safetensors file to write")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES), help="stored precision (default float16)")
    parser.add_argument("--input-size", type=size_argument, help="network input WxH the weights are meant for")
    parser.add_argument("--data", help="CamVid-style folder to measure the written file on")
    parser.add_argument("--split", default="val", help="split to measure on (default: val)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="extra metadata")
    args = parser.parse_args(argv)
    return one_line_errors("gradunc-export", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.weights, num_classes=args.num_classes)
    extra = dict(note.split("=", 1) for note in args.note)
    if args.input_size:
        extra["input_size"] = f"{args.input_size[1]}x{args.input_size[0]}"
    save_safetensors(
        loaded.model, args.out, model_name=loaded.name, class_names=loaded.class_names,
        dtype=DTYPES[args.dtype], extra=extra,
    )  # fmt: skip
    if args.data:
        result = measure_miou(args.out, args.data, args.split, args.input_size, args.device)
        extra[f"{args.split}_miou"] = f"{result['miou']:.4f}"
        extra[f"{args.split}_iou"] = json.dumps({k: round(v, 4) for k, v in result["iou"].items()})
        save_safetensors(
            load_model(weights=args.out).model, args.out, model_name=loaded.name,
            class_names=loaded.class_names, dtype=DTYPES[args.dtype], extra=extra,
        )  # fmt: skip
        print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
