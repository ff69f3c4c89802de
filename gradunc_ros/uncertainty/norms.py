"""Entry-wise p-"norms" in the log domain (docs/method.md, section 1, Numerics).

For small p the norms are astronomically large (about 256^10 for D = 256
and p = 0.1), so everything here works with ``log ||x||_p``.  Zero entries
contribute nothing: ``log 0 = -inf`` inside a logsumexp, never a clamp,
because a clamp adds ``eps^p``, which is visible at small p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The exponents the head, the node and the tools accept (HeadSettings): wide enough for every p of the
# paper (0.1 to 2), and every score stays finite in the log domain across it (test_pgn_autograd).
P_MIN = 0.01
P_MAX = 10.0


def check_p(p: float) -> float:
    """Return p as a float, or raise ValueError when it is not a usable exponent."""
    p = float(p)
    if not math.isfinite(p) or p <= 0.0:
        raise ValueError(f"p must be a finite number > 0, got {p}")
    return p


def work_dtype(x: Tensor) -> torch.dtype:
    """The dtype scores are computed in: float64 stays float64, everything else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def logsumexp(x: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` along ``dim`` in the max-shift form, written out.  ``torch.logsumexp`` computes the
    same, but exports to ONNX as ReduceLogSumExp, which overflows to inf for large finite inputs in OpenVINO
    (openvinotoolkit/openvino issue 35648) and TensorRT (NVIDIA/TensorRT issue 4772); written out, every
    runtime gets the shifted form.  A row that is all -inf is shifted by 0 and stays -inf (a zero norm)."""
    top = x.amax(dim=dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    out = (x - top).exp().sum(dim=dim, keepdim=True).log() + top
    return out if keepdim else out.squeeze(dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """``torch.log_softmax``; written out (shift by the maximum, logsumexp) while exporting to ONNX, where ONNX
    Runtime's (Log)Softmax over the channels of an N x C x H x W map transposes it: 12.7 of 78 ms in ERFNet's
    exported graph at 320x240 (its profiler, 2 threads)."""
    if not torch.onnx.is_in_onnx_export():
        return torch.log_softmax(x, dim=dim)
    return x - logsumexp(x, dim=dim, keepdim=True)


def softmax(x: Tensor, dim: int) -> Tensor:
    """``torch.softmax``; written out while exporting to ONNX (see ``log_softmax``)."""
    if not torch.onnx.is_in_onnx_export():
        return torch.softmax(x, dim=dim)
    shifted = (x - x.amax(dim=dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim=dim, keepdim=True)


def log_abs_pow(x: Tensor, p: float) -> Tensor:
    """``p * log|x|`` in the working dtype; exact zeros give -inf."""
    return p * torch.log(x.to(work_dtype(x)).abs())


def log_pnorm(x: Tensor, p: float, dim: int | Sequence[int]) -> Tensor:
    """``log ||x||_p`` along ``dim`` (also for 0 < p < 1), never overflowing.

    Returns -inf where every entry along ``dim`` is zero (the norm is 0).
    """
    p = check_p(p)
    return logsumexp(log_abs_pow(x, p), dim=dim) / p


def conv_input_pads(
    kernel_size: tuple[int, int],
    padding: tuple[int, int] | str,
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding a Conv2d applies to its input.

    'same' splits the total as PyTorch does (the extra pixel goes right/bottom).
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(reversed(kernel_size), reversed(dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)  # type: ignore[return-value]
    ph, pw = padding
    return (pw, pw, ph, ph)


def patch_log_pnorm(
    features: Tensor,
    p: float,
    kernel_size: tuple[int, int],
    *,
    padding: tuple[int, int] | str = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    stride: tuple[int, int] = (1, 1),
    padding_mode: str = "zeros",
) -> Tensor:
    """``log ||patch||_p`` of the k x k input patch behind every conv output pixel.

    ``features`` is the conv's input, N x D x H x W; the result is
    N x H_out x W_out with the conv's own output geometry.  The channel sum
    is taken first (one map instead of D), then the k x k window is summed
    in the log domain.
    """
    p = check_p(p)
    if features.dim() != 4:
        raise ValueError(f"features must be N x D x H x W, got shape {tuple(features.shape)}")
    pads = conv_input_pads(kernel_size, padding, dilation)
    if padding_mode != "zeros" and any(pads):
        # Reflected/replicated/circular borders are real values inside the patch.
        features = F.pad(features, pads, mode=padding_mode)
        pads = (0, 0, 0, 0)
    per_pixel = logsumexp(log_abs_pow(features, p), dim=1, keepdim=True)
    if any(pads):
        # Zero padding contributes |0|^p = 0, i.e. log 0 = -inf.
        per_pixel = F.pad(per_pixel, pads, value=-math.inf)
    n, _, h, w = per_pixel.shape
    (kh, kw), (dh, dw), (sh, sw) = kernel_size, dilation, stride
    h_out = (h - dh * (kh - 1) - 1) // sh + 1
    w_out = (w - dw * (kw - 1) - 1) // sw + 1
    if h_out <= 0 or w_out <= 0:
        raise ValueError("the kernel does not fit in the (padded) input")
    patches = F.unfold(per_pixel, kernel_size, dilation=dilation, stride=stride)
    return (logsumexp(patches, dim=1) / p).view(n, h_out, w_out)
