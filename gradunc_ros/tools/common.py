"""Argument types and options the command-line tools share."""

from __future__ import annotations

import argparse

from gradunc_ros.models.preprocess import parse_size
from gradunc_ros.uncertainty import SCORES, HeadSettings
from gradunc_ros.uncertainty.pgn import MODES

DEFAULTS = HeadSettings()


def size_argument(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT on the command line, (height, width) inside."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_score_options(parser: argparse.ArgumentParser) -> None:
    """--score, --p, --mode, --layer, with the head's defaults."""
    parser.add_argument("--score", default=DEFAULTS.score, choices=SCORES, help=f"score (default: {DEFAULTS.score})")
    parser.add_argument(
        "--p", type=float, default=DEFAULTS.p, help=f"exponent of the gradient norm (default: {DEFAULTS.p})"
    )
    parser.add_argument(
        "--mode", default=DEFAULTS.mode, choices=MODES, help="exact gradient or the paper's reference code"
    )
    parser.add_argument(
        "--layer", default=DEFAULTS.layer, choices=("last", "penultimate"), help="which layer's gradient"
    )


def settings_from(args: argparse.Namespace) -> HeadSettings:
    return HeadSettings(score=args.score, p=args.p, mode=args.mode, layer=args.layer)


def add_model_options(parser: argparse.ArgumentParser, model_names: list[str]) -> None:
    parser.add_argument("--model", choices=model_names, help="architecture (default: the shipped model's)")
    parser.add_argument("--weights", help="weights file, .safetensors or .pth (default: the shipped model)")
    parser.add_argument(
        "--num-classes", type=int, help="class count of a .pth without metadata (default: the weights' or model's)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--input-size", type=size_argument, help="network input WIDTHxHEIGHT (default: the model's)")


def load_from(args: argparse.Namespace):
    """The model that --model, --weights and --num-classes name (see add_model_options)."""
    from ..models import load_model

    return load_model(args.model, args.weights, num_classes=args.num_classes)
