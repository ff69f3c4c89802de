"""The inference worker without ROS: decoding, batching by size, out of memory, failures, lazy cameras."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gradunc_ros.pipeline import Prediction
from gradunc_ros.streams.cameras import Camera
from gradunc_ros.streams.codec import array_to_message
from gradunc_ros.streams.scheduler import FrameScheduler
from gradunc_ros.streams.worker import InferenceWorker, WorkerHooks


class FakePipeline:
    """Labels = the red channel; out of memory for batches above ``fits`` frames."""

    settings = "settings"

    def __init__(self, fits: int = 8) -> None:
        self.fits = fits
        self.batches: list[int] = []

    def predict_batch(self, images: list[np.ndarray]) -> list[Prediction]:
        self.batches.append(len(images))
        if len(images) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return [Prediction(image[..., 0].copy(), np.zeros(image.shape[:2], np.float32)) for image in images]


class Harness:
    def __init__(self, count: int = 2, fits: int = 8, lazy_cameras: tuple[int, ...] = ()) -> None:
        self.cameras = [Camera(f"/c{i}/image", False, f"/c{i}/gradunc", f"/c{i}/camera_info") for i in range(count)]
        self.scheduler = FrameScheduler(self.cameras)
        self.pipeline = FakePipeline(fits)
        self.published: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        settings = SimpleNamespace(head="settings")
        lazy = {self.cameras[i].topic for i in lazy_cameras}
        hooks = WorkerHooks(
            current=lambda: (self.pipeline, settings, None),
            publish=lambda camera, header, image, prediction, *_: self.published.append(
                (camera.topic, int(prediction.labels[0, 0]))
            ),
            has_subscribers=lambda camera: camera.topic not in lazy,
            error=self.errors.append,
            warning=self.warnings.append,
            shutting_down=lambda: False,
        )
        self.worker = InferenceWorker(self.scheduler, hooks, max_pixels=10_000)

    def frames(self, sizes: dict[int, tuple[int, int]]) -> None:
        """One frame per camera index, of (height, width), its red channel = the camera index + 10."""
        batch = []
        for index, (height, width) in sizes.items():
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = index + 10
            batch.append(
                (self.cameras[index], array_to_message(image, "rgb8", SimpleNamespace, SimpleNamespace(stamp=index)))
            )
        self.scheduler.offer_together(batch)

    def one_pass(self) -> None:
        self.worker.run_pass(self.scheduler.take(timeout=0))


def test_frames_of_one_size_share_a_batch_and_other_sizes_run_apart() -> None:
    harness = Harness(3)
    harness.frames({0: (8, 8), 1: (8, 8), 2: (6, 8)})
    harness.one_pass()
    assert sorted(harness.pipeline.batches) == [1, 2]
    assert sorted(harness.published) == [("/c0/image", 10), ("/c1/image", 11), ("/c2/image", 12)]


def test_out_of_memory_retries_one_frame_at_a_time_and_fails_a_single_frame_that_does_not_fit() -> None:
    harness = Harness(2, fits=1)
    harness.frames({0: (8, 8), 1: (8, 8)})
    harness.one_pass()
    assert harness.pipeline.batches == [2, 1, 1] and len(harness.published) == 2 and not harness.errors
    harness.pipeline.fits = 0
    harness.frames({0: (8, 8)})
    harness.one_pass()
    assert harness.cameras[0].inference_failed == 1
    assert harness.errors == ["/c0/image: frame skipped: out of memory on a 8x8 frame (memory freed)"]


def test_undecodable_frames_are_counted_and_said_once_per_kind() -> None:
    harness = Harness(1)
    for width in (200, 300):  # too large for max_pixels, twice: said once
        harness.frames({0: (100, width)})
        harness.one_pass()
    assert harness.cameras[0].undecodable == 2 and len(harness.warnings) == 1
    assert "larger than max_image_pixels" in harness.warnings[0] and not harness.published


def test_lazy_cameras_are_counted_and_not_inferred() -> None:
    harness = Harness(2, lazy_cameras=(1,))
    harness.frames({0: (8, 8), 1: (8, 8)})
    harness.one_pass()
    assert harness.published == [("/c0/image", 10)] and harness.cameras[1].lazy_skipped == 1


def test_the_thread_survives_a_failing_pass_and_stops_when_asked() -> None:
    harness = Harness(1)
    done = threading.Event()
    calls = []

    def broken_then_fine(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("cuDNN error (injected)")
        done.set()
        return FakePipeline.predict_batch(harness.pipeline, images)

    harness.pipeline.predict_batch = broken_then_fine
    harness.worker.start()
    harness.frames({0: (8, 8)})
    for _ in range(100):  # the first pass fails; then a second frame must still be served
        if harness.errors:
            break
        threading.Event().wait(0.05)
    harness.frames({0: (8, 8)})
    assert done.wait(10)
    assert harness.worker.stop(timeout=10)
    assert harness.cameras[0].inference_failed == 1 and "RuntimeError: cuDNN error" in harness.errors[0]


def test_a_failure_late_in_a_pass_fails_only_the_frames_not_yet_handed_over() -> None:
    harness = Harness(2)
    published = []

    def publish_then_break(camera, *_):
        if published:
            raise RuntimeError("publisher gone (injected)")
        published.append(camera.topic)

    harness.worker._hooks.publish = publish_then_break
    harness.worker.start()
    harness.frames({0: (8, 8), 1: (8, 8)})
    for _ in range(200):
        if harness.errors:
            break
        threading.Event().wait(0.02)
    assert harness.worker.stop(timeout=10)
    assert [c.inference_failed for c in harness.cameras] == [0, 1] and published == ["/c0/image"]
    assert harness.errors == ["/c1/image: frame skipped: RuntimeError: publisher gone (injected)"]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_decoding_follows_the_encoding(encoding: str) -> None:
    harness = Harness(1)
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = 7
    rgb = harness.worker.decode(harness.cameras[0], array_to_message(image, encoding, SimpleNamespace))
    assert rgb[0, 0, 0 if encoding == "rgb8" else 2] == 7
