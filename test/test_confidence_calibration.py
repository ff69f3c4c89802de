"""The confidence image's scale: fitted by maximum likelihood with the centre at the threshold, and what the
obstacle outputs make of it (no ROS)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gradunc_ros.evaluation.calibration import calibration_error, fit_confidence_scale
from gradunc_ros.geometry.intrinsics import Intrinsics
from gradunc_ros.geometry.obstacles import ObstacleSettings, frame_obstacles


def _pixels(scale: float, threshold: float, count: int = 200_000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Scores and OoD labels drawn so that P(OoD | s) is the logistic of (s - threshold) / scale exactly."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(threshold - 2.0, 2.5, count)
    is_ood = rng.random(count) < 1.0 / (1.0 + np.exp(-(scores - threshold) / scale))
    return scores, is_ood


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_the_fitted_scale_is_the_one_the_pixels_were_drawn_with(scale: float) -> None:
    scores, is_ood = _pixels(scale, threshold=5.0)
    fitted = fit_confidence_scale(scores, is_ood, 5.0)
    assert fitted == pytest.approx(scale, rel=0.05)
    p = lambda s: 1.0 / (1.0 + np.exp(-(scores - 5.0) / s))  # noqa: E731
    assert calibration_error(p(fitted), is_ood) < 0.01 < calibration_error(p(scale * 5), is_ood)


def test_non_finite_scores_are_left_out_and_hopeless_sets_refused() -> None:
    scores, is_ood = _pixels(1.0, threshold=0.0)
    scores[:100] = np.nan
    assert fit_confidence_scale(scores, is_ood, 0.0) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="OoD and in-distribution"):
        fit_confidence_scale(scores, np.zeros(scores.shape, bool), 0.0)
    with pytest.raises(ValueError, match="does not rise with OoD"):
        fit_confidence_scale(-scores, is_ood, 0.0)
    with pytest.raises(ValueError, match="as a step"):  # separated at the threshold: no finite optimum
        fit_confidence_scale(scores, scores > 0.0, 0.0)


def test_a_score_that_varies_in_float32_rounding_steps_only_gets_no_scale() -> None:
    """A near-constant score (one of the shipped table's pgn_uni settings: its fit gave 1.0e-8 at a threshold
    of -0.118, 1.4 float32 steps) says nothing a confidence image could show: refused, not fitted."""
    threshold = -0.11778
    step = float(np.spacing(np.float32(0.11778)))
    unit, is_ood = _pixels(1.0, threshold=0.0)  # P(OoD) the logistic of the unit score
    scores = threshold + np.round(unit * 1.5) * step  # the scale 1.5 float32 steps, at float32 resolution
    with pytest.raises(ValueError, match="float32 rounding steps"):
        fit_confidence_scale(scores, is_ood, threshold)
    wide = threshold + unit * 0.05  # the same shape well above rounding
    assert fit_confidence_scale(wide, is_ood, threshold) == pytest.approx(0.05, rel=0.05)


def test_the_confidence_image_takes_the_calibrated_scale_unless_one_is_set() -> None:
    score = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)  # threshold 2: the last pixel is OoD
    prediction = SimpleNamespace(labels=np.zeros(score.shape, np.uint8), score=score)
    mask = (score > 2.0).astype(np.uint8) * 255
    camera = Intrinsics(1.0, 1.0, 1.5, 0.0, 4, 1)

    def image(settings: ObstacleSettings, calibrated: float | None) -> np.ndarray:
        outputs = frame_obstacles(settings, camera, prediction, mask, 2.0, 9, None, None, calibrated)
        return outputs["confidence"][0][0]

    calibrated = ObstacleSettings(decimation=1, semantic=True)  # confidence_scale 0: the calibrated one
    for scale, got in ((0.5, image(calibrated, 0.5)), (1.0, image(calibrated, None))):
        in_distribution = 255 / (1 + np.exp((score[0] - 2.0) / scale))
        expected = np.where(mask[0] > 0, 255 - in_distribution, in_distribution)
        assert np.abs(got.astype(float) - expected).max() <= 1.0, (scale, got, expected)
    assert np.array_equal(image(ObstacleSettings(decimation=1, semantic=True, confidence_scale=0.5), 3.0),
                          image(calibrated, 0.5))  # fmt: skip  # a scale set wins over the calibrated one
