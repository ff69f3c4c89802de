"""The image codec: every cv_bridge colour encoding decoded as cv_bridge would, malformed frames refused."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) is not installed")

from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.streams.codec import (  # noqa: E402
    ImageDecodeError,
    compressed_to_rgb,
    image_array,
    image_to_rgb,
)


def _image(array: np.ndarray, encoding: str, big_endian: bool = False, pad: int = 0) -> sensor_msgs.Image:
    """An Image message built by hand (not by the codec under test), optionally row-padded with junk."""
    data = array.astype(array.dtype.newbyteorder(">" if big_endian else "<"))
    rows = data.reshape(data.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.hstack([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)])
    msg = sensor_msgs.Image(height=array.shape[0], width=array.shape[1], encoding=encoding)
    msg.is_bigendian = int(big_endian)
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)


def test_colour_orders(rgb: np.ndarray) -> None:
    assert np.array_equal(image_to_rgb(_image(rgb, "rgb8")), rgb)
    assert np.array_equal(image_to_rgb(_image(rgb[..., ::-1].copy(), "bgr8")), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([rgb[..., ::-1], alpha], 2), "bgra8")), rgb)
    grey = rgb[..., 0].copy()
    assert np.array_equal(image_to_rgb(_image(grey, "mono8")), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("big_endian", (False, True), ids=("little", "big"))
@pytest.mark.parametrize("encoding", ("rgb16", "bgr16", "mono16"))
def test_sixteen_bit_in_either_byte_order(rgb: np.ndarray, encoding: str, big_endian: bool) -> None:
    wide = rgb.astype(np.uint16) * 257  # 8-bit value v as 16-bit v * 257: scales back to exactly v
    if encoding == "bgr16":
        wide = wide[..., ::-1].copy()
    if encoding == "mono16":
        wide, rgb = wide[..., 0].copy(), np.repeat(rgb[..., :1], 3, axis=2)
    msg = _image(wide, encoding, big_endian=big_endian)
    assert np.array_equal(image_array(msg), wide)
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_sixteen_bit_scaling_rounds_like_cv_bridge() -> None:
    values = np.array([[0, 128, 129, 32767, 65535]], np.uint16)
    decoded = image_to_rgb(_image(values, "mono16"))[..., 0]
    assert decoded.tolist() == [[0, 0, 1, 127, 255]]  # v * 255 / 65535, rounded to nearest


def test_row_padding_is_skipped(rgb: np.ndarray) -> None:
    assert np.array_equal(image_to_rgb(_image(rgb, "rgb8", pad=5)), rgb)
    wide = rgb[..., 0].astype(np.uint16) * 300
    assert np.array_equal(image_array(_image(wide, "mono16", big_endian=True, pad=4)), wide)


@pytest.mark.parametrize(
    "encoding,offsets",
    (
        ("bayer_rggb8", {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}),
        ("bayer_bggr8", {(0, 0): 2, (0, 1): 1, (1, 0): 1, (1, 1): 0}),
        ("bayer_gbrg8", {(0, 0): 1, (0, 1): 2, (1, 0): 0, (1, 1): 1}),
        ("bayer_grbg8", {(0, 0): 1, (0, 1): 0, (1, 0): 2, (1, 1): 1}),
    ),
)
def test_bayer_patterns_keep_red_red(encoding: str, offsets: dict) -> None:
    colour = (200, 120, 40)
    mosaic = np.zeros((16, 16), np.uint8)
    for (dy, dx), channel in offsets.items():
        mosaic[dy::2, dx::2] = colour[channel]
    decoded = image_to_rgb(_image(mosaic, encoding))
    assert np.abs(decoded[4:-4, 4:-4].astype(int) - colour).max() <= 2


def test_yuv422_layouts() -> None:
    y, u, v = 81, 90, 240  # BT.601 red
    uyvy = np.tile(np.array([[u, y], [v, y]], np.uint8).reshape(1, 2, 2), (4, 4, 1)).reshape(4, 8, 2)
    yuyv = np.tile(np.array([[y, u], [y, v]], np.uint8).reshape(1, 2, 2), (4, 4, 1)).reshape(4, 8, 2)
    for encoding, array in (("yuv422", uyvy), ("yuv422_yuy2", yuyv)):
        red = image_to_rgb(_image(array, encoding))
        assert red.shape == (4, 8, 3) and (red[..., 0] > 200).all() and (red[..., 1:] < 70).all(), encoding


@pytest.mark.parametrize(
    "mutate,reason",
    (
        (lambda m: setattr(m, "data", m.data[:-1]), "data holds"),
        (lambda m: setattr(m, "data", bytes(m.data) + b"\x00"), "data holds"),
        (lambda m: setattr(m, "step", 10), "smaller than a row"),
        (lambda m: setattr(m, "encoding", "32FC1"), "no colour meaning"),
        (lambda m: setattr(m, "encoding", "8UC3"), "no colour meaning"),
        (lambda m: setattr(m, "encoding", "hsv8"), "unknown encoding"),
        (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty frame"),
    ),
    ids=("short", "long", "step", "float", "8UC3", "unknown", "empty"),
)
def test_malformed_frames_are_refused_with_the_reason(rgb: np.ndarray, mutate, reason: str) -> None:
    msg = _image(rgb, "rgb8")
    mutate(msg)
    with pytest.raises(ImageDecodeError, match=reason):
        image_to_rgb(msg)


@pytest.mark.parametrize(
    "encoding,width,height,reason",
    (
        ("yuv422", 5, 4, "yuv422 needs an even width, got 5"),
        ("yuv422_yuy2", 3, 2, "needs an even width"),
        ("nv21", 4, 3, "nv21 needs an even height, got 3"),
    ),
)
def test_chroma_subsampled_frames_of_odd_size_are_refused(encoding: str, width: int, height: int, reason: str) -> None:
    rows = height * 3 // 2 if encoding == "nv21" else height
    channels = 1 if encoding == "nv21" else 2
    msg = sensor_msgs.Image(height=height, width=width, encoding=encoding, step=width * channels)
    msg.data = bytes(rows * width * channels)
    with pytest.raises(ImageDecodeError, match=reason):
        image_to_rgb(msg)


def test_compressed_frames(rgb: np.ndarray) -> None:
    png = sensor_msgs.CompressedImage(format="png", data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    assert np.array_equal(compressed_to_rgb(png), rgb)
    big = np.full((32, 32, 3), (10, 200, 90), np.uint8)
    jpeg = sensor_msgs.CompressedImage(format="jpeg", data=cv2.imencode(".jpg", big[..., ::-1])[1].tobytes())
    assert np.abs(compressed_to_rgb(jpeg).astype(int) - big).max() <= 4
    for bad in (b"", b"not an image at all", png.data[:20]):
        with pytest.raises(ImageDecodeError):
            compressed_to_rgb(sensor_msgs.CompressedImage(format="png", data=bad))


@pytest.mark.parametrize("encoding,dtype,shape", (("mono8", np.uint8, (5, 7)), ("rgb8", np.uint8, (5, 7, 3)),
                                                  ("32FC1", np.float32, (5, 7))))  # fmt: skip
def test_image_message_round_trip(encoding: str, dtype, shape) -> None:
    array = (np.random.default_rng(1).random(shape) * 200).astype(dtype)
    msg = image_message(array, encoding)
    assert msg.step == shape[1] * (3 if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
    assert msg.is_bigendian == (sys.byteorder == "big")
    assert np.array_equal(image_array(msg), array)
    with pytest.raises(ValueError, match="needs 1 channel"):
        image_message(np.zeros((2, 2, 3), np.uint8), "mono8")
