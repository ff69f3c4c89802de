"""Dataset folders on disk: frames (image and label paths) and their label protocols.

CamVid-OoD (``../shared/data/camvid/README.md``): 11 classes plus void (11);
pedestrian (9) and bicyclist (10) are held out.  Training sees classes 0-8
only (9, 10, 11 ignored); evaluation scores 9 and 10 as OoD, 0-8 as
in-distribution, 11 as void.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

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


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """A single-channel label image as H x W uint8 class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"cannot read label image {path}")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label image {path} must be 8-bit single-channel, got shape {label.shape} {label.dtype}")
    return label
