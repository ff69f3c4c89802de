"""gradunc-demo: the whole loop on recorded frames, as `make demo` runs it.

A sequence of frames becomes a bag; gradunc_node starts with the shipped
default model; a recorder subscribes to its outputs; the bag is played into
the node in lockstep (the next frame once the node has answered the last),
so every frame is scored however busy the machine is; the recording is
scored against the labels.  Writes to --out: input.bag/, output.bag/,
contact_sheet.png, summary.md, summary.json and node.log (an earlier run's
are removed first).

It runs on a private ROS graph (a free domain, localhost discovery, stock
transports: ros/isolation.py), never on the shell's; every wait is bounded;
its processes die with it; and it fails, with one line saying why, when a
frame goes unanswered or a metric is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from gradunc_ros.overlay import blend, colourise
from gradunc_ros.processes import end_with_parent, leave, python_module, raise_on_sigterm, stop
from gradunc_ros.streams.bags import read_messages
from gradunc_ros.streams.codec import image_array, image_to_rgb
from gradunc_ros.streams.stamps import stamp_ns
from gradunc_ros.tools.common import ToolParser, output_folder, positive_float, positive_int

CAMERA = "/camera/image_raw"
LABELS_TOPIC = "/camera/labels_gt"
OUTPUTS = ("/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask")
ANSWERS = OUTPUTS[:2]  # published for every frame; the mask only where a threshold is known
WRITTEN = ("input.bag", "output.bag", "contact_sheet.png", "summary.md", "summary.json", "node.log", ".stamp_map")
HINT = (
    "give a folder of frames: make demo INPUT=path/to/frames (images, optionally with labels/ beside them), "
    "or put the CamVid data at ../shared/data/camvid"
)


class DemoError(RuntimeError):
    """The demo could not do its job; the message says why in one line."""


NODE_COUNTS = ("received", "processed", "dropped", "undecodable", "inference_failed")


def find_frames(root: Path) -> tuple[Path, Path | None]:
    """(images folder, labels folder or None) of a CamVid root, a split, or a plain folder of images."""
    for images in (root / "val" / "images", root / "images", root):
        if images.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in images.iterdir()):
            labels = images.parent / "labels"
            return images, labels if labels.is_dir() and images != root else None
    raise FileNotFoundError(f"no frames found under {root}: {HINT}")


def _say(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)


def _model_colours(params_file: str) -> tuple:
    """The class colours of the model the node runs (the params file's weights, else the shipped default)."""
    import yaml

    from gradunc_ros.models import load_model
    from gradunc_ros.streams.topics import node_parameters

    values = {}
    if Path(params_file).is_file():
        values = node_parameters(yaml.safe_load(Path(params_file).read_text()))
    return load_model(values.get("model") or None, values.get("weights") or None).colours


def contact_sheet(input_bag: Path, output_bag: Path, out: Path, colours, stamps: dict[int, int], rows: int = 4) -> Path:
    """Image, labels, uncertainty and OoD mask (black where none) for a few frames spread over the
    sequence; ``stamps`` maps the input bag's stamps to the ones the player published."""
    outputs: dict[int, dict[str, np.ndarray]] = {}
    for topic, _, message in read_messages(output_bag, OUTPUTS):
        outputs.setdefault(stamp_ns(message.header), {})[topic.rsplit("/", 1)[1]] = image_array(message)
    complete = sorted(s for s, o in outputs.items() if {"labels", "uncertainty"} <= set(o))
    chosen = set(complete[:: max(1, len(complete) // rows)][:rows])
    tiles = []
    for _, _, message in read_messages(input_bag, [CAMERA]):
        stamp = stamps.get(stamp_ns(message.header))
        if stamp not in chosen:
            continue
        image, result = image_to_rgb(message), outputs[stamp]
        score = result["uncertainty"]
        finite = score[np.isfinite(score)]
        low, high = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
        heat = np.clip((np.nan_to_num(score, neginf=low) - low) / max(high - low, 1e-9) * 255, 0, 255).astype(np.uint8)
        heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
        mask = result.get("ood_mask", np.zeros(score.shape, np.uint8))
        tiles.append(
            np.hstack(
                [image, blend(image, colourise(result["labels"], colours)), heat, np.repeat(mask[..., None], 3, axis=2)]
            )
        )
    if not tiles:
        raise DemoError("no frame came back from the node with its labels and uncertainty")
    path = out / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(tiles), cv2.COLOR_RGB2BGR))
    return path


def _wait_for_file(path: Path, seconds: float, alive: dict, what: str) -> None:
    """Until ``path`` exists; DemoError when a process in ``alive`` ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        for name, process in alive.items():
            if process.poll() is not None:
                raise DemoError(f"{name} ended (exit code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {seconds:g} s")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:])


def run_demo(args: argparse.Namespace, started: float) -> dict:
    from gradunc_ros.fleet.bag_task import evaluate_recorded
    from gradunc_ros.ros.isolation import join_graph, private_ros_env
    from gradunc_ros.ros.spinning import watch_diagnostics
    from gradunc_ros.tools.bag_offline import frames_in, write_frames_bag

    images, labels = find_frames(Path(args.input))
    out = args.out
    for name in WRITTEN:  # an earlier run's results must never pass for this run's
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    frames = frames_in(images, max_frames=args.max_frames)
    _say(f"1/5 {len(frames)} frames from {images} to {out / 'input.bag'}", started)
    bag_args = argparse.Namespace(
        rate=args.rate, storage="mcap", frame_id="camera", compressed=False, topic=CAMERA, label_topic=LABELS_TOPIC
    )
    write_frames_bag(frames, labels, out / "input.bag", bag_args)
    env = private_ros_env()
    join_graph(env)  # this process watches /diagnostics on the same private graph
    params = args.params_file or str(Path(__file__).resolve().parents[2] / "config" / "gradunc.yaml")
    # Reliable end to end: the frames are small, and lockstep replay loses none.
    overrides = ["-p", f"image_topics:=[{CAMERA}]", "-p", "input_reliability:=reliable"]
    node_args = ["--ros-args", *(["--params-file", params] if Path(params).is_file() else []), *overrides]
    _say(
        f"2/5 starting gradunc_node with the shipped default model (ROS domain {env['ROS_DOMAIN_ID']}, localhost only)",
        started,
    )
    node_log = (out / "node.log").open("w")
    processes = {}
    try:
        processes["gradunc_node"] = python_module(
            "gradunc_ros.ros.main", *node_args, env=env, stdout=node_log, stderr=node_log
        )
        topics = [*OUTPUTS, LABELS_TOPIC] if labels else list(OUTPUTS)
        ready = out / ".recorder_ready"
        recorder_args = [
            "record",
            *topics,
            "--out",
            str(out / "output.bag"),
            "--ready-file",
            str(ready),
            "--match-timeout",
            str(args.start_timeout),
            "--count",
            str(len(frames)),
            "--stop-topics",
            *ANSWERS,
            "--idle",
            str(args.answer_timeout),
            "--seconds",
            str(args.start_timeout + len(frames) * args.answer_timeout),
        ]
        processes["recorder"] = python_module(
            "gradunc_ros.tools.bag", *recorder_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_file(ready, args.start_timeout + 5, processes, "the recorder matched the node's outputs")
        except DemoError as error:
            raise DemoError(f"{error}; node log: {_tail(out / 'node.log')}") from None
        ready.unlink()
        _say(
            "3/5 playing the bag into the node in lockstep (a frame once the last is answered), recording its outputs",
            started,
        )
        player_args = [
            "play",
            str(out / "input.bag"),
            "--restamp",
            "--reliable",
            "--subscribers",
            "1",
            "--wait",
            str(args.start_timeout),
            "--answer",
            *ANSWERS,
            "--camera",
            CAMERA,
            "--answer-timeout",
            str(args.answer_timeout),
            "--stamp-map",
            str(out / ".stamp_map"),
        ]
        processes["player"] = player = python_module(
            "gradunc_ros.tools.bag", *player_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        bound = time.monotonic() + args.start_timeout + len(frames) * (args.answer_timeout * 2 + 1)
        diagnostics = watch_diagnostics(
            lambda: player.poll() is None and time.monotonic() < bound, 1.0, "gradunc_demo_monitor"
        )
        if player.poll() is None:
            raise DemoError("the player did not finish in time")
        played_out, played_err = player.communicate()
        if player.returncode != 0 or not played_out.strip():
            raise DemoError(f"playing failed: {(played_err.strip().splitlines() or ['no output'])[-1]}")
        played = json.loads(played_out.strip().splitlines()[-1])
        recorder = processes["recorder"]
        try:
            recorded_out, recorded_err = recorder.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # still waiting for stragglers: stop it, it writes what it has
            stop(recorder, 30)
            recorded_out, recorded_err = recorder.communicate()
        if recorder.returncode != 0:
            raise DemoError(f"recording failed: {(recorded_err.strip().splitlines() or ['no output'])[-1]}")
    finally:
        for process in reversed(list(processes.values())):
            stop(process, 30)
        node_log.close()
    _say("4/5 scoring the recorded outputs", started)
    evaluation = evaluate_recorded(out / "output.bag", CAMERA, LABELS_TOPIC, "camvid", 50, 10)
    if evaluation["status"] != "ok":
        raise DemoError(f"the recording could not be scored: {evaluation['error']}")
    if played["unanswered"]:
        raise DemoError(f"the node did not answer {played['unanswered']} of {played['frames']} frames in time")
    if evaluation["frames_scored"] < played["answered"]:
        raise DemoError(
            f"{played['answered']} frames were answered but the recording holds {evaluation['frames_scored']}"
        )
    if labels and "pixel" not in evaluation:
        raise DemoError(f"no OoD metrics: {evaluation.get('metrics_error', 'no frame with labels was scored')}")
    _say("5/5 contact sheet and summary", started)
    stamp_map = {int(k): v for k, v in json.loads((out / ".stamp_map").read_text()).items()}
    (out / ".stamp_map").unlink()
    contact_sheet(out / "input.bag", out / "output.bag", out, _model_colours(params), stamp_map)
    return {
        "frames_in": len(frames),
        "frames_out": evaluation["frames_scored"],
        "player": played,
        "node": {
            k: int(diagnostics.get(k, -1))
            for k in ("received", "processed", "dropped", "undecodable", "inference_failed")
        },
        "ros_domain": int(env["ROS_DOMAIN_ID"]),
        "latency_ms_stamp_to_recorder": evaluation.get("latency_ms"),
        "ood_pixel": evaluation.get("pixel"),
        "ood_component": evaluation.get("component"),
        "wall_seconds": time.monotonic() - started,
    }


def write_summary(summary: dict, out: Path) -> list[str]:
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    node, played = summary["node"], summary["player"]
    lines = [
        "# gradunc demo",
        "",
        f"Frames in: {summary['frames_in']}; answered by the node: {played['answered']} (lockstep replay"
        f"{', ' + str(played['resent']) + ' resent' if played['resent'] else ''}); recorded: {summary['frames_out']}.",
        f"Node: received {node['received']}, processed {node['processed']}, dropped {node['dropped']}, "
        f"undecodable {node['undecodable']}, inference failed {node['inference_failed']}.",
    ]
    latency = summary["latency_ms_stamp_to_recorder"]
    if latency:
        lines.append(f"Latency, camera stamp to recorder: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms.")
    pixel, component = summary["ood_pixel"], summary["ood_component"]
    if pixel:
        lines.append(
            f"OoD (labels of the sequence): AuPRC {pixel['auprc']:.4f}, AuROC {pixel['auroc']:.4f}, "
            f"FPR95 {pixel['fpr95']:.4f}, sIoU {component['siou']:.4f}, PPV {component['ppv']:.4f}, "
            f"mean F1 {component['f1_mean']:.4f}."
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(prog="gradunc-demo", description=__doc__)
    parser.add_argument("--input", default="../shared/data/camvid", help="frames: a CamVid root, a split or a folder")
    parser.add_argument("--out", type=output_folder, default="demo_out", help="output folder (default demo_out)")
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=5.0,
        help="frames per second of the bag's stamps (the replay is lockstep)",
    )
    parser.add_argument("--max-frames", type=positive_int, default=101, help="frames of the sequence (default 101)")
    parser.add_argument("--params-file", help="node parameter file (default: the package's config/gradunc.yaml)")
    parser.add_argument("--start-timeout", type=positive_float, default=120.0, help="seconds for the node to start")
    parser.add_argument("--answer-timeout", type=positive_float, default=60.0, help="seconds for the node per frame")
    args = parser.parse_args(argv)
    return leave(_run(args))


def _run(args: argparse.Namespace) -> int:
    raise_on_sigterm()
    end_with_parent()  # make (or a shell) killed: the demo and its processes end too
    started = time.monotonic()
    try:
        summary = run_demo(args, started)
    except (DemoError, FileNotFoundError, ValueError, OSError) as error:
        print(f"gradunc-demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gradunc-demo: interrupted", file=sys.stderr)
        return 130
    lines = write_summary(summary, args.out)
    print("\n".join(lines[2:]))
    print(f"results in {args.out}/: output.bag, contact_sheet.png, summary.md, summary.json, node.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
