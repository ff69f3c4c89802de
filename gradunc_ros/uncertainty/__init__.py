"""Gradient-uncertainty scores, free of ROS: plain PyTorch, testable anywhere.

Maag & Riedlinger, "Pixel-wise Gradient Uncertainty for Convolutional
Neural Networks applied to Out-of-Distribution Segmentation"
(arXiv 2303.06920).  README.md ("The uncertainty core") summarises the maths.
"""

from .baselines import BASELINES, entropy, max_logit, msp
from .head import DEFAULT_SCORE, SCORES, GradientUncertaintyHead, HeadOutput, HeadSettings
from .norms import log_pnorm, patch_log_pnorm
from .pgn import (
    GRADIENTS_OF,
    class_gradient_factor,
    class_log_norm,
    combine_factors,
    pgn,
    pgn_conv,
    pgn_for_layer,
    pgn_linear,
    pgn_penultimate,
    pgn_transposed,
)
from .resample import log_bilinear_resize

__all__ = [
    "BASELINES",
    "DEFAULT_SCORE",
    "GRADIENTS_OF",
    "SCORES",
    "GradientUncertaintyHead",
    "HeadOutput",
    "HeadSettings",
    "class_gradient_factor",
    "class_log_norm",
    "combine_factors",
    "entropy",
    "log_bilinear_resize",
    "log_pnorm",
    "max_logit",
    "msp",
    "patch_log_pnorm",
    "pgn",
    "pgn_conv",
    "pgn_for_layer",
    "pgn_linear",
    "pgn_penultimate",
    "pgn_transposed",
]
