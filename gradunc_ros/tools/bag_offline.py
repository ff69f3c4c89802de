"""gradunc-bag from-images: a folder of frames to a bag, written with rosbags, no ROS graph involved.

(``evaluate``, over one bag or a fleet's, is ``gradunc_ros.fleet``.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from gradunc_ros.imageio import read_label, read_rgb
from gradunc_ros.streams.bags import (
    BagWriter,
    compressed_message,
    header,
    image_message,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
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
