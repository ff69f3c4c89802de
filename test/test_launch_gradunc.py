"""launch_testing for ros2 launch users: gradunc.launch.py with its defaults, fed by a stock camera process and
heard by a stock listener process (neither sets any transport variable).

Runs where launch_testing is installed and gradunc_ros is in the ament index (a ROS 2 install after
`colcon build`: `colcon test`); skipped elsewhere, with the reason.
"""

from __future__ import annotations

import json
import os
import sys
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed (no ROS 2 install)")
try:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    get_package_share_directory("gradunc_ros")
except (ImportError, PackageNotFoundError):
    pytest.skip(
        "gradunc_ros is not in the ament index: colcon build, then source install/setup.bash", allow_module_level=True
    )

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402

pytestmark = pytest.mark.process
PEERS = str(Path(__file__).with_name("dds_peers.py"))


@pytest.mark.launch_test
def generate_test_description():
    main = launch.substitutions.PathJoinSubstitution([FindPackageShare("gradunc_ros"), "launch", "gradunc.launch.py"])
    gradunc = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(main), launch_arguments={"image_topics": "['/camera/image_raw']"}.items()
    )
    # Ordinary ROS 2 processes: this test's own environment without any Fast DDS transport choice.
    stock = {k: v for k, v in os.environ.items() if not k.startswith(("FASTDDS_", "FASTRTPS_"))}
    camera = launch.actions.ExecuteProcess(
        cmd=[sys.executable, PEERS, "camera", "--frames", "1200", "--rate", "4"], env=stock, name="stock_camera"
    )
    listener = launch.actions.ExecuteProcess(
        cmd=[sys.executable, PEERS, "listener", "--frames", "2", "--timeout", "240"], env=stock, name="stock_listener"
    )
    description = launch.LaunchDescription([gradunc, camera, listener, launch_testing.actions.ReadyToTest()])
    return description, {"listener": listener}


class TestOutputs(unittest.TestCase):
    def test_a_stock_listener_gets_every_output_with_the_cameras_stamp_and_frame_id(
        self, proc_info, proc_output, listener
    ) -> None:
        proc_info.assertWaitForShutdown(process=listener, timeout=300)
        launch_testing.asserts.assertExitCodes(proc_info, [0], process=listener)
        records = [
            json.loads(line)
            for output in proc_output[listener]
            for line in output.text.decode().splitlines()
            if line.startswith("{")
        ]
        by_stamp: dict[int, dict[str, dict]] = {}
        for record in records:
            by_stamp.setdefault(record["stamp"], {})[record["output"]] = record
        complete = [outputs for outputs in by_stamp.values() if len(outputs) == 3]
        self.assertGreaterEqual(len(complete), 2)
        for outputs in complete:
            self.assertEqual({r["frame_id"] for r in outputs.values()}, {"camera"})


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
