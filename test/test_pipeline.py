"""The pipeline: image in, labels and score at the image's own resolution, equal to the parts composed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradunc_ros.models import load_model
from gradunc_ros.models.preprocess import normalise
from gradunc_ros.pipeline import SegmentationPipeline, resolve_device
from gradunc_ros.uncertainty import HeadSettings, log_bilinear_resize


@pytest.fixture(scope="module")
def pipeline() -> SegmentationPipeline:
    torch.manual_seed(0)
    return SegmentationPipeline(
        load_model("erfnet", "random"), HeadSettings("pgn_oh", p=0.5), device="cpu", input_size=(24, 32)
    )


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (37, 50, 3), dtype=np.uint8)


def test_outputs_are_at_the_image_resolution(pipeline: SegmentationPipeline, image: np.ndarray) -> None:
    prediction = pipeline.predict(image, keep_logits=True)
    assert prediction.labels.shape == (37, 50) and prediction.labels.dtype == np.uint8
    assert prediction.score.shape == (37, 50) and prediction.score.dtype == np.float32
    assert np.isfinite(prediction.score).all()
    assert prediction.logits.shape == (9, 37, 50)
    assert np.array_equal(prediction.labels, prediction.logits.argmax(axis=0))
    assert set(prediction.timings_ms) == {"preprocess", "inference", "postprocess"}


def test_pipeline_equals_the_parts_composed_by_hand(pipeline: SegmentationPipeline, image: np.ndarray) -> None:
    card = pipeline.loaded.card
    x = normalise(torch.from_numpy(image)[None], card.mean, card.std)
    x = F.interpolate(x, (24, 32), mode="bilinear", align_corners=False, antialias=True)
    out = pipeline.head(x)
    logits = F.interpolate(out.logits, (37, 50), mode="bilinear", align_corners=False)
    score = log_bilinear_resize(out.score, (37, 50), align_corners=False)
    prediction = pipeline.predict(image, keep_logits=True)
    assert np.allclose(prediction.logits, logits[0].numpy(), atol=1e-5)
    assert np.allclose(prediction.score, score[0].numpy(), atol=1e-5)


def test_batch_equals_single_frames(pipeline: SegmentationPipeline, image: np.ndarray) -> None:
    other = image[::-1].copy()
    batch = pipeline.predict_batch([image, other])
    for frame, predicted in zip((image, other), batch, strict=True):
        single = pipeline.predict(frame)
        assert np.array_equal(single.labels, predicted.labels)
        assert np.allclose(single.score, predicted.score, atol=1e-5)
    with pytest.raises(ValueError, match="one size"):
        pipeline.predict_batch([image, image[:30]])


def test_baseline_scores_and_settings_changes(pipeline: SegmentationPipeline, image: np.ndarray) -> None:
    before = pipeline.settings
    try:
        pipeline.settings = HeadSettings(score="msp")
        msp = pipeline.predict(image).score
        assert ((msp >= 0) & (msp <= 1 - 1 / 9 + 1e-6)).all()
    finally:
        pipeline.settings = before


def test_device_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_extra_scores_come_with_the_prediction(pipeline: SegmentationPipeline, image: np.ndarray) -> None:
    extra = [HeadSettings(score="entropy"), HeadSettings(score="pgn_uni", p=1.0)]
    prediction = pipeline.predict_batch([image], extra_scores=extra)[0]
    assert set(prediction.scores) == {"entropy", "pgn_uni_exact_p1"}
    before = pipeline.settings
    try:
        for settings in extra:
            pipeline.settings = settings
            assert np.allclose(pipeline.predict(image).score, prediction.scores[settings.name], atol=1e-6)
    finally:
        pipeline.settings = before


def test_half_precision_networks_give_float32_scores_close_to_float32(image: np.ndarray) -> None:
    """bfloat16 runs on the CPU too (slowly); the score stays float32 and close to the float32 network's."""
    torch.manual_seed(0)
    loaded = load_model("erfnet", "random")
    full = SegmentationPipeline(loaded, HeadSettings("max_logit"), device="cpu", input_size=(24, 32))
    expected = full.predict(image)
    torch.manual_seed(0)
    half = SegmentationPipeline(
        load_model("erfnet", "random"),
        HeadSettings("max_logit"),
        device="cpu",
        input_size=(24, 32),
        precision="bfloat16",
    )
    got = half.predict(image)
    assert next(half.head.model.parameters()).dtype == torch.bfloat16
    assert got.score.dtype == np.float32 and got.score.shape == expected.score.shape
    assert np.abs(got.score - expected.score).max() <= 0.05 * np.abs(expected.score).max()
    with pytest.raises(ValueError, match="precision must be one of"):
        SegmentationPipeline(loaded, device="cpu", precision="float8")


def test_the_fused_head_is_refused_where_triton_cannot_run() -> None:
    with pytest.raises(RuntimeError, match="needs CUDA"):
        SegmentationPipeline(load_model("erfnet", "random"), device="cpu", fused="triton")
    auto = SegmentationPipeline(load_model("erfnet", "random"), device="cpu", fused="auto")
    assert not auto.fused_active  # the plain PyTorch path on the CPU
