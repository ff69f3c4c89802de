"""Obstacles over DDS: a stock depth-camera process (image, registered depth, camera_info), the node, and
this process as a stock subscriber of the cloud; then the depth input the node must refuse, each said."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from dds_peers import SCENE, scene_depth_m  # noqa: E402
from ros_helpers import node_running, spin_until, wait_for_text  # noqa: E402

from gradunc_ros.geometry.cloud import read_cloud  # noqa: E402
from gradunc_ros.processes import start  # noqa: E402

pytestmark = pytest.mark.process
PEERS = str(Path(__file__).with_name("dds_peers.py"))
RELIABLE_DEPTH = 5


@pytest.fixture(scope="module")
def depth_node(random_erfnet: Path, ros_env: dict, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("obstacles") / "node.log"
    parameters = {
        "weights": str(random_erfnet), "image_topics": "[/depth_cam/image_raw, /bad_cam/image_raw]",
        "depth_topics": "[/depth_cam/depth/image_raw, /bad_cam/depth/image_raw]", "input_reliability": "reliable",
        "threshold": "-1.0e30",  # every pixel is OoD: the cloud is every pixel with valid depth
        "obstacle_decimation": "2", "obstacle_min_range": "0.3", "obstacle_max_range": "10.0",
        "publish_semantic": "true", "status_period": "0.3",  # lazy, the default: the clouds are listened to
    }  # fmt: skip
    with node_running(parameters, ros_env, log) as process:
        yield process, log


@pytest.fixture(scope="module")
def listener(depth_node):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    from gradunc_ros.ros.spinning import own_node

    with own_node("stock_cloud_listener") as (node, _executor):
        got = {"clouds": [], "points": [], "labels": [], "confidence": [], "status": {}}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        # Only obstacle outputs are listened to (the node is lazy): the obstacle layer's cloud reliable, the
        # semantic layer's three with sensor-data QoS, as that layer subscribes.
        node.create_subscription(PointCloud2, "/depth_cam/gradunc/obstacles", got["clouds"].append, qos)
        node.create_subscription(PointCloud2, "/bad_cam/gradunc/obstacles", lambda _m: None, qos)
        sensor = qos_profile_sensor_data
        node.create_subscription(PointCloud2, "/depth_cam/gradunc/points", got["points"].append, sensor)
        node.create_subscription(Image, "/depth_cam/gradunc/semantic_labels", got["labels"].append, sensor)
        node.create_subscription(Image, "/depth_cam/gradunc/confidence", got["confidence"].append, sensor)

        def on_status(message) -> None:
            for entry in message.status:
                values = {kv.key: float(kv.value) for kv in entry.values}
                got["status"][entry.name.removeprefix("gradunc_node: ")] = {**values, "message": entry.message}

        node.create_subscription(DiagnosticArray, "/diagnostics", on_status, 10)
        got["node"] = node
        yield got


def _stamp(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _fields(message) -> dict:
    return {"height": message.height, "width": message.width, "fields": message.fields,
            "is_bigendian": message.is_bigendian, "point_step": message.point_step, "data": message.data}  # fmt: skip


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_a_stock_depth_camera_gives_points_where_the_scene_is(listener, ros_env, encoding: str) -> None:
    got = listener
    got["clouds"].clear()
    camera = start([sys.executable, PEERS, "depth_camera", "--prefix", "/depth_cam", "--encoding", encoding,
                    "--count", "3", "--rate", "2"], env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)  # fmt: skip
    assert spin_until(got["node"], lambda: len(got["clouds"]) >= 2 and camera.poll() is not None, 90), (
        camera.poll(),
        len(got["clouds"]),
        got["status"].get("/depth_cam/image_raw"),
    )
    out, err = camera.communicate()
    assert camera.returncode == 0, err
    sent = set(json.loads(out.strip().splitlines()[-1])["stamps"])
    metres = scene_depth_m()
    invalid_on_grid = 2 + (encoding == "32FC1")  # no return at (12, 22), 50 m beyond range at (40, 50), NaN at (14, 24)
    for message in got["clouds"]:
        assert message.header.frame_id == "depth_cam_optical" and _stamp(message.header) in sent
        cloud = read_cloud(_fields(message))[0]
        assert len(cloud) == math.ceil(SCENE["height"] / 2) * math.ceil(SCENE["width"] / 2) - invalid_on_grid
        u = np.rint(cloud["x"] / cloud["z"] * SCENE["fx"] + SCENE["cx"]).astype(int)
        v = np.rint(cloud["y"] / cloud["z"] * SCENE["fy"] + SCENE["cy"]).astype(int)
        assert (u % 2 == 0).all() and (v % 2 == 0).all()  # the decimated grid
        truth_z = metres[v, u]
        assert np.abs(cloud["z"] - truth_z).max() < 0.01
        truth_x = (u - SCENE["cx"]) * truth_z / SCENE["fx"]
        truth_y = (v - SCENE["cy"]) * truth_z / SCENE["fy"]
        assert np.abs(cloud["x"] - truth_x).max() < 0.01 and np.abs(cloud["y"] - truth_y).max() < 0.01
    organised, labels, sure = got["points"][-1], got["labels"][-1], got["confidence"][-1]
    shapes = {(m.height, m.width) for m in (organised, labels, sure)}
    assert shapes == {(24, 32)} and len({_stamp(m.header) for m in (organised, labels, sure)}) == 1  # aligned
    assert set(np.frombuffer(bytes(labels.data), np.uint8)) == {9}  # every pixel OoD: the extra class "ood"
    assert set(np.frombuffer(bytes(sure.data), np.uint8)) == {255}  # ood, with a threshold of -1e30: sure


def test_the_class_map_names_the_extra_class_ood_that_semantic_labels_carry(listener) -> None:
    """The semantic layer reads class ids from the label image and their names from the class map: the OoD
    pixels' id (the model's class count, 9 for the ERFNet here) is named "ood"."""
    from std_msgs.msg import String

    from gradunc_ros.ros.publishing import LATCHED

    got: list = []
    listener["node"].create_subscription(String, "/depth_cam/gradunc/class_map", got.append, LATCHED)
    assert spin_until(listener["node"], lambda: bool(got), 20), "no latched class_map"
    classes = json.loads(got[-1].data)["classes"]
    assert [c["id"] for c in classes] == list(range(10)) and classes[9]["name"] == "ood"
    assert "ood" not in [c["name"] for c in classes[:9]]


class BadCamera:
    """Frames, depth and camera_info on /bad_cam from this process, reliable."""

    def __init__(self, node) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        qos = QoSProfile(depth=RELIABLE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.image = node.create_publisher(Image, "/bad_cam/image_raw", qos)
        self.depth = node.create_publisher(Image, "/bad_cam/depth/image_raw", qos)
        self.info = node.create_publisher(CameraInfo, "/bad_cam/camera_info", qos)
        self.sec = 100

    def send(self, *, k=None, depth_size=(48, 64), encoding="16UC1", frame_id="bad_cam", stamp_offset=0) -> None:
        from sensor_msgs.msg import CameraInfo, Image

        from gradunc_ros.ros.publishing import image_message

        self.sec += 1
        if k is not None:
            info = CameraInfo(width=64, height=48, k=k)
            info.header.stamp.sec, info.header.frame_id = self.sec, "bad_cam"
            self.info.publish(info)
        image = image_message(np.zeros((48, 64, 3), np.uint8), "rgb8")
        image.header.stamp.sec, image.header.frame_id = self.sec, "bad_cam"
        data = np.full(depth_size, 1500, np.uint16)
        depth = Image(height=depth_size[0], width=depth_size[1], encoding=encoding, step=depth_size[1] * 2,
                      data=data.tobytes())  # fmt: skip
        depth.header.stamp.sec, depth.header.frame_id = self.sec + stamp_offset, frame_id
        self.depth.publish(depth)
        self.image.publish(image)


GOOD_K = [50.0, 0.0, 31.5, 0.0, 55.0, 23.5, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ({}, "no camera_info received yet for this camera"),
        ({"k": [0.0] * 9}, "camera_info K has no usable focal lengths (fx 0, fy 0): uncalibrated?"),
        ({"k": GOOD_K, "depth_size": (24, 32)}, "depth image is 32x24, the camera image 64x48"),
        ({"k": GOOD_K, "encoding": "mono16x"}, "unknown encoding 'mono16x'"),
        ({"k": GOOD_K, "encoding": "8UC2"}, "depth encoding '8UC2' is not one of 16UC1, 32FC1, mono16 (REP 118)"),
        ({"k": GOOD_K, "frame_id": "elsewhere"}, "depth frame_id 'elsewhere' is not the image's 'bad_cam'"),
    ],
    ids=["no_camera_info", "zero_intrinsics", "other_size", "unknown_encoding", "not_a_depth_encoding", "other_frame"],
)
def test_depth_the_node_cannot_use_is_refused_with_the_reason(listener, depth_node, case, said) -> None:
    _, log = depth_node
    camera = BadCamera(listener["node"])
    topic = "/bad_cam/image_raw"

    def refused() -> float:
        return listener["status"].get(topic, {}).get("obstacle_frames_refused", 0.0)

    spin_until(listener["node"], lambda: False, 0.5)  # matched
    before = refused()
    assert spin_until(listener["node"], lambda: refused() > before, 30, publish=lambda: camera.send(**case)), listener[
        "status"
    ].get(topic)
    assert wait_for_text(log, f"{topic}: no obstacles from this frame: {said}", 10), log.read_text()[-2000:]
    assert depth_node[0].poll() is None  # and the node goes on


def test_depth_that_never_matches_is_counted_and_warned(listener, depth_node) -> None:
    camera = BadCamera(listener["node"])
    topic = "/bad_cam/image_raw"
    status = listener["status"]

    def unmatched() -> float:
        return status.get(topic, {}).get("depth_unmatched", 0.0)

    before = unmatched()
    send = lambda: camera.send(k=GOOD_K, stamp_offset=7)  # noqa: E731 - depth stamped 7 s off the image
    assert spin_until(listener["node"], lambda: unmatched() >= before + 3, 30, publish=send), status.get(topic)
    warned = "no depth frame matched the last"
    assert spin_until(listener["node"], lambda: warned in status[topic]["message"], 10, publish=send), status[topic]
    _, log = depth_node
    assert wait_for_text(log, f"{topic}: {warned}", 10), log.read_text()[-2000:]  # and said in the log, once
    assert status[topic]["depth_matched"] > 0  # it had matched before: the warning is about the recent frames
