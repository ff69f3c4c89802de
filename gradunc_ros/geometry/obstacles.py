"""The obstacle outputs of one frame, as plain arrays and cloud fields (the node wraps them in messages).

- ``obstacles``: the OoD mask's pixels with valid depth (``projection.project_masked``), or without depth
  their footprints on the ground plane (``ground``; one point per column of a component, not decimated);
  x, y, z in the camera's optical frame, score, label; z (the optical axis) within the range limits;
- ``points``: with depth, the organised cloud of every (decimated) pixel, NaN without depth, aligned with
  ``semantic_labels`` and ``confidence`` at the same decimation, for Nav2's semantic segmentation layer;
- ``semantic_labels``: the class ids with OoD pixels set to one extra class, ``ood`` (id = class count);
- ``confidence``: mono8, the confidence in each pixel's label of ``semantic_labels``.  With the node's OoD
  threshold t (calibrated, or the one set) and ``c = 255 / (1 + exp((score - t) / scale))`` (128 at the
  threshold, towards 255 where the score says in-distribution), a pixel labelled with one of the model's
  classes gets c and a pixel labelled ``ood`` gets 255 - c.  The scale is in the score's units: the one
  ``gradunc-calibrate`` fitted beside the threshold (then c / 255 is the calibration set's P(in-distribution
  | score), ``evaluation/calibration.py``), or ``confidence_scale`` where that is set (> 0), else 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cloud import obstacle_cloud, organised_cloud
from .depth import depth_in_metres
from .ground import Mount, footprint_pixels, ground_points
from .intrinsics import GeometryError, Intrinsics
from .projection import project_all, project_masked


@dataclass(frozen=True)
class ObstacleSettings:
    decimation: int = 2
    min_range: float = 0.3
    max_range: float = 10.0
    semantic: bool = False  # points, semantic_labels and confidence as well
    confidence_scale: float = 0.0  # 0: the calibrated scale of the running score (else 1)
    ground_plane: bool = False  # without depth: footprints on the ground plane
    camera_height: float = 0.0
    camera_pitch: float = 0.0
    obstacle_height: float = 0.3
    ground_frame: str = ""  # ground plane from TF (this frame to the camera's optical frame), not height/pitch
    min_area: int = 0  # ground plane: components smaller than this are left out

    def __post_init__(self) -> None:
        if self.decimation < 1:
            raise ValueError(f"obstacle_decimation must be at least 1, got {self.decimation}")
        if not 0 <= self.min_range < self.max_range:
            raise ValueError(f"obstacle range must satisfy 0 <= min < max, got {self.min_range}, {self.max_range}")
        if self.confidence_scale < 0:
            raise ValueError("confidence_scale must be positive, or 0 for the calibrated one")
        if self.ground_plane and not self.ground_frame and not self.camera_height > 0:
            raise ValueError("ground_plane needs camera_height (metres above the ground) > 0, or a ground_frame")


def semantic_labels(labels: np.ndarray, mask: np.ndarray | None, num_classes: int) -> np.ndarray:
    """Class ids, with the OoD pixels set to ``num_classes`` (the extra class ``ood``)."""
    dtype = np.uint8 if num_classes < 256 else np.uint16
    out = labels.astype(dtype, copy=True)
    if mask is not None:
        out[mask > 0] = num_classes
    return out


def confidence(score: np.ndarray, threshold: float, scale: float, mask: np.ndarray | None = None) -> np.ndarray:
    """The confidence (0-255) in each pixel's semantic label: in its class, or in ``ood`` where ``mask``."""
    with np.errstate(over="ignore"):
        value = 255.0 / (1.0 + np.exp((score.astype(np.float32) - np.float32(threshold)) / np.float32(scale)))
    if mask is not None:
        value = np.where(mask > 0, 255.0 - value, value)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def frame_obstacles(
    settings: ObstacleSettings,
    camera: Intrinsics,
    prediction,
    mask: np.ndarray | None,
    threshold: float | None,
    num_classes: int,
    depth: tuple[np.ndarray, str] | None,
    mount: Mount | None = None,
    calibrated_scale: float | None = None,
) -> dict[str, object]:
    """Output name -> cloud fields (dict) or (array, encoding) for one frame.  ``depth``: the matched depth
    image and its encoding, or None (then the ground plane, if set: at ``mount``, from TF, or else at the
    settings' camera height and pitch); ``calibrated_scale``: the confidence scale fitted with the threshold."""
    outputs: dict[str, object] = {}
    empty = np.zeros(prediction.labels.shape, np.uint8)
    flagged = mask if mask is not None else empty
    step = settings.decimation
    if depth is not None:
        metres = depth_in_metres(depth[0], depth[1], settings.min_range, settings.max_range)
        points = project_masked(metres, flagged, prediction.score, prediction.labels, camera, step)
        outputs["obstacles"] = obstacle_cloud(points.xyz, points.score, points.label)
        if settings.semantic:
            outputs["points"] = organised_cloud(project_all(metres, camera, step))
    elif settings.ground_plane:
        camera.check_size(flagged.shape[1], flagged.shape[0], "the camera image")
        rows, cols = footprint_pixels(flagged, settings.min_area)
        mount = mount or Mount.from_pitch(settings.camera_height, settings.camera_pitch)
        xyz, meets = ground_points(rows, cols, camera, mount, settings.obstacle_height)
        rows, cols = rows[meets], cols[meets]
        # the range limits as for depth, on the optical z: rays just below the horizon meet the ground far away
        near = (xyz[:, 2] >= settings.min_range) & (xyz[:, 2] <= settings.max_range)
        rows, cols, xyz = rows[near], cols[near], xyz[near]
        outputs["obstacles"] = obstacle_cloud(xyz, prediction.score[rows, cols], prediction.labels[rows, cols])
    if settings.semantic:  # decimated first: only the pixels published are computed
        kept_mask = None if mask is None else mask[::step, ::step]
        labels = semantic_labels(prediction.labels[::step, ::step], kept_mask, num_classes)
        outputs["semantic_labels"] = (labels, "mono8" if labels.dtype == np.uint8 else "mono16")
        if threshold is not None:
            score = prediction.score[::step, ::step]
            scale = settings.confidence_scale or calibrated_scale or 1.0
            outputs["confidence"] = (confidence(score, threshold, scale, kept_mask), "mono8")
    return outputs


__all__ = ["GeometryError", "ObstacleSettings", "confidence", "frame_obstacles", "semantic_labels"]
