"""Who runs the bag tasks: this process, worker processes on this machine, or Ray.

Each engine runs every spec's ``bag_task.evaluate_bag`` and hands each outcome to ``finished`` as it
comes: the task's row, or, where the worker died or stalled before it could write one, a failed row
saying how.  ``poll`` is called a few times a second meanwhile (the progress bar).  A worker that dies
costs its own bag only; the others go on.  A task that shows no sign of life (no new frame, label
parked or metric chunk merged) for ``stall_after`` seconds is stopped and its bag failed (a stalled
network file system, a hung decoder), so no run waits forever (the in-process engine excepted: a bag
stuck in this process stops the run, as any stuck program).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gradunc_ros.errors import first_line

from .bag_task import evaluate_bag
from .results import PROGRESS, SPEC, WORKER, read_row

POLL = 0.2  # seconds between looks at the workers
Finished = Callable[[dict, dict], None]
RAY_MISSING = "--engine ray needs Ray: pip install 'ray>=2.9' (or gradunc_ros[ray]); --engine local needs nothing"


def failed_row(spec: dict, how: str) -> dict:
    """The row of a bag whose task ended before it could say how the bag went."""
    return {"bag": spec["bag"], "name": spec["name"], "digest": spec["digest"], "status": "failed", "error": how}


def _stalled(spec: dict, seconds: float) -> dict:
    return failed_row(
        spec,
        f"no sign of life (frame, label, metric chunk) for {seconds:g} s: its task was stopped "
        "(a stalled file system or a hung decoder? --stall-after sets the bound)",
    )


class Watch:
    """When each running task last showed a sign of life (a new frame, or a beat, in its progress file),
    to find the stalled ones."""

    def __init__(self, stall_after: float) -> None:
        self.stall_after = stall_after
        self._seen: dict[str, tuple[str, float]] = {}

    def started(self, spec: dict) -> None:
        self._seen[spec["digest"]] = (_progress(spec), time.monotonic())

    def watching(self, spec: dict) -> bool:
        return spec["digest"] in self._seen

    def stalled(self, spec: dict) -> bool:
        now, progress = time.monotonic(), _progress(spec)
        last, since = self._seen.setdefault(spec["digest"], (progress, now))
        if progress != last:
            self._seen[spec["digest"]] = (progress, now)
            return False
        return now - since > self.stall_after


def _progress(spec: dict) -> str:
    try:
        return (Path(spec["part"]) / PROGRESS).read_text()
    except OSError:
        return ""


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_in_process(specs: list[dict], finished: Finished, poll: Callable[[], None]) -> None:
    """One process, one bag after the other (the model loaded once)."""
    for spec in specs:
        finished(spec, evaluate_bag(spec, on_progress=poll))


class _Worker:
    """A worker process that evaluates the bags it is handed one after another (the model loaded once);
    it dies with this process, and ends when its stdin closes."""

    def __init__(self, log: Path) -> None:
        from gradunc_ros.processes import start

        self.log, self.spec = log, None
        with log.open("w") as handle:  # the child keeps its own copy of the descriptor
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


def run_local(
    specs: list[dict], workers: int, logs: Path, stall_after: float, finished: Finished, poll: Callable[[], None]
) -> None:
    """Up to ``workers`` processes, each taking the next bag when done with one.  A worker killed (the OOM
    killer, a user) or stalled takes only its bag with it: a fresh one takes its place for the bags still
    waiting.  Their output goes to ``logs``/worker-N.log."""
    from gradunc_ros.processes import stop

    waiting, pool, count, watch = list(specs), [], 0, Watch(stall_after)
    logs.mkdir(parents=True, exist_ok=True)

    def hand(worker: _Worker) -> None:
        if worker.give(waiting[0]):
            watch.started(waiting.pop(0))

    try:
        while waiting or any(worker.spec is not None for worker in pool):
            for worker in pool:  # an idle worker that died is let go below
                if worker.spec is None and waiting:
                    hand(worker)
            while waiting and len(pool) < workers:
                count += 1
                pool.append(_Worker(logs / f"worker-{count}.log"))
                hand(pool[-1])
            time.sleep(POLL)
            poll()
            for worker in list(pool):
                spec = worker.spec
                gone = worker.process.poll() is not None
                row = read_row(Path(spec["part"])) if spec is not None else None  # read after: a last row counts
                if row is not None:
                    finished(spec, row)
                    worker.spec = None
                elif spec is not None and not gone and watch.stalled(spec):
                    worker.process.kill()
                    try:
                        worker.process.wait(timeout=10.0)
                    except subprocess.TimeoutExpired:  # unkillable (a hung mount): abandoned, it dies with us
                        pass
                    finished(spec, read_row(Path(spec["part"])) or _stalled(spec, stall_after))  # done after all?
                    pool.remove(worker)
                elif gone:
                    if spec is not None:
                        finished(spec, _death_row(spec, worker.process.returncode, worker.log))
                    pool.remove(worker)
    finally:
        for worker in pool:
            try:
                worker.process.stdin.close()  # an idle worker ends by itself
            except OSError:
                pass
            stop(worker.process, timeout=5.0, first=signal.SIGTERM)


def _death_row(spec: dict, code: int, log: Path) -> dict:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return failed_row(spec, f"its worker was killed by {name} in the middle of the bag (rerun to resume it)")
    return failed_row(spec, f"its worker exited with code {code}: {_last_line(log) or 'no output'}")


def require_ray():
    """Ray, or the one line that says what to install."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_MISSING) from None
    return ray


def _check_resources(ray, cpus: float, gpus: float, cluster: bool) -> None:
    """A task asking for more than any node has would wait for ever: refused in one line instead (on a
    cluster, which may grow nodes on demand, said as a warning)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        return
    largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
    text = (f"no Ray node has {cpus:g} CPU(s) and {gpus:g} GPU(s) for a task (the largest has "
            f"{largest.get('CPU', 0):g} and {largest.get('GPU', 0):g})")  # fmt: skip
    if not cluster:
        raise RuntimeError(f"{text}: lower --cpus-per-task / --gpus-per-task")
    print(f"gradunc-bag: {text} yet: the tasks wait for the cluster to grow (--stall-after does not count "
          "a queued task)", file=sys.stderr)  # fmt: skip


def run_ray(
    specs: list[dict],
    address: str | None,
    workers: int,
    cpus: float,
    gpus: float,
    stall_after: float,
    finished: Finished,
    poll: Callable[[], None],
) -> None:
    """One Ray task per bag, each declaring ``cpus`` CPUs and ``gpus`` GPUs, on the cluster at ``address``,
    or on a Ray started here for the run (``workers`` tasks at once) and stopped after it.  Bags, weights
    and the results folder must be at the same paths on every node (a shared file system)."""
    import logging

    from gradunc_ros.processes import bounded_teardown, raise_on_sigterm, stop

    ray = require_ray()
    options = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    reaper, temp = None, None
    try:
        if address:
            ray.init(address=address, **options)
        else:  # a private instance for this run; a small object store: the tasks hand back rows only
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            temp = tempfile.mkdtemp(prefix="gradunc-ray-")  # short: Ray's sockets live here (107-byte paths)
            # Not start()'s death signal for the reaper: it must outlive a killed driver to clean up after it.
            reaper = subprocess.Popen([sys.executable, "-m", "gradunc_ros.fleet.ray_reaper", temp, str(os.getpid())])
            ray.init(num_cpus=workers * cpus, object_store_memory=128 << 20, _temp_dir=temp, **options)
    except Exception as error:  # noqa: BLE001 - Ray fails to start or connect in many ways
        if reaper is not None:
            stop(reaper, timeout=10.0, first=signal.SIGTERM)
        raise RuntimeError(f"Ray did not start{' at ' + address if address else ''}: {first_line(error)}") from None
    raise_on_sigterm()  # ray.init put its own SIGTERM handler in, which would skip the shutdown below
    try:
        _check_resources(ray, cpus, gpus, cluster=bool(address))
        _run_tasks(ray, specs, cpus, gpus, Watch(stall_after), finished, poll)
    except ray.exceptions.RayError as error:  # the cluster itself went away
        raise RuntimeError(f"Ray failed: {type(error).__name__}: {first_line(error)}") from None
    finally:
        try:
            bounded_teardown(ray.shutdown, "Ray's shutdown")
        except Exception as error:  # noqa: BLE001 - the results are in; say it and go on
            print(f"gradunc-bag: Ray's shutdown failed: {first_line(error)}", file=sys.stderr)
        if reaper is not None:
            stop(reaper, timeout=10.0, first=signal.SIGTERM)
        if temp is not None:  # the reaper removes it too, but only where it can look at /proc
            shutil.rmtree(temp, ignore_errors=True)


CANCEL_GRACE = 30.0  # seconds a cancelled (stalled) Ray task has to end before it is given up on


def _run_tasks(ray, specs: list[dict], cpus: float, gpus: float, watch: Watch, finished: Finished, poll) -> None:
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(evaluate_bag)
    pending = {task.remote(spec): spec for spec in specs}
    cancelled: dict[object, float] = {}  # reference -> when it was cancelled
    every = min(5.0, watch.stall_after / 3)  # seconds between looks for stalled tasks: a stat per task
    looked = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL)
        poll()
        for reference in ready:
            spec = pending.pop(reference)
            try:
                row = ray.get(reference)  # a stalled task may have finished after all
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as error:
                row = failed_row(spec, f"its Ray worker died in the middle of the bag ({type(error).__name__}); "
                                       "rerun to resume it")  # fmt: skip
            except ray.exceptions.RayError as error:  # evaluate_bag catches its own errors: this is Ray's
                row = failed_row(spec, f"its Ray task failed ({type(error).__name__}: {first_line(error)})")
            if reference in cancelled and row["status"] != "ok":
                row = _stalled(spec, watch.stall_after)
            cancelled.pop(reference, None)
            finished(spec, row)
        now = time.monotonic()
        for reference in [r for r, at in cancelled.items() if now - at > CANCEL_GRACE]:  # it never ended
            spec = pending.pop(reference)
            cancelled.pop(reference)
            finished(spec, _stalled(spec, watch.stall_after))
        if now - looked < every:
            continue
        looked = now
        for reference, spec in pending.items():
            # A task counts as running once its worker said so (worker.json): a queued one is not stalled.
            if reference in cancelled or not (Path(spec["part"]) / WORKER).exists():
                continue
            if not watch.watching(spec):
                watch.started(spec)
            elif watch.stalled(spec):
                cancelled[reference] = now
                ray.cancel(reference, force=True)
