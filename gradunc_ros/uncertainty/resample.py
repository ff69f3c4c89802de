"""Bilinear resizing as ``F.interpolate(mode="bilinear")`` does it, for scores and features.

Two needs (docs/method.md, section 1, Upsampling):
- a log-domain score must be resized as the norm itself, not its log;
  ``log_bilinear_resize`` does the interpolation with logaddexp, so the
  result is ``log(interpolate(exp(log_score)))`` without ever leaving the
  log domain (no overflow, no underflow of far-below-maximum pixels);
- the exact full-resolution score needs the upsampled features' norm,
  computed a band of rows at a time so that D x H x W never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .norms import log_pnorm, work_dtype


def bilinear_taps(
    in_size: int, out_size: int, align_corners: bool, device: torch.device | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weight of the second tap for each output index.

    Output ``o`` = ``(1 - lam[o]) * x[i0[o]] + lam[o] * x[i1[o]]``, with the
    source coordinate rule of PyTorch's bilinear interpolation (given an
    output size, no scale factor).
    """
    out = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        source = out * scale
    else:
        source = ((out + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    i0 = source.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    lam = (source - i0.double()).clamp(0.0, 1.0)
    return i0.to(device), i1.to(device), lam.to(device)


def _log_resize_dim(log_x: Tensor, dim: int, out_size: int, align_corners: bool) -> Tensor:
    i0, i1, lam = bilinear_taps(log_x.shape[dim], out_size, align_corners, log_x.device)
    shape = [1] * log_x.dim()
    shape[dim] = out_size
    with torch.no_grad():
        log_w0 = torch.log1p(-lam).to(log_x.dtype).view(shape)
        log_w1 = torch.log(lam).to(log_x.dtype).view(shape)
    return torch.logaddexp(log_x.index_select(dim, i0) + log_w0, log_x.index_select(dim, i1) + log_w1)


def log_bilinear_resize(log_x: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
    """``log(bilinear_resize(exp(log_x)))`` for a N x h x w log-domain map, computed in the log domain."""
    if log_x.dim() != 3:
        raise ValueError(f"expected N x h x w, got shape {tuple(log_x.shape)}")
    if tuple(log_x.shape[1:]) == tuple(size):
        return log_x
    rows = _log_resize_dim(log_x, 1, size[0], align_corners)
    return _log_resize_dim(rows, 2, size[1], align_corners)


def _lerp_dim(x: Tensor, dim: int, taps: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    i0, i1, lam = taps
    shape = [1] * x.dim()
    shape[dim] = lam.numel()
    lam = lam.to(x.dtype).view(shape)
    return x.index_select(dim, i0) * (1 - lam) + x.index_select(dim, i1) * lam


def upsampled_row_bands(
    features: Tensor, size: tuple[int, int], align_corners: bool, max_band_bytes: int = 64 << 20
) -> Iterator[tuple[slice, Tensor]]:
    """Yield (output rows, bilinearly resized N x D x rows x W features) band by band."""
    n, d, h, w = features.shape
    out_h, out_w = size
    row_taps = bilinear_taps(h, out_h, align_corners, features.device)
    col_taps = bilinear_taps(w, out_w, align_corners, features.device)
    bytes_per_row = n * d * out_w * 4
    band = max(1, min(out_h, max_band_bytes // max(1, bytes_per_row)))
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        taps = tuple(t[start:stop] for t in row_taps)
        rows = _lerp_dim(features, 2, taps)  # type: ignore[arg-type]
        yield slice(start, stop), _lerp_dim(rows, 3, col_taps)


def log_pnorm_of_upsampled(
    features: Tensor, size: tuple[int, int], p: float, align_corners: bool, max_band_bytes: int = 64 << 20
) -> Tensor:
    """``log ||upsample(features)||_p`` over channels at the output size, N x H x W."""
    features = features.to(work_dtype(features))
    out = torch.empty((features.shape[0], *size), dtype=features.dtype, device=features.device)
    for rows, band in upsampled_row_bands(features, size, align_corners, max_band_bytes):
        out[:, rows] = log_pnorm(band, p, dim=1)
    return out


__all__ = ["bilinear_taps", "log_bilinear_resize", "log_pnorm_of_upsampled", "upsampled_row_bands"]
