"""The threshold rule (thresholds.py): explicit, else calibrated for the running score, else no mask."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradunc_ros.postprocess import MaskSettings
from gradunc_ros.thresholds import ThresholdTable, choose_threshold, read_table, table_path, write_table
from gradunc_ros.uncertainty import HeadSettings

ENTROPY = HeadSettings(score="entropy")
PGN = HeadSettings(score="pgn_oh", p=0.3)


def test_an_explicit_threshold_wins_and_warns_only_when_it_belongs_to_another_score() -> None:
    table = ThresholdTable({ENTROPY.canonical.name: 0.7})
    choice = choose_threshold(ENTROPY, table, 0.2)
    assert (choice.value, choice.source, choice.warning) == (0.2, "explicit", None)
    choice = choose_threshold(ENTROPY, table, 0.2, explicit_for=PGN.canonical.name)
    assert choice.value == 0.2 and PGN.canonical.name in choice.warning and ENTROPY.canonical.name in choice.warning


def test_nan_or_none_takes_the_calibrated_threshold_of_the_running_score() -> None:
    table = ThresholdTable({ENTROPY.canonical.name: 0.7, PGN.canonical.name: -3.5}, how="best F1 on val")
    for explicit in (None, math.nan):
        choice = choose_threshold(PGN, table, explicit)
        assert choice.value == -3.5 and choice.source == f"calibrated for {PGN.canonical.name}: best F1 on val"
        assert choice.warning is None


def test_no_calibrated_threshold_means_no_mask_with_a_warning_that_says_how_to_get_one() -> None:
    choice = choose_threshold(PGN, ThresholdTable({ENTROPY.canonical.name: 0.7}))
    assert choice.value is None and choice.mask(MaskSettings(min_area=5)) is None
    assert "gradunc-calibrate" in choice.warning and choice.describe() == "no OoD mask (no threshold)"


def test_an_infinite_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        choose_threshold(PGN, ThresholdTable(), math.inf)


def test_the_mask_keeps_its_other_settings_and_takes_the_threshold() -> None:
    choice = choose_threshold(PGN, ThresholdTable(), 1.5)
    assert choice.mask(MaskSettings(roi_classes=(3,), min_area=20)) == MaskSettings(1.5, (3,), 0, 20)


def test_a_table_written_beside_weights_is_read_back(tmp_path: Path) -> None:
    path = table_path(tmp_path / "model.safetensors")
    assert path.name == "model.thresholds.yaml"
    write_table(path, {PGN.canonical.name: -2.25}, "best F1", "erfnet", "model.safetensors")
    table = read_table(path)
    assert table.get(PGN) == -2.25 and table.how == "best F1" and table.source == path
    path.write_text("thresholds: {a: .nan}\n")
    with pytest.raises(ValueError, match="finite numbers"):
        read_table(path)


def test_the_confidence_scales_travel_with_the_table_and_the_choice(tmp_path: Path) -> None:
    path = table_path(tmp_path / "model.safetensors")
    scales = {PGN.canonical.name: 0.8, ENTROPY.canonical.name: 0.05}
    write_table(path, {PGN.canonical.name: -2.25, ENTROPY.canonical.name: 0.7}, "best F1", "erfnet", "m", scales)
    table = read_table(path)
    assert table.confidence_scales == scales
    assert choose_threshold(PGN, table).confidence_scale == 0.8  # calibrated: the running score's
    # an explicit threshold calibrated for the entropy: the entropy's scale (the score's units)
    assert choose_threshold(PGN, table, 0.5, explicit_for=ENTROPY.canonical.name).confidence_scale == 0.05
    assert choose_threshold(PGN, ThresholdTable({PGN.canonical.name: 1.0})).confidence_scale is None
    path.write_text("thresholds: {a: 1.0}\nconfidence_scales: {a: -1.0}\n")
    with pytest.raises(ValueError, match="positive numbers"):
        read_table(path)


def test_a_graphs_metadata_table_is_checked_as_a_file_is(tmp_path: Path) -> None:
    import json

    from gradunc_ros.thresholds import table_from_metadata

    good = {"gradunc_thresholds": json.dumps({"a": 1.0}), "gradunc_thresholds_how": json.dumps("best F1"),
            "gradunc_confidence_scales": json.dumps({"a": 0.5})}  # fmt: skip
    table = table_from_metadata(good, tmp_path / "m.onnx")
    assert (table.thresholds, table.how, table.confidence_scales) == ({"a": 1.0}, "best F1", {"a": 0.5})
    older = {k: v for k, v in good.items() if k != "gradunc_confidence_scales"}  # exported before the scales
    assert table_from_metadata(older, None).confidence_scales == {}
    with pytest.raises(ValueError, match="positive numbers"):
        table_from_metadata({**good, "gradunc_confidence_scales": json.dumps({"a": 0.0})}, None)
