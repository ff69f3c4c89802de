"""The Ray started for a run ends with the run, even when the run is killed with SIGKILL.

Ray's own processes (GCS, raylet, its agents, the workers) are started by Ray, not by us, so the kernel's
parent-death signal (``processes.start``) cannot reach them: killed with SIGKILL, a driver leaves two
agents running for good (measured with Ray 2.60).  This small watcher, started beside the local Ray,
waits for the driver to go; then it kills every process that has a file open under the run's Ray temp
folder (every Ray process logs there) and removes that folder.  Linux only (/proc); elsewhere a no-op.

    python -m gradunc_ros.fleet.ray_reaper TEMP_DIR DRIVER_PID
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

POLL = 0.5  # seconds between looks at the driver


def holders(folder: str, spared: set[int]) -> list[int]:
    """Processes (but these) with a file open under ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or not ours to look at
            continue
        if any(link.startswith(folder) for link in links):
            found.append(int(entry.name))
    return found


def reap(folder: str, driver: int) -> None:
    """Every Ray process of the run but the driver (which holds Ray's logs open too), and the folder."""
    for pid in holders(folder, {os.getpid(), driver}):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    folder, driver = (argv or sys.argv[1:])[0], int((argv or sys.argv[1:])[1])
    if not Path("/proc").is_dir():
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle; it tells us after
    signal.signal(signal.SIGTERM, lambda *_: (reap(folder, driver), sys.exit(0)))  # the driver is done with Ray
    while os.getppid() == driver:
        time.sleep(POLL)
    reap(folder, driver)
    return 0


if __name__ == "__main__":
    sys.exit(main())
