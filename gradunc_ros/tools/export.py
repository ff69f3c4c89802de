"""gradunc-export: turn trained weights into a shipped model file, and measure it; or export to ONNX.

--out *.safetensors: loads the weights, writes them (by default as float16)
with metadata (the network input size and anything given with --note), then
measures the mean IoU of the written file on a CamVid-style split (--data)
through the same pipeline that gradunc-infer and the node use, and stores it
in the metadata too.

--out *.onnx: the model (any the tools load: registered, a factory) and the
uncertainty head for the score options (default: the node's default score)
in one graph, opset 17: outputs labels, score and logits; a fixed network
input size (--input-size, default the card's) or dynamic height and width
(--dynamic, checked at --check-sizes).  Before the file is written, it runs
in ONNX Runtime on real frames (--frames or --data) at each size and is
compared with PyTorch; a graph that disagrees is refused with the figures.
The card, score settings and threshold table travel in its metadata.
Run it with backend onnxruntime or openvino (node parameter backend,
--backend in the tools).
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
from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    add_score_options,
    existing_folder,
    load_from,
    one_line_errors,
    output_file,
    positive_int,
    settings_from,
    size_argument,
)
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
    parser = ToolParser(
        prog="gradunc-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_options(parser)
    add_score_options(parser)
    parser.add_argument("--out", type=output_file, required=True, help="the .safetensors or .onnx file to write")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES), help="stored precision (default float16)")
    parser.add_argument("--data", help="CamVid-style folder: measure the written weights on it (mIoU), or check an "
                        "ONNX graph on its --split frames")  # fmt: skip
    parser.add_argument("--split", default="val", help="split to measure or check on (default: val)")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="extra metadata")
    onnx = parser.add_argument_group("ONNX (--out *.onnx): the model and the head for the score options in one graph")
    onnx.add_argument("--frames", type=existing_folder, help="images to check the graph on (or --data)")
    onnx.add_argument("--check-frames", type=positive_int, default=4, help="how many frames to check on (default 4)")
    onnx.add_argument("--dynamic", action="store_true", help="dynamic height and width (default: --input-size only)")
    onnx.add_argument(
        "--check-sizes", type=sizes_argument, help="with --dynamic: the sizes WxH,WxH,... checked (default: the "
        "input size)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.check_sizes and not args.dynamic:
        parser.error("--check-sizes is for a --dynamic graph; a fixed one has its --input-size")
    if args.backend != "torch":
        parser.error("gradunc-export exports a PyTorch model (backend torch)")
    if args.out.suffix == ".onnx":
        return one_line_errors("gradunc-export", lambda: run_onnx(args))
    if not args.weights:
        parser.error("--weights is needed to write a .safetensors file")
    return one_line_errors("gradunc-export", lambda: run(args))


def sizes_argument(text: str) -> list[tuple[int, int]]:
    return [size_argument(part) for part in text.split(",") if part.strip()]


def check_frames(args: argparse.Namespace) -> list:
    """The frames an ONNX graph is checked on: --frames, else the --data split's images."""
    from gradunc_ros.imageio import read_rgb

    if args.frames:
        paths = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    elif args.data:
        paths = [frame.image for frame in camvid_frames(args.data, args.split)]
    else:
        raise ValueError("an ONNX export is checked on real frames: give --frames DIR or --data DIR")
    if not paths:
        raise ValueError("no frames to check the ONNX graph on (JPEG or PNG)")
    step = max(1, len(paths) // args.check_frames)
    return [read_rgb(path) for path in paths[::step][: args.check_frames]]


def run_onnx(args: argparse.Namespace) -> int:
    from gradunc_ros.deploy.onnx_export import export_onnx
    from gradunc_ros.thresholds import table_for_weights

    settings = settings_from(args)
    loaded = load_from(args)
    size = args.input_size or loaded.input_size
    if size is None and not args.check_sizes:
        raise ValueError(f"{loaded.name} has no input size in its card: give --input-size WxH")
    sizes = args.check_sizes if args.dynamic and args.check_sizes else [size]
    report = export_onnx(
        loaded, settings, args.out, sizes, check_frames(args), dynamic=args.dynamic,
        table=table_for_weights(loaded.weights),
    )  # fmt: skip
    for check in report.checks:
        print(f"checked {check.describe()}")
    print(f"wrote {args.out} ({settings.name}, {'dynamic size' if args.dynamic else 'fixed size'})")
    return 0


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
