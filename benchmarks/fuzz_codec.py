"""Fuzz run of the image codec: mutated raw and compressed frames for a while; any crash is printed.

    .venv/bin/python benchmarks/fuzz_codec.py [--seconds 120 --seed 0]

Starts from valid frames of every encoding (raw, random sizes, byte orders
and padding) and valid PNG/JPEG files, then mutates header fields (encoding,
width, height, step, byte order) and bytes (flips, cuts, appends).  Each
case must either decode to an H x W x 3 uint8 image of the size the message
declares or raise ImageDecodeError; anything else is a crash.  Prints how many
cases ran, how they ended (by reason), and the first crashes with their inputs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np

from gradunc_ros.streams.codec import _COLOUR, ImageDecodeError, compressed_to_rgb, encoding_info, image_to_rgb

NAMES = [*_COLOUR, "nv21", "8UC3", "32FC1", "64FC1", "16SC4", "rgb9", "", "bgr", "8UC"]


def valid_raw(rng: np.random.Generator) -> SimpleNamespace:
    encoding = str(rng.choice([*_COLOUR, "nv21"]))
    info = encoding_info(encoding)
    height, width = 2 * int(rng.integers(1, 20)), 2 * int(rng.integers(1, 20))
    rows = height * 3 // 2 if encoding == "nv21" else height
    big = bool(rng.integers(2))
    values = rng.integers(0, np.iinfo(info.dtype).max, (rows, width * info.channels), dtype=info.dtype, endpoint=True)
    row_bytes = values.astype(values.dtype.newbyteorder(">" if big else "<")).view(np.uint8)
    padded = np.concatenate([row_bytes, rng.integers(0, 256, (rows, int(rng.integers(0, 8))), np.uint8)], axis=1)
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=int(big), step=padded.shape[1],
        data=padded.tobytes(),
    )  # fmt: skip


def mutate_raw(msg: SimpleNamespace, rng: np.random.Generator) -> SimpleNamespace:
    for _ in range(int(rng.integers(1, 4))):
        field = str(rng.choice(["encoding", "width", "height", "step", "is_bigendian", "data"]))
        if field == "encoding":
            msg.encoding = str(rng.choice(NAMES))
        elif field in ("width", "height", "step"):
            value = getattr(msg, field)
            setattr(msg, field, int(max(0, value + rng.integers(-3, 4))) if rng.random() < 0.8 else 0)
        elif field == "is_bigendian":
            msg.is_bigendian = 1 - msg.is_bigendian
        else:
            msg.data = mutate_bytes(msg.data, rng)
    return msg


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    buffer = bytearray(data)
    action = rng.integers(3)
    if action == 0 and buffer:  # flip a few bytes, anywhere
        for at in rng.integers(0, len(buffer), int(rng.integers(1, 6))):
            buffer[at] = int(rng.integers(256))
    elif action == 1:  # cut short
        buffer = buffer[: int(rng.integers(0, len(buffer) + 1))]
    else:  # trailing junk
        buffer += rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
    return bytes(buffer)


def valid_compressed(rng: np.random.Generator) -> SimpleNamespace:
    image = rng.integers(0, 256, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3), np.uint8)
    extension = str(rng.choice([".png", ".jpg"]))
    return SimpleNamespace(format=extension[1:], data=cv2.imencode(extension, image)[1].tobytes())


def reason_kind(message: str) -> str:
    """The reason without its numbers, to tally cases by kind."""
    return re.sub(r"\d+", "N", message)[:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    cases = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        compressed = rng.random() < 0.3
        if compressed:
            msg = valid_compressed(rng)
            msg.data = mutate_bytes(msg.data, rng) if rng.random() < 0.9 else msg.data
        else:
            msg = valid_raw(rng)
            msg = mutate_raw(msg, rng) if rng.random() < 0.9 else msg
        cases += 1
        try:
            rgb = compressed_to_rgb(msg, 100_000) if compressed else image_to_rgb(msg, 100_000)
        except ImageDecodeError as error:
            outcomes["refused: " + reason_kind(str(error))] += 1
            continue
        except Exception:  # noqa: BLE001 - that is what a fuzz run looks for
            crashes.append(f"{vars(msg) if len(str(vars(msg))) < 400 else 'large input'}\n{traceback.format_exc()}")
            continue
        good = rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        if not compressed:
            good = good and rgb.shape[:2] == (msg.height, msg.width)
        outcomes["decoded" if good else "decoded to a wrong shape"] += 1
    print(f"{cases} cases in {args.seconds:g} s (seed {args.seed}); crashes: {len(crashes)}")
    for kind, count in outcomes.most_common():
        print(f"{count:>9}  {kind}")
    for crash in crashes[:5]:
        print("\nCRASH:", crash)
    return 1 if crashes or outcomes["decoded to a wrong shape"] else 0


if __name__ == "__main__":
    sys.exit(main())
