"""Helpers for tests that talk to gradunc_node over DDS: environment, start, spin until."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def node_running(parameters: dict[str, str], env: dict, log: Path) -> Iterator[subprocess.Popen]:
    """gradunc_node as a process (``start_node``) for a block; SIGINT at its end, SIGKILL after 30 s."""
    from gradunc_ros.processes import stop

    process = start_node(parameters, env, log)
    try:
        yield process
    finally:
        stop(process, timeout=30.0)


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


def serve_frame(
    parameters: dict[str, str], env: dict, log: Path, image, camera: str, outputs: tuple[str, ...],
    ros_args: tuple[str, ...] = (), while_up: Callable | None = None,
) -> dict:  # fmt: skip
    """Start gradunc_node, send ``image`` (rgb8) on ``camera`` (reliable) until each of ``outputs`` came back on
    ``<camera namespace>/gradunc/<output>``, call ``while_up(node)`` (a peer node, while gradunc_node still runs),
    then stop gradunc_node with SIGINT (exit code 0 asserted); the last message of each output, as an array."""
    import signal

    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from gradunc_ros.ros.publishing import image_message
    from gradunc_ros.ros.spinning import own_node
    from gradunc_ros.streams.codec import image_array

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    prefix = camera.rsplit("/", 1)[0] + "/gradunc/"
    process = start_node(parameters, env, log, ros_args)
    try:
        with own_node("gradunc_serve_peer") as (node, _executor):
            received: dict[str, list] = {name: [] for name in outputs}
            for name in outputs:
                node.create_subscription(Image, prefix + name, received[name].append, reliable)
            publisher = node.create_publisher(Image, camera, reliable)
            frame = image_message(image, "rgb8")
            served = spin_until(node, lambda: all(received.values()), 120, lambda: publisher.publish(frame))
            assert served, (log.read_text()[-3000:], {k: len(v) for k, v in received.items()})
            if while_up is not None:
                while_up(node)
            return {name: image_array(received[name][-1]) for name in outputs}
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
