"""gradunc-infer and gradunc-train as a user runs them (process-level)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradunc_ros.evaluation.datasets import CAMVID_TRAIN_TARGETS
from gradunc_ros.imageio import read_label
from gradunc_ros.models import load_model

pytestmark = pytest.mark.process


def _tool(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"gradunc_ros.tools.{name}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def random_weights(random_erfnet: Path) -> Path:
    return random_erfnet


def test_infer_writes_npz_and_overlay_at_image_resolution(tmp_path: Path, tiny_camvid: Path, random_weights) -> None:
    image = tiny_camvid / "val" / "images" / "seq_0000.jpg"
    result = _tool("infer", "--weights", str(random_weights), "--save-logits", "--out", str(tmp_path), str(image))
    assert result.returncode == 0, result.stderr
    arrays = np.load(tmp_path / "seq_0000.npz")
    assert arrays["labels"].shape == (48, 64) and arrays["score"].dtype == np.float32
    assert np.isfinite(arrays["score"]).all()
    assert arrays["logits"].shape == (9, 48, 64) and np.array_equal(arrays["labels"], arrays["logits"].argmax(0))
    overlay = cv2.imread(str(tmp_path / "seq_0000.png"))
    assert overlay.shape == (48, 64, 3)


def test_infer_help_lists_models_and_bad_input_is_one_line(tmp_path: Path) -> None:
    help_text = _tool("infer", "--help").stdout
    for name in ("erfnet", "deeplabv3plus_resnet50", "deeplabv3plus_wrn38"):
        assert name in help_text
    missing = _tool("infer", "--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path), "x.jpg")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_infer_with_the_shipped_model_labels_roads_as_road(tmp_path: Path, camvid_root: str) -> None:
    frames = sorted((Path(camvid_root) / "val" / "images").glob("*.jpg"))[::40][:3]
    result = _tool("infer", "--out", str(tmp_path), *map(str, frames))
    assert result.returncode == 0, result.stderr
    road = 3
    for frame in frames:
        arrays = np.load(tmp_path / f"{frame.stem}.npz")
        target = CAMVID_TRAIN_TARGETS[read_label(Path(camvid_root) / "val" / "labels" / f"{frame.stem}.png")]
        assert arrays["labels"].shape == target.shape and np.isfinite(arrays["score"]).all()
        predicted, truth = arrays["labels"] == road, target == road
        assert (predicted & truth).sum() / (predicted | truth).sum() > 0.8  # road IoU on this frame


def test_train_smoke_run_resumes_and_is_seeded(tmp_path: Path, tiny_camvid: Path) -> None:
    common = ["--data", str(tiny_camvid), "--batch-size", "2", "--crop", "32x24", "--val-input", "64x48"]
    first = _tool("train", *common, "--out", str(tmp_path / "a"), "--epochs", "1", "--val-every", "1")
    assert first.returncode == 0, first.stderr
    for name in ("last.pt", "best.safetensors", "history.jsonl"):
        assert (tmp_path / "a" / name).is_file()
    resumed = _tool("train", *common, "--out", str(tmp_path / "a"), "--epochs", "2", "--val-every", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "at epoch 1" in resumed.stdout
    history = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all(0 <= h["val_miou"] <= 1 for h in history)
    again = _tool("train", *common, "--out", str(tmp_path / "b"), "--epochs", "1", "--val-every", "1")
    assert again.returncode == 0, again.stderr
    repeat = json.loads((tmp_path / "b" / "history.jsonl").read_text().splitlines()[0])
    assert repeat["loss"] == history[0]["loss"]  # same seed, same run
    assert load_model(weights=tmp_path / "a" / "best.safetensors").name == "erfnet"


def test_train_without_data_is_one_clear_line(tmp_path: Path) -> None:
    result = _tool("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--epochs", "1")
    assert result.returncode == 1 and "no images under" in result.stderr and "Traceback" not in result.stderr


def test_eval_writes_json_table_factor_report_intervals_and_plots(
    tmp_path: Path, tiny_camvid: Path, random_weights
) -> None:
    result = _tool(
        "evaluate", "--data", str(tiny_camvid), "--weights", str(random_weights), "--scores", "msp", "pgn_oh",
        "--p", "0.5", "1", "--bootstrap", "200", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    gradient = {
        f"pgn_oh_{mode}_p{p}{suffix}"
        for mode in ("exact", "reference")
        for p in ("0.5", "1")
        for suffix in ("", "_bias", "_layer")
    }
    assert set(report["scores"]) == {"msp"} | gradient
    for metrics in report["scores"].values():
        for key in ("auprc", "auroc", "fpr95", "siou", "ppv", "f1_mean", "ause", "segments"):
            assert np.isfinite(metrics[key]), key
        assert "misclassification_auroc" in metrics  # nan where a random net gets every pixel wrong
        low, high = metrics["auprc_ci95"]
        assert 0 <= low <= high <= 1
        ratio_low, ratio_high = metrics["ratio_ci95"]
        assert ratio_low <= ratio_high
    assert report["scores"]["msp"]["auprc_ratio_to_best_softmax"] == 1.0  # msp is the only softmax baseline
    assert report["bootstrap"]["draws"] == 200 and report["bootstrap"]["best_softmax"] == "msp"
    assert report["default"]["score"] in report["scores"] and report["default"]["rule"]
    # One-hot reference is half the exact score at p = 1: the same ranking, so the same AuPRC.
    assert report["scores"]["pgn_oh_exact_p1"]["auprc"] == report["scores"]["pgn_oh_reference_p1"]["auprc"]
    # The factor report: the class factor alone is the bias gradient, computed the same way.
    assert set(report["factors"]) == {name for name in gradient if not name.endswith(("_bias", "_layer"))}
    for name, factors in report["factors"].items():
        assert factors["class_factor"]["auprc"] == report["scores"][f"{name}_bias"]["auprc"]
        assert factors["input_points"] in ("high = OoD", "low = OoD")
    assert report["frames"] == 3 and 0 <= report["in_distribution"]["miou"] <= 1
    text = (tmp_path / "results.md").read_text()
    assert "| msp |" in text and "## Factor report" in text and "Default score:" in text
    for plot in ("curves.png", "histograms.png", "examples.png"):
        assert cv2.imread(str(tmp_path / plot)) is not None


def test_calibrate_writes_a_parameter_file_with_the_promised_rate(tmp_path: Path, tiny_camvid: Path, random_weights):
    import yaml

    out = tmp_path / "params.yaml"
    common = ["--data", str(tiny_camvid), "--weights", str(random_weights), "--score", "pgn_oh", "--p", "0.5"]
    result = _tool("calibrate", *common, "--target-fpr", "0.1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    params = yaml.safe_load(out.read_text())["/**/gradunc_node"]["ros__parameters"]
    assert params["score"] == "pgn_oh" and params["p"] == 0.5
    # Check the promise on the same frames: at most 10 % of in-distribution pixels above the threshold.
    pipeline_scores = []
    infer = _tool("infer", "--weights", str(random_weights), "--score", "pgn_oh", "--p", "0.5", "--out", str(tmp_path),
                  *[str(p) for p in sorted((tiny_camvid / "val" / "images").glob("*.jpg"))])  # fmt: skip
    assert infer.returncode == 0, infer.stderr
    for npz in sorted(tmp_path.glob("*.npz")):
        label = read_label(tiny_camvid / "val" / "labels" / f"{npz.stem}.png")
        pipeline_scores.append(np.load(npz)["score"][label < 9])
    flagged = np.mean(np.concatenate(pipeline_scores) > params["threshold"])
    assert 0.05 < flagged <= 0.1
    best = _tool("calibrate", *common, "--best-f1", "--out", str(out))
    assert best.returncode == 0 and "best pixel F1" in best.stdout
