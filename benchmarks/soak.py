"""Soak: many frames through gradunc_node on the CPU; memory over time and every output checked (prints figures).

    .venv/bin/python benchmarks/soak.py [--frames 10000 --rate 25 --size 160x120 --out soak_out]

A camera (this process) publishes real CamVid frames (synthetic ones without
../shared) at a fixed rate, reliable, to gradunc_node with the shipped model.
Every 100 frames sent, the node's resident memory is read from /proc.  Every
output message is checked: its frame_id belongs to its stamp, its size is the
frame's, labels are valid class ids, the uncertainty is finite, and the OoD
mask is exactly ``uncertainty > threshold`` (pixel for pixel, via a digest).
At the end it prints the memory growth between frame 1,000 and the last one,
the node's own counts, and every frame with missing or mismatched outputs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rosbench import isolate, resident_bytes, start_node  # noqa: E402

OUTPUTS = ("labels", "uncertainty", "ood_mask")
CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid" / "val" / "images"


def frames(width: int, height: int, count: int = 50) -> list[np.ndarray]:
    paths = sorted(CAMVID.glob("*.jpg"))[:count]
    if paths:
        return [cv2.resize(cv2.imread(str(p))[..., ::-1], (width, height), interpolation=cv2.INTER_AREA) for p in paths]
    rng = np.random.default_rng(0)
    return [cv2.resize(rng.integers(0, 256, (8, 8, 3), np.uint8), (width, height)) for _ in range(count)]


def digest(mask: np.ndarray) -> bytes:
    return hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()


class Checker:
    """Collects every output message and checks it against its stamp's frame."""

    def __init__(self, width: int, height: int, classes: int, threshold: float) -> None:
        self.size, self.classes, self.threshold = (width, height), classes, threshold
        self.seen: dict[int, dict[str, bytes]] = {}  # stamp -> output -> digest of what it says is OoD
        self.problems: list[str] = []

    def __call__(self, output: str, msg) -> None:
        from gradunc_ros.streams.codec import image_array

        index = msg.header.stamp.sec
        if msg.header.frame_id != f"soak{index}":
            self.problems.append(f"{output} stamp {index}: frame_id {msg.header.frame_id!r}")
        if (msg.width, msg.height) != self.size:
            self.problems.append(f"{output} stamp {index}: {msg.width}x{msg.height}")
            return
        array = image_array(msg)
        if output == "labels" and int(array.max()) >= self.classes:
            self.problems.append(f"labels stamp {index}: class id {int(array.max())}")
        if output == "uncertainty":
            if not np.isfinite(array).all():
                self.problems.append(f"uncertainty stamp {index}: not finite")
            value = digest(array > self.threshold)
        else:
            value = digest(array > 0) if output == "ood_mask" else b""
        if output in self.seen.setdefault(index, {}):
            self.problems.append(f"{output} stamp {index}: published twice")
        self.seen[index][output] = value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=25.0, help="camera rate, Hz")
    parser.add_argument("--size", default="160x120", help="camera frames and network input, WIDTHxHEIGHT")
    parser.add_argument("--out", default="soak_out", help="folder for memory.csv and node.log")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from gradunc_ros.models import load_model
    from gradunc_ros.ros.publishing import image_message
    from gradunc_ros.ros.spinning import own_node
    from gradunc_ros.thresholds import choose_threshold, table_for_weights
    from gradunc_ros.uncertainty import DEFAULT_SCORE

    env = isolate()
    parameters = {
        "image_topics": "[/soak/image_raw]", "input_size": args.size, "device": "cpu",
        "input_reliability": "reliable", "log_period": "60.0",
    }  # fmt: skip
    node = start_node(parameters, env, out / "node.log")
    loaded = load_model()
    threshold = choose_threshold(DEFAULT_SCORE, table_for_weights(loaded.weights)).value  # what the node uses
    if threshold is None:
        print("the shipped model has no calibrated threshold for the default score", file=sys.stderr)
        return 1
    checker = Checker(width, height, len(loaded.class_names), threshold)
    status: dict[str, float] = {}
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    memory: list[tuple[int, float, int]] = []
    images = [image_message(image, "rgb8") for image in frames(width, height)]
    with own_node("gradunc_soak") as (peer, executor):
        for output in OUTPUTS:
            peer.create_subscription(Image, f"/soak/gradunc/{output}", lambda m, o=output: checker(o, m), reliable)

        def on_status(message: DiagnosticArray) -> None:
            for entry in message.status:
                status.update({kv.key: float(kv.value) for kv in entry.values})

        peer.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
        camera = peer.create_publisher(
            Image, "/soak/image_raw", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        )
        deadline = time.monotonic() + 60
        while not status and time.monotonic() < deadline:  # the node is up once it reports
            executor.spin_once(timeout_sec=0.2)
        start = time.monotonic()
        for index in range(1, args.frames + 1):
            msg = images[index % len(images)]
            msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = index, 0, f"soak{index}"
            camera.publish(msg)
            if index % 100 == 0:
                memory.append((index, time.monotonic() - start, resident_bytes(node.pid)))
            if index % 1000 == 0:
                print(f"{index} frames sent, node RSS {memory[-1][2] / 2**20:.1f} MiB", flush=True)
            next_at = start + index / args.rate
            while True:  # serve callbacks until the next frame is due
                executor.spin_once(timeout_sec=max(0.0, min(0.01, next_at - time.monotonic())))
                if time.monotonic() >= next_at:
                    break
        elapsed = time.monotonic() - start
        quiet_since = time.monotonic()
        last = len(checker.seen)
        while time.monotonic() - quiet_since < 5.0:  # drain: until nothing new for 5 s
            executor.spin_once(timeout_sec=0.2)
            if len(checker.seen) != last:
                last, quiet_since = len(checker.seen), time.monotonic()
    node.terminate()
    node.wait(timeout=30)

    with (out / "memory.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frames_sent", "seconds", "node_rss_bytes"])
        writer.writerows(memory)
    rss = {index: value for index, _t, value in memory}
    first, final = rss.get(1000), rss[max(rss)]
    complete = [i for i, got in checker.seen.items() if len(got) == len(OUTPUTS)]
    incomplete = sorted(i for i, got in checker.seen.items() if len(got) != len(OUTPUTS))
    mask_mismatch = sorted(i for i in complete if checker.seen[i]["uncertainty"] != checker.seen[i]["ood_mask"])
    print(f"\nframes sent {args.frames} at {args.rate:g} Hz ({width}x{height}) in {elapsed:.0f} s")
    print(f"node counts: received {status.get('received', 0):.0f}, processed {status.get('processed', 0):.0f}, "
          f"dropped {status.get('dropped', 0):.0f}, undecodable {status.get('undecodable', 0):.0f}, "
          f"inference failed {status.get('inference_failed', 0):.0f}")  # fmt: skip
    print(f"frames with all three outputs: {len(complete)}; with some missing: {len(incomplete)} {incomplete[:20]}")
    print(f"masks not equal to uncertainty > threshold: {len(mask_mismatch)} {mask_mismatch[:20]}")
    print(f"other problems: {len(checker.problems)} {checker.problems[:20]}")
    if first:
        print(f"node RSS: frame 1000 {first / 2**20:.1f} MiB, frame {max(rss)} {final / 2**20:.1f} MiB, "
              f"growth {100 * (final - first) / first:+.2f} %; peak {max(rss.values()) / 2**20:.1f} MiB")  # fmt: skip
    processed_matches = len(complete) == int(status.get("processed", -1))
    print(f"every processed frame has its three outputs: {processed_matches and not incomplete}")
    ok = processed_matches and not incomplete and not mask_mismatch and not checker.problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
