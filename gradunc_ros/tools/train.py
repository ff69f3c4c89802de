"""gradunc-train: train a registered segmentation model on a CamVid-style folder (held-out-class protocol)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from gradunc_ros.models.registry import describe_models, model_names
from gradunc_ros.tools.common import (
    ToolParser,
    non_negative_int,
    one_line_errors,
    output_folder,
    positive_float,
    positive_int,
    size_argument,
)
from gradunc_ros.training import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(
        prog="gradunc-train",
        description=__doc__,
        epilog="registered models:\n" + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="dataset folder with train/ and val/ (images/, labels/)")
    parser.add_argument(
        "--out",
        type=output_folder,
        required=True,
        help="output folder: last.pt (resumable), best.safetensors, history.jsonl",
    )
    parser.add_argument("--model", default="erfnet", choices=model_names(), help="architecture (default: erfnet)")
    parser.add_argument("--epochs", type=positive_int, default=150)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--crop", type=size_argument, default=(240, 320), help="training crop WxH (default 320x240)")
    parser.add_argument("--val-input", type=size_argument, default=(240, 320), help="network input WxH at validation")
    parser.add_argument("--lr", type=positive_float, default=5e-4)
    parser.add_argument("--val-every", type=positive_int, default=5, help="validate every N epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads for torch (0: its default)")
    parser.add_argument("--max-frames", type=positive_int, help="only the first N frames per split (smoke runs)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing last.pt instead of resuming")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        data=args.data, out=args.out, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        crop=args.crop, val_input=args.val_input, lr=args.lr, val_every=args.val_every, seed=args.seed,
        device=args.device, max_frames=args.max_frames,
    )  # fmt: skip

    def work() -> int:
        summary = train(config, resume=not args.fresh, log=lambda line: print(line, flush=True))
        print(json.dumps(summary))
        return 0

    return one_line_errors("gradunc-train", work)


if __name__ == "__main__":
    sys.exit(main())
