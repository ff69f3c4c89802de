"""Which OoD threshold a mask uses: one rule for the node, ``gradunc-bag evaluate`` and ``gradunc-infer``.

A threshold belongs to one model and one score setting: the max logit's
scale has nothing to do with a log gradient norm's.  So weights may ship a
table of calibrated thresholds beside them (``<weights>.thresholds.yaml``,
written by ``gradunc-calibrate --table``), one per score setting
(``HeadSettings.name``), and the rule is:

1. a threshold the user set explicitly is used as it is; when it was
   calibrated for another score setting than the one running, a warning says so;
2. otherwise the table's threshold for the running score setting;
3. otherwise there is no threshold: no mask is made, and a warning says why
   (a guessed threshold would give a mask that is all or nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .postprocess import MaskSettings
from .uncertainty import HeadSettings

TABLE_SUFFIX = ".thresholds.yaml"


@dataclass(frozen=True)
class ThresholdTable:
    """Calibrated thresholds of one model, by score setting name, and how they were calibrated."""

    thresholds: dict[str, float] = field(default_factory=dict)
    how: str = ""
    source: Path | None = None
    confidence_scales: dict[str, float] = field(default_factory=dict)  # fitted with the thresholds (optional)

    def get(self, settings: HeadSettings) -> float | None:
        return self.thresholds.get(settings.canonical.name)


def table_path(weights: Path) -> Path:
    """``erfnet_camvid.safetensors`` -> ``erfnet_camvid.thresholds.yaml`` beside it."""
    return weights.with_name(weights.stem + TABLE_SUFFIX)


def read_table(path: Path) -> ThresholdTable:
    """A threshold table file, or ValueError saying what is wrong with it."""
    document = yaml.safe_load(path.read_text())
    return _table(document if isinstance(document, dict) else {}, path, str(path))


def table_from_metadata(metadata: dict[str, str], source: Path | None) -> ThresholdTable:
    """The table an exported graph carries in its metadata (JSON values), checked as a file's is."""
    document = {key: json.loads(metadata[f"gradunc_{name}"]) for key, name in
                (("thresholds", "thresholds"), ("how", "thresholds_how"), ("confidence_scales", "confidence_scales"))
                if f"gradunc_{name}" in metadata}  # fmt: skip
    return _table(document, source, f"{source}'s metadata")


def _table(document: dict, source: Path | None, where: str) -> ThresholdTable:
    values = document.get("thresholds")
    if not _finite_mapping(values):
        raise ValueError(f"{where} holds no 'thresholds' mapping of score names to finite numbers")
    scales = document.get("confidence_scales", {}) or {}
    if not _finite_mapping(scales) or not all(v > 0 for v in scales.values()):
        raise ValueError(f"{where}: 'confidence_scales' must map score names to positive numbers")
    return ThresholdTable(
        {str(k): float(v) for k, v in values.items()}, str(document.get("how", "")), source,
        {str(k): float(v) for k, v in scales.items()},
    )  # fmt: skip


def _finite_mapping(values) -> bool:
    return isinstance(values, dict) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values.values()
    )


def table_for_weights(weights: Path | None) -> ThresholdTable:
    """The table beside a weights file, or an empty one (random weights, or none calibrated)."""
    if weights is None or not table_path(weights).is_file():
        return ThresholdTable()
    return read_table(table_path(weights))


def write_table(
    path: Path, thresholds: dict[str, float], how: str, model: str, weights: str,
    confidence_scales: dict[str, float] | None = None,
) -> None:  # fmt: skip
    document = {"model": model, "weights": weights, "how": how, "thresholds": thresholds}
    if confidence_scales:
        document["confidence_scales"] = confidence_scales
    header = (
        "# OoD mask thresholds (mask: score > threshold), one per score setting, and the scales of the\n"
        "# confidence image fitted with them (P(OoD) = 1 / (1 + exp(-(score - threshold) / scale)));\n"
        "# written by gradunc-calibrate\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold to use (None: make no mask), where it comes from, and a warning for the log."""

    value: float | None
    source: str  # "explicit", "calibrated" or "none"
    warning: str | None = None
    confidence_scale: float | None = None  # the table's, for the score setting the threshold belongs to

    def mask(self, settings: MaskSettings | None = None) -> MaskSettings | None:
        """``settings`` (region of interest, minimum area; default: none) with this threshold, or None
        where there is no threshold (then no mask is made)."""
        if self.value is None:
            return None
        return dataclasses.replace(settings or MaskSettings(), threshold=self.value)

    def describe(self) -> str:
        if self.value is None:
            return "no OoD mask (no threshold)"
        return f"OoD mask threshold {self.value:.6g} ({self.source})"


def choose_threshold(
    settings: HeadSettings, table: ThresholdTable, explicit: float | None = None, explicit_for: str = ""
) -> ThresholdChoice:
    """The rule of this module.  ``explicit``: a threshold the user set (None or NaN: none);
    ``explicit_for``: the score setting it was calibrated for (empty: unknown, taken as the running one)."""
    name = settings.canonical.name
    if explicit is not None and not math.isnan(explicit):
        if not math.isfinite(explicit):
            raise ValueError(f"threshold must be a finite number, or NaN for the calibrated one; got {explicit}")
        warning = None
        if explicit_for and explicit_for != name:
            warning = (
                f"the explicit threshold {explicit:.6g} was calibrated for {explicit_for}, not for the running "
                f"score {name}: the OoD mask may be far off (set threshold to NaN for the calibrated one)"
            )
        return ThresholdChoice(explicit, "explicit", warning, table.confidence_scales.get(explicit_for or name))
    calibrated = table.get(settings)
    if calibrated is not None:
        how = f"calibrated for {name}" + (f": {table.how}" if table.how else "")
        return ThresholdChoice(calibrated, how, None, table.confidence_scales.get(name))
    known = f" (calibrated: {len(table.thresholds)} settings in {table.source})" if table.thresholds else ""
    return ThresholdChoice(
        None,
        "none",
        f"no OoD mask: no calibrated threshold for {name} with these weights{known}; set threshold explicitly "
        "(gradunc-calibrate finds one)",
    )
