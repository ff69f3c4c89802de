"""The core (uncertainty, models, evaluation, pipeline, assembly, the deployment runtimes, geometry, streams, the
fleet evaluation) runs without ROS: importing it loads no ROS module."""

from __future__ import annotations

import subprocess
import sys

ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "rosidl", "rcl_interfaces")


def test_importing_the_core_loads_no_ros_module() -> None:
    code = (
        "import sys, gradunc_ros.uncertainty, gradunc_ros.uncertainty.autograd_reference, gradunc_ros.models,"
        " gradunc_ros.evaluation.runner, gradunc_ros.evaluation.report, gradunc_ros.pipeline, gradunc_ros.assembly,"
        " gradunc_ros.deploy.onnx_export, gradunc_ros.deploy.onnx_model, gradunc_ros.deploy.onnx_tail,"
        " gradunc_ros.geometry.obstacles, gradunc_ros.streams.worker, gradunc_ros.streams.depth_sync,"
        " gradunc_ros.streams.bags, gradunc_ros.streams.topics, gradunc_ros.fleet.run, gradunc_ros.fleet.bag_task,"
        " gradunc_ros.fleet.ray_reaper;"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0].startswith({ROS_MODULES!r}));"
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ros_is_installed_in_the_test_environment() -> None:
    """The guard above is only meaningful where rclpy exists and would be importable."""
    result = subprocess.run([sys.executable, "-c", "import rclpy, sensor_msgs.msg"], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
