"""gradunc-demo: the whole loop on recorded frames, as `make demo` runs it.

A sequence of frames becomes a bag; gradunc_node starts with the shipped
default model; the bag is played into it live; the node's outputs are
recorded to a bag and scored against the labels.  Writes to --out:
input.bag/, output.bag/, contact_sheet.png, summary.md and summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from gradunc_ros.bagio import read_messages, stamp_ns
from gradunc_ros.overlay import blend, colourise
from gradunc_ros.ros.codec import image_array, image_to_rgb

OUTPUTS = ("/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask")
HINT = (
    "give a folder of frames: make demo INPUT=path/to/frames (images, optionally with labels/ beside them), "
    "or put the CamVid data at ../shared/data/camvid"
)


def find_frames(root: Path) -> tuple[Path, Path | None]:
    """(images folder, labels folder or None) of a CamVid root, a split, or a plain folder of images."""
    for images in (root / "val" / "images", root / "images", root):
        if images.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in images.iterdir()):
            labels = images.parent / "labels"
            return images, labels if labels.is_dir() and images != root else None
    raise FileNotFoundError(f"no frames found under {root}: {HINT}")


def _say(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)


def _run(*args: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")


def _model_colours(params_file: str) -> tuple:
    """The class colours of the model the node runs (the params file's weights, else the shipped default)."""
    import yaml

    from gradunc_ros.models import load_model
    from gradunc_ros.ros.topics import node_parameters

    values = {}
    if Path(params_file).is_file():
        values = node_parameters(yaml.safe_load(Path(params_file).read_text()))
    return load_model(values.get("model") or None, values.get("weights") or None).colours


def contact_sheet(input_bag: Path, output_bag: Path, out: Path, colours, offset_ns: int, rows: int = 4) -> Path:
    """Image, labels, uncertainty and OoD mask for a few frames spread over the sequence
    (output stamps are the input's shifted by ``offset_ns``, as the player restamped them)."""
    outputs: dict[int, dict[str, np.ndarray]] = {}
    for topic, _, message in read_messages(output_bag, OUTPUTS):
        outputs.setdefault(stamp_ns(message), {})[topic.rsplit("/", 1)[1]] = image_array(message)
    complete = sorted(s for s, o in outputs.items() if len(o) == 3)
    chosen = set(complete[:: max(1, len(complete) // rows)][:rows])
    tiles = []
    for _, _, message in read_messages(input_bag, ["/camera/image_raw"]):
        stamp = stamp_ns(message) + offset_ns
        if stamp not in chosen:
            continue
        image, result = image_to_rgb(message), outputs[stamp]
        score = result["uncertainty"]
        finite = score[np.isfinite(score)]
        low, high = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
        heat = np.clip((np.nan_to_num(score, neginf=low) - low) / max(high - low, 1e-9) * 255, 0, 255).astype(np.uint8)
        heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
        mask = np.repeat(result["ood_mask"][..., None], 3, axis=2)
        tiles.append(np.hstack([image, blend(image, colourise(result["labels"], colours)), heat, mask]))
    if not tiles:
        raise RuntimeError("no frame came back from the node with all three outputs")
    path = out / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(tiles), cv2.COLOR_RGB2BGR))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradunc-demo", description=__doc__)
    parser.add_argument("--input", default="../shared/data/camvid", help="frames: a CamVid root, a split or a folder")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate of the replay in Hz (default 5)")
    parser.add_argument("--max-frames", type=int, default=101, help="frames of the sequence to use (default 101)")
    parser.add_argument("--params-file", help="node parameter file (default: the package's config/gradunc.yaml)")
    args = parser.parse_args(argv)
    try:
        images, labels = find_frames(Path(args.input))
    except FileNotFoundError as error:
        print(f"gradunc-demo: {error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("input.bag", "output.bag"):
        if (out / old).exists():
            import shutil

            shutil.rmtree(out / old)
    env = {**os.environ, "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "PYTHONUNBUFFERED": "1"}
    env.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="gradunc_demo_"))
    env.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))
    os.environ.update({k: env[k] for k in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_HOME", "ROS_DOMAIN_ID")})
    params = args.params_file or str(Path(__file__).resolve().parents[2] / "config" / "gradunc.yaml")
    # The replay is reliable end to end: frames are lost only where the node is busy (counted as
    # dropped), not to best-effort transport while DDS is still matching.
    overrides = ["-p", "image_topics:=[/camera/image_raw]", "-p", "input_reliability:=reliable"]
    node_args = ["--ros-args", *(["--params-file", params] if Path(params).is_file() else []), *overrides]
    started = time.monotonic()
    offset_file = out / ".stamp_offset"
    _say(f"1/5 frames from {images} to {out / 'input.bag'}", started)
    convert = ["gradunc_ros.tools.bag", "from-images", str(images), "--out", str(out / "input.bag")]
    convert += ["--rate", str(args.rate), "--max-frames", str(args.max_frames)]
    _run(*convert + (["--labels", str(labels)] if labels else []), env=env)
    from gradunc_ros.ros.spinning import watch_diagnostics

    _say("2/5 starting gradunc_node with the shipped default model", started)
    node_log = (out / "node.log").open("w")
    node = subprocess.Popen([sys.executable, "-m", "gradunc_ros.ros.node", *node_args], env=env, stdout=node_log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    topics = [*OUTPUTS, "/camera/labels_gt"] if labels else list(OUTPUTS)
    recorder = subprocess.Popen(
        [sys.executable, "-m", "gradunc_ros.tools.bag", "record", *topics, "--out", str(out / "output.bag"),
         "--idle", "6", "--seconds", "900"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4.0)  # model load and discovery
        _say(f"3/5 playing the bag into the node at {args.rate:g} Hz and recording its outputs", started)
        play = ["gradunc_ros.tools.bag", "play", str(out / "input.bag"), "--restamp", "--reliable",
                "--wait", "120", "--subscribers", "1"]  # fmt: skip
        play += ["--offset-file", str(offset_file)]
        player = subprocess.Popen([sys.executable, "-m", *play], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        diagnostics = watch_diagnostics(lambda: recorder.poll() is None, 1.0, "gradunc_demo_monitor")
        player.wait(timeout=60)
    finally:
        node.terminate()
        node.wait(timeout=30)
        node_log.close()
    if recorder.returncode != 0:
        print(f"gradunc-demo: recording failed: {recorder.stderr.read()[-2000:]}", file=sys.stderr)
        return 1
    _say("4/5 scoring the recorded outputs", started)
    scored = subprocess.run([sys.executable, "-m", "gradunc_ros.tools.bag", "evaluate", str(out / "output.bag"),
                             "--recorded"], env=env, capture_output=True, text=True)  # fmt: skip
    if scored.returncode != 0:
        print(f"gradunc-demo: scoring failed: {scored.stderr[-2000:]}", file=sys.stderr)
        return 1
    evaluation = json.loads(scored.stdout)
    _say("5/5 contact sheet and summary", started)
    offset = int(offset_file.read_text())
    offset_file.unlink()
    sheet = contact_sheet(out / "input.bag", out / "output.bag", out, _model_colours(params), offset)
    frames_in = sum(1 for _ in read_messages(out / "input.bag", ["/camera/image_raw"]))
    summary = {
        "frames_in": frames_in,
        "frames_out": evaluation["frames_scored"],
        "node": {k: diagnostics.get(k) for k in ("received", "processed", "dropped", "bad_frames")},
        "latency_ms_stamp_to_recorder": evaluation.get("latency_ms"),
        "ood_pixel": evaluation.get("pixel"),
        "ood_component": evaluation.get("component"),
        "wall_seconds": time.monotonic() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "# gradunc demo", "",
        f"Frames in: {frames_in}; frames out (all three outputs recorded): {summary['frames_out']}.",
        f"Node: received {summary['node']['received']}, processed {summary['node']['processed']}, "
        f"dropped {summary['node']['dropped']}, bad {summary['node']['bad_frames']}.",
    ]  # fmt: skip
    if evaluation.get("latency_ms"):
        lines.append(f"Latency, camera stamp to recorder: p50 {evaluation['latency_ms']['p50']:.0f} ms, "
                     f"p95 {evaluation['latency_ms']['p95']:.0f} ms.")  # fmt: skip
    if evaluation.get("pixel"):
        pixel, component = evaluation["pixel"], evaluation["component"]
        lines.append(f"OoD (labels of the sequence): AuPRC {pixel['auprc']:.4f}, AuROC {pixel['auroc']:.4f}, "
                     f"FPR95 {pixel['fpr95']:.4f}, sIoU {component['siou']:.4f}, PPV {component['ppv']:.4f}, "
                     f"mean F1 {component['f1_mean']:.4f}.")  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[2:]))
    print(f"results in {out}/: output.bag, contact_sheet.png ({sheet.name}), summary.md, summary.json, node.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
