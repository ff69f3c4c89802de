"""gradunc_node as a managed node (autostart:=false), driven through every lifecycle transition over DDS,
as `ros2 lifecycle set` or a lifecycle manager would."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import call, isolated_ros_env, spin_until, start_node, wait_for_text  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.ros.spinning import own_node  # noqa: E402

pytestmark = pytest.mark.process
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
CAMERA, OUTPUT = "/managed/image_raw", "/managed/gradunc/labels"


@pytest.fixture
def managed(random_erfnet: Path, tmp_path: Path):
    ros_env = isolated_ros_env(tmp_path / "ros_home")
    log = tmp_path / "node.log"
    parameters = {"weights": str(random_erfnet), "autostart": "false", "image_topics": f"[{CAMERA}]",
                  "input_reliability": "reliable"}  # fmt: skip
    process = start_node(parameters, ros_env, log)
    with own_node("gradunc_lifecycle_peer") as (node, _executor):
        received: list[int] = []
        node.create_subscription(Image, OUTPUT, lambda m: received.append(m.header.stamp.sec), RELIABLE)
        camera = node.create_publisher(Image, CAMERA, RELIABLE)
        yield process, log, node, camera, received
    if process.poll() is None:
        process.kill()


def _state(node) -> str:
    return call(node, GetState, "/gradunc_node/get_state", GetState.Request()).current_state.label


def _transition(node, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return call(node, ChangeState, "/gradunc_node/change_state", request, timeout=120).success


def _served(node, camera, received: list[int], stamp: int, seconds: float) -> bool:
    """Whether a frame stamped ``stamp``, sent repeatedly for ``seconds``, comes back as labels."""
    image = np.random.default_rng(stamp).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frame = image_message(image, "rgb8")
    frame.header.stamp.sec = stamp
    return spin_until(node, lambda: stamp in received, seconds, lambda: camera.publish(frame))


def test_every_transition_and_outputs_only_while_active(managed) -> None:
    process, log, node, camera, received = managed
    assert _state(node) == "unconfigured"
    assert not _served(node, camera, received, 1, 3.0)
    assert _transition(node, Transition.TRANSITION_CONFIGURE) and _state(node) == "inactive"
    assert wait_for_text(log, "erfnet (", 5)  # the model is loaded at configure
    assert not _served(node, camera, received, 2, 3.0)  # inactive: not subscribed, nothing published
    assert _transition(node, Transition.TRANSITION_ACTIVATE) and _state(node) == "active"
    assert _served(node, camera, received, 3, 60.0)
    assert _transition(node, Transition.TRANSITION_DEACTIVATE) and _state(node) == "inactive"
    received.clear()
    assert not _served(node, camera, received, 4, 3.0)
    assert _transition(node, Transition.TRANSITION_CLEANUP) and _state(node) == "unconfigured"
    # Configured again from scratch, it serves again.
    assert _transition(node, Transition.TRANSITION_CONFIGURE) and _transition(node, Transition.TRANSITION_ACTIVATE)
    assert _served(node, camera, received, 5, 60.0)
    assert _transition(node, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert _state(node) == "finalized"
    assert not _served(node, camera, received, 6, 3.0)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in log.read_text()


def test_a_failing_configure_leaves_the_node_unconfigured_with_the_reason(tmp_path) -> None:
    ros_env = isolated_ros_env(tmp_path / "ros_home")
    log = tmp_path / "node.log"
    process = start_node({"weights": str(tmp_path / "missing.safetensors"), "autostart": "false"}, ros_env, log)
    try:
        with own_node("gradunc_lifecycle_failure_peer") as (node, _executor):
            assert not _transition(node, Transition.TRANSITION_CONFIGURE)
            assert _state(node) == "unconfigured"
            assert "cannot configure" in log.read_text() and "does not exist" in log.read_text()
        assert process.poll() is None  # a managed node stays up for the next attempt
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="device memory is freed on CUDA only (no CUDA here)")
def test_deactivate_frees_device_memory(random_erfnet: Path, tmp_path) -> None:
    from rclpy.parameter import Parameter

    import gradunc_ros.ros.node as node_module

    isolated_ros_env(tmp_path)
    with own_node("gradunc_memory_peer") as (peer, executor):
        gradunc = node_module.GraduncNode(
            parameter_overrides=[
                Parameter("weights", value=str(random_erfnet)),
                Parameter("image_topics", value=[CAMERA]),
                Parameter("device", value="cuda"),
            ]
        )
        executor.add_node(gradunc)
        received: list[int] = []
        peer.create_subscription(Image, OUTPUT, lambda m: received.append(m.header.stamp.sec), RELIABLE)
        camera = peer.create_publisher(Image, CAMERA, RELIABLE)
        try:
            assert _served(peer, camera, received, 7, 60.0)
            before = torch.cuda.memory_reserved()
            gradunc.trigger_deactivate()
            assert gradunc._state_machine.current_state[1] == "inactive"
            assert torch.cuda.memory_reserved() < before  # the cached blocks of the last frames are given back
            gradunc.trigger_cleanup()
            assert torch.cuda.memory_allocated() == 0  # the model is gone too
        finally:
            gradunc.shutdown()
            executor.remove_node(gradunc)
            gradunc.destroy_node()
