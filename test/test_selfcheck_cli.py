"""gradunc-selfcheck as a user runs it: exit codes and the verdict line."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def _selfcheck(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gradunc_ros.tools.selfcheck", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_passes_on_this_machine() -> None:
    result = _selfcheck("--p", "0.1", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: largest relative error" in result.stdout
    assert "penultimate conv" in result.stdout and "transposed conv" in result.stdout


def test_fails_when_the_tolerance_cannot_be_met() -> None:
    # Float32 scores cannot agree with float64 autograd to 1e-15: the failure path must report it.
    result = _selfcheck("--p", "1", "--tolerance", "1e-15")
    assert result.returncode == 1
    assert "FAIL" in result.stdout


def test_unusable_device_is_one_clear_line() -> None:
    result = _selfcheck("--device", "nosuchdevice")
    assert result.returncode == 2
    assert "not usable" in result.stderr and "Traceback" not in result.stderr
