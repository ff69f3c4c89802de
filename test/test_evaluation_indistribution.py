"""In-distribution metrics on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from gradunc_ros.evaluation.indistribution import (
    CalibrationBins,
    brier_error,
    misclassification_auroc,
    sparsification,
)


def test_ece_of_a_known_miscalibration() -> None:
    bins = CalibrationBins()
    target = np.arange(20).reshape(4, 5) % 3
    prediction = target.copy()
    prediction.flat[:2] = (prediction.flat[:2] + 1) % 3  # 18 of 20 right: accuracy 0.9
    bins.add(np.full((4, 5), 0.95), prediction, target)
    assert bins.ece() == pytest.approx(0.05)
    ignored = np.full((4, 5), 255)
    bins.add(np.zeros((4, 5)), prediction, ignored)  # void pixels change nothing
    assert bins.ece() == pytest.approx(0.05)


def test_ece_sums_over_bins() -> None:
    bins = CalibrationBins(10)
    # Bin 0.3: conf 0.35, all right (gap 0.65); bin 0.9: conf 0.95, all wrong (gap 0.95); 2 pixels each.
    bins.add(np.array([0.35, 0.35, 0.95, 0.95]), np.array([1, 1, 1, 1]), np.array([1, 1, 0, 0]))
    assert bins.ece() == pytest.approx((2 * 0.65 + 2 * 0.95) / 4)


def test_misclassification_auroc() -> None:
    target = np.array([[0, 1, 2, 255]])
    prediction = np.array([[0, 2, 2, 1]])
    perfect = misclassification_auroc([np.array([[0.1, 0.9, 0.2, -5.0]])], [prediction], [target])
    inverted = misclassification_auroc([np.array([[0.9, 0.1, 0.8, 5.0]])], [prediction], [target])
    assert perfect == 1.0 and inverted == 0.0
    all_right = misclassification_auroc([np.zeros((1, 4))], [target], [target])
    assert np.isnan(all_right)


def test_brier_error() -> None:
    probs = np.array([[[0.7, 0.2]], [[0.3, 0.8]]])  # 2 classes, 1 x 2 pixels
    error = brier_error(probs, np.array([[0, 255]]))
    assert error[0, 0] == pytest.approx(0.3**2 + 0.3**2) and np.isnan(error[0, 1])


def test_sparsification_oracle_and_random() -> None:
    rng = np.random.default_rng(0)
    error = rng.random(10_000)
    assert sparsification(error, error)["ause"] == pytest.approx(0.0, abs=1e-12)
    random = sparsification(rng.random(10_000), error)["ause"]
    inverted = sparsification(-error, error)["ause"]
    assert 0 < random < inverted
    curve = sparsification(error, error)
    assert curve["curve"][0] == pytest.approx(error.mean()) and len(curve["fractions"]) == 100
