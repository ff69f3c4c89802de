"""Image files and compressed frames to pixels, one way for the node, the tools and the evaluation.

A compressed frame (a ``sensor_msgs/CompressedImage``'s bytes, or an image
file's) decodes with OpenCV; it is refused with the reason when it is empty,
does not decode, is a JPEG cut short (no end-of-image marker after its last
scan: OpenCV's file reader would fill the rest with grey), or declares more
than ``max_pixels`` in its own header (checked before decoding: a small file
can declare a huge image).  No ROS here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """A frame that cannot be turned into an RGB image; the message says why."""


def check_size(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(f"frame of {width}x{height} is larger than max_image_pixels ({max_pixels})")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame header; None if neither is found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            if at + 9 > len(data):
                return None
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
        if marker == 0xDA or length < 2:  # scan data before any frame header, or a broken length
            return None
        at += 2 + length
    return None


def jpeg_is_complete(data: bytes) -> bool:
    """A JPEG holds an end-of-image marker after its last start-of-scan.  Inside scan data a 0xFF byte is
    always followed by 0x00 or a restart marker, so neither marker can appear there by chance."""
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


def decode_compressed(
    data, max_pixels: int | None = None, what: str = "compressed frame", image_format: str = ""
) -> np.ndarray:
    """JPEG, PNG or anything else OpenCV decodes, as H x W x 3 uint8 RGB, or ImageDecodeError."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError(f"empty {what}")
    described = f"{what} ({image_format or 'no format'}, {buffer.size} bytes)"
    head = buffer[:65536].tobytes()  # JPEG headers before the frame header are small
    declared = declared_size(head)
    if declared is not None:
        check_size(*declared, max_pixels)
    if head[:2] == b"\xff\xd8" and not jpeg_is_complete(buffer.tobytes()):
        raise ImageDecodeError(f"{described} is a JPEG cut short (no end-of-image marker)")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageDecodeError(f"{described} does not decode")
    check_size(decoded.shape[1], decoded.shape[0], max_pixels)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB, decoded as the node decodes a CompressedImage.
    OSError when it cannot be read, ImageDecodeError when it is not a whole image."""
    data = Path(path).read_bytes()
    return decode_compressed(data, max_pixels, f"image {path}", Path(path).suffix.lstrip(".").lower())


def read_label(path: str | Path) -> np.ndarray:
    """A single-channel label image as H x W uint8 class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"cannot read label image {path}")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label image {path} must be 8-bit single-channel, got shape {label.shape} {label.dtype}")
    return label
