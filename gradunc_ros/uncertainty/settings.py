"""What the head computes, declared once: the score settings, their allowed values, help texts and default.

``SETTING_FIELDS`` is the one table of score settings.  The tools' argparse
options (``tools/common.py``), the node's ROS parameter descriptors
(``ros/parameters.py``), the sweeps of ``gradunc-eval`` and
``gradunc-calibrate`` and the names in results (``HeadSettings.name``) are all
made from it, so a setting added here reaches every one of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .baselines import BASELINES
from .norms import P_MAX, P_MIN
from .pgn import GRADIENTS_OF, MODES

GRADIENT_SCORES = {"pgn_oh": "onehot", "pgn_uni": "uniform"}
SCORES: tuple[str, ...] = (*GRADIENT_SCORES, *BASELINES)
RESOLUTIONS: tuple[str, ...] = ("last_layer", "output")
LAYERS: tuple[str, ...] = ("last", "penultimate")


@dataclass(frozen=True)
class SettingField:
    """One score setting: its name (a ``HeadSettings`` field, a ROS parameter, ``--name`` on the command
    line), its allowed values (None: a number from P_MIN to P_MAX), what it means, and the plural name of
    the option that sweeps it in ``gradunc-eval`` and ``gradunc-calibrate --table``."""

    name: str
    choices: tuple[str, ...] | None
    help: str
    sweep: str


SETTING_FIELDS: tuple[SettingField, ...] = (
    SettingField("score", SCORES, "score: " + ", ".join(SCORES) + "; higher = more anomalous", "scores"),
    SettingField("p", None, f"exponent of the gradient norm, {P_MIN:g} to {P_MAX:g}", "ps"),
    SettingField("mode", MODES, "exact gradient or the paper's reference code", "modes"),
    SettingField(
        "resolution",
        RESOLUTIONS,
        "last_layer (the paper's: at the last layer's resolution, upsampled as a norm) or output (exact at the "
        "model's output resolution; a 1x1 conv last layer, or one whose output is the model's output)",
        "resolutions",
    ),
    SettingField(
        "layer", LAYERS, "gradient of the last layer or of the penultimate conv (a conv-BN-ReLU-1x1 tail)", "layers"
    ),
    SettingField(
        "gradient_of",
        GRADIENTS_OF,
        "gradient of the last layer's " + ", ".join(GRADIENTS_OF) + " (bias: the class factor alone; layer: both)",
        "gradients_of",
    ),
)


@dataclass(frozen=True)
class HeadSettings:
    """What the head computes; every field is validated on construction (``SETTING_FIELDS``).

    score: one of SCORES; higher always means more anomalous.
    p: exponent of the gradient norm, P_MIN <= p <= P_MAX (the paper uses 0.1 to 2).
    mode: "exact" gradient or the paper's "reference" code.
    resolution: "last_layer" (the paper's) or "output".
    layer: gradient of the "last" layer or of the "penultimate" conv (its weights).
    gradient_of: which of the last layer's parameters: "weights" (the paper's), "bias" (the class
        factor ||s - y||_p alone, also the logit gradient), or the whole "layer" (weights and bias).

    The field defaults are plain starting points, not the package's default score: ``HeadSettings()`` is the
    max logit baseline, ``HeadSettings("pgn_oh")`` the paper's exact weight gradient at p = 0.1.  The default
    of the node and the tools is ``DEFAULT_SCORE`` below.
    """

    score: str = "max_logit"
    p: float = 0.1
    mode: str = "exact"
    resolution: str = "last_layer"
    layer: str = "last"
    gradient_of: str = "weights"

    def __post_init__(self) -> None:
        for field in SETTING_FIELDS:
            value = getattr(self, field.name)
            if field.choices is not None and value not in field.choices:
                raise ValueError(f"{field.name} must be one of {', '.join(field.choices)}; got {value!r}")
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not P_MIN <= self.p <= P_MAX:
            raise ValueError(f"p must be a number from {P_MIN:g} to {P_MAX:g}; got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))
        if self.layer == "penultimate" and self.resolution != "last_layer":
            raise ValueError("the penultimate-layer score is defined at the last layer's resolution only")
        if self.layer == "penultimate" and self.gradient_of != "weights":
            raise ValueError(
                "the penultimate-layer score is the gradient of that conv's weights only: set gradient_of to weights"
            )

    @property
    def is_gradient_score(self) -> bool:
        return self.score in GRADIENT_SCORES

    @property
    def name(self) -> str:
        """A short unique name, e.g. ``pgn_oh_exact_p0.3``, ``pgn_oh_exact_p0.1_bias`` or ``entropy``."""
        if not self.is_gradient_score:
            return self.score
        suffix = "" if self.gradient_of == "weights" else f"_{self.gradient_of}"
        suffix += "" if self.layer == "last" else "_penultimate"
        suffix += "" if self.resolution == "last_layer" else "_output"
        return f"{self.score}_{self.mode}_p{self.p:g}{suffix}"

    @property
    def canonical(self) -> HeadSettings:
        """The same score with the fields it ignores at their defaults: baselines need no p, mode,
        resolution, layer or gradient_of.  Two settings that compute the same thing are equal here."""
        return self if self.is_gradient_score else HeadSettings(score=self.score)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> HeadSettings:
        """Build from a dict (e.g. a parameter file), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown head setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(values))


# The default score of the node and the tools: the best AuPRC on CamVid-OoD val with the shipped model, by the rule
# of evaluation.runner.choose_default (results/camvid_val/results.md): the gradient of the last layer's bias with
# the paper's code's uniform pseudo label, p = 0.1, i.e. ||(C - 1)/C * s||_0.1.
DEFAULT_SCORE = HeadSettings(score="pgn_uni", p=0.1, mode="reference", gradient_of="bias")


def sweep(values: Mapping[str, Iterable[Any]]) -> list[HeadSettings]:
    """Every valid combination of the given values per setting (``SettingField.name`` -> values; a setting
    left out keeps its ``HeadSettings`` default), baselines once each, in a stable order.  Combinations
    HeadSettings refuses (the penultimate layer with bias or at the output resolution) are left out."""
    names = [field.name for field in SETTING_FIELDS if field.name in values]
    found: dict[HeadSettings, None] = {}
    for combination in itertools.product(*(list(values[name]) for name in names)):
        try:
            settings = HeadSettings(**dict(zip(names, combination, strict=True)))
        except ValueError:
            continue
        found.setdefault(settings.canonical, None)
    return list(found)
