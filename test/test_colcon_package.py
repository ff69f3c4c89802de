"""colcon build and colcon test of the package, as a ROS user runs them (process-level)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "gradunc_ros"
# Nested colcon runs must not start this file again.
INSIDE_COLCON_TEST = "GRADUNC_INSIDE_COLCON_TEST"

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(INSIDE_COLCON_TEST in os.environ, reason="already inside colcon test"),
]


def test_package_xml_is_a_format_3_ament_python_package() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.findtext("export/build_type") == "ament_python"
    exec_depends = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "python3-torch", "python3-numpy"} <= exec_depends
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}


@pytest.fixture(scope="module")
def colcon_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding a copy of the checkout, built with colcon."""
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed (make setup installs it)")
    workspace = tmp_path_factory.mktemp("ws")
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        ".train",
        ".data",
        ".whl",
        "build",
        "install",
        "log",
        "demo_out",
        "__pycache__",
        "*.egg-info",
        ".*cache",
    )
    shutil.copytree(REPO, workspace / "src" / PACKAGE, ignore=ignore)
    _colcon(workspace, "build")
    return workspace


def _colcon(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, INSIDE_COLCON_TEST: "1", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [str(Path(sys.executable).parent / "colcon"), "--log-base", "log", *args]
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"colcon {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_install_tree_has_what_ros2_run_and_launch_need(colcon_workspace: Path) -> None:
    prefix = colcon_workspace / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "selfcheck.launch.py").is_file()
    assert (share / "config" / "gradunc.yaml").is_file()
    executable = prefix / "lib" / PACKAGE / "gradunc-selfcheck"
    assert executable.is_file() and os.access(executable, os.X_OK)
    # The installed executable runs from the install tree, as `ros2 run` would start it.
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [str(executable), "--p", "0.5"], cwd=colcon_workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import gradunc_ros.uncertainty as u; print(u.__file__)"],
        cwd=colcon_workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert str(site) in check.stdout, check.stdout + check.stderr


COLCON_SLICE = "streams or geometry or test_outputs or thresholds or norms or test_layout or evaluation_metrics"


def test_colcon_test_runs_the_unit_tests(colcon_workspace: Path) -> None:
    # A slice of the unit suite (make test runs all of it): enough to show colcon finds pytest and the tests
    # and reports them, without running the whole suite a second time (3 minutes on the CI's two cores).
    _colcon(colcon_workspace, "test", "--event-handlers", "console_direct-", "--pytest-args", "-m", "not process",
            "-k", COLCON_SLICE)  # fmt: skip
    summary = _colcon(colcon_workspace, "test-result", "--all", "--verbose").stdout
    match = re.search(r"Summary: (\d+) tests?, (\d+) errors?, (\d+) failures?, (\d+) skipped", summary)
    assert match, summary
    tests, errors, failures, _skipped = (int(g) for g in match.groups())
    assert tests > 100, summary  # the unit suite, not zero tests
    assert errors == 0 and failures == 0, summary
