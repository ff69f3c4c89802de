"""The images a prediction is published as: one road for the node and the bag tools alike.

Each output is an array and its sensor_msgs/Image encoding:

- ``labels``: class ids, ``mono8`` (``mono16`` for more than 256 classes);
- ``uncertainty``: the score, ``32FC1`` (higher = more anomalous);
- ``ood_mask``: 255 where OoD, else 0, ``mono8``; only with a threshold (``thresholds.py``);
- ``overlay``: class colours over the camera image, OoD in magenta, ``rgb8``; when asked for.

No ROS here: the node and ``gradunc-bag`` wrap these arrays in messages of their own kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .overlay import blend, colourise
from .postprocess import MaskSettings, ood_mask

if TYPE_CHECKING:  # the pipeline (torch) is not needed to name the outputs
    from .pipeline import Prediction

OUTPUTS = ("labels", "uncertainty", "ood_mask", "overlay")
OOD_COLOUR = (255, 0, 255)


def labels_encoding(num_classes: int) -> str:
    """mono8 while every class id fits a byte, mono16 up to 65536 classes."""
    if num_classes > 65536:
        raise ValueError(f"{num_classes} classes do not fit a mono16 label image")
    return "mono8" if num_classes <= 256 else "mono16"


def render_outputs(
    image: np.ndarray,
    prediction: Prediction,
    num_classes: int,
    mask: MaskSettings | None,
    colours: Sequence[tuple[int, int, int]] = (),
    overlay: bool = False,
) -> dict[str, tuple[np.ndarray, str]]:
    """Output name -> (array, encoding) for one frame; ``ood_mask`` only with ``mask`` settings,
    ``overlay`` only when asked for."""
    encoding = labels_encoding(num_classes)
    labels = prediction.labels.astype(np.uint8 if encoding == "mono8" else np.uint16, copy=False)
    outputs = {
        "labels": (labels, encoding),
        "uncertainty": (prediction.score.astype(np.float32, copy=False), "32FC1"),
    }
    flagged = ood_mask(prediction.score, prediction.labels, mask) if mask is not None else None
    if flagged is not None:
        outputs["ood_mask"] = (flagged, "mono8")
    if overlay:
        picture = blend(image, colourise(prediction.labels, colours))
        if flagged is not None:
            picture[flagged > 0] = OOD_COLOUR
        outputs["overlay"] = (picture, "rgb8")
    return outputs
