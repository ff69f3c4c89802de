"""Dataset readers: each layout found, labels mapped to 0/1/255, size filters of its benchmark."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS, CAMVID_TRAIN_TARGETS, read_ood_dataset

ANOMALY, OBSTACLE = "dataset_AnomalyTrack", "dataset_ObstacleTrack"


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def test_camvid_protocol_maps() -> None:
    raw = np.arange(12, dtype=np.uint8)
    assert CAMVID_OOD_LABELS[raw].tolist() == [0] * 9 + [1, 1, 255]
    assert CAMVID_TRAIN_TARGETS[raw].tolist() == list(range(9)) + [255, 255, 255]


def test_camvid_split(tiny_camvid: Path) -> None:
    dataset = read_ood_dataset("camvid", tiny_camvid, "val")
    assert [f.name for f in dataset.frames] == ["seq_0000", "seq_0001", "seq_0002"]
    labels = dataset.labels(dataset.frames[0])
    assert set(np.unique(labels)) == {0, 1, 255} and labels[15, 25] == 1


@pytest.mark.parametrize(
    "kind,image,label,sizes",
    (
        ("road_anomaly21", f"{ANOMALY}/images/a1.jpg", f"{ANOMALY}/labels_masks/a1_labels_semantic.png", (500, 100)),
        ("road_obstacle21", f"{OBSTACLE}/images/o1.webp", f"{OBSTACLE}/labels_masks/o1_labels_semantic.png", (50, 10)),
        ("fishyscapes_laf", "images/f1_leftImg8bit.png", "labels/val/f1_fishy-labels.png", (50, 10)),
        ("folder", "images/g1.png", "masks/g1.png", (50, 10)),
    ),
)  # fmt: skip
def test_benchmark_layouts(tmp_path: Path, kind: str, image: str, label: str, sizes: tuple[int, int]) -> None:
    mask = np.zeros((8, 10), np.uint8)
    mask[2:4, 3:6] = 1
    mask[7] = 255
    mask[0, 0] = 7  # not 0/1/255: void
    _write(tmp_path / image, np.full((8, 10, 3), 90, np.uint8))
    _write(tmp_path / label, mask)
    dataset = read_ood_dataset(kind, tmp_path)
    assert len(dataset.frames) == 1 and (dataset.min_pred, dataset.min_gt) == sizes
    labels = dataset.labels(dataset.frames[0])
    assert labels[2, 3] == 1 and labels[7, 0] == 255 and labels[0, 0] == 255 and labels[5, 5] == 0


def test_unknown_kind_and_missing_folder() -> None:
    with pytest.raises(ValueError, match="known: camvid"):
        read_ood_dataset("kitti", ".")
    with pytest.raises(FileNotFoundError):
        read_ood_dataset("folder", "/nonexistent")
