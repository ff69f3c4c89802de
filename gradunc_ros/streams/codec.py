"""sensor_msgs images <-> NumPy with cv_bridge's encoding names and semantics, without cv_bridge.

cv_bridge breaks under NumPy 2 on Humble and Jazzy (ros-perception/
vision_opencv issue 535), so images are converted here:

- a frame must satisfy ``step >= width * bytes per pixel`` and
  ``len(data) == height * step`` (cv_bridge's own checks); row padding in
  ``step`` is skipped; multi-byte data is byte-swapped when its
  ``is_bigendian`` differs from this machine's;
- to RGB: colour and mono encodings, Bayer patterns (with cv_bridge's
  mapping onto OpenCV's names), YUV 4:2:2 (``yuv422`` = UYVY,
  ``yuv422_yuy2`` = YUYV) and ``nv21``; 16-bit data is scaled by
  255/65535 after the colour conversion, as cv_bridge does.  Encodings with
  no colour meaning (``32FC1``, ``8UC3``, ...) are refused, as cv_bridge
  refuses them.
- CompressedImage: any format OpenCV decodes (JPEG, PNG, ...), as BGR.

Frames above ``max_pixels`` are refused before any large buffer is made: a
raw frame by its header fields, a PNG or JPEG by the size its own header
declares (a small file can declare a huge image).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from ..imageio import ImageDecodeError, check_size, decode_compressed


@dataclass(frozen=True)
class EncodingInfo:
    channels: int
    dtype: np.dtype
    to_rgb: int | None  # OpenCV conversion code to RGB; None: already RGB; -1: no colour meaning


_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
_COLOUR = {
    "rgb8": EncodingInfo(3, _U8, None),
    "rgb16": EncodingInfo(3, _U16, None),
    "bgr8": EncodingInfo(3, _U8, cv2.COLOR_BGR2RGB),
    "bgr16": EncodingInfo(3, _U16, cv2.COLOR_BGR2RGB),
    "rgba8": EncodingInfo(4, _U8, cv2.COLOR_RGBA2RGB),
    "rgba16": EncodingInfo(4, _U16, cv2.COLOR_RGBA2RGB),
    "bgra8": EncodingInfo(4, _U8, cv2.COLOR_BGRA2RGB),
    "bgra16": EncodingInfo(4, _U16, cv2.COLOR_BGRA2RGB),
    "mono8": EncodingInfo(1, _U8, cv2.COLOR_GRAY2RGB),
    "mono16": EncodingInfo(1, _U16, cv2.COLOR_GRAY2RGB),
    # cv_bridge maps ROS Bayer names onto OpenCV's, whose names are shifted by one pixel.
    "bayer_rggb8": EncodingInfo(1, _U8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": EncodingInfo(1, _U8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": EncodingInfo(1, _U8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": EncodingInfo(1, _U8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": EncodingInfo(1, _U16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": EncodingInfo(1, _U16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": EncodingInfo(1, _U16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": EncodingInfo(1, _U16, cv2.COLOR_BayerGB2RGB),
    "yuv422": EncodingInfo(2, _U8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": EncodingInfo(2, _U8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": EncodingInfo(2, _U8, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": EncodingInfo(2, _U8, cv2.COLOR_YUV2RGB_YUYV),
}
_TYPE_DTYPES = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}


def encoding_info(encoding: str) -> EncodingInfo:
    """Channels, element type and conversion of an encoding name, or ImageDecodeError if unknown."""
    if encoding in _COLOUR:
        return _COLOUR[encoding]
    if encoding == "nv21":
        return EncodingInfo(1, _U8, cv2.COLOR_YUV2RGB_NV21)
    for prefix, code in _TYPE_DTYPES.items():  # 8UC3, 32FC1, ...: data without colour meaning
        if encoding.startswith(prefix + "C") and encoding[len(prefix) + 1 :].isdigit():
            return EncodingInfo(int(encoding[len(prefix) + 1 :]), np.dtype(code), -1)
    raise ImageDecodeError(f"unknown encoding {encoding!r}")


def _check_geometry(encoding: str, width: int, height: int) -> None:
    """Chroma subsampling needs even sizes: YUV 4:2:2 even widths, NV21 even widths and heights."""
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv21") and width % 2:
        raise ImageDecodeError(f"{encoding} needs an even width, got {width}")
    if encoding == "nv21" and height % 2:
        raise ImageDecodeError(f"nv21 needs an even height, got {height}")


def image_array(msg) -> np.ndarray:
    """The pixel array of a sensor_msgs/Image (H x W or H x W x C, native byte order), rows unpadded.

    Works on any object with the Image fields (height, width, encoding, is_bigendian, step, data).
    """
    info = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageDecodeError(f"empty frame ({width}x{height})")
    data = np.frombuffer(msg.data, dtype=np.uint8)  # zero-copy view of array('B') or bytes
    rows = height * 3 // 2 if msg.encoding == "nv21" else height  # NV21: Y plane, then interleaved VU
    row_bytes = width * info.channels * info.dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than a row ({width} x {info.channels} x {info.dtype.itemsize})")
    if data.size != rows * step:
        raise ImageDecodeError(f"data holds {data.size} bytes, not height x step = {rows} x {step} = {rows * step}")
    pixels = data.reshape(rows, step)[:, :row_bytes]
    native_big = sys.byteorder == "big"
    dtype = info.dtype.newbyteorder(">" if msg.is_bigendian else "<") if info.dtype.itemsize > 1 else info.dtype
    array = np.ascontiguousarray(pixels).view(dtype).reshape(rows, width, info.channels)
    if info.dtype.itemsize > 1 and bool(msg.is_bigendian) != native_big:
        array = array.astype(info.dtype.newbyteorder("="))
    return array[:, :, 0] if info.channels == 1 else array


def image_to_rgb(msg, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/Image as H x W x 3 uint8 RGB, or ImageDecodeError with the reason."""
    info = encoding_info(msg.encoding)
    check_size(int(msg.width), int(msg.height), max_pixels)
    if info.to_rgb == -1:
        raise ImageDecodeError(f"encoding {msg.encoding!r} has no colour meaning (cv_bridge refuses it too)")
    _check_geometry(msg.encoding, int(msg.width), int(msg.height))
    array = image_array(msg)
    try:
        rgb = array if info.to_rgb is None else cv2.cvtColor(array, info.to_rgb)
    except cv2.error as error:  # any other size OpenCV cannot convert: refused, never a crash
        reason = str(error).strip().splitlines()[-1]
        size = f"{msg.width}x{msg.height}"
        raise ImageDecodeError(f"{msg.encoding} frame of {size} cannot be converted: {reason}") from None
    if rgb.dtype == np.uint16:  # colour first, then depth, scaled 255/65535 as cv_bridge does
        rgb = np.clip(np.rint(rgb.astype(np.float32) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def compressed_to_rgb(msg, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG, PNG, ...) as H x W x 3 uint8 RGB (``imageio.decode_compressed``)."""
    return decode_compressed(msg.data, max_pixels, "compressed frame", msg.format)


def image_fields(array: np.ndarray, encoding: str) -> dict:
    """The sensor_msgs/Image fields (but the header) of an H x W (x C) array in the given encoding."""
    info = encoding_info(encoding)
    array = np.ascontiguousarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != info.dtype or channels != info.channels:
        raise ValueError(
            f"{encoding} needs {info.channels} channel(s) of {info.dtype}, got {channels} of {array.dtype}"
        )
    return {
        "height": int(array.shape[0]),
        "width": int(array.shape[1]),
        "encoding": encoding,
        "is_bigendian": int(sys.byteorder == "big"),
        "step": int(array.shape[1] * channels * array.dtype.itemsize),
        # bytes: assigning a NumPy array to an rclpy message is hundreds of times slower (docs/ros_env.md)
        "data": array.tobytes(),
    }


def array_to_message(array: np.ndarray, encoding: str, message_type, header=None):
    """An Image message of ``message_type`` from an H x W (x C) array in the given encoding (mono8, rgb8,
    32FC1, ...): any type taking the Image fields as keyword arguments (rclpy's sensor_msgs Image,
    ``ros/publishing.image_message``; rosbags' own, ``bags.image_message``)."""
    fields = image_fields(array, encoding)
    return message_type(header=header, **fields) if header is not None else message_type(**fields)
