"""Every tool with a model brought by the user (a torchvision-style net and Hugging Face's SegFormer), as a
factory on the command line; and the mistakes a user makes with one, each a line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gradunc_ros.imageio import read_rgb
from gradunc_ros.models import load_model
from gradunc_ros.pipeline import SegmentationPipeline
from gradunc_ros.postprocess import MaskSettings, ood_mask
from gradunc_ros.uncertainty import HeadSettings

pytestmark = pytest.mark.process
HERE = Path(__file__).parent
MODELS = {
    "torchvision_style": ["--model", "byom_models:torchvision_style", "--model-path", str(HERE)],
    "segformer": ["--model", "byom_models:segformer", "--model-path", str(HERE)],
}


@pytest.fixture(params=sorted(MODELS))
def model(request) -> list[str]:
    if request.param == "segformer":
        pytest.importorskip("transformers", reason="Hugging Face transformers is not installed")
    return MODELS[request.param]


def test_infer_eval_calibrate_and_bag_evaluate_run_with_a_users_model(
    model: list[str], tiny_camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from gradunc_ros.tools import bag, calibrate, evaluate, infer

    image = tiny_camvid / "val" / "images" / "seq_0000.jpg"
    assert infer.main([*model, "--device", "cpu", "--save-logits", "--out", str(tmp_path / "infer"), str(image)]) == 0
    arrays = np.load(tmp_path / "infer" / "seq_0000.npz")
    loaded = load_model(model[1], model_path=HERE)
    expected = SegmentationPipeline(loaded, device="cpu").predict(read_rgb(image))
    assert np.array_equal(arrays["labels"], expected.labels)
    assert np.allclose(arrays["score"], expected.score, atol=1e-5)
    assert "assumed" in capsys.readouterr().err  # no card: said once

    sweep = ["--scores", "pgn_oh", "entropy", "--p", "0.5", "--modes", "exact", "--gradient-of", "weights", "bias"]
    assert evaluate.main([*model, "--data", str(tiny_camvid), *sweep, "--resolutions", "last_layer", "output",
                          "--bootstrap", "0", "--device", "cpu", "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {"pgn_oh_exact_p0.5", "pgn_oh_exact_p0.5_bias_output", "entropy"} <= set(results["scores"])

    table = tmp_path / "thresholds.yaml"
    table_options = ["--table", "--scores", "pgn_oh", "--ps", "0.5", "--resolutions", "last_layer", "output"]
    assert calibrate.main([*model, "--data", str(tiny_camvid), "--best-f1", *table_options, "--out", str(table)]) == 0
    written = yaml.safe_load(table.read_text())["thresholds"]
    assert "pgn_oh_exact_p0.5_output" in written and "pgn_oh_exact_p0.5" in written

    converted = tmp_path / "in"
    assert bag.main(["from-images", str(tiny_camvid / "val" / "images"), "--labels",
                     str(tiny_camvid / "val" / "labels"), "--out", str(converted)]) == 0  # fmt: skip
    summary = tmp_path / "summary.json"
    assert bag.main(["evaluate", str(converted), *model, "--score", "pgn_oh", "--p", "0.5", "--mode", "exact",
                     "--gradient-of", "weights", "--threshold", "0.0", "--out", str(tmp_path / "out"),
                     "--summary", str(summary)]) == 0  # fmt: skip
    evaluated = results["scores"]["pgn_oh_exact_p0.5"]
    got = json.loads(summary.read_text())["pixel"]
    assert abs(got["auprc"] - evaluated["auprc"]) < 1e-6, (got, evaluated)


def test_calibrate_covers_resolution_output_and_its_file_sets_it(tiny_camvid: Path, tmp_path: Path) -> None:
    from gradunc_ros.tools import calibrate

    out = tmp_path / "params.yaml"
    model = MODELS["torchvision_style"]
    assert calibrate.main([*model, "--data", str(tiny_camvid), "--best-f1", "--score", "pgn_oh", "--p", "0.5",
                           "--mode", "exact", "--gradient-of", "weights", "--resolution", "output",
                           "--out", str(out)]) == 0  # fmt: skip
    params = yaml.safe_load(out.read_text())["/**/gradunc_node"]["ros__parameters"]
    assert params["resolution"] == "output" and params["threshold_score"] == "pgn_oh_exact_p0.5_output"
    # The threshold is the pixel best-F1 one of that very score: some pixels lie above it on the data.
    loaded = load_model(model[1], model_path=HERE)
    settings = HeadSettings("pgn_oh", 0.5, "exact", "output")
    pipeline = SegmentationPipeline(loaded, settings, device="cpu")
    image = read_rgb(tiny_camvid / "val" / "images" / "seq_0001.jpg")
    prediction = pipeline.predict(image)
    mask = ood_mask(prediction.score, prediction.labels, MaskSettings(threshold=params["threshold"]))
    assert 0 < mask.mean() < 255


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradunc_ros.tools.infer", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "case",
    ["import fails", "factory raises", "not a logit map", "card class count", "ambiguous last layer", "weights misfit"],
)
def test_byom_mistakes_are_one_line_and_a_non_zero_exit(case: str, tmp_path: Path, tiny_camvid: Path) -> None:
    (tmp_path / "user_model_that_breaks.py").write_text("import a_package_that_is_not_installed\n")
    weights = tmp_path / "tv.pth"
    if case == "weights misfit":
        import torch

        torch.save({"classifier.4.weight": torch.zeros(2, 12, 1, 1)}, weights)
    card = tmp_path / "card.yaml"
    card.write_text("class_names: [a, b, c]\n")
    arguments, reason = {
        "import fails": (["--model", "user_model_that_breaks:build", "--model-path", str(tmp_path)],
                         "No module named 'a_package_that_is_not_installed'"),
        "factory raises": (["--model", "byom_models:raising_factory"], "the checkpoint server is unreachable"),
        "not a logit map": (["--model", "byom_models:token_output"], "not an N x C x H x W logit map"),
        "card class count": (["--model", "byom_models:torchvision_style", "--card", str(card)],
                             "names 3 classes but the model outputs 6"),
        "ambiguous last layer": (["--model", "byom_models:summed_classifiers"], "first (ran 1x), second (ran 1x)"),
        "weights misfit": (["--model", "byom_models:torchvision_style", "--weights", str(weights)],
                           "missing key(s)"),
    }[case]  # fmt: skip
    if "--model-path" not in arguments:
        arguments += ["--model-path", str(HERE)]
    image = tiny_camvid / "val" / "images" / "seq_0000.jpg"
    result = _tool(*arguments, "--out", str(tmp_path / "out"), str(image))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and reason in lines[0], result.stderr
    assert lines[0].startswith("gradunc-infer: ")
