"""Softmax baselines: known values, higher = more anomalous, no nan on extreme logits."""

from __future__ import annotations

import math

import torch

from gradunc_ros.uncertainty import entropy, max_logit, msp


def test_baselines_on_known_logits() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 2)
    p_top = math.exp(2) / (math.exp(2) + 2)
    assert torch.allclose(msp(logits), torch.tensor([[[1 - p_top, 2 / 3]]]))
    expected_entropy = -(p_top * math.log(p_top) + 2 * (1 - p_top) / 2 * math.log((1 - p_top) / 2))
    assert torch.allclose(entropy(logits), torch.tensor([[[expected_entropy, math.log(3)]]]))
    assert torch.allclose(max_logit(logits), torch.tensor([[[-2.0, 0.0]]]))


def test_more_confident_pixels_score_lower(generator: torch.Generator) -> None:
    logits = torch.randn(1, 5, 4, 4, generator=generator)
    sharper = 4 * logits
    for score in (msp, entropy):
        assert (score(sharper) <= score(logits) + 1e-6).all()


def test_extreme_and_half_precision_logits_stay_finite() -> None:
    logits = torch.tensor([1000.0, -1000.0, 0.0]).reshape(1, 3, 1, 1)
    for score in (msp, entropy, max_logit):
        assert torch.isfinite(score(logits)).all()
        out = score(logits.to(torch.bfloat16))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert entropy(logits).item() == 0.0
