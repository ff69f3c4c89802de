"""Helpers for tests that talk to gradunc_node over DDS: environment, start, spin until."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def isolated_ros_env(home: Path, _domain_offset: int = 0) -> dict:
    """A private ROS graph for one test module (a free domain, localhost discovery, stock transports; logs
    under ``home``), also joined by this process: other ROS graphs on the machine never interfere."""
    from gradunc_ros.ros.isolation import join_graph, private_ros_env

    env = private_ros_env(home=str(home))
    join_graph(env)
    return env


def start_node(parameters: dict[str, str], env: dict, log: Path, ros_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """gradunc_node as a process with ``-p name:=value`` for each parameter (and further ``ros_args``, e.g.
    remapping rules), output into ``log``; it dies with the test process, whatever ends that."""
    from gradunc_ros.processes import python_module

    arguments = ["--ros-args", *ros_args]
    for name, value in parameters.items():
        arguments += ["-p", f"{name}:={value}"]
    with log.open("w") as handle:
        return python_module("gradunc_ros.ros.main", *arguments, env=env, stdout=handle, stderr=subprocess.STDOUT)


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


def call(node, service_type, name: str, request, timeout: float = 30):
    """Call a service of gradunc_node and return the response (the test fails on a timeout)."""
    client = node.create_client(service_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
        future = client.call_async(request)
        assert spin_until(node, future.done, timeout), f"no answer from {name}"
        return future.result()
    finally:
        node.destroy_client(client)


def get_parameter(node, name: str):
    """A parameter's value as gradunc_node holds it."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    response = call(node, GetParameters, "/gradunc_node/get_parameters", GetParameters.Request(names=[name]))
    return parameter_value_to_python(response.values[0])


def wait_for_text(log: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return True
        time.sleep(0.2)
    return False
