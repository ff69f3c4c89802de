"""gradunc_node on each CPU runtime (backend onnxruntime, openvino) with an ONNX file gradunc-export wrote, over
real DDS: the same labels, scores and mask as the PyTorch pipeline; a score the graph does not hold refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install onnx onnxruntime openvino)")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from ros_helpers import isolated_ros_env, serve_frame, set_parameters  # noqa: E402

from gradunc_ros.deploy.onnx_export import export_onnx, installed_runtimes  # noqa: E402
from gradunc_ros.models import load_model  # noqa: E402
from gradunc_ros.pipeline import SegmentationPipeline  # noqa: E402
from gradunc_ros.postprocess import MaskSettings, ood_mask  # noqa: E402
from gradunc_ros.thresholds import table_for_weights  # noqa: E402
from gradunc_ros.uncertainty import DEFAULT_SCORE  # noqa: E402

pytestmark = pytest.mark.process
CAMERA, OUTPUTS = "/deployed/image_raw", ("labels", "uncertainty", "ood_mask")


def _frame() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.repeat(np.repeat(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), 10, 0), 10, 1)  # 240x320


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "erfnet_camvid.onnx"
    loaded = load_model()
    export_onnx(loaded, DEFAULT_SCORE, path, [(240, 320)], [_frame()], table=table_for_weights(loaded.weights))
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_node_runs_an_exported_graph_on_each_cpu_runtime(backend: str, exported: Path, tmp_path: Path) -> None:
    if backend not in installed_runtimes():
        pytest.skip(f"{backend} is not installed")
    ros_env = isolated_ros_env(tmp_path / "ros_home")
    log = tmp_path / "node.log"
    parameters = {"backend": backend, "weights": str(exported), "image_topics": f"[{CAMERA}]",
                  "input_reliability": "reliable", "cpu_threads": "2"}  # fmt: skip
    image = _frame()

    def refuses_another_score(node) -> None:  # the weights, not the bias, gradient: not in the graph
        (refused,) = set_parameters(node, gradient_of="weights")
        assert not refused.successful and "cannot be computed from it" in refused.reason, refused.reason

    outputs = serve_frame(parameters, ros_env, log, image, CAMERA, OUTPUTS, while_up=refuses_another_score)
    loaded = load_model()
    expected = SegmentationPipeline(loaded, DEFAULT_SCORE, device="cpu").predict(image)
    assert (outputs["labels"] == expected.labels).mean() >= 0.999
    assert np.abs(outputs["uncertainty"] - expected.score).max() < 1e-3
    # The threshold table travelled in the file's metadata: the node makes the shipped model's mask.
    threshold = table_for_weights(loaded.weights).get(DEFAULT_SCORE)
    mask = ood_mask(expected.score, expected.labels, MaskSettings(threshold=threshold))
    assert (outputs["ood_mask"] != mask).mean() < 1e-3
    # and with it the confidence image's calibrated scale
    from gradunc_ros.assembly import ModelRequest, assemble

    built = assemble(ModelRequest(backend=backend, weights=str(exported)), DEFAULT_SCORE)
    assert built.threshold.confidence_scale == table_for_weights(loaded.weights).confidence_scales[DEFAULT_SCORE.name]
    text = log.read_text()
    assert f"inside the ONNX graph, {backend} float32" in text and "calibrated for pgn_uni_reference_p0.1_bias" in text
