"""One object from a camera image to labels and uncertainty: numpy in, :class:`Prediction` out.

Pre-processing (normalise, resize to the network's input size) runs on the
model's device; the head yields logits, labels and the score from one
forward pass; everything is brought back to the image's own resolution
(logits bilinearly, gradient scores as norms in the log domain, labels as
the argmax of the resized logits).  No ROS here: the node and the
command-line tools drive the same pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .models.card import ModelCard
from .models.loading import LoadedModel
from .models.preprocess import fit_to_multiple, normalise, resize_input
from .uncertainty import HeadSettings, log_bilinear_resize
from .uncertainty.fused import triton_runs_on
from .uncertainty.pgn import predicted_class

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
STAGING_SHAPES = 8  # pinned upload buffers kept (one per batch shape), oldest given back first


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without CUDA is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for but CUDA is not available on this machine")
    return device


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA out of memory, or the CPU allocator's failure (a plain RuntimeError in PyTorch)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def free_device_memory() -> None:
    """Give cached CUDA blocks back after a failure; call once the failing frame's tensors are gone."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def network_input(images: Tensor, card: ModelCard, size: tuple[int, int]) -> Tensor:
    """N x H x W x 3 uint8 RGB (any device) to the network's normalised float input of ``size`` (height,
    width), as the model card says (channel order, pixel scale, mean, std): the pipeline's and training's."""
    x = normalise(images, card.mean, card.std, channel_order=card.channel_order, pixel_scale=card.pixel_scale)
    return resize_input(x, size)


@dataclass
class Prediction:
    """Per image, at the image's own resolution."""

    labels: np.ndarray  # H x W class ids (uint8 for up to 256 classes)
    score: np.ndarray  # H x W float32, higher = more anomalous
    logits: np.ndarray | None = None  # C x H x W float32, when asked for
    timings_ms: dict[str, float] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # extra scores asked for, by HeadSettings.name
    # log factors (class, input) of the weight gradient of the scores asked for, by HeadSettings.name
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class SegmentationPipeline:
    def __init__(
        self,
        loaded: LoadedModel,
        settings: HeadSettings | None = None,
        device: str = "auto",
        input_size: tuple[int, int] | None = None,
        *,
        fused: str = "auto",
        precision: str = "float32",
    ) -> None:
        """``input_size`` (height, width) of the network; default: what the weights were trained at,
        else each image's own size (rounded to what the architecture accepts).  ``fused``: auto (the
        Triton kernel where it runs, i.e. CUDA), off, or triton (an error where it cannot run).
        ``precision``: the network's float32, float16 or bfloat16; scores are float32 either way."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.loaded = loaded
        onnx_graph = loaded.graph is not None  # runs in its own runtime, on the CPU
        self.device = torch.device("cpu") if onnx_graph and device == "auto" else resolve_device(device)
        self.dtype = PRECISIONS[precision]
        if fused == "triton" and not triton_runs_on(self.device):
            raise RuntimeError(f"the fused Triton head needs CUDA and the triton package (device {self.device})")
        self._staging: dict[tuple[int, ...], Tensor] = {}  # pinned host buffers, one per batch shape
        if onnx_graph and (self.device.type != "cpu" or precision != "float32"):
            raise ValueError("an ONNX graph runs in its runtime: device cpu, its precision set on the backend")
        fixed = loaded.graph.fixed_size if onnx_graph else None
        if fixed is not None and input_size is not None and tuple(input_size) != tuple(fixed):
            raise ValueError(
                f"the ONNX graph takes {fixed[1]}x{fixed[0]} only, not input_size {input_size[1]}x{input_size[0]}: "
                "export it for that size (gradunc-export --input-size, or --dynamic)"
            )
        if loaded.model is not None:
            loaded.model.to(self.device, self.dtype)
        self.head = loaded.make_head(settings, fused)  # the last layer the probe measured at load time
        self.input_size = input_size or loaded.input_size

    @property
    def fused_active(self) -> bool:
        """Exact last-layer gradient scores come from the fused Triton kernel here."""
        return self.head.fused is not None and triton_runs_on(self.device)

    @property
    def settings(self) -> HeadSettings:
        return self.head.settings

    @settings.setter
    def settings(self, value: HeadSettings) -> None:
        self.head.settings = value

    def network_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return fit_to_multiple(self.input_size or image_size, self.loaded.input_multiple)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        keep_logits: bool = False,
        extra_scores: Sequence[HeadSettings] = (),
        factors: Sequence[HeadSettings] = (),
    ) -> list[Prediction]:
        """Images of one size (H x W x 3 uint8 RGB) in one forward pass; ``extra_scores`` and the gradient
        ``factors`` of the given scores come from the same pass."""
        if not images:
            return []
        size = images[0].shape[:2]
        if any(image.shape != images[0].shape for image in images) or images[0].ndim != 3 or images[0].shape[2] != 3:
            raise ValueError("a batch needs H x W x 3 images of one size")
        start = time.perf_counter()
        batch = self._upload(images)
        x = network_input(batch, self.loaded.card, self.network_size(size)).to(self.dtype)
        self._sync()
        inferred = time.perf_counter()
        all_settings = [self.settings, *extra_scores]
        raw_logits, _, raw_scores, raw_factors = self.head.forward_many(x, all_settings, factors)
        self._sync()
        done = time.perf_counter()
        logits = self._resize_logits(raw_logits, size)
        resized = [
            self._resize_score(score, one, size).cpu().numpy()
            for one, score in zip(all_settings, raw_scores, strict=True)
        ]
        resized_factors = [
            tuple(log_bilinear_resize(part, size, align_corners=False).cpu().numpy() for part in pair)
            for pair in raw_factors
        ]
        labels = predicted_class(logits).to(torch.uint8 if logits.shape[1] <= 256 else torch.int32).cpu().numpy()
        kept = logits.cpu().numpy() if keep_logits else None
        finished = time.perf_counter()
        timings = {
            "preprocess": 1e3 * (inferred - start),
            "inference": 1e3 * (done - inferred),
            "postprocess": 1e3 * (finished - done),
        }
        return [
            Prediction(
                labels[i],
                resized[0][i],
                None if kept is None else kept[i],
                dict(timings),
                {one.name: score[i] for one, score in zip(extra_scores, resized[1:], strict=True)},
                {one.name: (pair[0][i], pair[1][i]) for one, pair in zip(factors, resized_factors, strict=True)},
            )
            for i in range(len(images))
        ]

    def _upload(self, images: Sequence[np.ndarray]) -> Tensor:
        """uint8 frames onto the device as they are (a quarter of float32's bytes); on CUDA through a
        pinned buffer kept per batch shape, so that steady state allocates no host memory."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack(images))
        shape = (len(images), *images[0].shape)
        staging = self._staging.get(shape)
        if staging is None:
            if len(self._staging) >= STAGING_SHAPES:  # a camera that keeps changing size: no pinned pile-up
                self._staging.pop(next(iter(self._staging)))
            staging = self._staging[shape] = torch.empty(shape, dtype=torch.uint8).pin_memory()
        for slot, image in zip(staging, images, strict=True):
            slot.copy_(torch.from_numpy(image))
        return staging.to(self.device, non_blocking=True)

    def release_buffers(self) -> None:
        """Give back the pinned upload buffers (e.g. when the node is deactivated)."""
        self._staging.clear()

    def predict(self, image: np.ndarray, keep_logits: bool = False) -> Prediction:
        return self.predict_batch([image], keep_logits)[0]

    @staticmethod
    def _resize_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
        logits = logits.float()
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return F.interpolate(logits, size, mode="bilinear", align_corners=False)

    @staticmethod
    def _resize_score(score: Tensor, settings: HeadSettings, size: tuple[int, int]) -> Tensor:
        """Gradient scores are log norms: resized as norms, in the log domain; baselines linearly."""
        if tuple(score.shape[-2:]) == tuple(size):
            return score
        if settings.is_gradient_score:
            return log_bilinear_resize(score, size, align_corners=False)
        return F.interpolate(score[:, None], size, mode="bilinear", align_corners=False)[:, 0]
