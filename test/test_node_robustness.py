"""gradunc_node against bad input, over real DDS: every cv_bridge encoding decoded or refused with one
log line per topic and reason, oversized and changing frames, a camera that goes away and comes back,
refused parameter updates, and start-up faults that exit non-zero with the reason."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import node_running, set_parameters, spin_until, start_node, wait_for_text  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from gradunc_ros.models import get_architecture, load_model  # noqa: E402
from gradunc_ros.pipeline import SegmentationPipeline  # noqa: E402
from gradunc_ros.ros.spinning import own_node  # noqa: E402
from gradunc_ros.streams.codec import image_array, image_to_rgb  # noqa: E402

pytestmark = pytest.mark.process
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TOPICS = {"raw": "/rob_raw/image_raw", "packed": "/rob_packed/image_raw/compressed", "later": "/rob_later/image_raw"}
OUTPUT_PREFIX = {"raw": "/rob_raw/gradunc", "packed": "/rob_packed/gradunc", "later": "/rob_later/gradunc"}
OUTPUTS = ("labels", "uncertainty", "ood_mask")
MAX_PIXELS = 2_000_000


@pytest.fixture(scope="module")
def node_process(random_erfnet: Path, ros_env: dict, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node_log") / "node.log"
    parameters = {
        "weights": str(random_erfnet), "image_topics": "[" + ", ".join(TOPICS.values()) + "]",
        "input_reliability": "reliable", "max_image_pixels": str(MAX_PIXELS), "stale_after": "1.0",
        "status_period": "0.3", "threshold": "0.0",
    }  # fmt: skip
    with node_running(parameters, ros_env, log) as process:
        yield process, log


class Peer:
    """Publishes camera frames and collects the node's outputs and /diagnostics."""

    def __init__(self, node) -> None:
        self.node = node
        self.received: dict[str, list[Image]] = {}
        self.status: dict[str, dict] = {}
        self.messages_seen: dict[str, set[str]] = {}
        self.publishers = {}
        for key, topic in TOPICS.items():
            self.publishers[key] = node.create_publisher(CompressedImage if key == "packed" else Image, topic, RELIABLE)
            for output in OUTPUTS:
                name = f"{OUTPUT_PREFIX[key]}/{output}"
                self.received[name] = []
                node.create_subscription(Image, name, lambda m, n=name: self.received[n].append(m), RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_status, 10)

    def _on_status(self, message: DiagnosticArray) -> None:
        for entry in message.status:
            values = {kv.key: float(kv.value) for kv in entry.values}
            topic = entry.name.removeprefix("gradunc_node: ")
            self.status[topic] = {**values, "message": entry.message}
            self.messages_seen.setdefault(topic, set()).add(entry.message)

    def outputs(self, key: str, stamp: int) -> dict[str, Image] | None:
        found = {}
        for output in OUTPUTS:
            matches = [m for m in self.received[f"{OUTPUT_PREFIX[key]}/{output}"] if m.header.stamp.sec == stamp]
            if not matches:
                return None
            found[output] = matches[-1]
        return found

    def serve(self, key: str, msg, stamp: int, timeout: float = 60) -> dict[str, Image]:
        """Publish ``msg`` with this stamp until all three outputs for it have come back."""
        msg.header.stamp.sec = stamp
        arrived = spin_until(
            self.node, lambda: self.outputs(key, stamp) is not None, timeout, lambda: self.publishers[key].publish(msg)
        )
        assert arrived, f"no outputs for {key} stamp {stamp}"
        return self.outputs(key, stamp)

    def undecodable(self, key: str) -> float:
        return self.status.get(TOPICS[key], {}).get("undecodable", 0.0)


@pytest.fixture(scope="module")
def peer(node_process):
    with own_node("gradunc_robustness_peer") as (node, _executor):
        yield Peer(node)


@pytest.fixture(scope="module")
def pipeline(random_erfnet: Path) -> SegmentationPipeline:
    return SegmentationPipeline(load_model(weights=random_erfnet), device="cpu")


def _rgb(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth random image: the random network gives it several classes, unlike flat noise."""
    small = np.random.default_rng(seed).integers(0, 256, (max(height // 8, 2), max(width // 8, 2), 3), np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _raw(array: np.ndarray, encoding: str, big_endian: bool = False, padding: int = 0) -> Image:
    """An Image holding ``array`` in the given byte order, each row followed by ``padding`` junk bytes."""
    height, width = array.shape[:2]
    ordered = array.astype(array.dtype.newbyteorder(">" if big_endian else "<"))
    rows = ordered.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    return Image(
        height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
        step=padded.shape[1], data=padded.tobytes(),
    )  # fmt: skip


def _alpha(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image, np.full(image.shape[:2] + (1,), 77, image.dtype)], axis=2)


# encoding, big-endian, row padding, the array that carries the RGB image
ENCODED = [
    ("rgb8", False, 0, lambda rgb: rgb),
    ("bgr8", False, 3, lambda rgb: rgb[..., ::-1]),
    ("rgba8", False, 0, _alpha),
    ("bgra8", False, 8, lambda rgb: _alpha(rgb[..., ::-1])),
    ("rgb16", True, 0, lambda rgb: rgb.astype(np.uint16) * 257),  # 257 x: exactly back after 255/65535
    ("bgr16", False, 6, lambda rgb: rgb[..., ::-1].astype(np.uint16) * 257),
    ("rgba16", False, 0, lambda rgb: _alpha(rgb.astype(np.uint16) * 257)),
    ("bgra16", True, 2, lambda rgb: _alpha(rgb[..., ::-1].astype(np.uint16) * 257)),
    ("mono8", False, 5, lambda rgb: rgb[..., 1]),
    ("mono16", True, 4, lambda rgb: rgb[..., 1].astype(np.uint16) * 257),
]
# Lossy colour conversions (their pixel semantics are checked in test_streams_codec.py): the node's labels
# must equal the pipeline's on the codec's decoding of the same message.
LOSSY = [
    ("bayer_rggb8", False, 0, lambda rgb: rgb[..., 1]),
    ("bayer_grbg16", True, 2, lambda rgb: rgb[..., 0].astype(np.uint16) * 257),
    ("yuv422", False, 0, lambda rgb: rgb[..., :2].copy()),
    ("yuv422_yuy2", False, 4, lambda rgb: rgb[..., 1:].copy()),
]


def test_every_colour_encoding_gives_the_labels_of_its_rgb_image(peer: Peer, pipeline) -> None:
    rgb = _rgb(1)
    for stamp, (encoding, big_endian, padding, carry) in enumerate(ENCODED + LOSSY, start=1000):
        msg = _raw(carry(rgb), encoding, big_endian, padding)
        if (encoding, big_endian, padding, carry) in ENCODED:
            expected_rgb = rgb if not encoding.startswith("mono") else np.repeat(rgb[..., 1:2], 3, axis=2)
            assert np.array_equal(image_to_rgb(msg), expected_rgb), encoding
        else:
            expected_rgb = image_to_rgb(msg)
        expected = pipeline.predict(expected_rgb)
        outputs = peer.serve("raw", msg, stamp)
        assert np.array_equal(image_array(outputs["labels"]), expected.labels), encoding
        assert np.allclose(image_array(outputs["uncertainty"]), expected.score, atol=1e-4), encoding


def _bad_raw_frames() -> list[tuple[str, object, str]]:
    good = _raw(_rgb(2), "rgb8")
    size = len(good.data)
    short, long, narrow = _raw(_rgb(2), "rgb8"), _raw(_rgb(2), "rgb8"), _raw(_rgb(2), "rgb8")
    short.data = bytes(good.data)[:-7]
    long.data = bytes(good.data) + b"\0" * 5
    narrow.step = 64 * 3 - 1
    unknown = _raw(_rgb(2), "rgb8")
    unknown.encoding = "rgb9"
    nan_and_inf = np.full((48, 64), np.nan, np.float32)
    nan_and_inf[::2] = np.inf
    return [
        ("raw", Image(encoding="rgb8"), "empty frame (0x0)"),
        ("raw", short, f"data holds {size - 7} bytes, not height x step"),
        ("raw", long, "data holds"),  # the same kind of reason as the short frame: no second line
        ("raw", narrow, "step 191 is smaller than a row"),
        ("raw", unknown, "unknown encoding 'rgb9'"),
        ("raw", _raw(_rgb(2), "8UC3"), "encoding '8UC3' has no colour meaning"),
        ("raw", _raw(nan_and_inf, "32FC1"), "encoding '32FC1' has no colour meaning"),
        ("raw", _raw(np.zeros((1001, 2000), np.uint8), "mono8"), "frame of 2000x1001 is larger than max_image_pixels"),
    ]


def _bad_compressed_frames() -> list[tuple[str, object, str]]:
    png = cv2.imencode(".png", _rgb(3))[1].tobytes()
    half = len(png) // 2
    huge_png = cv2.imencode(".png", np.zeros((3000, 4000), np.uint8))[1].tobytes()  # small file, 12 Mpx image
    huge_jpeg = cv2.imencode(".jpg", np.zeros((1500, 2000, 3), np.uint8))[1].tobytes()
    garbage = b"\xff\xd8" + np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes() + b"\xff\xd9"
    jpeg = cv2.imencode(".jpg", _rgb(3))[1].tobytes()
    return [
        ("packed", CompressedImage(format="jpeg"), "empty compressed frame"),
        ("packed", CompressedImage(format="jpeg", data=garbage), "compressed frame (jpeg, 3004 bytes) does not decode"),
        ("packed", CompressedImage(format="jpeg", data=jpeg[:-100]), "is a JPEG cut short (no end-of-image marker)"),
        ("packed", CompressedImage(format="png", data=png[:half]), f"frame (png, {half} bytes) does not decode"),
        ("packed", CompressedImage(format="png", data=huge_png), "frame of 4000x3000 is larger than max_image_pixels"),
        ("packed", CompressedImage(format="jpeg", data=huge_jpeg), "is larger than max_image_pixels"),  # logged above
    ]


def test_undecodable_frames_are_skipped_with_one_log_line_per_topic_and_reason(peer: Peer, node_process) -> None:
    cases = _bad_raw_frames() + _bad_compressed_frames()
    for key, msg, _reason in cases:
        before = peer.undecodable(key)
        # Sent again and again until the node counted it: every reason reaches the worker more than once.
        assert spin_until(peer.node, lambda k=key, b=before: peer.undecodable(k) >= b + 2, 30,
                          lambda k=key, m=msg: peer.publishers[k].publish(m)), _reason  # fmt: skip
    # A driver whose frames are short by a different amount every time: one line, not one per frame.
    for cut in range(1, 7):
        varying = _raw(_rgb(2), "rgb8")
        varying.data = bytes(varying.data)[:-cut]
        before = peer.undecodable("raw")
        assert spin_until(peer.node, lambda b=before: peer.undecodable("raw") > b, 30,
                          lambda m=varying: peer.publishers["raw"].publish(m))  # fmt: skip
    # Good frames on both cameras are still served.
    peer.serve("raw", _raw(_rgb(4), "rgb8"), 2000)
    peer.serve("packed", CompressedImage(format="png", data=cv2.imencode(".png", _rgb(4))[1].tobytes()), 2000)
    log = node_process[1].read_text()
    for key, _msg, reason in cases:
        lines = [line for line in log.splitlines() if reason in line and TOPICS[key] in line]
        assert len(lines) == 1, (reason, lines)
    assert "PNG input buffer is incomplete" not in log  # OpenCV's own per-frame warning is silenced
    raw_cases = sum(key == "raw" for key, _msg, _reason in cases)
    assert peer.undecodable("raw") >= 2 * raw_cases and peer.status[TOPICS["raw"]]["processed"] > 0
    # /diagnostics warned while bad frames came in, and clears once only good ones do.
    assert "undecodable frames skipped" in peer.messages_seen[TOPICS["raw"]]
    good = _raw(_rgb(4), "rgb8")
    assert spin_until(peer.node, lambda: peer.status[TOPICS["raw"]]["message"] == "ok", 10,
                      lambda: peer.publishers["raw"].publish(good))  # fmt: skip


def test_large_frames_and_resolution_changes_mid_stream(peer: Peer, pipeline) -> None:
    for stamp, (height, width) in enumerate([(48, 64), (1200, 1600), (72, 96), (48, 64)], start=3000):
        rgb = _rgb(stamp, height, width)
        outputs = peer.serve("raw", _raw(rgb, "rgb8"), stamp, timeout=120)
        for output in OUTPUTS:
            assert (outputs[output].height, outputs[output].width) == (height, width), output
        assert np.array_equal(image_array(outputs["labels"]), pipeline.predict(rgb).labels), (height, width)
    jpeg = cv2.imencode(".jpg", _rgb(7, 1200, 1600))[1].tobytes()
    outputs = peer.serve("packed", CompressedImage(format="jpeg", data=jpeg), 3100, timeout=120)
    assert (outputs["labels"].height, outputs["labels"].width) == (1200, 1600)


def test_a_camera_that_stops_and_comes_back_is_reported_then_served(peer: Peer) -> None:
    status = peer.status
    peer.serve("later", _raw(_rgb(5), "rgb8"), 4000)
    assert spin_until(peer.node, lambda: status.get(TOPICS["later"], {}).get("message") == "ok", 10)
    peer.node.destroy_publisher(peer.publishers["later"])  # the driver goes away
    assert spin_until(peer.node, lambda: status[TOPICS["later"]]["message"].startswith("no frames for"), 20)
    peer.publishers["later"] = peer.node.create_publisher(Image, TOPICS["later"], RELIABLE)
    peer.serve("later", _raw(_rgb(6), "rgb8"), 4001)
    assert spin_until(peer.node, lambda: status[TOPICS["later"]]["message"] == "ok", 10)


def test_invalid_parameter_updates_are_refused_with_the_reason(peer: Peer) -> None:
    node = peer.node
    for values, reason in (
        ({"score": "bogus"}, "bogus"),
        ({"mode": "approximately"}, "approximately"),
        ({"roi_classes": "giraffe"}, "giraffe"),
        ({"p": 0.0}, "range"),
        ({"device": "cpu"}, "read-only"),
        ({"gradient_of": "features"}, "gradient_of"),
        ({"layer": "penultimate"}, "set gradient_of to weights"),  # the default is the bias gradient
    ):
        (result,) = set_parameters(node, **values)
        assert not result.successful and reason in result.reason, (values, result.reason)
    # A valid setting that this model (ERFNet) cannot compute: refused now, not failed on every frame.
    assert set_parameters(node, gradient_of="weights")[0].successful
    (result,) = set_parameters(node, layer="penultimate")
    assert not result.successful and "penultimate score needs" in result.reason, result.reason
    assert set_parameters(node, gradient_of="bias")[0].successful
    # The refused updates changed nothing: the node still serves with its defaults.
    outputs = peer.serve("raw", _raw(_rgb(8), "rgb8"), 5000)
    assert np.isfinite(image_array(outputs["uncertainty"])).all()


def test_sigint_while_frames_flow_ends_the_node_cleanly(peer: Peer, node_process) -> None:
    process, log = node_process
    frame = _raw(_rgb(9, 480, 640), "rgb8")
    spin_until(peer.node, lambda: False, 2.0, lambda: peer.publishers["raw"].publish(frame))  # keep it busy
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert "frame skipped" not in text and "Traceback" not in text, text[-2000:]


@pytest.fixture(scope="module")
def wrong_class_count(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "erfnet_20_classes.pth"
    torch.save(get_architecture("erfnet").build(20).state_dict(), path)
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(64))
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing weights", "corrupt weights", "another class count", "cuda without CUDA", "no camera topics",
        "no shipped weights", "unknown reliability", "colliding outputs", "the same camera twice",
        "ground_frame without tf2_ros",
    ],
)  # fmt: skip
def test_start_up_faults_exit_non_zero_with_the_reason(case: str, ros_env, tmp_path, wrong_class_count) -> None:
    if case == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == "ground_frame without tf2_ros" and importlib.util.find_spec("tf2_ros") is not None:
        pytest.skip("tf2_ros imports here")
    parameters, reason = {
        "missing weights": ({"weights": str(tmp_path / "nowhere.safetensors")}, "does not exist"),
        "corrupt weights": ({"weights": str(_corrupt(tmp_path))}, "cannot be read"),
        "another class count": (
            {"model": "erfnet", "weights": str(wrong_class_count)},
            "was trained for 20 classes but erfnet is set up for",
        ),
        "cuda without CUDA": ({"device": "cuda"}, "CUDA is not available"),
        "no camera topics": ({"image_topics": "['']"}, "image_topics"),
        "no shipped weights": ({"model": "deeplabv3plus_resnet18"}, "no weights are shipped for deeplabv3plus"),
        "unknown reliability": ({"input_reliability": "sometimes"}, "input_reliability must be one of"),
        "colliding outputs": (
            {"image_topics": "[/cam/image_raw, /cam/image_raw/compressed]"},
            "would publish on the same outputs (/cam/image_raw/gradunc/...)",
        ),
        "the same camera twice": ({"image_topics": "[/cam/image_raw, /cam/image_raw]"}, "same outputs"),
        "ground_frame without tf2_ros": (
            {"ground_plane": "true", "ground_frame": "base_footprint"},
            "ground_frame 'base_footprint' needs tf2_ros, which does not import here",
        ),
    }[case]
    log = tmp_path / "node.log"
    process = start_node(parameters, ros_env, log)
    assert process.wait(timeout=120) != 0
    text = log.read_text()
    assert "cannot start" in text and reason in text, text[-2000:]


def test_the_class_count_parameter_fixes_a_pth_without_metadata(ros_env, tmp_path, wrong_class_count) -> None:
    log = tmp_path / "node.log"
    process = start_node({"model": "erfnet", "weights": str(wrong_class_count), "num_classes": "20"}, ros_env, log)
    try:
        assert wait_for_text(log, "erfnet (", 120), log.read_text()[-2000:]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
