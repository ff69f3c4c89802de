"""gradunc_node as ROS users expect it, over DDS: remapping, class map, camera info, lazy cameras,
more than 256 classes, and signals in the first second."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import get_parameter, spin_until, start_node, wait_for_text  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.ros.spinning import own_node  # noqa: E402
from gradunc_ros.streams.codec import image_array  # noqa: E402

pytestmark = pytest.mark.process
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def peer(ros_env):
    with own_node("gradunc_interfaces_peer") as (node, _executor):
        yield node


@pytest.fixture(scope="module")
def remapped_node(random_erfnet: Path, ros_env: dict, tmp_path_factory: pytest.TempPathFactory):
    """The default camera topic 'image' remapped, as `ros2 run ... --ros-args -r image:=...` does."""
    log = tmp_path_factory.mktemp("remapped") / "node.log"
    parameters = {"weights": str(random_erfnet), "threshold": "0.0"}
    process = start_node(parameters, ros_env, log, ros_args=("-r", "image:=/front/image_raw"))
    assert wait_for_text(log, "/front/image_raw -> /front/gradunc/", 120), log.read_text()[-2000:]
    yield process, log
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def _frame(seed: int, stamp: int, frame_id: str = "front_camera", size=(48, 64)) -> Image:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    msg = image_message(image, "rgb8")
    msg.header.stamp.sec, msg.header.frame_id = stamp, frame_id
    return msg


def _collect(node, topics: list[str], kind=Image, qos=RELIABLE) -> dict[str, list]:
    received: dict[str, list] = {topic: [] for topic in topics}
    for topic in topics:
        node.create_subscription(kind, topic, lambda m, t=topic: received[t].append(m), qos)
    return received


def test_remapping_the_camera_moves_the_outputs_too(remapped_node, peer) -> None:
    outputs = ["/front/gradunc/labels", "/front/gradunc/uncertainty", "/front/gradunc/ood_mask"]
    received = _collect(peer, outputs)
    camera = peer.create_publisher(Image, "/front/image_raw", RELIABLE)
    frame = _frame(1, 11)
    assert spin_until(peer, lambda: all(received.values()), 60, lambda: camera.publish(frame)), received
    for topic in outputs:
        assert (received[topic][-1].header.stamp.sec, received[topic][-1].header.frame_id) == (11, "front_camera")
    names = {name for name, _ in peer.get_topic_names_and_types()}
    assert "/gradunc/labels" not in names and "/image" not in names  # nothing left on the unmapped names


def test_the_camera_subscription_follows_the_reliability_the_camera_offers(remapped_node, peer) -> None:
    from rclpy.qos import qos_profile_sensor_data

    def node_reader(topic: str):
        readers = [i for i in peer.get_subscriptions_info_by_topic(topic) if i.node_name == "gradunc_node"]
        return readers[0].qos_profile.reliability if readers else None

    reliable_camera = peer.create_publisher(Image, "/front/image_raw", RELIABLE)  # as in the test above
    assert spin_until(peer, lambda: node_reader("/front/image_raw") == ReliabilityPolicy.RELIABLE, 20)
    peer.destroy_publisher(reliable_camera)
    # A best-effort camera joins: best effort matches it, so the node subscribes so.
    best_effort_camera = peer.create_publisher(Image, "/front/image_raw", qos_profile_sensor_data)
    assert spin_until(peer, lambda: node_reader("/front/image_raw") == ReliabilityPolicy.BEST_EFFORT, 20)
    peer.destroy_publisher(best_effort_camera)


def test_a_late_subscriber_gets_the_class_map_and_the_parameter_has_it(remapped_node, peer) -> None:
    time.sleep(1.0)  # well after the node published it
    received = _collect(peer, ["/front/gradunc/class_map"], String, LATCHED)["/front/gradunc/class_map"]
    assert spin_until(peer, lambda: bool(received), 30)
    class_map = json.loads(received[0].data)
    assert class_map["model"] == "erfnet"
    assert [c["id"] for c in class_map["classes"]] == list(range(9))
    assert all(len(c["colour"]) == 3 for c in class_map["classes"])
    names = get_parameter(peer, "class_names")
    assert names == [c["name"] for c in class_map["classes"]]


def test_camera_info_is_republished_with_each_frames_header(remapped_node, peer) -> None:
    received = _collect(peer, ["/front/gradunc/camera_info"], CameraInfo)["/front/gradunc/camera_info"]
    info_publisher = peer.create_publisher(CameraInfo, "/front/camera_info", RELIABLE)
    camera = peer.create_publisher(Image, "/front/image_raw", RELIABLE)
    info = CameraInfo(width=64, height=48, distortion_model="plumb_bob")
    info.k = [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]
    info.header.frame_id, info.header.stamp.sec = "driver_frame", 1

    def send() -> None:
        info_publisher.publish(info)
        camera.publish(_frame(2, 22))

    assert spin_until(peer, lambda: any(m.header.stamp.sec == 22 for m in received), 60, send)
    republished = next(m for m in received if m.header.stamp.sec == 22)
    assert republished.header.frame_id == "front_camera"  # the frame's header, not the driver's info header
    assert list(republished.k) == list(info.k) and (republished.width, republished.height) == (64, 48)


@pytest.fixture(scope="module")
def two_camera_node(ros_env: dict, tmp_path_factory: pytest.TempPathFactory):
    """Random weights with 300 classes (labels as mono16) and a lazy and a watched camera."""
    log = tmp_path_factory.mktemp("two_cameras") / "node.log"
    parameters = {
        "weights": "random", "num_classes": "300", "threshold": "0.0", "status_period": "0.3",
        "image_topics": "[/lazy/image_raw, /busy/image_raw]", "input_reliability": "reliable",
    }  # fmt: skip
    process = start_node(parameters, ros_env, log)
    assert wait_for_text(log, "/busy/image_raw -> /busy/gradunc/", 120), log.read_text()[-2000:]
    yield process, log
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def test_lazy_cameras_are_not_inferred_and_more_than_256_classes_are_mono16(two_camera_node, peer) -> None:
    status: dict[str, dict] = {}

    def on_status(message: DiagnosticArray) -> None:
        for entry in message.status:
            status[entry.name.removeprefix("gradunc_node: ")] = {
                **{kv.key: float(kv.value) for kv in entry.values},
                "message": entry.message,
            }

    peer.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
    labels = _collect(peer, ["/busy/gradunc/labels"])["/busy/gradunc/labels"]
    lazy, busy = (peer.create_publisher(Image, f"/{name}/image_raw", RELIABLE) for name in ("lazy", "busy"))

    def send() -> None:
        lazy.publish(_frame(3, 33))
        busy.publish(_frame(3, 33))

    def skipped() -> bool:
        values = status.get("/lazy/image_raw", {})
        return bool(labels) and values.get("lazy_skipped", 0) > 0

    assert spin_until(peer, skipped, 60, send)
    # /diagnostics lags the outputs by up to a status period: wait for the busy camera's count
    assert spin_until(peer, lambda: status["/busy/image_raw"]["processed"] > 0, 10, send)
    assert status["/lazy/image_raw"]["processed"] == 0
    assert spin_until(peer, lambda: "lazy" in status["/lazy/image_raw"]["message"], 10, send)
    assert labels[-1].encoding == "mono16" and image_array(labels[-1]).dtype == np.uint16
    assert image_array(labels[-1]).max() < 300
    # A subscriber appears: the lazy camera is served from then on.
    lazy_labels = _collect(peer, ["/lazy/gradunc/labels"])["/lazy/gradunc/labels"]
    assert spin_until(peer, lambda: bool(lazy_labels), 60, send)


def _handles_sigterm(pid: int) -> bool:
    """The process catches SIGTERM: the node's entry point has run (Python itself leaves SIGTERM alone)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize("delay", (0.0, 0.3, 0.6, 0.8, 1.0, 2.0))
def test_sigint_during_start_up_exits_zero_without_a_traceback(delay: float, ros_env, tmp_path) -> None:
    """From the moment the node's entry point runs (the interpreter's own start, tens of milliseconds, is
    before any program code), SIGINT while it imports, loads the model or starts ends it with exit code 0:
    no traceback, no abort from a KeyboardInterrupt raised inside one of PyTorch's C++ callbacks, no exit
    by signal from one raised inside exec()'d source (both seen with Python's own handler)."""
    log = tmp_path / "node.log"
    process = start_node({"weights": "random"}, ros_env, log)
    deadline = time.monotonic() + 30
    while not _handles_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
