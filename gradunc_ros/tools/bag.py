"""gradunc-bag: rosbag2 tools (mcap and sqlite3, through the pure-Python rosbags package).

from-images  a folder of frames (and labels) to a bag
evaluate     run the pipeline over a bag offline (no DDS), write the node's topics to an
             output bag and score them against the label topic; or score a bag recorded
             from the live node (--recorded)
play         publish a bag's image topics live with rclpy, at the recorded rate
record       write topics from the live node to a bag
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gradunc_ros.bagio import (
    COMPRESSED,
    IMAGE,
    BagWriter,
    compressed_message,
    header,
    image_message,
    read_messages,
    stamp_ns,
    topics_of,
)
from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS, IDENTITY_OOD, read_label, read_rgb
from gradunc_ros.evaluation.metrics import component_metrics, pixel_metrics
from gradunc_ros.postprocess import MaskSettings, ood_mask
from gradunc_ros.ros.codec import ImageDecodeError, compressed_to_rgb, image_array, image_to_rgb
from gradunc_ros.ros.topics import output_topics
from gradunc_ros.tools.common import add_model_options, add_score_options, load_from, settings_from

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_MAPS = {"camvid": CAMVID_OOD_LABELS, "binary": IDENTITY_OOD}
START_NS = 1_700_000_000 * 1_000_000_000  # stamps of a converted folder start here


# --- from-images ------------------------------------------------------------------------------------


def from_images(args: argparse.Namespace) -> int:
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.prefix:
        images = [p for p in images if p.name.startswith(args.prefix)]
    images = images[: args.max_frames]
    if not images:
        print(f"gradunc-bag: no images in {args.images}", file=sys.stderr)
        return 1
    period_ns = int(round(1e9 / args.rate))
    labels_dir = Path(args.labels) if args.labels else None
    with BagWriter(Path(args.out), args.storage) as bag:
        for index, path in enumerate(tqdm(images, desc="frames", unit="frame")):
            stamp = START_NS + index * period_ns
            head = header(stamp, args.frame_id)
            if args.compressed:  # the file's own bytes: decoding them gives exactly the file's pixels
                fmt = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
                bag.write(args.topic + "/compressed", compressed_message(path.read_bytes(), fmt, head), stamp)
            else:
                bag.write(args.topic, image_message(read_rgb(path), "rgb8", head), stamp)
            label = labels_dir / f"{path.stem}.png" if labels_dir else None
            if label is not None and label.is_file():
                bag.write(args.label_topic, image_message(read_label(label), "mono8", head), stamp)
    print(f"wrote {len(images)} frame(s) to {args.out}")
    return 0


# --- evaluate -----------------------------------------------------------------------------------------


def _decode(message, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(message) if msgtype == COMPRESSED else image_to_rgb(message)


def _score_recorded(bag: Path, camera: str, label_topic: str) -> tuple[dict, dict, list[float]]:
    topics = output_topics(camera)
    scores, labels, latencies = {}, {}, []
    for topic, received_ns, message in read_messages(bag, [topics["uncertainty"], label_topic]):
        if topic == label_topic:
            labels[stamp_ns(message)] = image_array(message)
        else:
            scores[stamp_ns(message)] = image_array(message)
            latencies.append((received_ns - stamp_ns(message)) / 1e6)
    return scores, labels, latencies


def evaluate(args: argparse.Namespace) -> int:
    from gradunc_ros.pipeline import SegmentationPipeline

    bag = Path(args.bag)
    available = topics_of(bag)
    camera = args.topic
    if args.recorded:
        scores, labels, latencies = _score_recorded(bag, camera, args.label_topic)
    else:
        if camera not in available and camera + "/compressed" in available:
            camera += "/compressed"
        if camera not in available:
            print(f"gradunc-bag: no topic {camera} in {bag} (topics: {', '.join(available)})", file=sys.stderr)
            return 1
        pipeline = SegmentationPipeline(
            load_from(args), settings_from(args), device=args.device, input_size=args.input_size
        )
        mask_settings = MaskSettings(threshold=args.threshold)
        topics = output_topics(camera)
        scores, labels, latencies = {}, {}, []
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
                mask = ood_mask(prediction.score, prediction.labels, mask_settings)
                for name, array, encoding in (
                    ("labels", prediction.labels, "mono8"),
                    ("uncertainty", prediction.score, "32FC1"),
                    ("ood_mask", mask, "mono8"),
                ):
                    out.write(topics[name], image_message(array, encoding, message.header), received_ns)  # fmt: skip
    matched = sorted(set(scores) & set(labels))
    summary = {"bag": str(bag), "frames_scored": len(scores), "frames_with_labels": len(matched)}
    if latencies:
        summary["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}
    if matched:
        label_map = LABEL_MAPS[args.label_map]
        score_maps = [scores[s] for s in matched]
        label_maps = [label_map[labels[s]] for s in matched]
        try:
            summary["pixel"] = pixel_metrics(score_maps, label_maps)
            summary["component"] = component_metrics(score_maps, label_maps, min_pred=args.min_pred, min_gt=args.min_gt)
        except ValueError as error:  # e.g. no OoD pixel in these frames
            summary["metrics_error"] = str(error)
    text = json.dumps(summary, indent=1)
    if args.summary:
        Path(args.summary).write_text(text)
    print(text)
    return 0


# --- play and record (live, rclpy) ------------------------------------------------------------------


def _wait_for_subscribers(node, publishers: list, count: int, seconds: float) -> None:
    """Until every publisher has ``count`` subscribers (at most ``seconds``); with count 0, ``seconds``.

    A reliable writer delivers only to readers it has matched, so a frame sent
    before the node subscribed would be lost."""
    deadline = time.monotonic() + seconds
    while count and time.monotonic() < deadline:
        if all(publisher.get_subscription_count() >= count for publisher in publishers):
            time.sleep(0.5)  # the readers' side of the match
            return
        time.sleep(0.05)
    if count:
        node.get_logger().warn(f"not every topic has {count} subscriber(s) after {seconds:g} s; playing anyway")
    else:
        time.sleep(seconds)


def play(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CompressedImage, Image

    from gradunc_ros.bagio import TYPESTORE

    kinds = {IMAGE: Image, COMPRESSED: CompressedImage}
    rclpy.init()
    node = rclpy.create_node("gradunc_bag_play")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
    published = 0
    try:
        with Reader(args.bag) as reader:
            connections = [
                c for c in reader.connections if c.msgtype in kinds and (not args.topics or c.topic in args.topics)
            ]
            publishers = {c.topic: node.create_publisher(kinds[c.msgtype], c.topic, qos) for c in connections}
            _wait_for_subscribers(node, list(publishers.values()), args.subscribers, args.wait)
            start_wall, first, offset = time.monotonic(), None, 0
            for connection, timestamp, raw in reader.messages(connections=connections):
                if first is None:
                    first = timestamp
                    offset = node.get_clock().now().nanoseconds - timestamp if args.restamp else 0
                    if args.offset_file:
                        Path(args.offset_file).write_text(str(offset))
                delay = start_wall + (timestamp - first) / 1e9 / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if offset:  # shift every stamp by one offset: stamps become live, their spacing stays
                    message = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                    shifted = stamp_ns(message) + offset
                    message.header.stamp.sec, message.header.stamp.nanosec = divmod(shifted, 1_000_000_000)
                    raw = TYPESTORE.serialize_cdr(message, connection.msgtype)
                publishers[connection.topic].publish(bytes(raw))  # already serialised: no decode
                published += 1
            time.sleep(2.0)  # let a reliable writer deliver its last samples before we exit
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"published {published} message(s)")
    return 0


def record(args: argparse.Namespace) -> int:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from sensor_msgs.msg import Image

    from gradunc_ros.bagio import STORAGE, TYPESTORE
    from gradunc_ros.ros.spinning import own_node

    received = []
    with own_node("gradunc_bag_record") as (node, executor):
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic in args.topics:
            node.create_subscription(
                Image, topic, lambda m, t=topic: received.append((t, node.get_clock().now().nanoseconds, m)), qos
            )
        deadline = time.monotonic() + args.seconds
        idle_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                count = len(received)
                executor.spin_once(timeout_sec=0.1)
                if len(received) > count:
                    idle_since = time.monotonic()
                elif received and time.monotonic() - idle_since > args.idle:
                    break
        except KeyboardInterrupt:
            pass
    writer = Writer(Path(args.out), version=9, storage_plugin=STORAGE[args.storage])
    writer.open()
    connections = {}
    for topic, receive_ns, message in received:
        if topic not in connections:
            connections[topic] = writer.add_connection(topic, IMAGE, typestore=TYPESTORE)
        writer.write(connections[topic], receive_ns, serialize_message(message))
    writer.close()
    print(f"recorded {len(received)} message(s) to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from gradunc_ros.models import model_names

    parser = argparse.ArgumentParser(
        prog="gradunc-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("from-images", help="a folder of frames (and label images) to a bag")
    convert.add_argument("images", help="folder of frames (.jpg, .png), in name order")
    convert.add_argument("--labels", help="folder of label images with the frames' names (.png)")
    convert.add_argument("--prefix", default="", help="only frames whose names start with this (a sequence)")
    convert.add_argument("--out", required=True, help="bag folder to create")
    convert.add_argument("--topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    convert.add_argument("--label-topic", default="/camera/labels_gt", help="topic of the label images (mono8)")
    convert.add_argument(
        "--compressed", action="store_true", help="CompressedImage on <topic>/compressed with the files' own bytes"
    )
    convert.add_argument("--rate", type=float, default=10.0, help="frames per second of the stamps (default 10)")
    convert.add_argument("--frame-id", default="camera", help="header frame_id")
    convert.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    convert.add_argument("--max-frames", type=int)
    convert.set_defaults(run=from_images)

    score = commands.add_parser("evaluate", help="run the pipeline over a bag offline and score it")
    score.add_argument("bag")
    score.add_argument("--topic", default="/camera/image_raw", help="camera topic (its /compressed form is found too)")
    score.add_argument("--label-topic", default="/camera/labels_gt")
    score.add_argument("--label-map", default="camvid", choices=sorted(LABEL_MAPS), help="label ids to 0/1/255")
    score.add_argument("--recorded", action="store_true", help="score the node's recorded uncertainty topic instead")
    score.add_argument("--out", help="output bag with the node's topics (offline mode)")
    score.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    score.add_argument("--threshold", type=float, default=0.0, help="OoD mask threshold for the output bag")
    score.add_argument("--min-pred", type=int, default=50)
    score.add_argument("--min-gt", type=int, default=10)
    score.add_argument("--summary", help="also write the JSON summary here")
    add_model_options(score, model_names())
    add_score_options(score)
    score.set_defaults(run=evaluate)

    live = commands.add_parser("play", help="publish a bag's image topics live")
    live.add_argument("bag")
    live.add_argument("--topics", nargs="*", help="only these topics (default: every image topic)")
    live.add_argument("--rate", type=float, default=1.0, help="multiple of the recorded rate")
    live.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor data (best effort)")
    live.add_argument("--restamp", action="store_true", help="shift all stamps so that the first frame is 'now'")
    live.add_argument(
        "--wait", type=float, default=2.0, help="seconds to wait for subscribers first (with --subscribers: at most)"
    )
    live.add_argument(
        "--subscribers",
        type=int,
        default=0,
        help="play once every topic has this many subscribers (default 0: just wait)",
    )
    live.add_argument("--offset-file", help="write the stamp shift of --restamp (ns) to this file")
    live.set_defaults(run=play)

    keep = commands.add_parser("record", help="write live Image topics to a bag")
    keep.add_argument("topics", nargs="+")
    keep.add_argument("--out", required=True)
    keep.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    keep.add_argument("--seconds", type=float, default=600.0, help="stop after this long at the latest")
    keep.add_argument("--idle", type=float, default=5.0, help="stop when nothing arrived for this long")
    keep.set_defaults(run=record)

    args = parser.parse_args(argv)
    if args.command == "evaluate" and not args.recorded and not args.out:
        parser.error("evaluate needs --out (the output bag) unless --recorded")
    try:
        return args.run(args)
    except (FileNotFoundError, OSError, KeyError, ValueError, RuntimeError) as error:
        print(f"gradunc-bag: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
