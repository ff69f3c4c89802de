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

from gradunc_ros.imageio import read_label, read_rgb
from gradunc_ros.streams.bags import read_messages, topics_of
from gradunc_ros.streams.codec import compressed_to_rgb, image_array, image_to_rgb
from gradunc_ros.streams.stamps import stamp_ns

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
        assert (
            stamp_ns(frame.header) == stamp_ns(label.header)
            and stamp_ns(frame.header) - stamp_ns(frames[0].header) == index * 200_000_000
        )
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
        "--mode", "exact", "--gradient-of", "weights", "--out", str(tmp_path / "out"),
        "--summary", str(tmp_path / "summary.json"), "--threshold", "0.0",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    evaluated = subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.evaluate", "--data", str(tiny_camvid), "--weights", str(weights),
         "--scores", "pgn_oh", "--p", "0.5", "--modes", "exact", "--gradient-of", "weights", "--bootstrap", "0",
         "--no-factors", "--out", str(tmp_path / "eval")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    reference = json.loads((tmp_path / "eval" / "results.json").read_text())["scores"]["pgn_oh_exact_p0.5"]
    for key in ("auprc", "auroc", "fpr95", "best_f1_threshold"):
        assert summary["pixel"][key] == reference[key], key
    for key in ("siou", "ppv", "f1_mean"):
        assert summary["component"][key] == reference[key], key
    output_bag = Path(summary["per_bag"][next(iter(summary["per_bag"]))]["output_bag"])
    assert output_bag.parent == tmp_path / "out" / "bags" and output_bag.name.startswith("in-")
    outputs = topics_of(output_bag)
    assert set(outputs) == {"/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask"}
    encodings = {t: m.encoding for t, _, m in read_messages(output_bag)}
    assert encodings["/camera/gradunc/uncertainty"] == "32FC1" and encodings["/camera/gradunc/labels"] == "mono8"
    # The output bag also opens with the mcap package's own reader, topics typed as the node's.
    from mcap.reader import make_reader

    with next(output_bag.glob("*.mcap")).open("rb") as handle:
        summary_ = make_reader(handle).get_summary()
    types = {c.topic: summary_.schemas[c.schema_id].name for c in summary_.channels.values()}
    assert types == dict.fromkeys(outputs, "sensor_msgs/msg/Image")
    assert summary_.statistics.message_count == 3 * 3


@pytest.fixture
def private_env(tmp_path: Path) -> dict:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from gradunc_ros.ros.isolation import private_ros_env

    return private_ros_env(home=str(tmp_path / "ros_home"))


def _finish(process: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """A child's output once it ends by itself within ``seconds``; else it is interrupted and the test fails
    with what it printed (a recorder says how many frames it held)."""
    from gradunc_ros.processes import stop

    try:
        return process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        stop(process)
        out, err = process.communicate()
        pytest.fail(f"still running {seconds:g} s later; stopped, it printed: {out.strip()} {err.strip()}")


def test_live_replay_through_the_node_in_lockstep(tmp_path: Path, tiny_camvid: Path, weights: Path, private_env):
    from gradunc_ros.processes import python_module, stop

    assert _bag("from-images", str(tiny_camvid / "train" / "images"), "--labels", str(tiny_camvid / "train" / "labels"),
                "--rate", "2", "--out", str(tmp_path / "in")).returncode == 0  # fmt: skip
    node = python_module("gradunc_ros.ros.main", "--ros-args", "-p", f"weights:={weights}", "-p",
                         "image_topics:=[/camera/image_raw]", "-p", "threshold:=0.0", env=private_env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    outputs = ["/camera/gradunc/labels", "/camera/gradunc/uncertainty", "/camera/gradunc/ood_mask"]
    ready = tmp_path / "ready"
    recorder = python_module(
        "gradunc_ros.tools.bag", "record", *outputs, "/camera/labels_gt", "--out", str(tmp_path / "rec"),
        "--ready-file", str(ready), "--match-timeout", "120", "--count", "6", "--stop-topics", *outputs[:2],
        "--idle", "120", "--seconds", "300", env=private_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while not ready.exists() and recorder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), recorder.communicate(timeout=30)
        played = _bag("play", str(tmp_path / "in"), "--restamp", "--reliable", "--subscribers", "1", "--wait", "60",
                      "--answer", *outputs[:2], "--answer-timeout", "60", env=private_env)  # fmt: skip
        assert played.returncode == 0, played.stderr
        counts = json.loads(played.stdout.strip().splitlines()[-1])
        assert counts["frames"] == counts["answered"] == 6 and counts["unanswered"] == 0
        out, err = _finish(recorder, 60)
        assert recorder.returncode == 0, err
    finally:
        stop(recorder)
        stop(node, 30)
    scored = _bag("evaluate", str(tmp_path / "rec"), "--recorded")
    assert scored.returncode == 0, scored.stderr
    summary = json.loads(scored.stdout)
    assert summary["frames_scored"] == summary["frames_with_labels"] == 6  # lockstep: every frame, whatever the load
    assert 0 < summary["latency_ms"]["p50"] < 60_000 and 0 <= summary["pixel"]["auroc"] <= 1


def test_play_without_a_node_fails_in_bounded_time_with_the_reason(tmp_path: Path, tiny_camvid: Path, private_env):
    assert _bag("from-images", str(tiny_camvid / "val" / "images"), "--out", str(tmp_path / "in")).returncode == 0
    started = time.monotonic()
    played = _bag("play", str(tmp_path / "in"), "--subscribers", "1", "--wait", "3", "--answer",
                  "/camera/gradunc/labels", env=private_env)  # fmt: skip
    assert played.returncode == 1 and time.monotonic() - started < 60
    assert "no subscriber on /camera/image_raw after 3 s" in played.stderr and "Traceback" not in played.stderr


def _expected_demo_scores(tiny_camvid: Path, weights: Path) -> tuple[list, dict]:
    """What gradunc-eval computes for the demo's frames and score (the maps and their pixel metrics)."""
    from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS
    from gradunc_ros.evaluation.metrics import pixel_metrics
    from gradunc_ros.models import load_model
    from gradunc_ros.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(load_model(weights=weights), device="cpu")
    images = sorted((tiny_camvid / "val" / "images").glob("*.jpg"))
    scores = [pipeline.predict(read_rgb(path)).score for path in images]
    labels = [CAMVID_OOD_LABELS[read_label(tiny_camvid / "val" / "labels" / f"{p.stem}.png")] for p in images]
    return scores, pixel_metrics(scores, labels)


def test_demo_scores_every_frame_like_gradunc_eval(tmp_path: Path, tiny_camvid: Path, weights) -> None:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    params = tmp_path / "params.yaml"
    params.write_text(f'gradunc_node:\n  ros__parameters:\n    weights: "{weights}"\n    threshold: 1.0e+9\n')
    out = tmp_path / "demo"
    out.mkdir()
    (out / "summary.md").write_text("an earlier run's summary")  # must not survive a new run
    # The user's shell points at a live robot's graph: the demo must not join it.
    env = {**os.environ, "ROS_HOME": str(tmp_path), "ROS_DOMAIN_ID": "7", "ROS_LOCALHOST_ONLY": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.demo", "--input", str(tiny_camvid), "--out", str(out),
         "--rate", "4", "--params-file", str(params)], capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    node = summary["node"]
    assert summary["ros_domain"] != 7
    assert summary["frames_in"] == summary["frames_out"] == 3  # tiny_camvid/val has 3 frames: all scored
    assert node["received"] == node["processed"] == 3 and node["dropped"] == 0
    assert summary["player"] == {"published": 6, "frames": 3, "answered": 3, "unanswered": 0, "resent": 0}
    # The node's score maps are the pipeline's (CPU float noise aside), so the metrics are gradunc-eval's.
    expected_maps, expected = _expected_demo_scores(tiny_camvid, weights)
    recorded = [image_array(m) for _, _, m in read_messages(out / "output.bag", ["/camera/gradunc/uncertainty"])]
    assert len(recorded) == 3
    for got, want in zip(recorded, expected_maps, strict=True):
        assert np.allclose(got, want, atol=1e-4, rtol=0), np.abs(got - want).max()
    for key in ("auprc", "auroc", "fpr95"):  # near-ties of a random net may swap on a 1e-7 difference
        assert summary["ood_pixel"][key] == pytest.approx(expected[key], abs=1e-3), key
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape[1] == 4 * 64 and sheet.shape[0] % 48 == 0  # image, labels, uncertainty, mask
    assert set(topics_of(out / "output.bag")) >= {"/camera/gradunc/labels", "/camera/gradunc/uncertainty"}
    assert "an earlier run" not in (out / "summary.md").read_text() and "results in" in result.stdout


def test_demo_without_frames_says_how_to_give_them(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gradunc_ros.tools.demo", "--input", str(tmp_path / "none"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1 and "INPUT=" in result.stderr


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signal_name", ("SIGKILL", "SIGTERM"))
def test_a_killed_demo_leaves_no_process_behind(tmp_path: Path, tiny_camvid: Path, weights, signal_name: str):
    import signal

    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    params = tmp_path / "params.yaml"
    params.write_text(f'gradunc_node:\n  ros__parameters:\n    weights: "{weights}"\n')
    demo = subprocess.Popen(
        [sys.executable, "-m", "gradunc_ros.tools.demo", "--input", str(tiny_camvid), "--out", str(tmp_path / "demo"),
         "--params-file", str(params)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(_children(demo.pid)) < 2 and demo.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the node and the recorder are up
        children = _children(demo.pid)
        assert len(children) >= 2, children
        demo.send_signal(getattr(signal, signal_name))
        demo.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if demo.poll() is None:
            demo.kill()
