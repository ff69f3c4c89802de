"""The results folder of a fleet run (``--out``): what is done, what each bag gave, and the run manifest.

    manifest.json        the settings, the command, the engine, and every bag's path, digest and status
    bags.jsonl           one row per bag (status, counts, frames/s, the bag's own metrics, or its error)
    frames.jsonl         one row per frame of the bags that finished
    bags/<name>/         one output bag per input bag (the node's topics)
    logs/                what the local engine's worker processes printed (worker-N.log)
    parts/<digest>/      a bag's own results: spec.json (what its task was asked), worker.json (where it
                         ran), progress, frames.jsonl, labelled/ (each labelled frame's score and label
                         maps), ood_scores.npy and row.json, written last, so a bag counts as done only
                         once all of it is there

A rerun with the same settings skips the bags whose ``row.json`` says ok (by content digest, wherever
the bag now lies) and tidies what a killed task left half-written; bags.jsonl and frames.jsonl are
written anew from the parts, so nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from gradunc_ros.errors import first_line

MANIFEST = "manifest.json"
ROW = "row.json"
FRAMES = "frames.jsonl"
LABELLED = "labelled"  # a folder: one .npz (score, label) per labelled frame, in order
LABELS_WAITING = "labels"  # a folder: the bag's label images, parked by stamp until their frames come
OOD_SCORES = "ood_scores.npy"  # every labelled frame's OoD pixels' scores, joined
PROGRESS = "progress"
WORKER = "worker.json"
SPEC = "spec.json"
DIGESTS = "digests.json"  # the bags' digests by path, size and modification time: a rerun reads no bag again


def refusal(root: Path) -> str | None:
    """Why ``root`` cannot be a results folder (it holds something else), or None."""
    if root.exists() and not root.is_dir():
        return f"{root} is a file, not a results folder"
    if root.is_dir() and any(root.iterdir()) and not (root / MANIFEST).is_file():
        return f"{root} exists and holds no results of gradunc-bag evaluate: give a new folder (or an earlier run's)"
    return None


def read_row(part: Path) -> dict | None:
    """A bag's row once its task finished (ok or failed), else None."""
    try:
        return json.loads((part / ROW).read_text())
    except (OSError, ValueError):
        return None


def write_json_atomically(path: Path, value: object) -> None:
    """Whole or not at all: a reader never sees half a file, even when the writer is killed."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1))
    os.replace(partial, path)


class ResultsFolder:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._digests_written = 0.0  # time.monotonic() of the last keep_digests write

    def open(self, settings: dict, run: dict) -> None:
        """Create the folder, or check that an existing one holds results of these settings; then, before
        anything else is written, a manifest saying a run is under way: a run killed from here on resumes."""
        manifest = self.root / MANIFEST
        reason = refusal(self.root)
        if reason:
            raise ValueError(reason)
        earlier_bags: list = []
        if manifest.is_file():
            try:
                earlier = json.loads(manifest.read_text())
                earlier_settings, earlier_bags = earlier["settings"], earlier.get("bags", [])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{manifest} is unreadable ({first_line(error)}): give a new folder") from None
            changed = sorted(
                k for k in set(earlier_settings) | set(settings) if earlier_settings.get(k) != settings.get(k)
            )
            if changed:
                raise ValueError(
                    f"{self.root} holds results made with other settings ({', '.join(changed)}): "
                    "give a new folder, or the same settings to resume"
                )
        self.root.mkdir(exist_ok=True)
        self.write_manifest(settings, {**run, "state": "running"}, earlier_bags)
        (self.root / "parts").mkdir(exist_ok=True)
        (self.root / "bags").mkdir(exist_ok=True)

    def digests(self) -> dict:
        try:
            return json.loads((self.root / DIGESTS).read_text())
        except (OSError, ValueError):
            return {}

    def keep_digests(self, digests: dict, every: float = 0.0) -> None:
        """Write the digests (with ``every``: at most that often, so a long hashing run keeps what it did)."""
        now = time.monotonic()
        if now - self._digests_written >= every:
            write_json_atomically(self.root / DIGESTS, digests)
            self._digests_written = now

    def part(self, digest: str) -> Path:
        return self.root / "parts" / digest

    def output_bag(self, name: str) -> Path:
        return self.root / "bags" / name

    def row(self, digest: str) -> dict | None:
        """The bag's row if its task finished (ok or failed), else None."""
        return read_row(self.part(digest))

    def done(self, digest: str) -> bool:
        row = self.row(digest)
        return row is not None and row.get("status") == "ok"

    def clear(self, digest: str, name: str) -> None:
        """What an unfinished or failed task of this bag left (under this name, or the one it had then):
        it runs again from the start."""
        names = {name}
        try:
            names.add(json.loads((self.part(digest) / SPEC).read_text())["name"])
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(self.part(digest), ignore_errors=True)
        for earlier in names:
            for leftover in (self.output_bag(earlier), self.output_bag("." + earlier + ".partial")):
                shutil.rmtree(leftover, ignore_errors=True)
        self.part(digest).mkdir(parents=True)

    def frames_done(self, digest: str) -> int:
        """How many frames the bag's task has been through (its progress file; 0 before it starts)."""
        try:
            return int((self.part(digest) / PROGRESS).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def frame_rows(self, digest: str) -> list[dict]:
        with (self.part(digest) / FRAMES).open() as lines:
            return [json.loads(line) for line in lines]

    def write_tables(self, rows: Iterable[dict]) -> None:
        """bags.jsonl from these rows (the bags of this run), frames.jsonl from the parts of the ok ones
        (each bag once)."""
        rows = list(rows)
        with (self.root / "bags.jsonl.partial").open("w") as bags:
            for row in rows:
                bags.write(json.dumps(row) + "\n")
        with (self.root / "frames.jsonl.partial").open("w") as frames:
            for row in rows:
                if row.get("status") == "ok":
                    frames.write((self.part(row["digest"]) / FRAMES).read_text())
        # Killed between the two, the tables disagree until the next run rewrites both from the parts.
        os.replace(self.root / "bags.jsonl.partial", self.root / "bags.jsonl")
        os.replace(self.root / "frames.jsonl.partial", self.root / "frames.jsonl")

    def write_manifest(self, settings: dict, run: dict, rows: Iterable[dict]) -> None:
        keys = ("bag", "name", "digest", "status", "error", "output_bag")
        bags = [{key: row.get(key) for key in keys} for row in rows]
        write_json_atomically(
            self.root / MANIFEST,
            {"tool": "gradunc-bag evaluate", "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **run,
             "settings": settings, "bags": bags},
        )  # fmt: skip
