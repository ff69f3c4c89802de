"""The OoD mask: threshold, region of interest and small-component removal on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from gradunc_ros.postprocess import MaskSettings, ood_mask


@pytest.fixture
def scene():
    labels = np.zeros((20, 30), np.uint8)
    labels[10:] = 3  # road in the lower half
    score = np.zeros((20, 30), np.float32)
    score[12:16, 5:10] = 5.0  # an object on the road, 20 px
    score[2:4, 20:22] = 5.0  # something in the sky, 4 px
    score[8:10, 14:17] = 5.0  # just above the road edge, 6 px
    return score, labels


def test_threshold_only(scene) -> None:
    score, labels = scene
    mask = ood_mask(score, labels, MaskSettings(threshold=1.0))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask == 255, score > 1.0)
    assert not ood_mask(score, labels, MaskSettings(threshold=5.0)).any()  # strictly greater


def test_region_of_interest_with_dilation(scene) -> None:
    score, labels = scene
    on_road = ood_mask(score, labels, MaskSettings(threshold=1.0, roi_classes=(3,)))
    assert on_road[12:16, 5:10].all() and not on_road[2:4, 20:22].any() and not on_road[8:10, 14:17].any()
    dilated = ood_mask(score, labels, MaskSettings(threshold=1.0, roi_classes=(3,), roi_dilation=2))
    assert dilated[8:10, 14:17].all() and not dilated[2:4, 20:22].any()


def test_small_components_are_removed(scene) -> None:
    score, labels = scene
    mask = ood_mask(score, labels, MaskSettings(threshold=1.0, min_area=5))
    assert mask[12:16, 5:10].all() and mask[8:10, 14:17].all() and not mask[2:4, 20:22].any()
    assert not ood_mask(score, labels, MaskSettings(threshold=1.0, min_area=21)).any()


def test_bad_settings_are_refused() -> None:
    for bad in ({"threshold": float("nan")}, {"min_area": -1}, {"roi_dilation": -2}, {"roi_classes": (-1,)}):
        with pytest.raises(ValueError):
            MaskSettings(**bad)
