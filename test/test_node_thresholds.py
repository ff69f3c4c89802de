"""The OoD mask's threshold follows the score, over DDS, with the shipped model and a real CamVid frame.

The shipped weights come with a table of thresholds calibrated for every score
setting (thresholds.py).  Changing ``score`` at run time moves the mask to that
score's calibrated threshold, so it flags a sane share of pixels (neither all nor
none); an explicit threshold stays when the score changes, and the log says it
was calibrated for another score.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import isolated_ros_env, set_parameters, spin_until, start_node, wait_for_text  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from gradunc_ros.imageio import read_rgb  # noqa: E402
from gradunc_ros.models import default_weights_path  # noqa: E402
from gradunc_ros.ros.publishing import image_message  # noqa: E402
from gradunc_ros.ros.spinning import own_node  # noqa: E402
from gradunc_ros.streams.codec import image_array  # noqa: E402
from gradunc_ros.thresholds import table_for_weights  # noqa: E402
from gradunc_ros.uncertainty import DEFAULT_SCORE, HeadSettings  # noqa: E402

pytestmark = pytest.mark.process
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
PREFIX = "/thr/gradunc"


@pytest.fixture(scope="module")
def table():
    table = table_for_weights(default_weights_path())
    assert table.thresholds, "the shipped weights come with calibrated thresholds"
    return table


@pytest.fixture(scope="module")
def served(camvid_root: str, tmp_path_factory: pytest.TempPathFactory):
    """gradunc_node with the shipped model and the shipped parameter file, and a peer sending a CamVid frame."""
    ros_env = isolated_ros_env(tmp_path_factory.mktemp("ros_home"))
    log = tmp_path_factory.mktemp("thresholds") / "node.log"
    config = str(Path(__file__).resolve().parents[1] / "config" / "gradunc.yaml")
    process = start_node({"image_topics": "[/thr/image_raw]", "input_reliability": "reliable"}, ros_env, log,
                         ros_args=("--params-file", config))  # fmt: skip
    frame_path = sorted((Path(camvid_root) / "val" / "images").glob("*.jpg"))[30]
    with own_node("gradunc_threshold_peer") as (node, _executor):
        received: dict[str, list] = {name: [] for name in ("uncertainty", "ood_mask")}
        for name in received:
            node.create_subscription(Image, f"{PREFIX}/{name}", lambda m, n=name: received[n].append(m), RELIABLE)
        camera = node.create_publisher(Image, "/thr/image_raw", RELIABLE)
        frame = image_message(read_rgb(frame_path), "rgb8")
        stamp = iter(range(1, 10**6))

        def serve() -> tuple[np.ndarray, np.ndarray]:
            """Send the frame with a new stamp until both outputs of that stamp came back."""
            frame.header.stamp.sec = next(stamp)
            wanted = frame.header.stamp.sec

            def both() -> list | None:
                found = [next((m for m in received[n] if m.header.stamp.sec == wanted), None) for n in received]
                return None if None in found else found

            assert spin_until(node, lambda: both() is not None, 60, lambda: camera.publish(frame))
            score, mask = (image_array(m) for m in both())
            return score, mask > 0

        yield node, serve, log
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def _sane(mask: np.ndarray) -> bool:
    return 0.0005 < mask.mean() < 0.5


def test_changing_the_score_moves_the_threshold_to_the_calibrated_one(served, table) -> None:
    node, serve, log = served
    default = DEFAULT_SCORE
    score, mask = serve()
    assert np.array_equal(mask, score > table.get(default)) and _sane(mask), mask.mean()
    for name in ("entropy", "msp", "max_logit"):
        (result,) = set_parameters(node, score=name)
        assert result.successful, result.reason
        score, mask = serve()
        assert np.array_equal(mask, score > table.get(HeadSettings(name))) and _sane(mask), (name, mask.mean())
    assert wait_for_text(log, f"OoD mask threshold {table.get(HeadSettings('msp')):.6g} (calibrated for msp", 10)


def test_an_explicit_threshold_stays_and_the_log_says_whose_it_was(served, table) -> None:
    node, serve, log = served
    assert set_parameters(node, score="entropy")[0].successful
    explicit = table.get(HeadSettings("entropy")) + 0.05
    assert set_parameters(node, threshold=explicit)[0].successful
    score, mask = serve()
    assert np.array_equal(mask, score > explicit)
    assert set_parameters(node, score="msp")[0].successful
    score, mask = serve()
    assert np.array_equal(mask, score > explicit)  # kept, though msp's scale is not entropy's
    assert wait_for_text(log, "was calibrated for entropy, not for the running score msp", 10)
    assert set_parameters(node, threshold=float("nan"))[0].successful  # back to the calibrated one
    score, mask = serve()
    assert np.array_equal(mask, score > table.get(HeadSettings("msp")))
