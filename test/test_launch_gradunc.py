"""launch_testing for ros2 launch users: the node starts from the launch file and publishes.

Runs where launch_testing is installed (a ROS 2 install: `colcon test`); skipped elsewhere.
"""

from __future__ import annotations

import unittest

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed (no ROS 2 install)")
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    main = launch.substitutions.PathJoinSubstitution([FindPackageShare("gradunc_ros"), "launch", "gradunc.launch.py"])
    gradunc = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(main), launch_arguments={"image_topics": "['/camera/image_raw']"}.items()
    )
    return launch.LaunchDescription([gradunc, launch_testing.actions.ReadyToTest()])


class TestOutputs(unittest.TestCase):
    def test_every_output_arrives_with_the_input_header(self) -> None:
        rclpy.init()
        node = rclpy.create_node("gradunc_launch_test")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        got = {}
        for name in ("labels", "uncertainty", "ood_mask"):
            node.create_subscription(Image, f"/camera/gradunc/{name}", lambda m, n=name: got.setdefault(n, m), qos)
        publisher = node.create_publisher(Image, "/camera/image_raw", 10)
        frame = Image(height=240, width=320, encoding="rgb8", step=960)
        frame.data = np.zeros((240, 320, 3), np.uint8).tobytes()
        frame.header.frame_id = "camera"
        try:
            for _ in range(600):
                publisher.publish(frame)
                rclpy.spin_once(node, timeout_sec=0.1)
                if len(got) == 3:
                    break
            self.assertEqual(set(got), {"labels", "uncertainty", "ood_mask"})
            self.assertEqual(got["uncertainty"].encoding, "32FC1")
            self.assertEqual(got["labels"].header.frame_id, "camera")
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
