"""gradunc_node with models no one here wrote, over real DDS: a torchvision-style net (with a threshold that
gradunc-calibrate wrote for resolution output, so that the node makes a mask) and Hugging Face's SegFormer;
and the mistakes a user makes with a model of their own, each a refused start with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from ros_helpers import serve_frame, start_node  # noqa: E402

from gradunc_ros.models import load_model  # noqa: E402
from gradunc_ros.pipeline import SegmentationPipeline  # noqa: E402
from gradunc_ros.postprocess import MaskSettings, ood_mask  # noqa: E402
from gradunc_ros.uncertainty import HeadSettings  # noqa: E402

pytestmark = pytest.mark.process
HERE = Path(__file__).parent
CAMERA = "/byom/image_raw"
OUTPUTS = ("labels", "uncertainty", "ood_mask")


@pytest.fixture(scope="module")
def calibrated(tiny_camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parameter file from gradunc-calibrate for the torchvision-style model at resolution output."""
    from gradunc_ros.tools import calibrate

    out = tmp_path_factory.mktemp("calibrated") / "params.yaml"
    assert calibrate.main(["--model", "byom_models:torchvision_style", "--model-path", str(HERE), "--data",
                           str(tiny_camvid), "--best-f1", "--score", "pgn_oh", "--p", "0.5", "--mode", "exact",
                           "--gradient-of", "layer", "--resolution", "output", "--out", str(out)]) == 0  # fmt: skip
    return out


def _serve(parameters: dict, ros_env: dict, log: Path, image: np.ndarray, ros_args: tuple = ()) -> dict:
    return serve_frame(parameters, ros_env, log, image, CAMERA, OUTPUTS, ros_args)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_the_node_serves_a_torchvision_style_model_with_a_calibrated_output_resolution_mask(
    ros_env, calibrated: Path, tmp_path: Path, tiny_camvid: Path
) -> None:
    from gradunc_ros.imageio import read_rgb

    image = read_rgb(tiny_camvid / "val" / "images" / "seq_0001.jpg")
    parameters = {"model": "byom_models:torchvision_style", "model_path": str(HERE), "image_topics": f"[{CAMERA}]",
                  "input_reliability": "reliable"}  # fmt: skip
    log = tmp_path / "node.log"
    outputs = _serve(parameters, ros_env, log, image, ("--params-file", str(calibrated)))
    params = yaml.safe_load(calibrated.read_text())["/**/gradunc_node"]["ros__parameters"]
    settings = HeadSettings("pgn_oh", 0.5, "exact", "output", gradient_of="layer")
    expected = SegmentationPipeline(load_model("byom_models:torchvision_style", model_path=HERE), settings,
                                    device="cpu").predict(image)  # fmt: skip
    assert np.array_equal(outputs["labels"], expected.labels)
    assert np.allclose(outputs["uncertainty"], expected.score, atol=1e-4)
    mask = ood_mask(expected.score, expected.labels, MaskSettings(threshold=params["threshold"]))
    assert outputs["ood_mask"].any() and (outputs["ood_mask"] != mask).mean() < 1e-3
    text = log.read_text()
    assert "last layer classifier.4 at stride 8" in text and "explicit" in text, text[-2000:]
    assert "no model card says the class names class_0 .. class_5" in text


def test_the_node_serves_a_hugging_face_segformer(ros_env, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="Hugging Face transformers is not installed")
    image = _image(3)
    parameters = {"model": "byom_models:segformer", "model_path": str(HERE), "image_topics": f"[{CAMERA}]",
                  "input_reliability": "reliable", "threshold": "-5.0"}  # fmt: skip
    log = tmp_path / "node.log"
    outputs = _serve(parameters, ros_env, log, image)
    expected = SegmentationPipeline(load_model("byom_models:segformer", model_path=HERE), device="cpu").predict(image)
    assert outputs["labels"].shape == (48, 64)
    assert np.array_equal(outputs["labels"], expected.labels)
    assert np.allclose(outputs["uncertainty"], expected.score, atol=1e-4)
    assert "last layer decode_head.classifier at stride 4" in log.read_text()


@pytest.mark.parametrize(
    "case",
    ["import fails", "factory raises", "not a logit map", "card class count", "ambiguous last layer", "weights misfit"],
)
def test_byom_mistakes_leave_the_node_unstarted_with_the_reason(case: str, ros_env, tmp_path: Path) -> None:
    (tmp_path / "user_model_that_breaks.py").write_text("import a_package_that_is_not_installed\n")
    card = tmp_path / "card.yaml"
    card.write_text("class_names: [a, b, c]\n")
    weights = tmp_path / "tv.pth"
    if case == "weights misfit":
        import torch

        torch.save({"classifier.4.weight": torch.zeros(2, 12, 1, 1)}, weights)
    parameters, reason = {
        "import fails": ({"model": "user_model_that_breaks:build", "model_path": str(tmp_path)},
                         "No module named 'a_package_that_is_not_installed'"),
        "factory raises": ({"model": "byom_models:raising_factory"}, "the checkpoint server is unreachable"),
        "not a logit map": ({"model": "byom_models:token_output"}, "not an N x C x H x W logit map"),
        "card class count": ({"model": "byom_models:torchvision_style", "model_card": str(card)},
                             "names 3 classes but the model outputs 6"),
        "ambiguous last layer": ({"model": "byom_models:summed_classifiers"}, "first (ran 1x), second (ran 1x)"),
        "weights misfit": ({"model": "byom_models:torchvision_style", "weights": str(weights)}, "missing key(s)"),
    }[case]  # fmt: skip
    parameters.setdefault("model_path", str(HERE))
    log = tmp_path / "node.log"
    process = start_node(parameters, ros_env, log)
    assert process.wait(timeout=120) == 1
    text = log.read_text()
    assert "cannot start" in text and reason in text and "Traceback" not in text, text[-2000:]
