"""gradunc-bag: bit-exact round trips, offline evaluation equal to gradunc-eval, a live replay through the node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradunc_ros.bagio import read_messages, stamp_ns, topics_of
from gradunc_ros.evaluation.datasets import read_label, read_rgb
from gradunc_ros.ros.codec import compressed_to_rgb, image_array, image_to_rgb

pytestmark = pytest.mark.process


def _bag(*args: str, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gradunc_ros.tools.bag", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def weights(random_erfnet: Path) -> Path:
    return random_erfnet


@pytest.mark.parametrize("compressed", (False, True), ids=("raw", "compressed"))
@pytest.mark.parametrize("storage", ("mcap", "sqlite3"))
def test_images_to_bag_to_frames_is_bit_exact(
    tmp_path: Path, tiny_camvid: Path, compressed: bool, storage: str
) -> None:
    images = tiny_camvid / "val" / "images"
    labels = str(tiny_camvid / "val" / "labels")
    args = ["from-images", str(images), "--labels", labels, "--out", str(tmp_path / "b"), "--rate", "5"]
    args += ["--frame-id", "cam0", "--storage", storage] + (["--compressed"] if compressed else [])
    result = _bag(*args)
    assert result.returncode == 0, result.stderr
    camera = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    assert topics_of(tmp_path / "b") == {
        camera: "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image",
        "/camera/labels_gt": "sensor_msgs/msg/Image",
    }
    files = sorted(images.glob("*.jpg"))
    frames = [m for t, _, m in read_messages(tmp_path / "b", [camera])]
    labels = [m for t, _, m in read_messages(tmp_path / "b", ["/camera/labels_gt"])]
    assert len(frames) == len(labels) == len(files)
    for index, (path, frame, label) in enumerate(zip(files, frames, labels, strict=True)):
        decoded = compressed_to_rgb(frame) if compressed else image_to_rgb(frame)
        assert np.array_equal(decoded, read_rgb(path))
        assert np.array_equal(image_array(label), read_label(tiny_camvid / "val" / "labels" / f"{path.stem}.png"))
        assert stamp_ns(frame) == stamp_ns(label) and stamp_ns(frame) - stamp_ns(frames[0]) == index * 200_000_000
        assert frame.header.frame_id == "cam0"


def test_offline_evaluation_equals_gradunc_eval(tmp_path: Path, tiny_camvid: Path, weights: Path) -> None:
    val = tiny_camvid / "val"
    converted = _bag(
        "from-images",
        str(val / "images"),
        "--labels",
        str(val / "labels"),
        "--compressed",
        "--out",
        str(tmp_path / "in"),
    )
    assert converted.returncode == 0, converted.stderr
    scored = _bag(
        "evaluate", str(tmp_path / "in"), "--weights", str(weights), "--score", "pgn_oh", "--p", "0.5",
        "--out", str(tmp_path / "out"), "--summary", str(tmp_path / "summary.json"),
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    evaluated = subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.evaluate", "--data", str(tiny_camvid), "--weights", str(weights),
         "--scores", "pgn_oh", "--p", "0.5", "--modes", "exact", "--out", str(tmp_path / "eval")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    reference = json.loads((tmp_path / "eval" / "results.json").read_text())["scores"]["pgn_oh_exact_p0.5"]
    for key in ("auprc", "auroc", "fpr95", "best_f1_threshold"):
        assert summary["pixel"][key] == reference[key], key
    for key in ("siou", "ppv", "f1_mean"):
        assert summary["component"][key] == reference[key], key
    outputs = topics_of(tmp_path / "out")
    assert set(outputs) == {"/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask"}
    encodings = {t: m.encoding for t, _, m in read_messages(tmp_path / "out")}
    assert encodings["/camera/gradunc/uncertainty"] == "32FC1" and encodings["/camera/gradunc/labels"] == "mono8"
    # The output bag also opens with the mcap package's own reader, topics typed as the node's.
    from mcap.reader import make_reader

    with next((tmp_path / "out").glob("*.mcap")).open("rb") as handle:
        summary_ = make_reader(handle).get_summary()
    types = {c.topic: summary_.schemas[c.schema_id].name for c in summary_.channels.values()}
    assert types == dict.fromkeys(outputs, "sensor_msgs/msg/Image")
    assert summary_.statistics.message_count == 3 * 3


def test_live_replay_through_the_node(tmp_path: Path, tiny_camvid: Path, weights: Path) -> None:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    env = {**os.environ, "ROS_HOME": str(tmp_path), "ROS_DOMAIN_ID": str(60 + os.getpid() % 60)}
    assert _bag("from-images", str(tiny_camvid / "train" / "images"), "--labels", str(tiny_camvid / "train" / "labels"),
                "--rate", "2", "--out", str(tmp_path / "in")).returncode == 0  # fmt: skip
    node = subprocess.Popen(
        [sys.executable, "-m", "gradunc_ros.ros.node", "--ros-args", "-p", f"weights:={weights}",
         "-p", "image_topics:=[/camera/image_raw]"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    topics = ["/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask", "/camera/labels_gt"]
    recorder = subprocess.Popen(
        [sys.executable, "-m", "gradunc_ros.tools.bag", "record", *topics, "--out", str(tmp_path / "rec"),
         "--idle", "4", "--seconds", "120"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)
        played = _bag("play", str(tmp_path / "in"), "--restamp", "--reliable", "--wait", "3", env=env)
        assert played.returncode == 0, played.stderr
        out, err = recorder.communicate(timeout=120)
        assert recorder.returncode == 0, err
    finally:
        node.terminate()
        node.wait(timeout=30)
    scored = _bag("evaluate", str(tmp_path / "rec"), "--recorded")
    assert scored.returncode == 0, scored.stderr
    summary = json.loads(scored.stdout)
    assert summary["frames_with_labels"] >= 5  # of 6 frames at 2 Hz: the node keeps up
    assert 0 < summary["latency_ms"]["p50"] < 5000 and 0 <= summary["pixel"]["auroc"] <= 1


def test_demo_writes_bags_contact_sheet_and_a_summary_of_real_numbers(
    tmp_path: Path, tiny_camvid: Path, weights
) -> None:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    params = tmp_path / "params.yaml"
    params.write_text(f'gradunc_node:\n  ros__parameters:\n    weights: "{weights}"\n    threshold: 1.0e+9\n')
    env = {**os.environ, "ROS_HOME": str(tmp_path), "ROS_DOMAIN_ID": str(120 + os.getpid() % 50)}
    result = subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.demo", "--input", str(tiny_camvid), "--out", str(tmp_path / "demo"),
         "--rate", "4", "--params-file", str(params)], capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    node = summary["node"]
    assert summary["frames_in"] == 3 and node["received"] == 3  # tiny_camvid/val has 3 frames; replay is reliable
    # Frames that arrive while the node is busy are dropped and counted, never queued.
    assert summary["frames_out"] == node["processed"] >= 1 and node["processed"] + node["dropped"] == 3
    assert summary["latency_ms_stamp_to_recorder"]["p95"] > 0 and 0 <= summary["ood_pixel"]["auroc"] <= 1
    sheet = cv2.imread(str(tmp_path / "demo" / "contact_sheet.png"))
    assert sheet.shape[1] == 4 * 64 and sheet.shape[0] % 48 == 0  # image, labels, uncertainty, mask
    assert set(topics_of(tmp_path / "demo" / "output.bag")) >= {"/camera/gradunc/labels", "/camera/gradunc/uncertainty"}
    assert "results in" in result.stdout


def test_demo_without_frames_says_how_to_give_them(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gradunc_ros.tools.demo", "--input", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "INPUT=" in result.stderr
