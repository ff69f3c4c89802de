"""Images to network input: RGB uint8 to normalised float, sized to what the net accepts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def normalise(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
    *,
    channel_order: str = "rgb",
    pixel_scale: float = 1.0,
) -> Tensor:
    """N x H x W x 3 uint8 RGB (any device) to N x 3 x H x W ``(x * pixel_scale / 255 - mean) / std``, the
    channels in ``channel_order`` (rgb or bgr; mean and std are in that order)."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 RGB images, got shape {tuple(images.shape)}")
    if channel_order == "bgr":
        images = images.flip(-1)
    x = images.permute(0, 3, 1, 2).to(dtype) / (255.0 / pixel_scale)  # exactly x / 255 at the default scale
    mean_t = torch.tensor(mean, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def fit_to_multiple(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The nearest (height, width) of at least ``multiple`` that are multiples of ``multiple``."""
    return tuple(max(multiple, int(round(s / multiple)) * multiple) for s in size)  # type: ignore[return-value]


def resize_input(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of normalised N x 3 x H x W input to (height, width)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=x.shape[-2] > size[0])


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (e.g. '320x240') to (height, width), or ValueError."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WIDTHxHEIGHT, e.g. 320x240; got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive; got {text!r}")
    return height, width
