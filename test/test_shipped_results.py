"""The shipped defaults follow the shipped results: the default score is the CamVid-OoD val winner by the
declared rule, and the shipped weights carry a calibrated threshold for every score setting evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gradunc_ros.evaluation.runner import choose_default
from gradunc_ros.models import default_weights_path
from gradunc_ros.thresholds import table_for_weights
from gradunc_ros.uncertainty import DEFAULT_SCORE

REPO = Path(__file__).resolve().parents[1]
RESULTS = json.loads((REPO / "results" / "camvid_val" / "results.json").read_text())


def test_the_default_score_is_the_val_winner_by_the_declared_rule() -> None:
    gradient = {name for name in RESULTS["scores"] if name.startswith("pgn_")}
    chosen = choose_default(RESULTS["scores"], gradient)
    assert chosen["score"] == RESULTS["default"]["score"] == DEFAULT_SCORE.name
    best = max(RESULTS["scores"].values(), key=lambda metrics: metrics["auprc"])
    assert RESULTS["scores"][DEFAULT_SCORE.name]["auprc"] >= best["auprc_ci95"][0]
    params = yaml.safe_load((REPO / "config" / "gradunc.yaml").read_text())["/**/gradunc_node"]["ros__parameters"]
    assert (params["score"], params["p"], params["mode"], params["gradient_of"]) == (
        DEFAULT_SCORE.score, DEFAULT_SCORE.p, DEFAULT_SCORE.mode, DEFAULT_SCORE.gradient_of,
    )  # fmt: skip


def test_every_evaluated_score_has_a_calibrated_threshold_beside_the_shipped_weights() -> None:
    table = table_for_weights(default_weights_path())
    assert set(RESULTS["scores"]) <= set(table.thresholds)
    assert "train" in table.how  # calibrated on train, not on the val frames the results come from


def test_the_default_score_has_a_confidence_scale_fitted_with_its_threshold() -> None:
    """The node's confidence image takes it (confidence_scale 0, the default); the table's scales were fitted
    on the same train frames as its thresholds."""
    table = table_for_weights(default_weights_path())
    assert table.confidence_scales[DEFAULT_SCORE.name] > 0
    assert set(table.confidence_scales) <= set(table.thresholds)
