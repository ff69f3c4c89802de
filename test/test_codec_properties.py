"""Property-based tests of the image codec: random shapes, encodings, byte orders, padding and values.

The references here are written independently of the codec (NumPy channel
picks and float64 scaling); the fuzz properties feed arbitrary field values and
bytes and accept only a correct image or ImageDecodeError.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="hypothesis is not installed (requirements/dev.txt)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradunc_ros.imageio import declared_size  # noqa: E402
from gradunc_ros.streams.codec import (  # noqa: E402
    _COLOUR,
    ImageDecodeError,
    compressed_to_rgb,
    encoding_info,
    image_array,
    image_to_rgb,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Where each encoding keeps red, green and blue (None: mono, one value for all three).
DIRECT = {
    "rgb8": (0, 1, 2), "bgr8": (2, 1, 0), "rgba8": (0, 1, 2), "bgra8": (2, 1, 0), "mono8": None,
    "rgb16": (0, 1, 2), "bgr16": (2, 1, 0), "rgba16": (0, 1, 2), "bgra16": (2, 1, 0), "mono16": None,
}  # fmt: skip


def _message(array: np.ndarray, encoding: str, big_endian: bool, padding: int, filler: int = 0x5A):
    """An Image-like message written without the codec: explicit byte order, padding after every row."""
    height, width = array.shape[:2]
    rows = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).reshape(height, -1).view(np.uint8)
    data = np.concatenate([rows, np.full((height, padding), filler, np.uint8)], axis=1)
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=data.shape[1],
        data=data.tobytes(),
    )  # fmt: skip


@st.composite
def encoded_frames(draw, encodings=tuple(_COLOUR)):
    encoding = draw(st.sampled_from(encodings))
    info = encoding_info(encoding)
    even = encoding.startswith(("bayer", "yuv", "uyvy")) or encoding == "yuyv"
    height = draw(st.integers(1, 12)) * (2 if even else 1)
    width = draw(st.integers(1, 12)) * (2 if even else 1)
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    top = np.iinfo(info.dtype).max
    seed = draw(st.integers(0, 2**32 - 1))
    array = np.random.default_rng(seed).integers(0, top, shape, dtype=info.dtype, endpoint=True)
    return encoding, array, draw(st.booleans()), draw(st.integers(0, 9))


@SETTINGS
@given(encoded_frames())
def test_image_array_recovers_the_array_from_any_byte_order_and_padding(frame) -> None:
    encoding, array, big_endian, padding = frame
    recovered = image_array(_message(array, encoding, big_endian, padding))
    assert recovered.dtype == array.dtype.newbyteorder("=") and np.array_equal(recovered, array)


@SETTINGS
@given(encoded_frames(tuple(DIRECT)))
def test_rgb_equals_the_channel_pick_and_cv_bridge_scaling(frame) -> None:
    encoding, array, big_endian, padding = frame
    rgb = image_to_rgb(_message(array, encoding, big_endian, padding))
    picks = DIRECT[encoding]
    expected = np.repeat(array[..., None], 3, axis=2) if picks is None else array[..., list(picks)]
    if array.dtype == np.uint16:  # cv_bridge: x * 255 / 65535, rounded (never a tie for integers)
        expected = np.rint(expected.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == array.shape[:2] + (3,)
    assert np.array_equal(rgb, expected)


@SETTINGS
@given(encoded_frames())
def test_every_colour_encoding_gives_an_rgb_image_of_its_size(frame) -> None:
    encoding, array, big_endian, padding = frame
    rgb = image_to_rgb(_message(array, encoding, big_endian, padding))
    assert rgb.dtype == np.uint8 and rgb.shape == (array.shape[0], array.shape[1], 3) and rgb.flags.c_contiguous


@SETTINGS
@given(encoded_frames(tuple(DIRECT)), st.integers(1, 200))
def test_frames_above_max_pixels_are_refused_the_rest_decoded(frame, max_pixels: int) -> None:
    encoding, array, big_endian, padding = frame
    msg = _message(array, encoding, big_endian, padding)
    if msg.width * msg.height > max_pixels:
        with pytest.raises(ImageDecodeError, match="larger than max_image_pixels"):
            image_to_rgb(msg, max_pixels)
    else:
        assert image_to_rgb(msg, max_pixels).shape[:2] == array.shape[:2]


ENCODING_NAMES = [*_COLOUR, "nv21", "8UC1", "8UC3", "16SC2", "32FC1", "64FC3", "rgb9", "", "8UC", "bayer"]


@st.composite
def raw_messages(draw) -> SimpleNamespace:
    """Arbitrary header fields; the data length often fits them, so the pixel conversion is reached too."""
    encoding = draw(st.one_of(st.sampled_from(ENCODING_NAMES), st.text(max_size=8)))
    height, width, step = draw(st.integers(0, 9)), draw(st.integers(0, 9)), draw(st.integers(0, 80))
    fitting = st.sampled_from([height * step, height * 3 // 2 * step]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    )
    data = draw(st.one_of(st.binary(max_size=800), fitting))
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=draw(st.integers(0, 1)), step=step, data=data
    )


@settings(max_examples=600, deadline=None)
@given(raw_messages())
def test_any_raw_message_decodes_to_its_size_or_is_refused_with_the_reason(msg) -> None:
    try:
        rgb = image_to_rgb(msg)
    except ImageDecodeError as error:
        assert str(error)
        return
    assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)


def _valid_compressed(seed: int, extension: str) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (6 + seed % 7, 5 + seed % 11, 3), np.uint8)
    return cv2.imencode(extension, image)[1].tobytes()


@st.composite
def damaged_compressed(draw) -> bytes:
    data = bytearray(_valid_compressed(draw(st.integers(0, 50)), draw(st.sampled_from([".png", ".jpg"]))))
    for _ in range(draw(st.integers(0, 4))):  # flip bytes, anywhere, headers included
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])  # and maybe cut short


@settings(max_examples=300, deadline=None)
@given(st.one_of(damaged_compressed(), st.binary(max_size=300)))
def test_any_compressed_payload_decodes_or_is_refused_with_the_reason(data: bytes) -> None:
    msg = SimpleNamespace(format="jpeg", data=data)
    try:
        rgb = compressed_to_rgb(msg, max_pixels=10_000)
    except ImageDecodeError as error:
        assert str(error)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] * rgb.shape[1] <= 10_000
    size = declared_size(data)
    assert size is None or size == (rgb.shape[1], rgb.shape[0])


@SETTINGS
@given(st.integers(1, 2000), st.integers(1, 2000), st.sampled_from([".png", ".jpg"]))
def test_declared_size_reads_png_and_jpeg_headers(width: int, height: int, extension: str) -> None:
    encoded = cv2.imencode(extension, np.zeros((height, width), np.uint8))[1].tobytes()
    assert declared_size(encoded) == (width, height)
