"""An ONNX file as the pipeline's model: one exported here (the head inside) or a user's own (logits only).

A file written by ``gradunc-export --onnx`` carries its card, its score
settings, the last layer the probe found and its threshold table in its
metadata; it computes that score inside the graph.  A foreign file (any
ONNX segmentation model whose output is the logits) gets its card from a
YAML card beside it or named (``<file name>.card.yaml``; defaults otherwise,
as for PyTorch models).  From the logits the runtime adds, on the CPU, the
softmax baselines and the bias gradient (the logits' gradient); a gradient
that needs the last layer's input is refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models.card import ModelCard, card_from_mapping, card_path_for, completed, read_card
from ..models.loading import FACTORY_INPUT_MULTIPLE, LoadedModel
from ..models.probe import LastLayer
from ..uncertainty import BASELINES, GRADIENT_SCORES, HeadSettings, class_log_norm
from ..uncertainty.pgn import predicted_class
from .runtimes import Session, open_session

ONNX_SUFFIX = ".onnx"


@dataclass
class ExportedGraph:
    """A loaded ONNX file: its session, the score it computes inside (None: logits only) and its input size."""

    path: Path
    session: Session
    settings: HeadSettings | None
    precision: str
    logits_output: str

    def describe_runtime(self) -> str:
        return f"{self.session.backend} {self.precision}"


def is_onnx(weights: str | Path | None) -> bool:
    return weights is not None and str(weights).lower().endswith(ONNX_SUFFIX)


def load_onnx(
    path: str | Path, backend: str, *, threads: int = 0, precision: str = "float32", card: str | Path | None = None
) -> LoadedModel:
    """The ONNX file in ``backend`` as a LoadedModel (model None; ``make_head`` gives an ExportedHead)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ONNX file {path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - a file that is not ONNX fails in the protobuf parser
        raise ValueError(f"{path} is not an ONNX file: {type(error).__name__}: {error}") from error
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    outputs = [output.name for output in proto.graph.output]
    size = _fixed_size(proto)
    session = open_session(path, backend, threads, precision, tuple(outputs))
    if "gradunc_card" in metadata:  # exported here: the head is inside
        own = card_from_mapping(json.loads(metadata["gradunc_card"]), source=str(path))
        settings = HeadSettings.from_mapping(json.loads(metadata["gradunc_settings"]))
        last_layer = LastLayer(**json.loads(metadata["gradunc_last_layer"]))
        logits_output = "logits"
    else:
        own, settings, logits_output = ModelCard(), None, _logits_output(outputs, path)
        last_layer = None
    given = _card(card, path).over(own)
    if size is not None:
        given = replace(given, input_size=size)  # a fixed-size graph takes only its own size
    graph = ExportedGraph(path, session, settings, precision, logits_output)
    if last_layer is None:
        classes = _class_count(graph, given)
        last_layer = LastLayer(None, classes, None, False, 1.0, 1.0)
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


def _class_count(graph: ExportedGraph, card: ModelCard) -> int:
    """The class count of a foreign graph's logits, from one run on noise; ValueError if they are no logit map."""
    height, width = card.input_size or (64, 64)
    noise = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    logits = graph.session.run(noise)[graph.logits_output]
    if logits.ndim != 4 or not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(
            f"{graph.path}: output {graph.logits_output} is not an N x C x H x W logit map (shape {logits.shape}, "
            f"{logits.dtype})"
        )
    if logits.shape[1] < 2:
        raise ValueError(f"{graph.path}: the logits have 1 channel (a sigmoid head?); the scores need 2 or more")
    return int(logits.shape[1])


class ExportedHead:
    """The head's interface (``forward_many``, ``check_supported``, ``computes``, ``settings``) over an ONNX
    graph: its own score from the graph, the baselines and the bias gradient from its logits."""

    fused = None

    def __init__(self, graph: ExportedGraph, last_layer: LastLayer, settings: HeadSettings | None = None) -> None:
        self.graph = graph
        self.last_layer = last_layer
        self.settings = settings or graph.settings or HeadSettings()

    @property
    def settings(self) -> HeadSettings:
        return self._settings

    @settings.setter
    def settings(self, value: HeadSettings) -> None:
        self.check_supported(value)
        self._settings = value

    def _in_graph(self, settings: HeadSettings) -> bool:
        return self.graph.settings is not None and settings.canonical == self.graph.settings.canonical

    def check_supported(self, settings: HeadSettings) -> None:
        """ValueError with the reason when this graph cannot give ``settings``."""
        if not settings.is_gradient_score or self._in_graph(settings):
            return
        at_output = settings.resolution == "output" or self.last_layer.at_output is not False
        if settings.gradient_of == "bias" and settings.layer == "last" and at_output:
            return  # the logits' gradient, from the logits
        inside = f"computes {self.graph.settings.name} inside" if self.graph.settings else "returns logits only"
        raise ValueError(
            f"the ONNX graph {self.graph.path.name} {inside}, so {settings.name} cannot be computed from it "
            "(the softmax baselines and the bias gradient at the output resolution can): export one for it "
            "(gradunc-export --onnx with these score options), or use backend torch"
        )

    def computes(self, settings: HeadSettings, device: torch.device) -> str:
        where = "inside the ONNX graph" if self._in_graph(settings) else "from the graph's logits"
        return f"{settings.name} ({where}, {self.graph.describe_runtime()})"

    def forward_many(
        self, images: Tensor, settings_list, factors=()
    ) -> tuple[Tensor, Tensor, list[Tensor], list[tuple[Tensor, Tensor]]]:
        if factors:
            raise ValueError("the factor report needs the model in PyTorch (backend torch)")
        for settings in settings_list:
            self.check_supported(settings)
        outputs = self.graph.session.run(images.detach().cpu().float().numpy())
        logits = torch.from_numpy(np.ascontiguousarray(outputs[self.graph.logits_output], np.float32))
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
