"""A pinhole camera from a sensor_msgs/CameraInfo (any object with its fields), checked before use.

Points are computed as depth_image_proc computes them: with the focal
lengths and principal point of the camera_info's projection matrix P (what
image_geometry's PinholeCameraModel returns), the pixel indices as pixel
centres.  P describes the rectified image, which is what image_proc's
``image_rect`` and a registered depth image are; for a camera whose driver
fills K only (P all zero) K is used.  P's stereo baseline term (Tx) is not
applied, as depth_image_proc does not.  The distortion (D) is not applied:
for a lens with marked distortion, run the colour and depth images through
image_proc's rectification first.
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
        """Intrinsics of a CameraInfo (from P, or from K where P is all zero), or GeometryError when neither has
        usable focal lengths."""
        if info is None:
            raise GeometryError("no camera_info received yet for this camera")
        k = [float(v) for v in info.k]
        if len(k) != 9:
            raise GeometryError(f"camera_info K has {len(k)} entries, not 9")
        p = [float(v) for v in getattr(info, "p", ())]
        if len(p) == 12 and any(p):  # the rectified image's intrinsics (image_geometry's fx(), cx(), ...)
            fx, fy, cx, cy, matrix = p[0], p[5], p[2], p[6], "P"
        else:
            fx, fy, cx, cy, matrix = k[0], k[4], k[2], k[5], "K"
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            raise GeometryError(
                f"camera_info {matrix} has no usable focal lengths (fx {fx:g}, fy {fy:g}): uncalibrated?"
            )
        return cls(fx, fy, cx, cy, int(info.width), int(info.height))

    def check_size(self, width: int, height: int, what: str) -> None:
        """A camera_info that names its size must describe images of this size."""
        if self.width and self.height and (self.width, self.height) != (width, height):
            raise GeometryError(
                f"{what} is {width}x{height} but camera_info describes {self.width}x{self.height}: give the "
                "camera_info of this image (binning and ROI are not applied)"
            )
