"""Resizing in the log domain and the band-wise upsampled feature norm, against F.interpolate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradunc_ros.uncertainty import log_bilinear_resize, log_pnorm
from gradunc_ros.uncertainty.resample import log_pnorm_of_upsampled

SIZES = ((4, 5, 16, 20), (4, 5, 13, 7), (9, 8, 4, 3), (1, 6, 5, 12))


@pytest.mark.parametrize("align_corners", (True, False))
@pytest.mark.parametrize("sizes", SIZES, ids=("up4x", "up-odd", "down", "one-row"))
def test_log_resize_is_the_log_of_resizing_the_norm(sizes, align_corners: bool, generator: torch.Generator) -> None:
    h, w, out_h, out_w = sizes
    log_x = 3 * torch.randn(2, h, w, dtype=torch.float64, generator=generator)
    expected = F.interpolate(log_x.exp()[:, None], (out_h, out_w), mode="bilinear", align_corners=align_corners).log()
    ours = log_bilinear_resize(log_x, (out_h, out_w), align_corners)
    assert torch.allclose(ours, expected[:, 0], atol=1e-12)


def test_log_resize_stays_finite_where_the_norm_overflows(generator: torch.Generator) -> None:
    # log values around 1000 (norms of 1e434) and a spread of 300: exp(x - max) alone would underflow.
    log_x = 1000 + 300 * torch.rand(1, 6, 6, generator=generator)
    ours = log_bilinear_resize(log_x, (24, 24), True)
    assert torch.isfinite(ours).all()
    # Corners coincide with input pixels when align_corners=True.
    assert torch.allclose(ours[0, ::23, ::23], log_x[0, ::5, ::5], atol=1e-4)
    # Interpolation of the norm is at least the larger neighbour's share: never below the smaller log.
    assert (ours >= log_x.min() - 1e-4).all() and (ours <= log_x.max() + 1e-4).all()


def test_log_resize_keeps_exact_zeros() -> None:
    log_x = torch.full((1, 3, 3), -math.inf)
    log_x[0, 1, 1] = 0.0
    ours = log_bilinear_resize(log_x, (5, 5), True)
    assert ours[0, 2, 2] == 0.0 and torch.isneginf(ours[0, 0, 0])
    assert not torch.isnan(ours).any()


@pytest.mark.parametrize("align_corners", (True, False))
@pytest.mark.parametrize("p", (0.1, 1.0, 2.0))
def test_upsampled_feature_norm_matches_interpolate_then_norm(
    p: float, align_corners: bool, generator: torch.Generator
) -> None:
    features = torch.randn(2, 16, 5, 7, dtype=torch.float64, generator=generator)
    size = (19, 26)
    expected = log_pnorm(F.interpolate(features, size, mode="bilinear", align_corners=align_corners), p, dim=1)
    # A tiny band forces many bands, so the band seams are tested too.
    ours = log_pnorm_of_upsampled(features, size, p, align_corners, max_band_bytes=2 * 16 * 26 * 4 * 3)
    assert torch.allclose(ours, expected, atol=1e-10)
