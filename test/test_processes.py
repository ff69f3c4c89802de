"""A teardown that hangs (as Fast DDS can while closing) bounds the tool's exit, with its exit code and one line.

No ROS here: a blocking call stands in for the middleware's shutdown, and an
``atexit`` handler that never returns stands in for its destructors at exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from gradunc_ros.processes import bounded_teardown, leave

HANGING_TOOL = textwrap.dedent(
    """
    import atexit, sys, threading
    from gradunc_ros.processes import bounded_teardown, leave
    never = threading.Event()
    atexit.register(never.wait)  # the library's own shutdown at exit would hang too
    bounded_teardown(never.wait, "the test middleware", seconds=0.5)
    print("work done", flush=True)
    sys.exit(leave(3))
    """
)


def test_a_hung_teardown_still_exits_with_the_tools_code_and_says_why() -> None:
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", HANGING_TOOL], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 3, finished.stderr
    assert finished.stdout == "work done\n"
    assert finished.stderr.strip() == "the test middleware did not shut down in 0.5 s; leaving without it"
    assert time.monotonic() - started < 30


GIL_HOLDING_TOOL = textwrap.dedent(
    """
    import ctypes, sys
    from gradunc_ros.processes import bounded_teardown, leave
    # A C call made without releasing the GIL: no Python thread can run until it returns.
    bounded_teardown(lambda: ctypes.PyDLL(None).sleep(3600), "the test middleware", seconds=0.5)
    sys.exit(leave(0))
    """
)


def test_a_hung_teardown_that_holds_the_gil_ends_the_process_with_code_1_and_the_stacks() -> None:
    from gradunc_ros.processes import BACKSTOP_SECONDS

    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", GIL_HOLDING_TOOL], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert finished.stderr.startswith("Timeout (") and "bounded_teardown" in finished.stderr
    assert 0.5 + BACKSTOP_SECONDS <= time.monotonic() - started < 30


def test_a_teardown_that_finishes_is_waited_for_and_its_error_raised() -> None:
    done = []
    bounded_teardown(lambda: done.append(True), "quick", seconds=30)
    assert done == [True] and leave(5) == 5

    def failing() -> None:
        raise RuntimeError("rcl_shutdown failed")

    with pytest.raises(RuntimeError, match="rcl_shutdown failed"):
        bounded_teardown(failing, "failing", seconds=30)
    assert leave(0) == 0  # a failed teardown is not a stuck one
