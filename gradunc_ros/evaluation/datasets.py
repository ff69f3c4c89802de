"""Dataset folders on disk: frames (image and label paths) and their label protocols.

CamVid-OoD (``../shared/data/camvid/README.md``): 11 classes plus void (11);
pedestrian (9) and bicyclist (10) are held out.  Training sees classes 0-8
only (9, 10, 11 ignored); evaluation scores 9 and 10 as OoD, 0-8 as
in-distribution, 11 as void.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import read_label

IGNORE = 255
CAMVID_HELD_OUT = (9, 10)
CAMVID_VOID = 11


@dataclass(frozen=True)
class Frame:
    name: str
    image: Path
    label: Path | None


def camvid_frames(root: str | Path, split: str) -> list[Frame]:
    """Frames of one CamVid split (``<root>/<split>/images/*.jpg`` with ``labels/*.png``), in name order."""
    folder = Path(root) / split
    images = sorted((folder / "images").glob("*.jpg")) + sorted((folder / "images").glob("*.png"))
    if not images:
        raise FileNotFoundError(f"no images under {folder / 'images'} (expected a CamVid-style folder)")
    frames = []
    for image in sorted(images):
        label = folder / "labels" / f"{image.stem}.png"
        frames.append(Frame(image.stem, image, label if label.is_file() else None))
    return frames


def _lookup(mapping: dict[int, int], default: int) -> np.ndarray:
    table = np.full(256, default, dtype=np.uint8)
    for source, target in mapping.items():
        table[source] = target
    return table


# Training targets: the 9 known classes keep their ids; held-out classes and void are ignored.
CAMVID_TRAIN_TARGETS = _lookup({c: c for c in range(9)}, IGNORE)
# OoD evaluation labels: 0 in-distribution, 1 OoD, 255 void.
CAMVID_OOD_LABELS = _lookup({**{c: 0 for c in range(9)}, 9: 1, 10: 1}, IGNORE)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
IDENTITY_OOD = _lookup({0: 0, 1: 1}, IGNORE)  # already 0/1/255; anything else is void


@dataclass(frozen=True)
class OodDataset:
    """Frames with labels that map to OoD labels (0 in-distribution, 1 OoD, 255 void) through ``ood_labels``.

    ``min_pred``/``min_gt`` are the component-level size filters of the benchmark the data belongs to.
    """

    name: str
    frames: list[Frame]
    ood_labels: np.ndarray
    min_pred: int
    min_gt: int
    semantic_targets: np.ndarray | None = None  # raw label -> scored class id, where in-distribution classes exist

    def raw_labels(self, frame: Frame) -> np.ndarray:
        if frame.label is None:
            raise FileNotFoundError(f"frame {frame.name} has no label image")
        return read_label(frame.label)

    def labels(self, frame: Frame) -> np.ndarray:
        """OoD labels: 0 in-distribution, 1 OoD, 255 void."""
        return self.ood_labels[self.raw_labels(frame)]


def _paired(images: list[Path], label_for) -> list[Frame]:
    frames = []
    for image in sorted(images):
        label = label_for(image)
        frames.append(Frame(image.stem, image, label if label is not None and label.is_file() else None))
    if not frames:
        raise FileNotFoundError("no images found")
    return frames


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder {folder}")
    return [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]


def _track(root: Path, track: str) -> Path:
    """Accept either the dataset_*Track folder itself or the folder above it."""
    return root / track if (root / track).is_dir() else root


def read_ood_dataset(kind: str, root: str | Path, split: str = "val") -> OodDataset:
    """A dataset folder in one of the known layouts (see ``DATASET_KINDS``)."""
    root = Path(root)
    if kind == "camvid":
        return OodDataset(
            f"CamVid-OoD {split}", camvid_frames(root, split), CAMVID_OOD_LABELS, 50, 10, CAMVID_TRAIN_TARGETS
        )
    if kind in ("road_anomaly21", "road_obstacle21"):
        folder = _track(root, "dataset_AnomalyTrack" if kind == "road_anomaly21" else "dataset_ObstacleTrack")
        frames = _paired(
            _images_in(folder / "images"), lambda p: folder / "labels_masks" / f"{p.stem}_labels_semantic.png"
        )
        sizes = (500, 100) if kind == "road_anomaly21" else (50, 10)
        return OodDataset(kind, frames, IDENTITY_OOD, *sizes)
    if kind == "fishyscapes_laf":
        labels = root / "labels" / split if (root / "labels" / split).is_dir() else root / "labels"

        def label_for(image: Path) -> Path:
            return labels / f"{image.stem.removesuffix('_leftImg8bit')}_fishy-labels.png"

        return OodDataset(
            "Fishyscapes LostAndFound", _paired(_images_in(root / "images"), label_for), IDENTITY_OOD, 50, 10
        )
    if kind == "folder":
        masks = root / "masks" if (root / "masks").is_dir() else root / "labels"
        frames = _paired(_images_in(root / "images"), lambda p: masks / f"{p.stem}.png")
        return OodDataset(root.name, frames, IDENTITY_OOD, 50, 10)
    raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")


DATASET_KINDS = {
    "camvid": "CamVid-OoD: <root>/<split>/images/*.jpg, labels/*.png (classes 9, 10 are OoD, 11 void)",
    "road_anomaly21": "SMIYC RoadAnomaly21: dataset_AnomalyTrack/images/<id>.jpg, "
    "labels_masks/<id>_labels_semantic.png",
    "road_obstacle21": "SMIYC RoadObstacle21: dataset_ObstacleTrack/images/<id>.webp, "
    "labels_masks/<id>_labels_semantic.png",
    "fishyscapes_laf": "Fishyscapes LostAndFound: images/<id>_leftImg8bit.*, labels[/val]/<id>_fishy-labels.png",
    "folder": "generic: images/<name>.* with masks/<name>.png (or labels/) holding 0/1/255",
}
