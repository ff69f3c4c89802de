"""gradunc-bag from-images and evaluate: bags read and written with rosbags, no ROS graph involved.

``evaluate`` runs the pipeline over a bag's frames and writes the node's
topics (the same arrays as the node: ``outputs.render_outputs``, the same
threshold rule: ``thresholds.py``) to an output bag; or, with ``--recorded``,
scores a bag recorded from the live node.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS, IDENTITY_OOD
from gradunc_ros.evaluation.metrics import component_metrics, pixel_metrics
from gradunc_ros.imageio import ImageDecodeError, read_label, read_rgb
from gradunc_ros.outputs import render_outputs
from gradunc_ros.streams.bags import (
    COMPRESSED,
    BagWriter,
    compressed_message,
    header,
    image_message,
    read_messages,
    stamp_ns,
    topics_of,
)
from gradunc_ros.streams.codec import compressed_to_rgb, image_array, image_to_rgb
from gradunc_ros.streams.topics import output_topics

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_MAPS = {"camvid": CAMVID_OOD_LABELS, "binary": IDENTITY_OOD}
START_NS = 1_700_000_000 * 1_000_000_000  # stamps of a converted folder start here


def frames_in(folder: Path, prefix: str = "", max_frames: int | None = None) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name.startswith(prefix))
    return images[:max_frames]


def from_images(args: argparse.Namespace) -> int:
    images = frames_in(Path(args.images), args.prefix, args.max_frames)
    if not images:
        print(f"gradunc-bag: no images in {args.images}", file=sys.stderr)
        return 1
    write_frames_bag(images, args.labels, Path(args.out), args)
    print(f"wrote {len(images)} frame(s) to {args.out}")
    return 0


def write_frames_bag(images: list[Path], labels: Path | None, out: Path, args: argparse.Namespace) -> None:
    """Frames (raw rgb8, or the files' own bytes with ``compressed``) and their label images to a new bag."""
    period_ns = int(round(1e9 / args.rate))
    with BagWriter(out, args.storage) as bag:
        for index, path in enumerate(tqdm(images, desc="frames", unit="frame", disable=len(images) < 10)):
            stamp = START_NS + index * period_ns
            head = header(stamp, args.frame_id)
            if args.compressed:  # the file's own bytes: decoding them gives exactly the file's pixels
                read_rgb(path)  # refused here as the node would refuse it (truncated, ...)
                fmt = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
                bag.write(args.topic + "/compressed", compressed_message(path.read_bytes(), fmt, head), stamp)
            else:
                bag.write(args.topic, image_message(read_rgb(path), "rgb8", head), stamp)
            label = Path(labels) / f"{path.stem}.png" if labels else None
            if label is not None and label.is_file():
                bag.write(args.label_topic, image_message(read_label(label), "mono8", head), stamp)


def _decode(message, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(message) if msgtype == COMPRESSED else image_to_rgb(message)


def score_recorded(bag: Path, camera: str, label_topic: str) -> tuple[dict, dict, list[float]]:
    """(stamp -> score map, stamp -> label image, receive latencies in ms) of a recorded node output bag."""
    topics = output_topics(camera)
    scores, labels, latencies = {}, {}, []
    for topic, received_ns, message in read_messages(bag, [topics["uncertainty"], label_topic]):
        if topic == label_topic:
            labels[stamp_ns(message)] = image_array(message)
        else:
            scores[stamp_ns(message)] = image_array(message)
            latencies.append((received_ns - stamp_ns(message)) / 1e6)
    return scores, labels, latencies


def _run_offline(args: argparse.Namespace, bag: Path, available: dict) -> tuple[dict, dict, list[float]]:
    from gradunc_ros.tools.common import assemble_from, settings_from

    camera = args.topic
    if camera not in available and camera + "/compressed" in available:
        camera += "/compressed"
    if camera not in available:
        raise ValueError(f"no topic {camera} in {bag} (topics: {', '.join(available) or 'none'})")
    assembly = assemble_from(args, settings_from(args), "gradunc-bag", args.threshold)
    loaded, pipeline, choice = assembly.loaded, assembly.pipeline, assembly.threshold
    print(f"gradunc-bag: {choice.describe()}", file=sys.stderr)
    mask = choice.mask()
    topics = output_topics(camera)
    scores, labels = {}, {}
    with BagWriter(Path(args.out), args.storage) as out:
        messages = read_messages(bag, [camera, args.label_topic])
        for topic, received_ns, message in tqdm(messages, desc="messages", unit="msg"):
            if topic == args.label_topic:
                labels[stamp_ns(message)] = image_array(message)
                continue
            try:
                image = _decode(message, available[camera])
            except ImageDecodeError as error:
                print(f"gradunc-bag: skipping a frame of {camera}: {error}", file=sys.stderr)
                continue
            prediction = pipeline.predict(image)
            scores[stamp_ns(message)] = prediction.score
            for name, (array, encoding) in render_outputs(image, prediction, len(loaded.class_names), mask).items():
                out.write(topics[name], image_message(array, encoding, message.header), received_ns)
    return scores, labels, []


def evaluate(args: argparse.Namespace) -> int:
    bag = Path(args.bag)
    try:
        available = topics_of(bag)
    except Exception as error:  # noqa: BLE001 - rosbags says "not a bag" in several ways
        raise ValueError(f"{bag} is not a readable rosbag2 bag ({type(error).__name__}: {error})") from None
    if args.recorded:
        uncertainty = output_topics(args.topic)["uncertainty"]
        if uncertainty not in available:
            raise ValueError(
                f"{bag} holds no node outputs ({uncertainty}); its topics: {', '.join(available) or 'none'}"
            )
        scores, labels, latencies = score_recorded(bag, args.topic, args.label_topic)
    else:
        scores, labels, latencies = _run_offline(args, bag, available)
    summary = summarise(bag, scores, labels, latencies, LABEL_MAPS[args.label_map], args.min_pred, args.min_gt)
    text = json.dumps(summary, indent=1)
    if args.summary:
        Path(args.summary).write_text(text)
    print(text)
    return 0


def summarise(
    bag: Path, scores: dict, labels: dict, latencies: list[float], label_map: np.ndarray, min_pred: int, min_gt: int
) -> dict:
    """Counts, latencies and the OoD metrics of the frames that have labels."""
    matched = sorted(set(scores) & set(labels))
    summary = {"bag": str(bag), "frames_scored": len(scores), "frames_with_labels": len(matched)}
    if latencies:
        summary["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}
    if matched:
        score_maps = [scores[s] for s in matched]
        label_maps = [label_map[labels[s]] for s in matched]
        try:
            summary["pixel"] = pixel_metrics(score_maps, label_maps)
            summary["component"] = component_metrics(score_maps, label_maps, min_pred=min_pred, min_gt=min_gt)
        except ValueError as error:  # e.g. no OoD pixel in these frames
            summary["metrics_error"] = str(error)
    return summary
