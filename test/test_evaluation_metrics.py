"""OoD metrics against scikit-learn and against the definitions computed by brute force."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from gradunc_ros.evaluation.metrics import component_metrics, frame_components, pixel_metrics


def _random_frames(seed: int, frames: int = 4, shape=(40, 50), ties: bool = False):
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for _ in range(frames):
        label = (rng.random(shape) < 0.08).astype(np.uint8)
        label[rng.random(shape) < 0.05] = 255
        score = rng.normal(size=shape).astype(np.float32) + 1.5 * (label == 1)
        if ties:
            score = np.round(score * 2) / 2  # few distinct values: heavy ties across classes
        scores.append(score)
        labels.append(label)
    return scores, labels


def _pooled(scores, labels):
    s = np.concatenate([x.ravel() for x in scores])
    lab = np.concatenate([x.ravel() for x in labels])
    keep = lab != 255
    return s[keep].astype(np.float64), lab[keep]


def _brute_force(s: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every distinct score as a threshold (mask s >= t), straight from the definitions."""
    thresholds = np.unique(s)[::-1]
    tp = np.array([np.sum((s >= t) & (y == 1)) for t in thresholds], dtype=float)
    fp = np.array([np.sum((s >= t) & (y == 0)) for t in thresholds], dtype=float)
    p, n = np.sum(y == 1), np.sum(y == 0)
    tpr, fpr = np.concatenate([[0], tp / p]), np.concatenate([[0], fp / n])
    precision = np.divide(tp, tp + fp)
    f1 = 2 * tp / (tp + fp + p)
    first = np.nonzero(tp / p >= 0.95)[0][0]
    return {
        "auroc": float(np.trapezoid(tpr, fpr)),
        "auprc": float(np.sum(np.diff(tpr) * precision)),
        "fpr95": float(fp[first] / n),
        "best_f1": float(f1.max()),
        "best_f1_threshold": float(thresholds[np.argmax(f1)]),
    }


@pytest.mark.parametrize("ties", (False, True), ids=("continuous", "tied"))
@pytest.mark.parametrize("seed", range(3))
def test_pixel_metrics_equal_sklearn_and_the_definitions(seed: int, ties: bool) -> None:
    scores, labels = _random_frames(seed, ties=ties)
    ours = pixel_metrics(scores, labels)
    s, y = _pooled(scores, labels)
    assert ours["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert ours["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    brute = _brute_force(s, y)
    for key in ("auprc", "auroc", "fpr95", "best_f1", "best_f1_threshold"):
        assert ours[key] == pytest.approx(brute[key], abs=1e-12), key
    assert ours["ood_pixels"] == int((y == 1).sum()) and ours["in_distribution_pixels"] == int((y == 0).sum())


def test_known_values() -> None:
    perfect = pixel_metrics([np.array([[0.1, 0.2, 0.9, 0.8]])], [np.array([[0, 0, 1, 1]])])
    assert perfect["auprc"] == 1.0 and perfect["auroc"] == 1.0 and perfect["fpr95"] == 0.0
    assert perfect["best_f1_threshold"] == pytest.approx(0.8)
    constant = pixel_metrics([np.zeros((2, 5))], [np.array([[0, 1, 0, 0, 255], [0, 0, 1, 0, 0]])])
    assert constant["auroc"] == 0.5 and constant["auprc"] == pytest.approx(2 / 9) and constant["fpr95"] == 1.0
    # Void pixels change nothing even with extreme scores.
    score = np.array([[0.1, 0.9, 100.0]])
    assert pixel_metrics([score], [np.array([[0, 1, 255]])])["auprc"] == 1.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no OoD pixels"):
        pixel_metrics([np.zeros((2, 2))], [np.zeros((2, 2), np.uint8)])
    with pytest.raises(ValueError, match="0, 1 or 255"):
        pixel_metrics([np.zeros((2, 2))], [np.full((2, 2), 7, np.uint8)])
    with pytest.raises(ValueError, match="equal 2-D shapes"):
        pixel_metrics([np.zeros((2, 2))], [np.zeros((2, 3), np.uint8)])
    with pytest.raises(ValueError, match="NaN"):
        pixel_metrics([np.full((1, 2), np.nan)], [np.array([[0, 1]], np.uint8)])


def _blocks():
    """One frame: two OoD objects; a prediction covering the first and half of the second plus a false blob."""
    label = np.zeros((40, 60), np.uint8)
    label[5:15, 5:15] = 1  # object A, 100 px
    label[20:30, 30:50] = 1  # object B, 200 px
    label[35:37, 0:2] = 1  # object C, 4 px: below min_gt, becomes void
    score = np.zeros((40, 60), np.float32)
    score[5:15, 5:17] = 1.0  # covers A (100) + 20 px beside it
    score[20:30, 30:40] = 1.0  # half of B
    score[0:3, 50:60] = 1.0  # a false positive, 30 px
    score[36:37, 0:2] = 1.0  # on the voided object C: ignored
    return score, label


def test_component_metrics_by_hand() -> None:
    score, label = _blocks()
    siou, ppv = frame_components(score, label, threshold=0.5, min_pred=10, min_gt=10)
    # A: |A & U| = 100, |U| = 120, |A| = 100 -> 100 / 120.  B: 100 / (100 + 200 - 100) = 0.5.
    assert siou == pytest.approx([100 / 120, 0.5])
    assert sorted(ppv) == pytest.approx(sorted([100 / 120, 1.0, 0.0]))
    result = component_metrics([score], [label], threshold=0.5, min_pred=10, min_gt=10)
    assert result["siou"] == pytest.approx((100 / 120 + 0.5) / 2)
    assert result["ppv"] == pytest.approx((100 / 120 + 1.0) / 3)
    # tau <= 0.5: both objects found, one false blob -> F1 = 4 / 5; tau in (0.5, 0.8]: one found.
    assert result["f1_per_tau"]["0.50"] == pytest.approx(4 / 5)
    assert result["f1_per_tau"]["0.55"] == pytest.approx(2 / 4)
    assert result["f1_per_tau"]["0.75"] == pytest.approx(2 / 4)
    assert result["gt_components"] == 2 and result["predicted_components"] == 3


def test_small_predictions_are_dropped_and_other_objects_do_not_count_against_siou() -> None:
    label = np.zeros((20, 40), np.uint8)
    label[5:10, 5:10] = 1
    label[5:10, 12:17] = 1
    score = np.zeros((20, 40), np.float32)
    score[5:10, 5:17] = 1.0  # one prediction bridging both objects
    score[15, 30] = 1.0  # a one-pixel speck
    siou, ppv = frame_components(score, label, 0.5, min_pred=5, min_gt=5)
    # For each object: |U| = 60, |k| = 25, |k & U| = 25, U on the other object = 25 -> 25 / 35.
    assert siou == pytest.approx([25 / 35, 25 / 35])
    assert ppv == pytest.approx([50 / 60])  # the speck is below min_pred


def test_default_threshold_is_the_best_f1_threshold() -> None:
    score, label = _blocks()
    best = pixel_metrics([score], [label])["best_f1_threshold"]
    threshold = component_metrics([score], [label], min_pred=10, min_gt=10)["threshold"]
    assert threshold < best and np.float32(threshold) == np.nextafter(np.float32(best), np.float32(-1))
    assert np.array_equal(score > threshold, score >= best)


def _benchmark_transcription(score, label, threshold, min_pred, min_gt):
    """The SegmentMeIfYouCan component procedure written out loop by loop (scipy labelling)."""
    from scipy.ndimage import label as connected

    structure = np.ones((3, 3), dtype=np.uint8)
    prediction = (score > threshold) & (label != 255)
    instances, n_gt = connected(label == 1, structure)
    predicted, n_pred = connected(prediction, structure)
    original = predicted.copy()
    for comp in range(n_pred + 1):
        if np.sum(original == comp) < min_pred:
            predicted[original == comp] = 0
    label = label.copy()
    for comp in range(n_gt + 1):
        if np.sum(instances == comp) < min_gt:
            label[instances == comp] = 255
    roi = label < 255
    gt, pred = instances[roi], predicted[roi]
    siou, ppv = [], []
    for i in np.unique(gt[gt > 0]):
        touching = np.unique(pred[gt == i])
        touching = touching[touching != 0]
        inter = np.sum(np.isin(pred[gt == i], touching))
        adjust = np.sum(~np.isin(gt, [0, i]) & np.isin(pred, touching))
        siou.append(inter / (np.sum(np.isin(pred, touching)) + np.sum(gt == i) - inter - adjust))
    for j in np.unique(pred[pred > 0]):
        under = gt[pred == j]
        ppv.append(np.sum(under > 0) / np.sum(pred == j))
    return siou, ppv


@pytest.mark.parametrize("seed", range(6))
def test_components_equal_the_benchmark_procedure(seed: int) -> None:
    rng = np.random.default_rng(seed)
    label = np.zeros((60, 80), np.uint8)
    for _ in range(8):  # objects of many sizes, single pixels included
        y, x, h, w = rng.integers(0, 55), rng.integers(0, 75), rng.integers(1, 12), rng.integers(1, 12)
        label[y : y + h, x : x + w] = 1
    label[rng.random(label.shape) < 0.02] = 1  # isolated single-pixel objects
    label[:, :3] = 255
    label[rng.random(label.shape) < 0.02] = 255
    score = rng.random(label.shape).astype(np.float32) + 0.6 * (label == 1)
    score = cv2.blur(score, (3, 3))
    for threshold in (0.5, 0.6, 0.7):
        for min_pred, min_gt in ((1, 1), (5, 3), (50, 10)):
            ours = frame_components(score, label, threshold, min_pred, min_gt)
            reference = _benchmark_transcription(score, label, threshold, min_pred, min_gt)
            # Component numbering differs between OpenCV and SciPy: compare the sorted values, exactly.
            assert sorted(ours[0]) == sorted(reference[0]) and sorted(ours[1]) == sorted(reference[1])


def test_hand_made_edge_cases_for_pixel_metrics() -> None:
    void_frame = np.full((4, 4), 255, np.uint8)
    no_ood = np.zeros((4, 4), np.uint8)
    single = np.zeros((4, 4), np.uint8)
    single[2, 2] = 1  # one OoD pixel in the whole set
    scores = [np.random.default_rng(0).random((4, 4)) for _ in range(3)]
    scores[2][2, 2] = 0.5
    result = pixel_metrics(scores, [void_frame, no_ood, single])
    s, y = _pooled(scores, [void_frame, no_ood, single])
    brute = _brute_force(s, y)
    for key in ("auprc", "auroc", "fpr95", "best_f1"):
        assert result[key] == pytest.approx(brute[key], abs=1e-12), key
    assert result["ood_pixels"] == 1 and result["in_distribution_pixels"] == 31
    with pytest.raises(ValueError, match="no OoD pixels"):
        pixel_metrics([scores[0], scores[1]], [void_frame, no_ood])


def test_single_pixel_components_and_all_void_frames() -> None:
    label = np.zeros((12, 12), np.uint8)
    label[3, 3] = 1
    label[8, 8] = 1
    score = np.zeros((12, 12), np.float32)
    score[3, 3] = 1.0  # hits one single-pixel object exactly
    siou, ppv = frame_components(score, label, 0.5, min_pred=1, min_gt=1)
    assert sorted(siou) == [0.0, 1.0] and ppv == [1.0]
    assert frame_components(score, np.full((12, 12), 255, np.uint8), 0.5, 1, 1) == ([], [])


def test_an_siou_and_a_ppv_of_exactly_0_6_fall_below_the_benchmarks_0_6_tau() -> None:
    """The benchmark's taus are np.linspace(0.25, 0.75, 11): the 8th is 0.6000000000000001, so a component
    with sIoU (or PPV) exactly 3/5 is a false negative (false positive) there, not a hit."""
    label = np.zeros((3, 8), np.uint8)
    label[1, 0:3] = 1  # an object of 3 pixels
    score = np.zeros((3, 8), np.float32)
    score[1, 0:5] = 1.0  # a prediction of 5 pixels covering it: sIoU = PPV = 3 / 5
    siou, ppv = frame_components(score, label, 0.5, min_pred=0, min_gt=0)
    assert siou == [0.6] and ppv == [0.6]
    result = component_metrics([score], [label], threshold=0.5, min_pred=0, min_gt=0)
    taus = np.linspace(0.25, 0.75, 11, endpoint=True)
    expected = {f"{t:.2f}": 1.0 if 0.6 >= t else 0.0 for t in taus}  # the benchmark's comparisons
    assert result["f1_per_tau"] == expected and expected["0.60"] == 0.0 and expected["0.55"] == 1.0
    assert result["f1_mean"] == pytest.approx(7 / 11)


@pytest.mark.parametrize("ties", (False, True), ids=("distinct", "ties"))
def test_counts_merged_over_groups_of_frames_equal_those_of_all_frames_at_once(ties: bool) -> None:
    """As a fleet run merges its bags: the OoD scores of every group first, then each group's in-distribution
    pixels, groups in any order (one with no OoD pixel at all); the same figures to the last bit, and the
    component lists joined are those of all the frames."""
    from gradunc_ros.evaluation.metrics import (
        PixelCountsBuilder,
        component_figures,
        component_lists,
        metrics_from_counts,
        ood_scores_of,
        strictly_above,
    )

    scores, labels = _random_frames(7, frames=7, ties=ties)
    labels[2] = np.where(labels[2] == 1, 0, labels[2])  # a frame without OoD pixels
    groups = [[0, 1, 2], [3], [4, 5, 6]]
    builder = PixelCountsBuilder(
        [s for g in groups for s in ood_scores_of([scores[i] for i in g], [labels[i] for i in g])]
    )
    for group in reversed(groups):
        builder.add([scores[i] for i in group], [labels[i] for i in group])
    merged = metrics_from_counts(builder.result())
    assert merged == pixel_metrics(scores, labels)
    threshold = strictly_above(merged["best_f1_threshold"])
    siou, ppv = [], []
    for group in groups:
        group_siou, group_ppv = component_lists([scores[i] for i in group], [labels[i] for i in group], threshold, 5, 5)
        siou, ppv = siou + group_siou, ppv + group_ppv
    assert component_figures(siou, ppv, threshold) == component_metrics(scores, labels, min_pred=5, min_gt=5)
    assert component_figures(siou, ppv, threshold)["gt_components"] > 0


def test_the_builder_refuses_a_set_without_ood_or_in_distribution_pixels() -> None:
    from gradunc_ros.evaluation.metrics import PixelCountsBuilder

    with pytest.raises(ValueError, match="no OoD pixels"):
        PixelCountsBuilder([np.empty(0, np.float32)])
    builder = PixelCountsBuilder([np.ones(3, np.float32)])
    builder.add([np.ones((2, 2), np.float32)], [np.ones((2, 2), np.uint8)])
    with pytest.raises(ValueError, match="no in-distribution pixels"):
        builder.result()
