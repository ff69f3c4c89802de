"""Over DDS, cameras in processes of their own: fair shares when the node is overloaded, the first frames
of a reliable camera with input_reliability auto, and the warning for a camera the transport blinds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ros_helpers import node_running, spin_until, wait_for_text  # noqa: E402

from gradunc_ros.processes import start  # noqa: E402

pytestmark = pytest.mark.process
PEERS = str(Path(__file__).with_name("dds_peers.py"))
FAIR_TOPICS = ["/fair_0/image_raw", "/fair_1/image_raw", "/fair_2/image_raw"]


class Diagnostics:
    """The node's latest /diagnostics entry per camera topic."""

    def __init__(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = node
        self.latest: dict[str, dict] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_status, 10)

    def _on_status(self, message) -> None:
        for entry in message.status:
            values = {kv.key: float(kv.value) for kv in entry.values}
            self.latest[entry.name.removeprefix("gradunc_node: ")] = {**values, "message": entry.message}

    def counts(self, topic: str) -> dict:
        return dict(self.latest.get(topic, {}))


@pytest.fixture(scope="module")
def monitor(ros_env):
    from gradunc_ros.ros.spinning import own_node

    with own_node("gradunc_cameras_monitor") as (node, _executor):
        yield Diagnostics(node)


def _cameras(env: dict, topics: list[str], rates: list[float], *options: str) -> subprocess.Popen:
    command = [sys.executable, PEERS, "cameras", "--topics", ",".join(topics), "--rates", ",".join(map(str, rates))]
    return start([*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def overloaded_node(random_erfnet: Path, ros_env: dict, monitor, tmp_path_factory: pytest.TempPathFactory):
    """Three camera topics; the network input of 320x240 makes each frame cost far more than the cameras'
    period allows on the CI's two cores."""
    log = tmp_path_factory.mktemp("fair") / "node.log"
    parameters = {"weights": str(random_erfnet), "image_topics": "[" + ", ".join(FAIR_TOPICS) + "]",
                  "input_size": "320x240", "lazy": "false", "status_period": "0.5", "threshold": "0.0"}  # fmt: skip
    with node_running(parameters, ros_env, log) as process:
        assert spin_until(monitor.node, lambda: all(t in monitor.latest for t in FAIR_TOPICS), 120), log.read_text()
        yield process, log


def _shares(monitor: Diagnostics, topics: list[str], before: dict) -> dict[str, float]:
    """Per camera, the share of the frames the node could have taken that it processed: frames lost in a
    burst (held up on the way, then replaced at once; on a busy machine the node's own executor bunches
    them) were never the scheduler's to take, as streams/scheduler.py says."""
    shares = {}
    for topic in topics:
        now = monitor.counts(topic)
        delta = {key: now[key] - before[topic][key] for key in ("received", "processed", "dropped_in_bursts")}
        takeable = delta["received"] - delta["dropped_in_bursts"]
        assert takeable > 50, (topic, delta)
        shares[topic] = delta["processed"] / takeable
    return shares


@pytest.mark.parametrize(
    "rates", [[12.0, 12.0], [5.0, 5.0, 10.0]], ids=["two_cameras_at_12_hz", "three_cameras_at_5_5_10_hz"]
)
def test_overloaded_every_camera_gets_about_the_same_share(overloaded_node, monitor, ros_env, rates) -> None:
    topics = FAIR_TOPICS[: len(rates)]
    spin_until(monitor.node, lambda: False, 1.0)  # the latest counts of every camera
    before = {topic: monitor.counts(topic) for topic in topics}
    cameras = _cameras(ros_env, topics, rates, "--seconds", "18", "--reliable")
    assert spin_until(monitor.node, lambda: cameras.poll() is not None, 60), "the camera process did not end"
    assert cameras.returncode == 0, cameras.stderr.read()
    spin_until(monitor.node, lambda: False, 2.0)  # the node finishes its last pass and reports
    shares = _shares(monitor, topics, before)
    assert max(shares.values()) < 0.9, f"not overloaded: {shares}"
    # Within a tenth of the largest share.  Before the scheduler's window was the same span of time for
    # every camera, the busy CI machine gave 0.41 / 0.40 / 0.34 here (17 % apart); taking every waiting frame,
    # the rule it replaced, gives 0.5 / 0.5 / 0.25 in the same simulation (test_streams_scheduler.py).
    assert max(shares.values()) - min(shares.values()) <= 0.1 * max(shares.values()), (shares, monitor.latest)
    for topic in topics:  # per camera on /diagnostics: drops and latency
        values = monitor.counts(topic)
        assert values["dropped"] > 0 and values["latency_p50_ms"] > 0 and 0 < values["served_share"] < 1


@pytest.fixture(scope="module")
def auto_node(random_erfnet: Path, ros_env: dict, monitor, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("auto") / "node.log"
    parameters = {"weights": str(random_erfnet), "image_topics": "[/reliable_cam/image_raw, /blind_cam/image_raw]",
                  "input_reliability": "auto", "lazy": "false", "status_period": "0.5", "stale_after": "1.0",
                  "threshold": "0.0"}  # fmt: skip
    with node_running(parameters, ros_env, log) as process:
        assert spin_until(monitor.node, lambda: "/reliable_cam/image_raw" in monitor.latest, 120), log.read_text()
        yield process, log


def test_auto_receives_a_reliable_cameras_first_frames_and_stays_truthful_when_it_leaves(
    auto_node, monitor, ros_env
) -> None:
    """A reliable 1280x720 camera that publishes once the node's subscription has matched: every frame
    arrives (best effort first, as before, lost the first second of them)."""
    process, log = auto_node
    topic = "/reliable_cam/image_raw"
    for run in range(2):  # and again after the publisher restarted
        before = monitor.counts(topic).get("received", 0.0)
        camera = _cameras(ros_env, [topic], [5.0], "--width", "1280", "--height", "720", "--count", "8",
                          "--reliable", "--wait-match")  # fmt: skip
        assert spin_until(monitor.node, lambda c=camera: c.poll() is not None, 60), "the camera did not end"
        out, err = camera.communicate()
        assert camera.returncode == 0 and json.loads(out.splitlines()[-1]) == {topic: 8}, err
        assert spin_until(monitor.node, lambda b=before: monitor.counts(topic)["received"] - b == 8, 10), (
            run,
            monitor.counts(topic),
            before,
        )
    assert wait_for_text(log, f"{topic}: subscribed reliable: its 1 publisher offers reliable", 1)
    assert wait_for_text(log, f"{topic}: no publisher left; the reliable subscription stays", 5)
    assert "offer best_effort" not in log.read_text()


def test_a_best_effort_camera_of_large_frames_gets_a_warning_that_names_the_transport(
    auto_node, monitor, ros_env
) -> None:
    process, log = auto_node
    topic = "/blind_cam/image_raw"
    camera = _cameras(ros_env, [topic], [10.0], "--width", "1920", "--height", "1080", "--seconds", "8")
    try:
        blind = "received best effort"
        warned = spin_until(monitor.node, lambda: blind in monitor.counts(topic).get("message", ""), 30)
        values = monitor.counts(topic)
        if not warned and values.get("received", 0) > 0:
            pytest.skip(f"this machine's transport delivered {values['received']:.0f} best-effort 1080p frames, "
                        "never a second apart")  # fmt: skip
        assert warned, values
        assert values["publishers"] == 1
        assert "compressed images" in values["message"] and "LARGE_DATA" in values["message"]
        if values["received"] == 0:  # no frame ever came
            assert "the last one was" not in values["message"]
            assert wait_for_text(log, f"{topic}: no frames yet from 1 matched publisher, received best effort", 5)
        else:  # a few got through (2 of 80 on the CI once): the silence between them names the frame size
            assert "the last one was 1920x1080 rgb8" in values["message"], values
            assert wait_for_text(log, f"{topic}: no frames for", 5)
    finally:
        camera.kill()
        camera.wait(timeout=30)
