"""An ONNX file as the pipeline's model: one exported here (the head inside) or a user's own (logits only).

A file written by ``gradunc-export --onnx`` carries its card, its score
settings, the last layer the probe found and its threshold table in its
metadata; it computes that score inside the graph.  A foreign file (any
ONNX segmentation model whose output is the logits) gets its card from a
YAML card beside it or named (``<file name>.card.yaml``; defaults otherwise,
as for PyTorch models).  From the logits the runtime adds, on the CPU, the
softmax baselines and the bias gradient (the logits' gradient); where its
last layer is found in the graph (``onnx_tail.py``) its input is exposed and
every last-layer gradient is computed by the PyTorch head from it; else a
gradient that needs that input is refused with the reason.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

try:  # needed for ONNX files only; the runtimes are optional dependencies
    import onnx
except ImportError:  # pragma: no cover - said when an ONNX file is loaded
    onnx = None

from ..models.card import ModelCard, card_from_mapping, card_path_for, completed, read_card
from ..models.loading import FACTORY_INPUT_MULTIPLE, LoadedModel
from ..models.probe import LastLayer, class_count
from ..uncertainty import BASELINES, GRADIENT_SCORES, GradientUncertaintyHead, HeadSettings, class_log_norm
from ..uncertainty.head import CheckedSettings
from ..uncertainty.pgn import predicted_class
from .onnx_tail import Tail, TailModule, expose, find_tail
from .runtimes import INSTALL, RuntimeMissingError, Session, open_session

ONNX_SUFFIX = ".onnx"


@dataclass
class ExportedGraph:
    """A loaded ONNX file: its session, the score it computes inside (None: logits only), and for a foreign file
    its last layer exposed (``tail``) or why it could not be (``tail_reason``)."""

    path: Path
    session: Session
    settings: HeadSettings | None
    precision: str
    logits_output: str
    tail: Tail | None = None
    tail_reason: str = ""
    batch_of_one: bool = False  # the graph's batch dimension is fixed to 1: frames run one at a time
    fixed_size: tuple[int, int] | None = None  # (height, width) of a fixed-size graph's input

    def make_head(self, last_layer: LastLayer, settings: HeadSettings | None = None) -> ExportedHead:
        return ExportedHead(self, last_layer, settings)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if not self.batch_of_one or len(images) == 1:
            return self.session.run(images)
        runs = [self.session.run(images[i : i + 1]) for i in range(len(images))]
        return {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}

    def describe_runtime(self) -> str:
        return f"{self.session.backend} {self.precision}"


def is_onnx(weights: str | Path | None) -> bool:
    return weights is not None and str(weights).lower().endswith(ONNX_SUFFIX)


def load_onnx(
    path: str | Path, backend: str, *, threads: int = 0, precision: str = "float32", card: str | Path | None = None
) -> LoadedModel:
    """The ONNX file in ``backend`` as a LoadedModel (model None; ``make_head`` gives an ExportedHead)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ONNX file {path} does not exist")
    try:
        if onnx is None:
            raise RuntimeMissingError(f"ONNX files need the onnx package: {INSTALL['onnxruntime']} onnx")
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - a file that is not ONNX fails in the protobuf parser
        raise ValueError(f"{path} is not an ONNX file: {type(error).__name__}: {error}") from error
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    outputs = [output.name for output in proto.graph.output]
    size = _fixed_size(proto)
    if "gradunc_card" in metadata:  # exported here: the head is inside
        own = card_from_mapping(json.loads(metadata["gradunc_card"]), source=str(path))
        settings = HeadSettings.from_mapping(json.loads(metadata["gradunc_settings"]))
        last_layer = LastLayer(**json.loads(metadata["gradunc_last_layer"]))
        graph = ExportedGraph(path, open_session(path, backend, threads, precision, tuple(outputs)), settings,
                              precision, "logits")  # fmt: skip
    else:
        graph = _foreign_graph(proto, path, backend, threads, precision, _logits_output(outputs, path))
        own, last_layer = ModelCard(), None
    given = _card(card, path).over(own)
    if size is not None:
        given = replace(given, input_size=size)  # a fixed-size graph takes only its own size
    graph.batch_of_one = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    graph.fixed_size = size
    if last_layer is None:
        last_layer = _measure(graph, given)
    filled, assumed = completed(given, last_layer.num_classes)
    return LoadedModel(
        name=json.loads(metadata.get("gradunc_model", json.dumps(path.name))),
        model=None,
        card=filled,
        last_layer=last_layer,
        weights=path,
        input_multiple=given.input_multiple or (1 if size else FACTORY_INPUT_MULTIPLE),
        metadata=metadata,
        assumed=assumed,
        graph=graph,
    )


def _card(card: str | Path | None, path: Path) -> ModelCard:
    if card:
        return read_card(card)
    beside = card_path_for(path)
    return read_card(beside) if beside.is_file() else ModelCard()


def _fixed_size(proto) -> tuple[int, int] | None:
    """The graph input's (height, width) where both are fixed numbers, else None (dynamic)."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"the ONNX graph's input has {len(dims)} dimensions; an image input is N x 3 x H x W")
    height, width = dims[2].dim_value, dims[3].dim_value
    return (height, width) if height and width else None


def _logits_output(outputs: list[str], path: Path) -> str:
    if "logits" in outputs:
        return "logits"
    if len(outputs) == 1:
        return outputs[0]
    raise ValueError(f"{path} has outputs {', '.join(outputs)}: none is named logits (name it so, or keep only it)")


def _foreign_graph(proto, path: Path, backend: str, threads: int, precision: str, logits: str) -> ExportedGraph:
    """A user's file in its runtime, its last layer's input and output exposed where the layer is found."""
    tail = find_tail(proto, logits)
    if isinstance(tail, str):
        names = tuple(output.name for output in proto.graph.output)
        return ExportedGraph(path, open_session(path, backend, threads, precision, names), None, precision, logits,
                             tail_reason=tail)  # fmt: skip
    expose(proto, tail)
    names = tuple(output.name for output in proto.graph.output)
    with tempfile.TemporaryDirectory(prefix="gradunc_onnx_") as folder:  # both runtimes read the file at load
        exposed = Path(folder) / path.name
        onnx.save(proto, str(exposed))
        session = open_session(exposed, backend, threads, precision, names)
    return ExportedGraph(path, session, None, precision, logits, tail=tail)


def _measure(graph: ExportedGraph, card: ModelCard) -> LastLayer:
    """A foreign graph's class count and geometry from one run on noise; ValueError if there is no logit map."""
    height, width = card.input_size or (64, 64)
    noise = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    outputs = graph.run(noise)
    logits = outputs[graph.logits_output]
    if logits.ndim != 4 or not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(
            f"{graph.path}: output {graph.logits_output} is not an N x C x H x W logit map (shape {logits.shape}, "
            f"{logits.dtype})"
        )
    classes, output_stride = class_count(logits.shape[1]), height / logits.shape[-2]
    if graph.tail is None:
        return LastLayer.none(classes, output_stride)
    low = outputs[graph.tail.output]
    return LastLayer(
        f"onnx:{graph.tail.node}", classes, not graph.tail.resized, graph.tail.align_corners, height / low.shape[-2],
        output_stride,
    )  # fmt: skip


class ExportedHead(CheckedSettings):
    """The head's interface (``forward_many``, ``check_supported``, ``computes``, ``settings``) over an ONNX
    graph: its own score from the graph, the baselines and the bias gradient from its logits; for a foreign
    graph whose last layer was found, every last-layer score from the PyTorch head over that layer's input."""

    fused = None

    def __init__(self, graph: ExportedGraph, last_layer: LastLayer, settings: HeadSettings | None = None) -> None:
        self.graph = graph
        self.last_layer = last_layer
        self._replayed = None
        if graph.tail is not None:
            self._tail = TailModule(graph.tail)
            self._replayed = GradientUncertaintyHead(
                self._tail, "classifier", HeadSettings(), align_corners=graph.tail.align_corners,
                last_layer_at_output=not graph.tail.resized,
            )  # fmt: skip
        self.settings = settings or graph.settings or HeadSettings()

    @property
    def has_layer_input(self) -> bool:
        return self._replayed is not None

    def close(self) -> None:
        if self._replayed is not None:
            self._replayed.close()

    def _in_graph(self, settings: HeadSettings) -> bool:
        return self.graph.settings is not None and settings.canonical == self.graph.settings.canonical

    def check_supported(self, settings: HeadSettings) -> None:
        """ValueError with the reason when this graph cannot give ``settings``."""
        if not settings.is_gradient_score or self._in_graph(settings):
            return
        if self._replayed is not None:
            self._replayed.check_supported(settings)
            return
        at_output = settings.resolution == "output" or self.last_layer.at_output is not False
        if settings.gradient_of == "bias" and settings.layer == "last" and at_output:
            return  # the logits' gradient, from the logits
        inside = f"computes {self.graph.settings.name} inside" if self.graph.settings else "returns logits only"
        why = f" ({self.graph.tail_reason})" if self.graph.tail_reason else ""
        raise ValueError(
            f"the ONNX graph {self.graph.path.name} {inside}{why}, so {settings.name} cannot be computed from it "
            "(the softmax baselines and the bias gradient at the output resolution can): export one for it "
            "(gradunc-export --onnx with these score options), or use backend torch"
        )

    def computes(self, settings: HeadSettings, device: torch.device) -> str:
        if self._in_graph(settings):
            where = "inside the ONNX graph"
        elif self._replayed is not None and settings.is_gradient_score:
            where = f"by the PyTorch head from the input of the graph's last layer {self.graph.tail.node}"
        else:
            where = "from the graph's logits"
        return f"{settings.name} ({where}, {self.graph.describe_runtime()})"

    def forward_many(
        self, images: Tensor, settings_list, factors=()
    ) -> tuple[Tensor, Tensor, list[Tensor], list[tuple[Tensor, Tensor]]]:
        if factors and self._replayed is None:
            raise ValueError("the factor report needs the last layer's input (backend torch, or a foreign graph "
                             "whose last layer was found)")  # fmt: skip
        for settings in settings_list:
            self.check_supported(settings)
        outputs = self.graph.run(images.detach().cpu().float().numpy())
        logits = torch.from_numpy(np.ascontiguousarray(outputs[self.graph.logits_output], np.float32))
        replay = factors or any(settings.is_gradient_score for settings in settings_list)
        if self._replayed is not None and replay:  # the gradient scores from the PyTorch head over the features
            self._tail.size = tuple(logits.shape[-2:])
            features = torch.from_numpy(np.ascontiguousarray(outputs[self.graph.tail.features], np.float32))
            _, _, scores, factor_maps = self._replayed.forward_many(features, settings_list, factors)
            return logits, predicted_class(logits), scores, factor_maps
        scores = []
        for settings in settings_list:
            if self._in_graph(settings):
                scores.append(torch.from_numpy(np.ascontiguousarray(outputs["score"], np.float32)))
            elif not settings.is_gradient_score:
                scores.append(BASELINES[settings.score](logits))
            else:
                label = GRADIENT_SCORES[settings.score]
                scores.append(class_log_norm(logits, settings.p, label, settings.mode, from_logits=True).float())
        return logits, predicted_class(logits), scores, []
