"""``gradunc-bag evaluate BAG_OR_FOLDER...``: plan, run on an engine, merge, report.

The plan: every bag under the paths, by content digest (a bag given twice, or copied, counts once);
those already done in the results folder with these settings are skipped.  The run: one task per bag on
the engine asked for, with one progress bar over bags and frames.  The report: bags.jsonl, frames.jsonl
and manifest.json in the folder (of the bags given to this run), the summary (the set's merged ``pixel``
and ``component`` metrics, each bag's own beside them), and, when any bag failed, exit code 1 with a
one-line account.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from gradunc_ros.uncertainty.settings import SETTING_FIELDS

from . import engines
from .bag_task import frames_topic, latency_figures, tidy_failed
from .inputs import BagInput, bag_inputs
from .merge import merged_metrics
from .results import SPEC, ResultsFolder

# Options that say how the run goes, not what a bag's results are: the rest are the settings, which a
# results folder keeps one set of.  (--allow-unlabelled only decides whether a bag without labels fails,
# and a failed bag is never done.)
RUN_KEYS = {"bags", "out", "summary", "engine", "workers", "address", "cpus_per_task", "gpus_per_task",
            "stall_after", "command", "run", "threads", "progress", "allow_unlabelled"}  # fmt: skip
RESULTS_FORMAT = 2  # of the part folders: a folder of another format is refused, never half read
# Options the model, pipeline and threshold are assembled from (a worker process loads them once).
MODEL_KEYS = {"model", "weights", "card", "model_path", "num_classes", "device", "input_size", "backend",
              "precision", "threads", "threshold", *(field.name for field in SETTING_FIELDS)}  # fmt: skip


def settings_of(args: argparse.Namespace) -> dict:
    """What the results depend on, the weights by their full path and digest (the same path may hold
    retrained weights)."""
    settings = {"results_format": RESULTS_FORMAT, **{k: v for k, v in sorted(vars(args).items()) if k not in RUN_KEYS}}
    weights = Path(args.weights) if args.weights else None
    if weights is not None and weights.is_file():
        settings["weights"] = str(weights.resolve())
        settings["weights_digest"] = hashlib.blake2b(weights.read_bytes(), digest_size=8).hexdigest()
    return json.loads(json.dumps(settings))  # as the manifest holds them (tuples become lists)


def _frame_count(bag: BagInput, options: dict) -> int:
    """Frames in the bag, from its index, the bag opened once (0 where it cannot be read: its task will
    say why)."""
    try:
        from rosbags.rosbag2 import Reader

        with Reader(bag.path) as reader:
            connections = list(reader.connections)  # a copy: the reader empties its own on closing
        topic = frames_topic(options, {c.topic: c.msgtype for c in connections}, bag.path)
        return sum(c.msgcount for c in connections if c.topic == topic)
    except Exception:  # noqa: BLE001 - counted for the progress bar only
        return 0


def _threads(args: argparse.Namespace) -> int:
    """CPU threads per task: as asked, else the cores shared among the tasks at once (2 workers on 2 cores
    each get 1, not 2 each fighting over both)."""
    if args.threads:
        return args.threads
    if args.engine == "ray":
        return max(1, int(args.cpus_per_task))
    return max(1, (os.cpu_count() or 1) // args.workers)


def _run_info(args: argparse.Namespace) -> dict:
    return {"command": ["gradunc-bag", *sys.argv[1:]], "engine": args.engine, "workers": args.workers,
            "address": args.address}  # fmt: skip


def evaluate_fleet(args: argparse.Namespace) -> int:
    from gradunc_ros.processes import raise_on_sigterm

    raise_on_sigterm()  # a SIGTERM (a timeout, a supervisor) stops the workers, or the Ray started here, too
    if args.engine == "ray":
        engines.require_ray()  # before any work
    settings = settings_of(args)
    scratch = None
    if args.out is None:  # --recorded without a folder: results live for this run only
        scratch = Path(tempfile.mkdtemp(prefix="gradunc-bag-"))
    folder = ResultsFolder(args.out or scratch)
    try:
        folder.open(settings, _run_info(args))  # settings refused before any bag is read
        kept, fresh = folder.digests(), {}
        bags = bag_inputs((Path(p) for p in args.bags), skip=folder.root, kept=kept, used=fresh,
                          on_new=lambda: folder.keep_digests({**kept, **fresh}, every=5.0))  # fmt: skip
        folder.keep_digests(fresh)  # only this run's bags: a moved or changed bag's old entry goes
        return _evaluate_set(args, settings, bags, folder)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _evaluate_set(args: argparse.Namespace, settings: dict, bags: list[BagInput], folder: ResultsFolder) -> int:
    unique: dict[str, BagInput] = {}
    for bag in bags:
        if bag.digest in unique:
            same = unique[bag.digest].path
            print(f"gradunc-bag: {bag.path} has the content of {same}: counted once", file=sys.stderr)
        unique.setdefault(bag.digest, bag)
    # Bags done before keep their rows (and output bags); the path is where the bag lies now.
    rows = {d: {**folder.row(d), "bag": str(bag.path)} for d, bag in unique.items() if folder.done(d)}
    if rows:
        print(f"gradunc-bag: {len(rows)} of {len(unique)} bag(s) already done in {folder.root}: skipped",
              file=sys.stderr)  # fmt: skip
    options = {**settings, "threads": _threads(args), "allow_unlabelled": args.allow_unlabelled}
    specs = []
    for digest, bag in unique.items():
        if digest in rows:
            continue
        folder.clear(digest, bag.name)
        specs.append({"bag": str(bag.path), "name": bag.name, "digest": digest, "part": str(folder.part(digest)),
                      "output_bag": str(folder.output_bag(bag.name)), "options": options,
                      "model_keys": sorted(MODEL_KEYS)})  # fmt: skip
        (folder.part(digest) / SPEC).write_text(json.dumps(specs[-1], indent=1))
    frames_total = sum(_frame_count(bag, options) for bag in unique.values())
    bar = tqdm(total=frames_total, unit="frame", desc="bags", disable=not args.progress)

    last_poll = [0.0]

    def poll() -> None:
        if time.monotonic() - last_poll[0] < 0.5:  # a look at every running bag's progress: twice a second
            return
        last_poll[0] = time.monotonic()
        done = sum(row.get("frames", 0) for row in rows.values() if row.get("status") == "ok")
        running = sum(folder.frames_done(spec["digest"]) for spec in specs if spec["digest"] not in rows)
        bar.n = min(frames_total, done + running)
        failed = sum(row["status"] != "ok" for row in rows.values())
        bar.set_postfix_str(f"{len(rows)}/{len(unique)} bags" + (f", {failed} failed" if failed else ""))

    def finished(spec: dict, row: dict) -> None:
        rows[spec["digest"]] = row
        if row["status"] != "ok":
            tidy_failed(spec)  # a worker killed or stopped could not
            if len(unique) > 1:  # as it happens; one bag's is the run's account below
                tqdm.write(f"gradunc-bag: {spec['name']} failed: {row['error']}", file=sys.stderr)
        last_poll[0] = 0.0
        poll()

    poll()
    started = time.monotonic()  # the engine's time: workers' (or Ray's) start-up and model loading included
    try:
        if args.engine == "ray":
            engines.run_ray(specs, args.address, args.workers, args.cpus_per_task, args.gpus_per_task,
                            args.stall_after, finished, poll)  # fmt: skip
        elif args.workers > 1:
            engines.run_local(specs, args.workers, folder.root / "logs", args.stall_after, finished, poll)
        else:
            engines.run_in_process(specs, finished, poll)
    finally:
        bar.close()
    seconds = time.monotonic() - started
    ordered = [rows[digest] for digest in unique if digest in rows]
    frames_run = sum(rows[spec["digest"]].get("frames", 0) for spec in specs if spec["digest"] in rows)
    summary = _summary(args, ordered, folder, seconds, frames_run)
    folder.write_tables(ordered)
    folder.write_manifest(settings, {**_run_info(args), "state": "done", "seconds": round(seconds, 3)}, ordered)
    text = json.dumps(summary, indent=1)
    if args.summary:
        Path(args.summary).write_text(text)
    print(text)
    failed = [row for row in ordered if row["status"] != "ok"]
    if failed:
        first = failed[0]
        more = f"; all in {folder.root / 'bags.jsonl'}" if len(failed) > 1 and args.out else ""
        print(f"gradunc-bag: {len(failed)} of {len(ordered)} bag(s) failed ({first['name']}: {first['error']}{more})",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _summary(
    args: argparse.Namespace, rows: list[dict], folder: ResultsFolder, seconds: float, frames_run: int
) -> dict:
    ok = [row for row in rows if row["status"] == "ok"]
    summary = {
        "bags": len(rows), "bags_ok": len(ok), "bags_failed": len(rows) - len(ok),
        "frames_scored": sum(row["frames_scored"] for row in ok),
        "frames_with_labels": sum(row["frames_with_labels"] for row in ok),
        "frames_per_s": round(frames_run / seconds, 3) if seconds and frames_run else None,
    }  # fmt: skip
    latencies = [
        frame["latency_ms"] for row in ok for frame in folder.frame_rows(row["digest"]) if "latency_ms" in frame
    ]
    if latencies:  # of a recorded bag's frames: stamp to the node's output being recorded
        summary["latency_ms"] = latency_figures(latencies)
    summary.update(merged_metrics([folder.part(row["digest"]) for row in ok], args.min_pred, args.min_gt))
    own = ("frames", "frames_scored", "frames_with_labels", "undecodable", "frames_per_s", "latency_ms", "pixel",
           "component", "metrics_error", "output_bag", "error")  # fmt: skip
    summary["per_bag"] = {row["name"]: {"bag": row["bag"], "status": row["status"],
                                        **{k: row[k] for k in own if k in row}} for row in rows}  # fmt: skip
    if args.out:
        summary["results"] = str(folder.root)
    return summary
