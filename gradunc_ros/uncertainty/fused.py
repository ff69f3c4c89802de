"""The fused last layer: logits and the gradient score from one read of the features (Triton on CUDA).

The plain PyTorch path (the model's own last layer, then ``pgn_for_layer``)
stays the reference; this one computes the same last-layer scores (exact and
reference mode, of the weights, the bias or both) for a 1x1
``Conv2d`` or a ``ConvTranspose2d`` with kernel == stride (ERFNet), in one
kernel (``triton_kernels.py``).  :class:`FusedLastLayer` takes over the last
layer's ``forward``, so the rest of the network (e.g. DeepLab's upsampling)
runs unchanged on the logits it returns, and the model's state dict keeps its
keys.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from .pgn import EXACT_ONEHOT, PgnOptions, effective_gradient_of

FUSED_CHOICES = ("auto", "off", "triton")


def fusable_layer(layer: nn.Module) -> bool:
    """A last layer the kernel computes: 1x1 conv (stride 1), or transposed conv with kernel == stride."""
    if isinstance(layer, nn.Conv2d):
        return layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.groups == 1
    if isinstance(layer, nn.ConvTranspose2d):
        square = layer.kernel_size[0] == layer.kernel_size[1] and layer.stride == layer.kernel_size
        plain = layer.padding == (0, 0) and layer.output_padding == (0, 0) and layer.dilation == (1, 1)
        return square and plain and layer.groups == 1
    return False


# Tests without a GPU set this, with TRITON_INTERPRET=1 before triton is first imported: the kernel
# then runs on CPU tensors in Triton's interpreter.  Never on for real use (the interpreter is slow).
interpreter_on_cpu = False


def triton_runs_on(device: torch.device) -> bool:
    """Triton is importable and can run there: CUDA (or the CPU in its interpreter, for tests)."""
    if device.type != "cuda" and not (interpreter_on_cpu and os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def padded_classes(classes: int) -> int:
    """Rows per tap: a power of two, at least 16 (the smallest tl.dot)."""
    return max(16, 1 << (classes - 1).bit_length())


def padded_taps(stride: int) -> int:
    """Kernel taps (stride^2) rounded up to a power of two, as Triton's block shapes must be."""
    return 1 << (stride * stride - 1).bit_length()


def weight_matrix(layer: nn.Module, dtype: torch.dtype) -> tuple[Tensor, Tensor | None, int, int]:
    """(weights as a (G_PAD * C_PAD) x K matrix, bias (float32) or None, stride, C) for the kernel."""
    if isinstance(layer, nn.ConvTranspose2d):
        stride = layer.stride[0]
        taps = layer.weight.permute(2, 3, 1, 0)  # K x C x s x s -> s x s x C x K: tap (a, b) is row block a*s + b
        classes = layer.weight.shape[1]
    else:
        stride = 1
        taps = layer.weight[None, None, :, :, 0, 0]  # C x K x 1 x 1 -> 1 x 1 x C x K
        classes = layer.weight.shape[0]
    rows = taps.reshape(stride * stride, classes, -1)
    padded = rows.new_zeros(padded_taps(stride), padded_classes(classes), rows.shape[-1])
    padded[: stride * stride, :classes] = rows
    bias = None if layer.bias is None else layer.bias.detach().float().contiguous()
    return padded.reshape(-1, rows.shape[-1]).to(dtype).contiguous(), bias, stride, classes


GRADIENT_OF_CODES = {"weights": 0, "bias": 1, "layer": 2}  # the kernel's GRADIENT_OF


def fused_scores(
    layer: nn.Module, features: Tensor, p: float, options: PgnOptions = EXACT_ONEHOT, packed: tuple | None = None
) -> tuple[Tensor, Tensor]:
    """(logits, log gradient norm) of ``layer`` on ``features`` (N x K x H x W), both float32, for the
    options' label, mode and gradient_of (the kernel computes the logits itself and returns the log: the
    options' from_logits, log and factors do not apply and must keep their defaults).  ``packed``:
    ``weight_matrix(layer, features.dtype)`` when the caller keeps it.  ``gradient_of`` "layer" without a
    bias is the weights' gradient (as ``pgn_for_layer``)."""
    from . import triton_kernels

    if options.from_logits or not options.log or options.factors:
        raise ValueError("the fused kernel returns the log score from the features: no from_logits, log, factors")
    label, mode = options.label, options.mode
    gradient_of = effective_gradient_of(layer, options.gradient_of)
    features = features.contiguous()
    weight, bias, stride, classes = packed or weight_matrix(layer, features.dtype)
    batch, _, height, width = features.shape
    out = (height * stride, width * stride)
    logits = torch.empty(batch, classes, *out, device=features.device, dtype=torch.float32)
    score = torch.empty(batch, *out, device=features.device, dtype=torch.float32)
    triton_kernels.launch(
        features,
        weight,
        bias,
        logits,
        score,
        p,
        classes,
        padded_classes(classes),
        stride,
        padded_taps(stride),
        label == "uniform",
        GRADIENT_OF_CODES[gradient_of],
        mode == "reference",
    )
    return logits, score


def _identity(tensor: Tensor | None) -> tuple:
    """Changes when the tensor is replaced or written in place (load_state_dict, .to(), copy_)."""
    return (None,) if tensor is None else (tensor.device, tensor.data_ptr(), tensor._version)


class FusedLastLayer:
    """Takes over the last layer's ``forward`` (as an instance attribute, so that the model's structure,
    its state dict and the layer's hooks stay as they are).  While ``request`` holds (p,
    PgnOptions) the layer runs the fused kernel and keeps the score in ``score``; otherwise it
    runs as it always did."""

    def __init__(self, layer: nn.Module) -> None:
        if not fusable_layer(layer):
            raise ValueError(f"the fused head cannot compute a {type(layer).__name__} of this shape")
        self.layer = layer
        self.request: tuple[float, PgnOptions] | None = None
        self.score: Tensor | None = None
        self._packed: dict[tuple, tuple] = {}  # weight_matrix for one dtype and one state of the weights
        self._plain_forward = layer.forward
        layer.forward = self.forward
        layer._gradunc_fused = self

    @classmethod
    def attach(cls, layer: nn.Module) -> FusedLastLayer:
        """The layer's fused stand-in: the one another head already attached, or a new one."""
        existing = getattr(layer, "_gradunc_fused", None)
        return existing if existing is not None else cls(layer)

    def forward(self, features: Tensor) -> Tensor:
        if self.request is None:
            return self._plain_forward(features)
        key = (features.dtype, *(_identity(t) for t in (self.layer.weight, self.layer.bias)))
        if key not in self._packed:  # the layout the kernel reads, made once, not on every frame
            self._packed = {key: weight_matrix(self.layer, features.dtype)}
        logits, self.score = fused_scores(self.layer, features, *self.request, packed=self._packed[key])
        return logits  # float32 also for half models: what the labels and baselines are taken from
