"""Out of memory while inferring: the node skips that frame, frees memory and goes on; a batch that does
not fit is retried one frame at a time.  The failure is injected into the node's pipeline in-process;
the outputs are received over DDS by a peer node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import isolated_ros_env, spin_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

import gradunc_ros.ros.node as node_module  # noqa: E402
import gradunc_ros.streams.worker as worker_module  # noqa: E402
from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.ros.spinning import own_node  # noqa: E402

pytestmark = pytest.mark.process
TOPICS = ["/oom_a/image", "/oom_b/image"]


class OutOfMemoryOnce:
    """Wraps predict_batch: raises CUDA's out-of-memory error on chosen calls, like a full GPU would."""

    def __init__(self, predict_batch, fail) -> None:
        self.predict_batch, self.fail, self.calls = predict_batch, fail, []

    def __call__(self, images, *args, **kwargs):
        self.calls.append(len(images))
        if self.fail(len(self.calls), len(images)):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return self.predict_batch(images, *args, **kwargs)


@pytest.fixture
def node_and_peer(random_erfnet: Path, tmp_path: Path, monkeypatch):
    isolated_ros_env(tmp_path)
    freed = []
    monkeypatch.setattr(worker_module, "free_device_memory", lambda: freed.append(True))
    with own_node("gradunc_oom_peer") as (peer, executor):
        gradunc = node_module.GraduncNode(
            parameter_overrides=[
                Parameter("weights", value=str(random_erfnet)),
                Parameter("image_topics", value=TOPICS),
                Parameter("device", value="cpu"),
            ]
        )
        executor.add_node(gradunc)
        labels: dict[str, list] = {topic: [] for topic in TOPICS}
        for topic in TOPICS:
            output = topic.replace("/image", "/gradunc/labels")
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            peer.create_subscription(Image, output, lambda m, t=topic: labels[t].append(m.header.stamp.sec), qos)
        try:
            yield gradunc, peer, labels, freed
        finally:
            gradunc.shutdown()
            executor.remove_node(gradunc)
            gradunc.destroy_node()


def _frame(stamp: int):
    image = np.random.default_rng(stamp).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = image_message(image, "rgb8")
    msg.header.stamp.sec = stamp
    return msg


def _hand_over(gradunc, frames: dict[int, object]) -> None:
    """Put frames into camera slots at once (as the subscription callbacks would), so they form one batch."""
    gradunc._scheduler.offer_together([(gradunc._cameras[index], msg) for index, msg in frames.items()])


def test_out_of_memory_skips_the_frame_frees_memory_and_goes_on(node_and_peer, capfd) -> None:
    gradunc, peer, labels, freed = node_and_peer
    wrapper = OutOfMemoryOnce(gradunc._pipeline.predict_batch, lambda call, _size: call == 1)
    gradunc._pipeline.predict_batch = wrapper
    _hand_over(gradunc, {0: _frame(1)})
    assert spin_until(peer, lambda: gradunc._cameras[0].inference_failed == 1, 30)
    _hand_over(gradunc, {0: _frame(2)})
    camera = gradunc._cameras[0]
    assert spin_until(peer, lambda: 2 in labels[TOPICS[0]] and camera.processed == 1, 30)
    assert labels[TOPICS[0]] == [2] and freed == [True]
    assert (camera.received, camera.processed, camera.inference_failed) == (2, 1, 1)
    assert "frame skipped: out of memory on a 64x48 frame (memory freed)" in capfd.readouterr().err


def test_a_batch_that_does_not_fit_is_served_one_frame_at_a_time(node_and_peer) -> None:
    gradunc, peer, labels, freed = node_and_peer
    wrapper = OutOfMemoryOnce(gradunc._pipeline.predict_batch, lambda _call, size: size > 1)
    gradunc._pipeline.predict_batch = wrapper
    _hand_over(gradunc, {0: _frame(3), 1: _frame(4)})
    assert spin_until(peer, lambda: labels[TOPICS[0]] == [3] and labels[TOPICS[1]] == [4], 30), labels
    assert wrapper.calls == [2, 1, 1] and freed == [True]
    assert [camera.inference_failed for camera in gradunc._cameras] == [0, 0]


def test_any_other_inference_error_skips_the_batch_and_goes_on(node_and_peer, capfd) -> None:
    gradunc, peer, labels, _freed = node_and_peer
    original = gradunc._pipeline.predict_batch
    calls = []

    def broken_once(images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR (injected)")
        return original(images, *args, **kwargs)

    gradunc._pipeline.predict_batch = broken_once
    _hand_over(gradunc, {0: _frame(5)})
    assert spin_until(peer, lambda: gradunc._cameras[0].inference_failed == 1, 30)
    _hand_over(gradunc, {0: _frame(6)})
    assert spin_until(peer, lambda: 6 in labels[TOPICS[0]], 30)
    assert "frame skipped: RuntimeError: cuDNN error" in capfd.readouterr().err
