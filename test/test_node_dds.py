"""gradunc_node as a process, talked to over real DDS: outputs, headers, parameters, drops, shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import node_running, set_parameters, spin_until  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from gradunc_ros.models import load_model  # noqa: E402
from gradunc_ros.pipeline import SegmentationPipeline  # noqa: E402
from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.streams.codec import image_array  # noqa: E402

pytestmark = pytest.mark.process
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def weights(random_erfnet: Path) -> Path:
    return random_erfnet


@pytest.fixture(scope="module")
def node_process(weights: Path, ros_env: dict, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node_log") / "node.log"
    parameters = {
        "weights": str(weights), "image_topics": "[/cam_a/image_raw, /cam_b/image_raw/compressed]",
        "input_reliability": "reliable", "publish_overlay": "true", "status_period": "0.5", "threshold": "0.0",
    }  # fmt: skip
    with node_running(parameters, ros_env, log) as process:
        yield process, log


@pytest.fixture(scope="module")
def peer(node_process, ros_env):
    from gradunc_ros.ros.spinning import own_node

    with own_node("gradunc_test_peer") as (node, _executor):
        received: dict[str, list] = {}
        for camera in ("cam_a", "cam_b"):
            for output in ("labels", "uncertainty", "ood_mask", "overlay"):
                topic = f"/{camera}/gradunc/{output}"
                received[topic] = []
                node.create_subscription(Image, topic, lambda m, t=topic: received[t].append(m), RELIABLE)
        publishers = {
            "cam_a": node.create_publisher(Image, "/cam_a/image_raw", RELIABLE),
            "cam_b": node.create_publisher(CompressedImage, "/cam_b/image_raw/compressed", RELIABLE),
        }
        yield node, publishers, received


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _send(publishers, image: np.ndarray, stamp_sec: int) -> None:
    raw = image_message(image, "rgb8")
    raw.header.stamp.sec, raw.header.frame_id = stamp_sec, "camera_a"
    publishers["cam_a"].publish(raw)
    compressed = CompressedImage(format="png", data=cv2.imencode(".png", image[..., ::-1])[1].tobytes())
    compressed.header.stamp.sec, compressed.header.frame_id = stamp_sec, "camera_b"
    publishers["cam_b"].publish(compressed)


def test_both_cameras_get_every_output_with_their_header(peer, weights) -> None:
    node, publishers, received = peer
    image = _frame(1)
    assert spin_until(node, lambda: all(received.values()), 90, lambda: _send(publishers, image, 1234)), {
        k: len(v) for k, v in received.items()
    }
    pipeline = SegmentationPipeline(load_model(weights=weights), device="cpu")
    expected = pipeline.predict(image)
    for camera, frame_id in (("cam_a", "camera_a"), ("cam_b", "camera_b")):
        outputs = {
            name: received[f"/{camera}/gradunc/{name}"][-1] for name in ("labels", "uncertainty", "ood_mask", "overlay")
        }
        for name, encoding in (
            ("labels", "mono8"),
            ("uncertainty", "32FC1"),
            ("ood_mask", "mono8"),
            ("overlay", "rgb8"),
        ):
            msg = outputs[name]
            assert (msg.encoding, msg.width, msg.height) == (encoding, 64, 48), name
            assert (msg.header.stamp.sec, msg.header.frame_id) == (1234, frame_id), name
        # Lossless frames on both cameras: labels equal the pipeline's (and gradunc-infer's) exactly.
        assert np.array_equal(image_array(outputs["labels"]), expected.labels)
        assert np.allclose(image_array(outputs["uncertainty"]), expected.score, atol=1e-4)
        assert set(np.unique(image_array(outputs["ood_mask"]))) <= {0, 255}


def test_real_camvid_frame_labels_equal_gradunc_infer(peer, weights, camvid_root, tmp_path) -> None:
    from gradunc_ros.imageio import read_rgb

    node, publishers, received = peer
    path = sorted((Path(camvid_root) / "val" / "images").glob("*.jpg"))[10]
    infer = subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.infer", "--weights", str(weights), "--out", str(tmp_path), str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr
    expected = np.load(tmp_path / f"{path.stem}.npz")
    frame = image_message(read_rgb(path), "rgb8")  # the same decoded pixels gradunc-infer saw
    frame.header.stamp.sec, frame.header.frame_id = 4242, "camvid"
    topic = "/cam_a/gradunc/labels"
    assert spin_until(node, lambda: any(m.header.stamp.sec == 4242 for m in received[topic]), 60,
                       lambda: publishers["cam_a"].publish(frame))  # fmt: skip
    labels = next(m for m in received[topic] if m.header.stamp.sec == 4242)
    assert (labels.width, labels.height) == (480, 360)
    assert np.array_equal(image_array(labels), expected["labels"])


def test_runtime_parameter_changes_take_effect_and_bad_ones_are_refused(peer) -> None:
    node, publishers, received = peer
    results = set_parameters(node, score="msp")
    assert results[0].successful
    topic = "/cam_a/gradunc/uncertainty"
    received[topic].clear()
    image = _frame(2)

    def msp_arrived() -> bool:  # the default max_logit is a negated logit: mostly negative, unlike msp
        if not received[topic]:
            return False
        scores = image_array(received[topic][-1])
        return float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0

    assert spin_until(node, msp_arrived, 60, lambda: _send(publishers, image, 5))
    scores = image_array(received[topic][-1])
    assert scores.min() >= 0.0 and scores.max() <= 1 - 1 / 9 + 1e-6  # 1 - max softmax of 9 classes
    refused = set_parameters(node, p=-1.0)
    assert not refused[0].successful
    refused = set_parameters(node, roi_classes="giraffe")
    assert not refused[0].successful and "giraffe" in refused[0].reason
    assert set_parameters(node, score="pgn_oh")[0].successful


def test_a_burst_is_dropped_and_counted_never_queued(peer) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    node, publishers, received = peer
    status: dict[str, dict] = {}

    def on_status(message: DiagnosticArray) -> None:
        for entry in message.status:
            status[entry.name] = {kv.key: float(kv.value) for kv in entry.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
    topic = "/cam_a/gradunc/labels"
    received[topic].clear()
    image = image_message(_frame(3), "rgb8")
    for stamp in range(100, 160):  # 60 frames, far faster than the CPU infers
        image.header.stamp.sec = stamp
        publishers["cam_a"].publish(image)
    # The newest frame is served promptly: no backlog of the burst behind it.
    assert spin_until(node, lambda: any(m.header.stamp.sec == 159 for m in received[topic]), 30)
    served = {m.header.stamp.sec for m in received[topic] if m.header.stamp.sec >= 100}
    assert len(served) < 60

    def settled() -> bool:
        values = status.get("gradunc_node: /cam_a/image_raw")
        return bool(values) and values["received"] == values["processed"] + values["dropped"] + values["undecodable"]

    assert spin_until(node, settled, 20)
    values = status["gradunc_node: /cam_a/image_raw"]
    # Every frame the node took in was either processed or counted as dropped (the DDS queue of
    # depth 5 may also discard some before the callback sees them).
    assert values["dropped"] > 0 and values["latency_p95_ms"] > 0


def test_undecodable_frames_are_skipped_with_one_line_per_reason(peer, node_process) -> None:
    node, publishers, received = peer
    good = image_message(_frame(4), "rgb8")
    short = image_message(_frame(4), "rgb8")
    short.data = bytes(short.data)[:-7]
    floats = image_message(np.zeros((48, 64), np.float32), "32FC1")
    for _ in range(5):
        for bad in (short, floats):
            publishers["cam_a"].publish(bad)
            node.executor.spin_once(timeout_sec=0.1)
    topic = "/cam_a/gradunc/labels"
    received[topic].clear()
    good.header.stamp.sec = 777
    assert spin_until(node, lambda: any(m.header.stamp.sec == 777 for m in received[topic]), 30,
                       lambda: publishers["cam_a"].publish(good))  # fmt: skip
    text = node_process[1].read_text()
    assert text.count("skipping frames: data holds") == 1
    assert text.count("has no colour meaning") == 1


def test_shutdown_on_sigint_exits_zero(peer, node_process) -> None:
    process, log = node_process
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "erfnet" in text and "/cam_a/image_raw -> /cam_a/gradunc/" in text
