"""The node started as gradunc.launch.py starts it by default talks to stock ROS 2 processes.

A stock camera process and a stock listener process (neither sets any transport
variable, as an ordinary driver and `ros2 topic echo`) and gradunc_node with the
launch file's default parameter file and the environment its default arguments
give (read from the launch file itself, so that a default that breaks stock
interop, such as large_data:=true, fails here).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from gradunc_ros.processes import python_module, start, stop  # noqa: E402
from gradunc_ros.ros.isolation import private_ros_env  # noqa: E402

pytestmark = pytest.mark.process
REPO = Path(__file__).resolve().parents[1]
PEERS = str(Path(__file__).with_name("dds_peers.py"))


def launch_defaults() -> dict[str, str]:
    """The default values of gradunc.launch.py's arguments that are plain strings."""
    tree = ast.parse((REPO / "launch" / "gradunc.launch.py").read_text())
    arguments = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS")
    return {
        key.value: value.elts[0].value
        for key, value in zip(arguments.keys, arguments.values, strict=True)
        if isinstance(value.elts[0], ast.Constant)
    }


def test_a_stock_camera_and_a_stock_listener_talk_to_the_node_as_launched_by_default(tmp_path: Path) -> None:
    defaults = launch_defaults()
    env = private_ros_env(home=str(tmp_path / "ros_home"))  # stock transports: no FASTDDS_* variable
    node_env = dict(env)
    if defaults["large_data"].lower() == "true":  # what the launch file's SetEnvironmentVariable does
        node_env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    log = (tmp_path / "node.log").open("w")
    node = python_module(
        "gradunc_ros.ros.main", "--ros-args", "--params-file", str(REPO / "config" / "gradunc.yaml"),
        "-p", "image_topics:=[/camera/image_raw]", "-p", f"autostart:={defaults['autostart']}",
        env=node_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    listener = start([sys.executable, PEERS, "listener", "--frames", "2", "--timeout", "150"], env=env,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    camera = start([sys.executable, PEERS, "camera", "--frames", "600", "--rate", "4"], env=env)
    try:
        out, err = listener.communicate(timeout=180)
        assert listener.returncode == 0, err + (tmp_path / "node.log").read_text()[-2000:]
    finally:
        stop(camera)
        stop(listener)
        stop(node, 30)
        log.close()
    records = [json.loads(line) for line in out.splitlines()]
    by_stamp: dict[int, dict[str, dict]] = {}
    for record in records:
        by_stamp.setdefault(record["stamp"], {})[record["output"]] = record
    complete = [outputs for outputs in by_stamp.values() if len(outputs) == 3]
    assert len(complete) >= 2
    for outputs in complete:
        assert {r["frame_id"] for r in outputs.values()} == {"camera"}
        assert (outputs["labels"]["encoding"], outputs["uncertainty"]["encoding"]) == ("mono8", "32FC1")
    assert "stock Fast DDS transports" in (tmp_path / "node.log").read_text()
