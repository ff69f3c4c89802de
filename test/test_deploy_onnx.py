"""ONNX with the uncertainty head inside, run in ONNX Runtime and OpenVINO: equal to the PyTorch head at two
sizes (1024x512 among them) on ERFNet and SegFormer, an export that disagrees refused, foreign ONNX files."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx onnxruntime openvino)")
pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install onnx onnxruntime openvino)")

from gradunc_ros.assembly import ModelRequest  # noqa: E402
from gradunc_ros.deploy.onnx_export import ExportError, export_onnx, installed_runtimes  # noqa: E402
from gradunc_ros.models import ModelCard, load_model  # noqa: E402
from gradunc_ros.models.preprocess import fit_to_multiple  # noqa: E402
from gradunc_ros.pipeline import SegmentationPipeline  # noqa: E402
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings  # noqa: E402

HERE = Path(__file__).parent
# The weights gradient at p = 0.5: at p = 0.1 the feature norm counts an entry of 1e-7 a fifth as much as one of 1,
# so ReLU outputs that one runtime's convolution leaves at 1e-7 and another's at 0 move it (ONNX Runtime on ERFNet
# at 480x360: 0.21 in log against PyTorch's 1.2e-3 from float64); the export check refuses such a graph.
PAPERS = HeadSettings("pgn_oh", 0.5, "exact", gradient_of="weights")
SIZES = {"320x240": (240, 320), "1024x512": (512, 1024)}


def _frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Smooth frames with structure (not white noise): what a camera sees is correlated in space."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (count, 12, 16, 3)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(low).permute(0, 3, 1, 2), size, mode="bilinear")
    return [frame for frame in up.permute(0, 2, 3, 1).clamp(0, 255).to(torch.uint8).numpy()]


def _model(name: str):
    if name == "segformer":
        pytest.importorskip("transformers", reason="Hugging Face transformers is not installed")
        return load_model("byom_models:segformer", model_path=HERE)
    return load_model()  # the shipped ERFNet


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("settings", [DEFAULT_SCORE, PAPERS], ids=["default", "weights"])
@pytest.mark.parametrize("name", ["erfnet", "segformer"])
def test_the_exported_graph_equals_the_pytorch_head_in_every_runtime(name, settings, size, tmp_path) -> None:
    loaded = _model(name)
    network = fit_to_multiple(SIZES[size], loaded.input_multiple)  # SegFormer's multiple: 32
    path = tmp_path / "model.onnx"
    frame = _frames(1, (network[0] // 2 + 7, network[1] // 2 + 5))[0]  # an image of another size than the input
    report = export_onnx(loaded, settings, path, [network], [frame])
    # In every installed runtime: labels as PyTorch's, log scores as close to float64 as PyTorch float32 is
    # (within the check's factor; the check's figures are against float64 at the network's resolution).
    assert {check.runtime for check in report.checks} == set(installed_runtimes()) and path.is_file()
    assert all(check.passed and check.label_agreement >= 0.999 for check in report.checks), report.checks
    torch_pipeline = SegmentationPipeline(loaded, settings, device="cpu", input_size=network)
    expected = torch_pipeline.predict(frame)
    for runtime in installed_runtimes():
        onnx_pipeline = SegmentationPipeline(ModelRequest(weights=str(path), backend=runtime).load(), settings)
        assert onnx_pipeline.network_size(frame.shape[:2]) == network  # the graph's own fixed size
        got = onnx_pipeline.predict(frame)  # through the whole pipeline, at the image's resolution
        assert (got.labels == expected.labels).mean() >= 0.999, runtime
        # 1e-3 in log is 0.1 % of the norm; the rare pixels beyond are float32 noise where the one-hot class
        # factor 1 - s_k nears float32's epsilon (bounded against float64 by the check above).
        difference = np.abs(got.score - expected.score)
        assert np.quantile(difference, 0.999) < 1e-3, (runtime, np.quantile(difference, 0.999), difference.max())


def test_a_dynamic_graph_keeps_the_cards_size_and_multiple_and_runs_at_another_size(tmp_path) -> None:
    loaded = load_model()
    path = tmp_path / "dynamic.onnx"
    sizes = [(240, 320), (360, 480)]
    report = export_onnx(loaded, DEFAULT_SCORE, path, sizes, _frames(1, (240, 320)), dynamic=True)
    assert {check.size for check in report.checks} == set(sizes)
    graph = ModelRequest(weights=str(path), backend="onnxruntime").load()
    assert (graph.input_size, graph.input_multiple) == ((240, 320), 8)  # the card's, in the card's own notation
    frame = _frames(1, (300, 400))[0]
    expected = SegmentationPipeline(loaded, DEFAULT_SCORE, device="cpu", input_size=(360, 480)).predict(frame)
    got = SegmentationPipeline(graph, DEFAULT_SCORE, input_size=(360, 480)).predict(frame)
    assert (got.labels == expected.labels).mean() >= 0.999 and np.abs(got.score - expected.score).max() < 1e-3


def test_the_graphs_own_score_runs_by_default_and_a_fixed_graph_refuses_another_size(tmp_path) -> None:
    from gradunc_ros.assembly import assemble

    path = tmp_path / "erfnet.onnx"
    export_onnx(load_model(), PAPERS, path, [(240, 320)], _frames(1, (240, 320)))
    assembly = assemble(ModelRequest(weights=str(path), backend="onnxruntime"), DEFAULT_SCORE)
    assert assembly.pipeline.settings == PAPERS
    with pytest.raises(ValueError, match="takes 320x240 only, not input_size 480x360"):
        assemble(ModelRequest(weights=str(path), backend="onnxruntime"), PAPERS, input_size=(360, 480))


def test_a_graph_that_disagrees_with_pytorch_is_refused_with_the_figures(tmp_path) -> None:
    loaded = load_model("byom_models:traced_differently", model_path=HERE)
    path = tmp_path / "model.onnx"
    with pytest.raises(
        ExportError, match=r"disagrees with PyTorch, not written: 64x64 in onnxruntime: labels agree on"
    ):
        export_onnx(loaded, HeadSettings("pgn_oh", 0.5), path, [(64, 64)], _frames(1, (64, 64)))
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing left behind


def test_settings_the_graph_does_not_compute_are_refused_the_rest_come_from_its_logits(tmp_path) -> None:
    loaded = load_model()
    path = tmp_path / "erfnet.onnx"
    export_onnx(loaded, PAPERS, path, [(240, 320)], _frames(1, (240, 320)))
    graph = ModelRequest(weights=str(path), backend="onnxruntime").load()
    pipeline = SegmentationPipeline(graph, PAPERS)
    with pytest.raises(ValueError, match="computes pgn_oh_exact_p0.5 inside, so pgn_oh_exact_p0.3 cannot"):
        pipeline.settings = HeadSettings("pgn_oh", 0.3)
    frame = _frames(1, (240, 320))[0]
    reference = SegmentationPipeline(loaded, DEFAULT_SCORE, device="cpu")
    for other in (HeadSettings("entropy"), DEFAULT_SCORE):  # a baseline, and the bias gradient: from the logits
        pipeline.settings = reference.settings = other
        assert np.abs(pipeline.predict(frame).score - reference.predict(frame).score).max() < 1e-4, other.name
    assert graph.class_names == loaded.class_names and graph.card.mean == loaded.card.mean  # from the metadata


def _foreign(tmp_path: Path, model: str = "torchvision_style", outputs: str = "logits") -> Path:
    """A plain ONNX export of a model's logits: a user's file, no metadata of ours, the classifier's input
    hidden inside the graph."""
    card = ModelCard(last_layer="none") if model == "summed_classifiers" else None  # no single last layer
    loaded = load_model(f"byom_models:{model}", model_path=HERE, card=card)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = loaded.model

        def forward(self, x):
            out = self.model(x)
            if isinstance(out, torch.Tensor):
                return out
            return out["out"] if outputs == "logits" else (out["out"], out["aux"])

    path = tmp_path / f"{model}.onnx"
    names = ["logits"] if outputs == "logits" else ["main", "aux"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(), (torch.zeros(1, 3, 64, 96),), str(path), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=names)  # fmt: skip
    return path


FOREIGN_SETTINGS = [
    HeadSettings("max_logit"),
    HeadSettings("pgn_uni", 0.3, "reference", "output", "last", "bias"),
    HeadSettings("pgn_oh", 0.5, "exact", "last_layer", "last", "weights"),
    HeadSettings("pgn_oh", 1.0, "exact", "output", "last", "layer"),
]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_foreign_onnx_files_last_layer_is_found_and_every_gradient_computed(runtime, tmp_path) -> None:
    if runtime not in installed_runtimes():
        pytest.skip(f"{runtime} is not installed")
    path = _foreign(tmp_path)
    (tmp_path / "torchvision_style.card.yaml").write_text("class_names: [a, b, c, d, e, f]\n")
    graph = ModelRequest(weights=str(path), backend=runtime).load()
    assert graph.class_names == ("a", "b", "c", "d", "e", "f") and graph.input_size == (64, 96)
    # The classifier's input was inside the graph: exposed, with the geometry of the graph's Resize.
    last = graph.last_layer
    assert (last.path, last.at_output, last.align_corners, last.stride) == ("onnx:/model/classifier/classifier.4/Conv",
                                                                            False, False, 8)  # fmt: skip
    loaded = load_model("byom_models:torchvision_style", model_path=HERE)
    frame = _frames(1, (64, 96))[0]
    for settings in FOREIGN_SETTINGS:
        got = SegmentationPipeline(graph, settings).predict(frame)
        expected = SegmentationPipeline(loaded, settings, device="cpu", input_size=(64, 96)).predict(frame)
        assert np.array_equal(got.labels, expected.labels)
        assert np.abs(got.score - expected.score).max() < 1e-4, settings.name


def test_a_foreign_file_without_a_single_last_layer_keeps_the_baselines_and_the_bias_gradient(tmp_path) -> None:
    path = _foreign(tmp_path, model="summed_classifiers")
    graph = ModelRequest(weights=str(path), backend="onnxruntime").load()
    assert graph.last_layer.path is None and "assumed" not in graph.describe()
    frame = _frames(1, (64, 96))[0]
    card = ModelCard(last_layer="none")
    loaded = load_model("byom_models:summed_classifiers", model_path=HERE, card=card)
    for settings in (HeadSettings("entropy"), HeadSettings("pgn_oh", 0.5, gradient_of="bias")):
        got = SegmentationPipeline(graph, settings).predict(frame)
        expected = SegmentationPipeline(loaded, settings, device="cpu", input_size=(64, 96)).predict(frame)
        assert np.abs(got.score - expected.score).max() < 1e-4, settings.name
    with pytest.raises(ValueError, match=r"returns logits only \(the logits come from two classifiers added"):
        SegmentationPipeline(graph, HeadSettings("pgn_oh", gradient_of="weights"))


def test_onnx_mistakes_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    from gradunc_ros.tools import infer

    image = tmp_path / "frame.png"
    import cv2

    cv2.imwrite(str(image), _frames(1, (48, 64))[0])

    def refused(*arguments: str) -> str:
        code = infer.main([*arguments, "--out", str(tmp_path / "out"), str(image)])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(error) == 1, error
        return error[0]

    two_outputs = _foreign(tmp_path, outputs="two")
    assert "outputs main, aux: none is named logits" in refused(
        "--backend", "onnxruntime", "--weights", str(two_outputs)
    )
    assert "backend onnxruntime runs an ONNX file" in refused("--backend", "onnxruntime")
    assert "run it with backend onnxruntime or openvino" in refused("--weights", str(two_outputs))
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if OpenVINO were not installed
    assert "pip install openvino" in refused("--backend", "openvino", "--weights", str(_foreign(tmp_path)))
    with pytest.raises(SystemExit) as unknown:
        infer.main(["--backend", "tensorrt", "--out", str(tmp_path), str(image)])
    assert unknown.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_selfcheck_prints_each_backend_and_precision_against_float32(capsys) -> None:
    from gradunc_ros.tools.selfcheck import main

    assert main(["--p", "1", "--backends"]) == 0
    lines = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "labels 100.000 %" in lines[("onnxruntime", "float32")]
    assert ("torch", "bfloat16") in lines and ("torch", "float16") in lines
    for runtime in installed_runtimes():
        assert (runtime, "float32") in lines
