"""The model and the uncertainty head in one ONNX graph, checked against PyTorch before it is written.

The graph takes the network input (N x 3 x H x W float32, normalised as the
model card says) and returns ``labels`` (N x H x W int32, at the model's
output resolution), ``score`` (N x H x W float32: the head's score for the
settings exported, e.g. a log gradient norm) and ``logits`` (N x C x H x W).
The card (classes, colours, normalisation), the score settings, the probe's
last layer and the threshold table travel in the file's metadata
(``metadata_props``, JSON values), so the file is all a deployment needs.

An exported file is not trusted unchecked: the same export can come out
wrong (a second export in one process was seen to give logits 17 off), and
shapes that PyTorch's tracer bakes into the graph (interpolation taps) can
make a dynamic-size graph wrong at another size.  So every file is run in
each installed runtime (ONNX Runtime, OpenVINO in float32) on real frames at
each size it is exported for and compared with PyTorch in float32 and in
float64: labels must agree on at least
``MIN_LABEL_AGREEMENT`` of the pixels, and the graph's largest log-score
error against float64 may not exceed ``ERROR_FACTOR`` times PyTorch
float32's own (plus ``SCORE_SLACK``).  Float32 noise is largest where a
score is ill-conditioned (the one-hot class factor of a confident pixel,
``1 - s_k`` near float32's epsilon), and runtimes round differently there,
by a few times PyTorch's error (OpenVINO: 3.2 times, measured on ERFNet at
320x240); the faults this check exists for are off by orders of magnitude
(ReduceLogSumExp overflowing: 115 in log; a repeated export: logits 17 off).
A file that fails is not written; the figures say why.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..models.loading import LoadedModel
from ..models.preprocess import fit_to_multiple
from ..pipeline import network_input
from ..thresholds import ThresholdTable
from ..uncertainty import HeadSettings
from .runtimes import INSTALL, ONNX_BACKENDS, open_session

OPSET = 17
MIN_LABEL_AGREEMENT = 0.999
SCORE_SLACK = 1e-4  # in log: a relative error of 1e-4 on the norm
ERROR_FACTOR = 10.0
OUTPUTS = ("labels", "score", "logits")
INPUT = "image"


class ExportError(ValueError):
    """An export that could not be made or that failed its check against PyTorch; the figures in words."""


class GraphHead(nn.Module):
    """What the graph computes: the head's labels, one score and the logits, from one forward pass."""

    def __init__(self, loaded: LoadedModel, settings: HeadSettings) -> None:
        super().__init__()
        self.head = loaded.make_head(settings, fused="off")
        self.settings = settings

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, labels, scores, _ = self.head.forward_many(x, [self.settings])
        return labels.to(torch.int32), scores[0].float(), logits.float()


@dataclass
class SizeCheck:
    """One exported size checked on real frames in one runtime: how well the graph agrees with PyTorch."""

    runtime: str
    size: tuple[int, int]  # (height, width) of the network input
    frames: int
    label_agreement: float  # share of pixels whose label equals PyTorch float32's
    max_log_score_difference: float  # graph against PyTorch float32
    graph_error: float  # graph against PyTorch float64 (max |log difference|)
    torch_float32_error: float  # PyTorch float32 against float64
    passed: bool = False

    def describe(self) -> str:
        height, width = self.size
        return (
            f"{width}x{height} in {self.runtime}: labels agree on {100 * self.label_agreement:.3f} % of the pixels, "
            f"max |log score difference| {self.max_log_score_difference:.2e} (against float64: graph "
            f"{self.graph_error:.2e}, PyTorch float32 {self.torch_float32_error:.2e}) over {self.frames} frame(s)"
        )


@dataclass
class ExportReport:
    path: Path
    checks: list[SizeCheck] = field(default_factory=list)


def metadata_of(loaded: LoadedModel, settings: HeadSettings, table: ThresholdTable, sizes: Sequence) -> dict:
    """The file's metadata: what a runtime needs besides the graph (all values JSON)."""
    card = asdict(loaded.card)
    for key in ("factory_arguments", "source", "said"):
        card.pop(key, None)
    if loaded.card.input_size is not None:  # the card's own notation, WIDTHxHEIGHT
        card["input_size"] = f"{loaded.card.input_size[1]}x{loaded.card.input_size[0]}"
    card["input_multiple"] = loaded.input_multiple
    last = asdict(loaded.last_layer)
    return {
        "gradunc_model": json.dumps(loaded.name),
        "gradunc_card": json.dumps(card),
        "gradunc_settings": json.dumps(asdict(settings)),
        "gradunc_last_layer": json.dumps(last),
        "gradunc_thresholds": json.dumps(table.thresholds),
        "gradunc_thresholds_how": json.dumps(table.how),
        "gradunc_confidence_scales": json.dumps(table.confidence_scales),
        "gradunc_checked_sizes": json.dumps([list(size) for size in sizes]),
    }


def _trace(loaded: LoadedModel, settings: HeadSettings, size: tuple[int, int], dynamic: bool) -> bytes:
    """The ONNX bytes of a fresh copy of the model (exports are not repeated on one module)."""
    fresh = copy.deepcopy(loaded)
    graph = GraphHead(fresh, settings).eval()  # its head lives on the copy only
    example = torch.zeros(1, 3, *size)
    buffer = io.BytesIO()
    axes = {INPUT: {0: "batch", 2: "height", 3: "width"}} if dynamic else {INPUT: {0: "batch"}}
    for name in OUTPUTS:
        axes[name] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of every shape-dependent branch; the check at each exported size is what tells.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph, (example,), buffer, opset_version=OPSET, dynamo=False, input_names=[INPUT],
            output_names=list(OUTPUTS), dynamic_axes=axes,
        )  # fmt: skip
    return buffer.getvalue()


def installed_runtimes() -> list[str]:
    """The ONNX backends whose runtime imports here (ONNX Runtime is needed to export at all)."""
    import importlib.util

    return [name for name in ONNX_BACKENDS if importlib.util.find_spec(name) is not None]


def check_graph(
    path: Path, runtime: str, loaded: LoadedModel, settings: HeadSettings, size: tuple[int, int],
    frames: Sequence[np.ndarray],
) -> SizeCheck:  # fmt: skip
    """Run the graph at ``path`` in ``runtime`` on ``frames`` (H x W x 3 uint8 RGB) at network input ``size`` and
    compare with PyTorch float32 and float64 (see the module's docstring)."""
    session = open_session(path, runtime, names=OUTPUTS)
    double = copy.deepcopy(loaded)
    double.model.double()
    float32, float64 = loaded.make_head(settings, fused="off"), double.make_head(settings, fused="off")
    agree = pixels = 0
    worst = graph_error = torch_error = 0.0
    for frame in frames:
        x = network_input(torch.from_numpy(frame)[None], loaded.card, size)
        outputs = session.run(x.numpy())
        labels, score = outputs["labels"], outputs["score"]
        with torch.no_grad():
            reference, truth = float32(x), float64(x.double())
        agree += int((labels == reference.labels.numpy()).sum())
        pixels += labels.size
        worst = max(worst, _log_difference(score, reference.score.numpy()))
        graph_error = max(graph_error, _log_difference(score, truth.score.numpy()))
        torch_error = max(torch_error, _log_difference(reference.score.numpy(), truth.score.numpy()))
    float32.close()
    check = SizeCheck(runtime, size, len(frames), agree / max(1, pixels), worst, graph_error, torch_error)
    check.passed = (
        check.label_agreement >= MIN_LABEL_AGREEMENT and graph_error <= ERROR_FACTOR * torch_error + SCORE_SLACK
    )
    return check


def _log_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| of two log-score maps, both -inf (a zero gradient) counting as equal; NaN as infinite."""
    both = np.isneginf(a) & np.isneginf(b)
    with np.errstate(invalid="ignore"):
        difference = np.where(both, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
    return float(np.nan_to_num(difference, nan=np.inf).max())


def export_onnx(
    loaded: LoadedModel,
    settings: HeadSettings,
    path: Path,
    sizes: Sequence[tuple[int, int]],
    frames: Sequence[np.ndarray],
    *,
    dynamic: bool = False,
    table: ThresholdTable | None = None,
) -> ExportReport:
    """Export ``loaded`` with its head for ``settings`` to ``path``: for one fixed network input size, or with
    ``dynamic`` height and width, checked at every size in ``sizes`` (each rounded to the model's input
    multiple, as the pipeline rounds).  ExportError (nothing written) when a
    check fails or the settings cannot be computed."""
    import onnx

    if not sizes:
        raise ExportError("no network input size to export for")
    if len(sizes) > 1 and not dynamic:
        raise ExportError("a fixed-size graph has one size: give one, or export with dynamic height and width")
    if not frames:
        raise ExportError("no frames to check the exported graph on")
    loaded.make_head(settings).close()  # refuses settings the model cannot compute, with the reason
    sizes = [fit_to_multiple(size, loaded.input_multiple) for size in sizes]  # as the pipeline sizes its input
    runtimes = installed_runtimes()
    if "onnxruntime" not in runtimes:
        raise ExportError(
            f"an exported graph is checked in ONNX Runtime, which is not installed: {INSTALL['onnxruntime']}"
        )
    model = onnx.load_from_string(_trace(loaded, settings, sizes[0], dynamic))
    for key, value in metadata_of(loaded, settings, table or ThresholdTable(), sizes).items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")  # checked before it takes the real name
    onnx.save(model, str(partial))
    report = ExportReport(path)
    try:
        for runtime in runtimes:
            report.checks += [check_graph(partial, runtime, loaded, settings, size, frames) for size in sizes]
        failed = [check for check in report.checks if not check.passed]
        if failed:
            raise ExportError(
                "the exported graph disagrees with PyTorch, not written: " + "; ".join(c.describe() for c in failed)
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return report
