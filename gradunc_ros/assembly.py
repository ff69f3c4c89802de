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
from .thresholds import ThresholdChoice, ThresholdTable, choose_threshold, table_for_weights
from .uncertainty import HeadSettings


@dataclass(frozen=True)
class ModelRequest:
    """Which model to load: a registered name or ``package.module:function`` (empty: the shipped default),
    weights (a file, ``random``, or empty: the shipped or the factory's own), a model card YAML (empty: the
    one beside the weights, if any), a folder to import a factory from, a class count for a bare ``.pth``."""

    model: str | None = None
    weights: str | None = None
    card: str | None = None
    model_path: str | None = None
    num_classes: int | None = None

    def load(self) -> LoadedModel:
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
    reason when the model cannot be loaded or cannot compute ``settings``."""
    loaded = request.load()
    pipeline = SegmentationPipeline(
        loaded, settings, device=device, input_size=input_size, fused=fused, precision=precision
    )
    table = table_for_weights(loaded.weights)
    return Assembly(loaded, pipeline, table, choose_threshold(settings, table, threshold, threshold_for))
