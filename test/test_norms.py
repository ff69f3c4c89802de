"""Log-domain p-norms: equal to the direct formula, exact zeros, no overflow at small p."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import LOG_TOLERANCE, P_VALUES

from gradunc_ros.uncertainty.norms import check_p, conv_input_pads, log_pnorm, patch_log_pnorm


@pytest.mark.parametrize("p", (0.05, *P_VALUES, 4.0))
def test_log_pnorm_equals_direct_formula(p: float, generator: torch.Generator) -> None:
    x = torch.randn(3, 17, 5, dtype=torch.float64, generator=generator)
    direct = x.abs().pow(p).sum(dim=1).pow(1 / p).log()
    assert torch.allclose(log_pnorm(x, p, dim=1), direct, rtol=0, atol=1e-12)


def test_float32_input_is_computed_in_float32_and_stays_close(generator: torch.Generator) -> None:
    x = torch.randn(4, 64, dtype=torch.float64, generator=generator)
    result = log_pnorm(x.float(), 0.3, dim=1)
    assert result.dtype == torch.float32
    assert torch.allclose(result.double(), log_pnorm(x, 0.3, dim=1), atol=LOG_TOLERANCE)


def test_zero_entries_contribute_nothing() -> None:
    # A clamp at eps would add 1023 * eps^p, which is large at small p (1e-12^0.05 = 0.25).
    x = torch.zeros(1024, dtype=torch.float64)
    x[7] = 3.0
    assert log_pnorm(x, 0.05, dim=0).item() == pytest.approx(math.log(3.0), abs=1e-12)


def test_all_zero_vector_has_log_norm_minus_infinity() -> None:
    assert log_pnorm(torch.zeros(2, 8), 0.3, dim=1).eq(-math.inf).all()


def test_no_overflow_at_p_005_with_2048_features(generator: torch.Generator) -> None:
    x = 10 * torch.randn(2, 2048, 3, 3, dtype=torch.float64, generator=generator)
    direct_log = x.abs().pow(0.05).sum(dim=1).log() / 0.05  # float64 holds the sum; the norm is ~1e70
    assert (direct_log > math.log(torch.finfo(torch.float32).max)).all()  # far beyond float32
    ours = log_pnorm(x.float(), 0.05, dim=1)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours.double(), direct_log, rtol=0, atol=LOG_TOLERANCE * direct_log.abs().max().item())


@pytest.mark.parametrize("bad", (0.0, -1.0, math.nan, math.inf))
def test_unusable_p_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="p must be"):
        check_p(bad)


def _explicit_patch_log_norm(x: torch.Tensor, p: float, conv: torch.nn.Conv2d) -> torch.Tensor:
    """Unfold |x|^p with the conv's own padding module and sum each patch."""
    padded = F.pad(
        x,
        conv_input_pads(conv.kernel_size, conv.padding, conv.dilation),
        mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode,
    )
    patches = F.unfold(padded.abs().pow(p), conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    return patches.sum(dim=1).log() / p


@pytest.mark.parametrize(
    "conv",
    (
        torch.nn.Conv2d(3, 1, 3, padding=1),
        torch.nn.Conv2d(3, 1, (5, 3), padding="same", dilation=(2, 1)),
        torch.nn.Conv2d(3, 1, 3, padding=2, dilation=2, stride=2),
        torch.nn.Conv2d(3, 1, 3, padding=1, padding_mode="replicate"),
        torch.nn.Conv2d(3, 1, 3, padding=1, padding_mode="circular"),
        torch.nn.Conv2d(3, 1, 2, padding="valid"),
    ),
    ids=("pad1", "same-dilated", "strided", "replicate", "circular", "valid"),
)
def test_patch_log_pnorm_matches_explicit_unfold(conv: torch.nn.Conv2d, generator: torch.Generator) -> None:
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=generator)
    ours = patch_log_pnorm(
        x,
        0.3,
        conv.kernel_size,
        padding=conv.padding,
        dilation=conv.dilation,
        stride=conv.stride,
        padding_mode=conv.padding_mode,
    )
    expected_shape = conv.double()(x).shape
    assert ours.shape == (expected_shape[0], *expected_shape[2:])
    assert torch.allclose(ours.flatten(1), _explicit_patch_log_norm(x, 0.3, conv), atol=1e-12)
