"""gradunc-bag play and record: a bag's frames into a live ROS graph, and live topics into a bag (rclpy).

Every wait is bounded and says what it waited for.  ``play`` waits until its
subscribers (the node) have matched before it sends; with ``--answer`` it
plays in lockstep: it sends the next frame once the node has answered the
last one (an output with the frame's stamp on every answer topic), so a busy
machine slows the replay down but loses no frame.  ``record`` says when it
has matched the publishers of its stop topics (``--ready-file``) and stops once it holds
``--count`` frames on its stop topics, on SIGINT/SIGTERM, after ``--idle``
seconds without a message, or after ``--seconds`` at the latest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gradunc_ros.streams.bags import COMPRESSED, IMAGE, TYPESTORE, BagWriter
from gradunc_ros.streams.stamps import stamp_ns


class MatchTimeoutError(RuntimeError):
    """A publisher or subscriber the tool needs did not appear in time."""


def wait_for_match(executor, endpoints: dict[str, object], count_of, wanted: int, seconds: float, what: str) -> None:
    """Spin until ``count_of(endpoint) >= wanted`` for every endpoint, or MatchTimeoutError naming the topics."""
    deadline = time.monotonic() + seconds
    while True:
        missing = [topic for topic, endpoint in endpoints.items() if count_of(endpoint) < wanted]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise MatchTimeoutError(
                f"no {what} on {', '.join(missing)} after {seconds:g} s: is gradunc_node running there?"
            )
        executor.spin_once(timeout_sec=0.05)


class Answers:
    """Stamps seen on each answer topic (a subscription callback adds them)."""

    def __init__(self, topics: list[str]) -> None:
        self.stamps: dict[str, set[int]] = {topic: set() for topic in topics}

    def add(self, topic: str, message) -> None:
        self.stamps[topic].add(stamp_ns(message.header))

    def complete(self, stamp: int) -> bool:
        return all(stamp in seen for seen in self.stamps.values())


def play(args: argparse.Namespace) -> int:
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CompressedImage, Image

    from gradunc_ros.ros.spinning import own_node

    kinds = {IMAGE: Image, COMPRESSED: CompressedImage}
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    qos = reliable if args.reliable else qos_profile_sensor_data
    counts = {"published": 0, "frames": 0, "answered": 0, "unanswered": 0, "resent": 0}
    stamps: dict[int, int] = {}  # recorded stamp -> published stamp
    with own_node("gradunc_bag_play") as (node, executor), Reader(args.bag) as reader:
        connections = [
            c for c in reader.connections if c.msgtype in kinds and (not args.topics or c.topic in args.topics)
        ]
        if not connections:
            raise ValueError(
                f"{args.bag} has no image topics to play" + (f" among {args.topics}" if args.topics else "")
            )
        publishers = {c.topic: node.create_publisher(kinds[c.msgtype], c.topic, qos) for c in connections}
        answers = Answers(args.answer or [])
        answer_subscriptions = {
            topic: node.create_subscription(Image, topic, lambda m, t=topic: answers.add(t, m), reliable)
            for topic in answers.stamps
        }
        camera = args.camera or next((t for t in publishers if t.endswith(("image_raw", "/compressed"))), None)
        if answers.stamps and camera not in publishers:
            raise ValueError(f"--camera {camera} is not an image topic of {args.bag}: give the answered camera topic")
        if args.subscribers:  # every topic played: a reliable writer delivers only to readers it has matched
            count_of = lambda p: p.get_subscription_count()  # noqa: E731
            wait_for_match(executor, publishers, count_of, args.subscribers, args.wait, "subscriber")
            if answer_subscriptions:
                count_of = lambda s: s.get_publisher_count()  # noqa: E731
                wait_for_match(executor, answer_subscriptions, count_of, 1, args.wait, "publisher")
            _spin_for(executor, 0.5)  # the other side of the match: their readers learn of our writers
        else:
            _spin_for(executor, args.wait)
        needs_stamps = bool(args.restamp or answers.stamps or args.stamp_map)
        start_wall, first = time.monotonic(), None
        for connection, timestamp, raw in reader.messages(connections=connections):
            first = timestamp if first is None else first
            if not answers.stamps:
                _spin_until(executor, start_wall + (timestamp - first) / 1e9 / args.rate)
            stamp = None
            if needs_stamps:  # otherwise the message goes out as recorded, never decoded
                message = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                recorded = stamp_ns(message.header)
                # --restamp: stamps become live; a frame and its labels keep one stamp
                stamp = stamps.setdefault(recorded, node.get_clock().now().nanoseconds if args.restamp else recorded)
                if args.restamp:
                    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                    raw = TYPESTORE.serialize_cdr(message, connection.msgtype)
            publishers[connection.topic].publish(bytes(raw))  # serialised already
            counts["published"] += 1
            if connection.topic == camera and answers.stamps:
                counts["frames"] += 1
                _await_answer(executor, answers, stamp, publishers[camera], bytes(raw), args, counts)
        _spin_for(executor, args.linger)  # a reliable writer delivers its last samples before we leave
    if args.stamp_map:
        Path(args.stamp_map).write_text(json.dumps({str(k): v for k, v in stamps.items()}))
    print(json.dumps(counts))
    return 1 if counts["unanswered"] else 0


def _await_answer(executor, answers: Answers, stamp: int, publisher, raw: bytes, args, counts: dict) -> None:
    """Lockstep: spin until the node answered this frame; resend it (``--retries``) after a timeout."""
    for attempt in range(args.retries + 1):
        if attempt:
            publisher.publish(raw)
            counts["resent"] += 1
        deadline = time.monotonic() + args.answer_timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
            if answers.complete(stamp):
                counts["answered"] += 1
                return
    counts["unanswered"] += 1
    print(f"gradunc-bag play: no answer for the frame stamped {stamp} after {args.answer_timeout:g} s", file=sys.stderr)


def _spin_until(executor, when: float) -> None:
    while time.monotonic() < when:
        executor.spin_once(timeout_sec=min(0.05, max(0.0, when - time.monotonic())))


def _spin_for(executor, seconds: float) -> None:
    _spin_until(executor, time.monotonic() + seconds)


def record(args: argparse.Namespace) -> int:
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from gradunc_ros.ros.spinning import own_node

    received: list[tuple[str, int, object]] = []
    stop_topics = args.stop_topics or args.topics
    seen: dict[str, set[int]] = {topic: set() for topic in stop_topics}

    def keep(topic: str, message, node) -> None:
        received.append((topic, node.get_clock().now().nanoseconds, message))
        if topic in seen:
            seen[topic].add(stamp_ns(message.header))

    interrupted = False
    with own_node("gradunc_bag_record") as (node, executor):
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        subscriptions = {
            topic: node.create_subscription(Image, topic, lambda m, t=topic: keep(t, m, node), qos)
            for topic in args.topics
        }
        try:
            if args.ready_file:  # the stop topics are what a caller waits for (e.g. the node's outputs)
                watched = {topic: subscriptions[topic] for topic in stop_topics}
                wait_for_match(executor, watched, lambda s: s.get_publisher_count(), 1, args.match_timeout, "publisher")
                Path(args.ready_file).write_text("ready\n")
            deadline = time.monotonic() + args.seconds
            last = time.monotonic()
            while time.monotonic() < deadline:
                count = len(received)
                executor.spin_once(timeout_sec=0.05)
                if len(received) > count:
                    last = time.monotonic()
                elif received and time.monotonic() - last > args.idle:
                    break
                if args.count and all(len(stamps) >= args.count for stamps in seen.values()):
                    _spin_for(executor, args.linger)  # what is already on its way (e.g. the last mask)
                    break
        except (KeyboardInterrupt, ExternalShutdownException):
            interrupted = True
        # Written before the middleware is torn down: the recording is safe whatever that does.
        with BagWriter(Path(args.out), args.storage) as bag:
            for topic, receive_ns, message in received:
                bag.write_serialized(topic, IMAGE, serialize_message(message), receive_ns)
        counts = ", ".join(f"{topic} {len(stamps)}" for topic, stamps in seen.items())
        print(
            f"recorded {len(received)} message(s) to {args.out} (frames: {counts})"
            + (" (interrupted)" if interrupted else ""),
            flush=True,
        )
    return 0
