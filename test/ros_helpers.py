"""Helpers for tests that talk to gradunc_node over DDS: environment, start, spin until."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def isolated_ros_env(home: Path, domain_offset: int) -> dict:
    """Logs under ``home`` and a DDS domain of this test module's own, also set for this process."""
    env = {**os.environ, "ROS_HOME": str(home), "ROS_LOG_DIR": str(home / "log"), "PYTHONUNBUFFERED": "1"}
    # Keep parallel runs apart; Fast DDS refuses domains above 232 (its port numbers run out).
    env["ROS_DOMAIN_ID"] = str(domain_offset + os.getpid() % 30)
    if not 0 <= int(env["ROS_DOMAIN_ID"]) <= 232:
        raise ValueError(f"domain {env['ROS_DOMAIN_ID']} is outside 0..232")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_HOME", "ROS_LOG_DIR")})
    return env


def start_node(parameters: dict[str, str], env: dict, log: Path) -> subprocess.Popen:
    """gradunc_node as a process with ``-p name:=value`` for each parameter, output into ``log``."""
    command = [sys.executable, "-m", "gradunc_ros.ros.node", "--ros-args"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    with log.open("w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def spin_until(node, condition: Callable[[], bool], timeout: float, publish: Callable[[], None] | None = None) -> bool:
    """Spin ``node``'s executor (publishing first, if given) until ``condition()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publish is not None:
            publish()
        node.executor.spin_once(timeout_sec=0.2)
        if condition():
            return True
    return False


def set_parameters(node, **values) -> list:
    """Ask gradunc_node to change parameters (floats as doubles, the rest as strings); the results."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = node.create_client(SetParameters, "/gradunc_node/set_parameters")
    assert client.wait_for_service(timeout_sec=20)
    request = SetParameters.Request()
    for name, value in values.items():
        if isinstance(value, float):
            typed = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            typed = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        request.parameters.append(Parameter(name=name, value=typed))
    future = client.call_async(request)
    assert spin_until(node, future.done, 20)
    return future.result().results
