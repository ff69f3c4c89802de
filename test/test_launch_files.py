"""Launch files and the parameter file agree with the node (checked without launch installed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_parameter_file_covers_every_node_parameter_with_its_type() -> None:
    pytest.importorskip("rclpy", reason="the node's parameter table needs rclpy")
    from gradunc_ros.ros.parameters import PARAMETERS, runtime_settings

    params = yaml.safe_load((REPO / "config" / "gradunc.yaml").read_text())["/**/gradunc_node"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert type(params[name]) is type(spec.default), name
    runtime_settings(params, tuple(f"c{i}" for i in range(9)))  # the file's values are valid


@pytest.mark.parametrize("name", ("gradunc.launch.py", "multi_camera.launch.py", "selfcheck.launch.py"))
def test_launch_files_parse_and_define_a_description(name: str) -> None:
    tree = ast.parse((REPO / "launch" / name).read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def test_main_launch_file_declares_the_documented_arguments() -> None:
    source = (REPO / "launch" / "gradunc.launch.py").read_text()
    tree = ast.parse(source)
    arguments = next(
        node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "ARGUMENTS"
    )
    names = {key.value for key in arguments.keys}
    assert names == {
        "image_topics", "model", "weights", "model_card", "model_path", "backend", "device", "params_file",
        "namespace", "autostart", "large_data", "depth_topics", "publish_semantic",
    }  # fmt: skip
    defaults = {key.value: value.elts[0].value for key, value in zip(arguments.keys, arguments.values, strict=True)
                if isinstance(value.elts[0], ast.Constant)}  # fmt: skip
    assert defaults["large_data"] == "false" and defaults["autostart"] == "true"  # stock interop by default
