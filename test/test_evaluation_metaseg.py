"""MetaSeg pieces on hand-made frames, and the regressions against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from gradunc_ros.evaluation.metaseg import adjusted_iou, fit_logistic, inner_mask, meta_scores, segment_features
from gradunc_ros.evaluation.metaseg import segment_ids as find_segments


def test_segments_inner_pixels_and_features() -> None:
    prediction = np.zeros((6, 8), np.uint8)
    prediction[1:5, 1:5] = 1  # a 4x4 square of class 1 inside class 0
    ids, classes = find_segments(prediction)
    assert sorted(classes.tolist()) == [0, 1]
    square = ids[2, 2]
    inner = inner_mask(ids)
    assert inner[ids == square].sum() == 4  # the 2x2 centre
    heat = np.where(prediction == 1, 2.0, 0.0)
    features = segment_features(ids, {"heat": heat}, np.ones_like(inner))
    row = features[square]
    assert row[:5].tolist() == [16, 4, 12, 16 / 12, 4 / 12]
    assert row[5:7].tolist() == [2.0, 0.0]  # mean and variance over the segment


def test_adjusted_iou_by_hand() -> None:
    target = np.zeros((4, 10), np.uint8)
    target[:, 0:6] = 1  # one ground-truth object of class 1, 24 px
    prediction = np.zeros((4, 10), np.uint8)
    prediction[:, 0:3] = 1  # segment A: left half of the object
    prediction[:, 4:5] = 1  # segment B: a sliver of it, separated by column 3
    ids, classes = find_segments(prediction)
    iou = adjusted_iou(ids, classes, target)
    a, b = ids[0, 0], ids[0, 4]
    # A: |A & K| = 12; K's pixels in B (4) do not count against A; column 3 and 5 (8 px) do.
    assert iou[a] == pytest.approx(12 / (12 + 24 - 4 - 12))
    assert iou[b] == pytest.approx(4 / (4 + 24 - 12 - 4))
    void = target.copy()
    void[:, 8:] = 255
    background = ids[0, 9]
    # The background segment at the right (class 0) covers columns 5-9; ground truth class 0 is columns 6-9.
    assert adjusted_iou(ids, classes, target)[background] == pytest.approx(16 / 20)
    # Void columns 8-9 count nowhere: 8 of the segment's 12 valid pixels are right.
    assert adjusted_iou(ids, classes, void)[background] == pytest.approx(8 / 12)


def test_logistic_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(size=300) > 0).astype(float)
    ours = fit_logistic(x, y, l2=1.0)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(x, y)
    assert np.allclose(ours[1:], reference.coef_[0], atol=1e-4)
    assert ours[0] == pytest.approx(reference.intercept_[0], abs=1e-4)


def test_meta_scores_on_informative_and_noise_features() -> None:
    rng = np.random.default_rng(1)
    iou = np.clip(rng.normal(0.4, 0.3, 500), 0, 1)
    informative = np.stack([iou + rng.normal(0, 0.05, 500), rng.normal(size=500)], axis=1)
    good = meta_scores(informative, iou)
    noise = meta_scores(rng.normal(size=(500, 2)), iou)
    assert good["meta_auroc"] > 0.95 and good["meta_r2"] > 0.8
    assert abs(noise["meta_auroc"] - 0.5) < 0.15 and noise["meta_r2"] < 0.1
