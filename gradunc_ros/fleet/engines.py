"""Who runs the bag tasks: this process, worker processes on this machine, or Ray.

Each engine runs every spec's ``bag_task.evaluate_bag`` and hands each outcome to ``finished`` as it
comes: the task's row, or, where the worker died before it could write one, a failed row saying how.
``poll`` is called a few times a second meanwhile (the progress bar).  A worker that dies costs its own
bag only; the others go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .bag_task import evaluate_bag
from .results import ROW, SPEC

POLL = 0.2  # seconds between looks at the workers
Finished = Callable[[dict, dict], None]
RAY_MISSING = "--engine ray needs Ray: pip install 'ray>=2.9' (or gradunc_ros[ray]); --engine local needs nothing"


def died(spec: dict, how: str) -> dict:
    """The row of a bag whose worker ended before it could say how the bag went."""
    return {"bag": spec["bag"], "name": spec["name"], "digest": spec["digest"], "status": "failed", "error": how}


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_in_process(specs: list[dict], finished: Finished, poll: Callable[[], None]) -> None:
    """One process, one bag after the other (the model loaded once)."""
    for spec in specs:
        finished(spec, evaluate_bag(spec))
        poll()


class _Worker:
    """A worker process that evaluates the bags it is handed one after another (the model loaded once);
    it dies with this process, and ends when its stdin closes."""

    def __init__(self, log: Path) -> None:
        from gradunc_ros.processes import start

        self.log, self.spec = log, None
        with log.open("a") as handle:  # the child keeps its own copy of the descriptor
            command = [sys.executable, "-m", "gradunc_ros.fleet.bag_task"]
            self.process = start(command, stdin=subprocess.PIPE, stdout=handle, stderr=subprocess.STDOUT, text=True)

    def give(self, spec: dict) -> bool:
        """Hand over a bag (its spec file's path, one line); False when the worker is gone."""
        try:
            self.process.stdin.write(str(Path(spec["part"]) / SPEC) + "\n")
            self.process.stdin.flush()
        except OSError:  # a broken pipe: it died idle
            return False
        self.spec = spec
        return True


def run_local(specs: list[dict], workers: int, logs: Path, finished: Finished, poll: Callable[[], None]) -> None:
    """Up to ``workers`` processes, each taking the next bag when done with one.  A worker killed (the OOM
    killer, a user) takes only its bag with it: a fresh one takes its place for the bags still waiting.
    Their output goes to ``logs``/worker-N.log."""
    from gradunc_ros.processes import stop

    waiting, pool, started = list(specs), [], 0
    logs.mkdir(parents=True, exist_ok=True)
    try:
        while waiting or any(worker.spec is not None for worker in pool):
            for worker in pool:  # an idle worker that died is let go below
                if worker.spec is None and waiting and worker.give(waiting[0]):
                    waiting.pop(0)
            while waiting and len(pool) < workers:
                started += 1
                pool.append(_Worker(logs / f"worker-{started}.log"))
                if pool[-1].give(waiting[0]):
                    waiting.pop(0)
            time.sleep(POLL)
            poll()
            for worker in list(pool):
                row = _row(worker.spec) if worker.spec is not None else None
                if row is not None:
                    finished(worker.spec, row)
                    worker.spec = None
                elif worker.process.poll() is not None:
                    if worker.spec is not None:
                        finished(worker.spec, _died(worker.spec, worker.process.returncode, worker.log))
                    pool.remove(worker)
    finally:
        for worker in pool:
            try:
                worker.process.stdin.close()  # an idle worker ends by itself
            except OSError:
                pass
            stop(worker.process, timeout=5.0, first=signal.SIGTERM)


def _row(spec: dict) -> dict | None:
    try:
        return json.loads((Path(spec["part"]) / ROW).read_text())
    except (OSError, ValueError):
        return None


def _died(spec: dict, code: int, log: Path) -> dict:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return died(spec, f"its worker was killed by {name} in the middle of the bag (rerun to resume it)")
    return died(spec, f"its worker exited with code {code}: {_last_line(log) or 'no output'}")


def require_ray():
    """Ray, or the one line that says what to install."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_MISSING) from None
    return ray


def run_ray(
    specs: list[dict],
    address: str | None,
    workers: int,
    cpus: float,
    gpus: float,
    finished: Finished,
    poll: Callable[[], None],
) -> None:
    """One Ray task per bag, each declaring ``cpus`` CPUs and ``gpus`` GPUs, on the cluster at ``address``,
    or on a Ray started here for the run (``workers`` tasks at once) and stopped after it.  Bags, weights
    and the results folder must be at the same paths on every node (a shared file system)."""
    import logging

    from gradunc_ros.processes import raise_on_sigterm, stop

    ray = require_ray()
    options = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    reaper = None
    if address:
        ray.init(address=address, **options)
    else:  # a private instance for this run; a small object store: the tasks hand back rows only
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        temp = tempfile.mkdtemp(prefix="gradunc-ray-")  # short: Ray's sockets live here (107-byte paths)
        # Not start()'s death signal for the reaper: it must outlive a killed driver to clean up after it.
        reaper = subprocess.Popen([sys.executable, "-m", "gradunc_ros.fleet.ray_reaper", temp, str(os.getpid())])
        ray.init(num_cpus=workers * cpus, object_store_memory=128 << 20, _temp_dir=temp, **options)
    raise_on_sigterm()  # ray.init put its own SIGTERM handler in, which would skip the shutdown below
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(evaluate_bag)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL)
            poll()
            for reference in ready:
                spec = pending.pop(reference)
                try:
                    row = ray.get(reference)
                except ray.exceptions.RayError as error:  # the worker died, or Ray lost the task
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    row = died(spec, f"its Ray task failed ({type(error).__name__}: {first}); rerun to resume it")
                finished(spec, row)
    finally:
        ray.shutdown()
        if reaper is not None:
            stop(reaper, timeout=10.0, first=signal.SIGTERM)
