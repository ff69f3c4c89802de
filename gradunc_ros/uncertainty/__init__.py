"""Gradient-uncertainty scores, free of ROS: plain PyTorch, testable anywhere.

Maag & Riedlinger, "Pixel-wise Gradient Uncertainty for Convolutional
Neural Networks applied to Out-of-Distribution Segmentation"
(arXiv 2303.06920).  README.md ("The uncertainty core") summarises the maths.
"""

from .baselines import BASELINES, entropy, max_logit, msp
from .head import GradientUncertaintyHead, HeadOutput
from .model_output import OutputError, logits_of
from .norms import log_pnorm, patch_log_pnorm
from .pgn import (
    GRADIENTS_OF,
    PgnOptions,
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
from .settings import DEFAULT_SCORE, GRADIENT_SCORES, SCORES, SETTING_FIELDS, HeadSettings, SettingField, sweep

__all__ = [
    "BASELINES",
    "DEFAULT_SCORE",
    "GRADIENTS_OF",
    "GRADIENT_SCORES",
    "SETTING_FIELDS",
    "OutputError",
    "SettingField",
    "logits_of",
    "sweep",
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
    "PgnOptions",
    "pgn",
    "pgn_conv",
    "pgn_for_layer",
    "pgn_linear",
    "pgn_penultimate",
    "pgn_transposed",
]
