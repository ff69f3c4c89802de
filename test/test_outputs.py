"""render_outputs: the arrays and encodings the node and the bag tools publish for one frame."""

from __future__ import annotations

import numpy as np

from gradunc_ros.outputs import OOD_COLOUR, render_outputs
from gradunc_ros.pipeline import Prediction
from gradunc_ros.postprocess import MaskSettings


def _prediction() -> Prediction:
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    score = np.zeros((4, 6), np.float64)
    score[1:3, 1:3] = 5.0  # a 2x2 OoD blob on class 0
    score[0, 5] = 5.0  # a lone OoD pixel on class 1
    return Prediction(labels=labels, score=score)


def test_labels_and_score_without_a_mask_or_overlay() -> None:
    outputs = render_outputs(np.zeros((4, 6, 3), np.uint8), _prediction(), 2, None)
    assert set(outputs) == {"labels", "uncertainty"}
    labels, encoding = outputs["labels"]
    assert encoding == "mono8" and labels.dtype == np.uint8 and labels[0, 4] == 1
    score, encoding = outputs["uncertainty"]
    assert encoding == "32FC1" and score.dtype == np.float32 and score[1, 1] == 5.0


def test_the_mask_applies_threshold_region_and_minimum_area() -> None:
    prediction = _prediction()
    image = np.zeros((4, 6, 3), np.uint8)
    mask, encoding = render_outputs(image, prediction, 2, MaskSettings(threshold=1.0))["ood_mask"]
    assert encoding == "mono8" and set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 5
    only_class_0 = MaskSettings(threshold=1.0, roi_classes=(0,))
    mask = render_outputs(np.zeros((4, 6, 3), np.uint8), prediction, 2, only_class_0)["ood_mask"][0]
    assert (mask == 255).sum() == 4 and mask[0, 5] == 0
    no_lone_pixels = MaskSettings(threshold=1.0, min_area=2)
    mask = render_outputs(np.zeros((4, 6, 3), np.uint8), prediction, 2, no_lone_pixels)["ood_mask"][0]
    assert (mask == 255).sum() == 4


def test_the_overlay_paints_ood_pixels_and_many_classes_go_to_mono16() -> None:
    prediction = _prediction()
    colours = [(0, 0, 255), (0, 255, 0)]
    image = np.full((4, 6, 3), 100, np.uint8)
    outputs = render_outputs(image, prediction, 2, MaskSettings(threshold=1.0), colours, overlay=True)
    overlay, encoding = outputs["overlay"]
    assert encoding == "rgb8" and overlay.shape == (4, 6, 3)
    assert tuple(overlay[1, 1]) == OOD_COLOUR and tuple(overlay[3, 0]) != OOD_COLOUR
    prediction.labels[0, 0] = 300
    labels, encoding = render_outputs(np.zeros((4, 6, 3), np.uint8), prediction, 301, None)["labels"]
    assert encoding == "mono16" and labels.dtype == np.uint16 and labels[0, 0] == 300
