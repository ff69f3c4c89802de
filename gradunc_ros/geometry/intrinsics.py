"""A pinhole camera from a sensor_msgs/CameraInfo (any object with its fields), checked before use.

Points are computed with the matrix K of the camera_info and the pixel
indices as pixel centres (OpenCV's and depth_image_proc's convention).  The
distortion (D) is not applied: a depth image registered to the colour camera
by depth_image_proc is usually rectified; for a lens with marked distortion,
run the colour and depth images through image_proc's rectification first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class GeometryError(ValueError):
    """Input a projection cannot use (intrinsics, depth, sizes); the message says why."""


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int  # 0: the camera_info does not say
    height: int

    @classmethod
    def from_camera_info(cls, info) -> Intrinsics:
        """Intrinsics of a CameraInfo, or GeometryError when K is missing, zero or not finite."""
        if info is None:
            raise GeometryError("no camera_info received yet for this camera")
        k = [float(v) for v in info.k]
        if len(k) != 9:
            raise GeometryError(f"camera_info K has {len(k)} entries, not 9")
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            raise GeometryError(f"camera_info K has no usable focal lengths (fx {fx:g}, fy {fy:g}): uncalibrated?")
        return cls(fx, fy, cx, cy, int(info.width), int(info.height))

    def check_size(self, width: int, height: int, what: str) -> None:
        """A camera_info that names its size must describe images of this size."""
        if self.width and self.height and (self.width, self.height) != (width, height):
            raise GeometryError(
                f"{what} is {width}x{height} but camera_info describes {self.width}x{self.height}: give the "
                "camera_info of this image (binning and ROI are not applied)"
            )
