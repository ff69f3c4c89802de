"""Model, head settings, pipeline and threshold put together in one place, for the node and every tool.

``ModelRequest`` is what a user names (the node's parameters or a tool's
options: model, weights, card, model_path, num_classes); ``assemble`` loads
it, checks that the loaded model can compute the score asked for, builds the
pipeline and picks the threshold by the rule of ``thresholds.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import LoadedModel, load_model
from .pipeline import SegmentationPipeline
from .thresholds import ThresholdChoice, ThresholdTable, choose_threshold, table_for_weights, table_from_metadata
from .uncertainty import DEFAULT_SCORE, HeadSettings


@dataclass(frozen=True)
class ModelRequest:
    """Which model to load: a registered name or ``package.module:function`` (empty: the shipped default),
    weights (a file, ``random``, or empty: the shipped or the factory's own; an ``.onnx`` file for the ONNX
    backends), a model card YAML (empty: the one beside the weights, if any), a folder to import a factory
    from, a class count for a bare ``.pth``; the backend that runs it (torch, onnxruntime, openvino) and
    its CPU threads (0: the runtime's default)."""

    model: str | None = None
    weights: str | None = None
    card: str | None = None
    model_path: str | None = None
    num_classes: int | None = None
    backend: str = "torch"
    threads: int = 0

    def load(self, precision: str = "float32") -> LoadedModel:
        """The model; for an ONNX backend the graph in its runtime at ``precision``."""
        from .deploy.onnx_model import is_onnx, load_onnx
        from .deploy.runtimes import check_backend

        check_backend(self.backend, precision if self.backend != "torch" else "float32")
        if self.backend != "torch":
            if not is_onnx(self.weights):
                raise ValueError(
                    f"backend {self.backend} runs an ONNX file: give one as weights (gradunc-export --onnx writes "
                    "one with the uncertainty head inside)"
                )
            return load_onnx(self.weights, self.backend, threads=self.threads, precision=precision, card=self.card)
        if is_onnx(self.weights):
            raise ValueError(f"{self.weights} is an ONNX file: run it with backend onnxruntime or openvino")
        return load_model(
            self.model or None, self.weights or None, num_classes=self.num_classes or None,
            card=self.card or None, model_path=self.model_path or None,
        )  # fmt: skip


@dataclass
class Assembly:
    """A loaded model in its pipeline, its threshold table and the threshold chosen for the starting score."""

    loaded: LoadedModel
    pipeline: SegmentationPipeline
    thresholds: ThresholdTable
    threshold: ThresholdChoice

    def choose_threshold(
        self, settings: HeadSettings, explicit: float | None, explicit_for: str = ""
    ) -> ThresholdChoice:
        return choose_threshold(settings, self.thresholds, explicit, explicit_for)


def assemble(
    request: ModelRequest,
    settings: HeadSettings,
    *,
    device: str = "auto",
    input_size: tuple[int, int] | None = None,
    fused: str = "auto",
    precision: str = "float32",
    threshold: float | None = None,
    threshold_for: str = "",
) -> Assembly:
    """Load ``request`` and build everything that runs it; a ValueError (or KeyError, RuntimeError) with the
    reason when the model cannot be loaded or cannot compute ``settings``.  An exported ONNX graph computes
    its own score: with the default settings asked for, that score runs (``pipeline.settings`` says which)."""
    onnx_backend = request.backend != "torch"  # the runtime takes the precision; the graph's input is float32
    loaded = request.load(precision)
    own = loaded.graph.settings if loaded.graph is not None else None
    if own is not None and settings == DEFAULT_SCORE:
        settings = own
    pipeline = SegmentationPipeline(
        loaded, settings, device=device, input_size=input_size, fused=fused,
        precision="float32" if onnx_backend else precision,
    )  # fmt: skip
    table = table_for_weights(loaded.weights)
    if not table.thresholds and "gradunc_thresholds" in loaded.metadata:  # an exported graph carries its table
        table = table_from_metadata(loaded.metadata, loaded.weights)
    return Assembly(loaded, pipeline, table, choose_threshold(settings, table, threshold, threshold_for))
