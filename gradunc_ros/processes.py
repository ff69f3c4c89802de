"""Child processes that never outlive their parent, and a bounded way to stop them.

Every tool that starts processes (the demo, the bag tools, the benchmarks,
the tests' fixtures) starts them here.  On Linux each child asks the kernel
for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so even a
parent killed with SIGKILL leaves nothing behind; a parent that ends
normally stops its children itself with ``stop``.  No ROS here.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
TEARDOWN_SECONDS = 10.0
BACKSTOP_SECONDS = 5.0
_stuck: list[str] = []  # teardowns still running in their thread: the process must leave without them


def _ask_for_signal_on_parent_death(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _die_with(parent: int):
    def preexec() -> None:
        _ask_for_signal_on_parent_death(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took hold
            os._exit(1)

    return preexec


def end_with_parent() -> None:
    """This process gets SIGTERM when the process that started it dies (Linux), e.g. ``make`` killed with
    SIGKILL: with ``raise_on_sigterm`` its ``finally`` blocks then stop its own children."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        _ask_for_signal_on_parent_death(signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)


def start(command: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` of a child that is killed when this process dies (on Linux)."""
    if sys.platform.startswith("linux"):
        popen_kwargs.setdefault("preexec_fn", _die_with(os.getpid()))
    return subprocess.Popen(list(command), **popen_kwargs)


def python_module(module: str, *args: str, **popen_kwargs) -> subprocess.Popen:
    """``python -m module args`` with this interpreter, as a child that dies with this process."""
    return start([sys.executable, "-m", module, *args], **popen_kwargs)


def stop(process: subprocess.Popen, timeout: float = 10.0, first: int = signal.SIGINT) -> int:
    """End a child: ``first`` (SIGINT: ROS nodes shut down cleanly), SIGKILL after ``timeout`` s.
    Returns its exit code (negative: the signal that ended it)."""
    if process.poll() is None:
        try:
            process.send_signal(first)
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def raise_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, so a tool's ``finally`` blocks stop its children on either signal."""

    def interrupt(_signum: int, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def bounded_teardown(steps: Callable[[], None], what: str, seconds: float = TEARDOWN_SECONDS) -> None:
    """Run ``steps`` (a library's shutdown) for at most ``seconds``, in a thread of its own.

    Closing Fast DDS can hang (a transport thread never joins), and a tool that
    has done its job must still exit.  Past the bound this says so in one line
    and ``leave`` then ends the process without the interpreter's own shutdown,
    which would wait on the same library.  A hang that holds the GIL would stop
    this thread too, so faulthandler's watchdog (a C thread) ends the process
    with exit code 1 and the threads' stacks ``BACKSTOP_SECONDS`` later.  An
    error in ``steps`` is raised here.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            steps()
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            errors.append(error)

    thread = threading.Thread(target=run, name=f"teardown of {what}", daemon=True)
    faulthandler.dump_traceback_later(seconds + BACKSTOP_SECONDS, exit=True)
    thread.start()
    try:
        thread.join(seconds)
    finally:  # a signal while waiting leaves the thread running too
        faulthandler.cancel_dump_traceback_later()
        if thread.is_alive():
            _stuck.append(what)
            print(f"{what} did not shut down in {seconds:g} s; leaving without it", file=sys.stderr, flush=True)
    if errors:
        raise errors[0]


def leave(code: int) -> int:
    """``code``, or, when a teardown is still stuck, exit with it at once (streams flushed)."""
    if _stuck:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
