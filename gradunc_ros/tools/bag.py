"""gradunc-bag: rosbag2 tools (mcap and sqlite3, through the pure-Python rosbags package).

from-images  a folder of frames (and labels) to a bag
evaluate     run the pipeline over bags offline (no DDS): many at once (--workers, or
             --engine ray), resumable; write the node's topics to one output bag per bag and
             score them against the label topic, merged exactly over the set; or score bags
             recorded from the live node (--recorded)
play         publish a bag's image topics live with rclpy, at the recorded rate, or in
             lockstep with the node (--answer)
record       write topics from the live node to a bag

The offline commands are in bag_offline.py (rosbags only), the live ones in bag_live.py (rclpy).
"""

from __future__ import annotations

import argparse
import sys

from gradunc_ros.tools.common import (
    ToolParser,
    add_model_options,
    add_score_options,
    existing_folder,
    new_bag,
    non_negative_float,
    non_negative_int,
    one_line_errors,
    output_file,
    positive_float,
    positive_int,
    results_folder,
)


def _existing_bag(text: str):
    from pathlib import Path

    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def _from_images(args: argparse.Namespace) -> int:
    from gradunc_ros.tools.bag_offline import from_images

    return from_images(args)


def _evaluate(args: argparse.Namespace) -> int:
    from gradunc_ros.fleet.run import evaluate_fleet

    return evaluate_fleet(args)


def _play(args: argparse.Namespace) -> int:
    from gradunc_ros.tools.bag_live import play

    return play(args)


def _record(args: argparse.Namespace) -> int:
    from gradunc_ros.tools.bag_live import record

    return record(args)


def build_parser() -> argparse.ArgumentParser:
    parser = ToolParser(prog="gradunc-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("from-images", help="a folder of frames (and label images) to a bag")
    convert.add_argument("images", type=existing_folder, help="folder of frames (.jpg, .png), in name order")
    convert.add_argument("--labels", type=existing_folder, help="folder of label images with the frames' names (.png)")
    convert.add_argument("--prefix", default="", help="only frames whose names start with this (a sequence)")
    convert.add_argument("--out", type=new_bag, required=True, help="bag folder to create (must not exist)")
    convert.add_argument("--topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    convert.add_argument("--label-topic", default="/camera/labels_gt", help="topic of the label images (mono8)")
    convert.add_argument(
        "--compressed", action="store_true", help="CompressedImage on <topic>/compressed with the files' own bytes"
    )
    convert.add_argument("--rate", type=positive_float, default=10.0, help="frames per second of the stamps")
    convert.add_argument("--frame-id", default="camera", help="header frame_id")
    convert.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    convert.add_argument("--max-frames", type=positive_int)
    convert.set_defaults(run=_from_images)

    score = commands.add_parser(
        "evaluate", help="run the pipeline over bags offline and score them (many at once, resumable)"
    )
    score.add_argument("bags", nargs="+", type=_existing_bag, metavar="BAG_OR_FOLDER",
                       help="bags (folders with metadata.yaml, or .mcap files), or folders holding bags")  # fmt: skip
    score.add_argument("--topic", default="/camera/image_raw", help="camera topic (its /compressed form is found too)")
    score.add_argument("--label-topic", default="/camera/labels_gt")
    score.add_argument("--label-map", default="camvid", choices=("binary", "camvid"), help="label ids to 0/1/255")
    score.add_argument(
        "--allow-unlabelled", action="store_true",
        help="evaluate a bag without the label topic (outputs and frame rows, no metrics) instead of failing it",
    )  # fmt: skip
    score.add_argument("--recorded", action="store_true", help="score the node's recorded uncertainty topic instead")
    score.add_argument(
        "--out", type=results_folder,
        help="results folder (new, or one of an earlier run with the same settings: done bags are skipped): "
        "bags/ (one output bag per input bag), bags.jsonl, frames.jsonl, manifest.json",
    )  # fmt: skip
    score.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="of the output bags")
    score.add_argument(
        "--threshold",
        type=float,
        help="OoD mask threshold for the output bags (default: the one calibrated for the score with these weights)",
    )
    score.add_argument("--min-pred", type=non_negative_int, default=50)
    score.add_argument("--min-gt", type=non_negative_int, default=10)
    score.add_argument("--summary", type=output_file, help="also write the JSON summary here")
    score.add_argument("--engine", default="local", choices=("local", "ray"), help="local processes, or Ray")
    score.add_argument(
        "--workers", type=positive_int,
        help="bags at once (local default 1: in this process; ray default: this machine's cores / --cpus-per-task)",
    )  # fmt: skip
    score.add_argument("--address", help="Ray cluster to use (default: a Ray started for this run, then stopped)")
    score.add_argument("--cpus-per-task", type=positive_float, help="CPUs each Ray task declares (default 1)")
    score.add_argument("--gpus-per-task", type=non_negative_float, help="GPUs each Ray task declares (default 0)")
    score.add_argument(
        "--stall-after", type=positive_float,
        help="seconds without a sign of life (a new frame, a label parked or a metric chunk merged) after which "
        "a bag's task is stopped and the bag failed; with --workers 2 or more, or Ray (default 600)",
    )  # fmt: skip
    score.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_model_options(score)
    add_score_options(score)
    score.set_defaults(run=_evaluate)

    live = commands.add_parser("play", help="publish a bag's image topics live")
    live.add_argument("bag", type=_existing_bag)
    live.add_argument("--topics", nargs="*", help="only these topics (default: every image topic)")
    live.add_argument("--rate", type=positive_float, default=1.0, help="multiple of the recorded rate")
    live.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor data (best effort)")
    live.add_argument("--restamp", action="store_true", help="stamp each frame with the time it is sent")
    live.add_argument(
        "--subscribers", type=non_negative_int, default=0,
        help="wait until every topic played has this many subscribers (at most --wait s, else exit 1); 0: just wait",
    )  # fmt: skip
    live.add_argument("--wait", type=positive_float, default=2.0, help="seconds to wait for the matches first")
    live.add_argument(
        "--answer", nargs="+", metavar="TOPIC",
        help="lockstep: send the next frame once each of these topics has an output with this frame's stamp",
    )  # fmt: skip
    live.add_argument("--camera", help="the topic the node answers (default: the bag's */image_raw or */compressed)")
    live.add_argument("--answer-timeout", type=positive_float, default=30.0, help="seconds to wait for an answer")
    live.add_argument("--retries", type=non_negative_int, default=1, help="resend an unanswered frame this often")
    live.add_argument("--linger", type=float, default=2.0, help="seconds to stay after the last message")
    live.add_argument("--stamp-map", type=output_file, help="write recorded -> published stamps (JSON) here")
    live.set_defaults(run=_play)

    keep = commands.add_parser("record", help="write live Image topics to a bag")
    keep.add_argument("topics", nargs="+")
    keep.add_argument("--out", type=new_bag, required=True, help="bag folder to create (must not exist)")
    keep.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    keep.add_argument("--seconds", type=positive_float, default=600.0, help="stop after this long at the latest")
    keep.add_argument("--idle", type=positive_float, default=5.0, help="stop when nothing arrived for this long")
    keep.add_argument("--ready-file", type=output_file, help="write 'ready' here once every stop topic has a publisher")
    keep.add_argument("--match-timeout", type=positive_float, default=60.0, help="seconds to wait for the publishers")
    keep.add_argument("--count", type=positive_int, help="stop once the stop topics have this many stamps each")
    keep.add_argument(
        "--stop-topics", nargs="+", metavar="TOPIC", help="topics --count and --ready-file apply to (default: all)"
    )
    keep.add_argument("--linger", type=float, default=2.0, help="seconds to keep recording after --count is reached")
    keep.set_defaults(run=_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        if not args.recorded and not args.out:
            parser.error("evaluate needs --out (the results folder, with the output bags) unless --recorded")
        given = [name for name in ("address", "cpus_per_task", "gpus_per_task") if getattr(args, name) is not None]
        if given and args.engine != "ray":
            parser.error(f"--{given[0].replace('_', '-')} is for --engine ray")
        if args.stall_after is not None and args.engine == "local" and (args.workers or 1) == 1:
            parser.error("--stall-after needs worker processes (--workers 2 or more) or --engine ray: a bag stuck "
                         "in this process cannot be stopped")  # fmt: skip
        args.stall_after = 600.0 if args.stall_after is None else args.stall_after
        args.cpus_per_task = 1.0 if args.cpus_per_task is None else args.cpus_per_task
        args.gpus_per_task = 0.0 if args.gpus_per_task is None else args.gpus_per_task
        if args.workers is None:
            import os

            args.workers = max(1, int((os.cpu_count() or 1) // args.cpus_per_task)) if args.engine == "ray" else 1
    return one_line_errors("gradunc-bag", lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
