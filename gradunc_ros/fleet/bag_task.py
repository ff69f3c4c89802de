"""One bag's evaluation, the unit of work of a fleet run: in this process, in a local worker process
(``python -m gradunc_ros.fleet.bag_task``, handed spec files on stdin) or as a Ray task, the same
function.

The task reads the bag with rosbags (CDR decoded in Python), runs the pipeline and the scores of the node
on each camera frame, writes the node's topics to an output bag (the arrays of ``outputs.render_outputs``,
the threshold rule of ``thresholds.py``), and leaves its results in its part folder (``results.py``): the
frame rows, the labelled frames' score and label maps (what the merged metrics need), and last its row.
Memory stays at a frame's worth however long the bag: labels wait on disk for their frames, and each
labelled frame goes to disk as it is scored.  Whatever goes wrong goes into the row as this bag's error;
the task never takes the run down with it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gradunc_ros.errors import first_line
from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS, IDENTITY_OOD
from gradunc_ros.imageio import ImageDecodeError
from gradunc_ros.outputs import render_outputs
from gradunc_ros.streams.bags import COMPRESSED, BagWriter, image_message, read_messages, topics_of
from gradunc_ros.streams.codec import compressed_to_rgb, image_array, image_to_rgb
from gradunc_ros.streams.stamps import stamp_ns
from gradunc_ros.streams.topics import output_topics

from .merge import merged_metrics
from .results import FRAMES, LABELLED, LABELS_WAITING, OOD_SCORES, PROGRESS, ROW, WORKER, write_json_atomically

LABEL_MAPS = {"camvid": CAMVID_OOD_LABELS, "binary": IDENTITY_OOD}
PROGRESS_PERIOD = 0.2  # seconds between writes of the progress file


class BagError(ValueError):
    """The bag cannot be evaluated as asked (unreadable, or without a topic it needs)."""


def readable_topics(bag: Path) -> dict[str, str]:
    try:
        return topics_of(bag)
    except Exception as error:  # noqa: BLE001 - rosbags says "not a bag" in several ways
        raise BagError(f"{bag} is not a readable rosbag2 bag ({type(error).__name__}: {first_line(error)})") from None


def camera_topic(topic: str, available: dict[str, str], bag: Path) -> str:
    """The camera topic as asked, or its /compressed form."""
    if topic not in available and topic + "/compressed" in available:
        topic += "/compressed"
    if topic not in available:
        raise BagError(f"no topic {topic} in {bag} (topics: {', '.join(available) or 'none'})")
    return topic


def frames_topic(options: dict, available: dict[str, str], bag: Path) -> str:
    """The topic whose messages are the bag's frames: the camera's, or for ``recorded`` the node's
    uncertainty output."""
    if not options["recorded"]:
        return camera_topic(options["topic"], available, bag)
    uncertainty = output_topics(options["topic"])["uncertainty"]
    if uncertainty not in available:
        raise BagError(f"{bag} holds no node outputs ({uncertainty}); its topics: {', '.join(available) or 'none'}")
    return uncertainty


def decode(message, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(message) if msgtype == COMPRESSED else image_to_rgb(message)


def latency_figures(latencies: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}


@functools.lru_cache(maxsize=1)
def _assembly(options_json: str):
    """The model, pipeline and threshold of these options: loaded once per process (a worker runs many
    bags)."""
    from gradunc_ros.tools.common import assemble_from, settings_from

    options = json.loads(options_json)
    if options.get("input_size") is not None:
        options["input_size"] = tuple(options["input_size"])
    args = argparse.Namespace(**options)
    return assemble_from(args, settings_from(args), "gradunc-bag", args.threshold)


class Progress:
    """Frames done, in a file the driver reads for its progress bar and its stall watch (rewritten at most
    every 0.2 s), and told to ``on_write`` (the in-process engine's bar).  ``beat`` says the task is busy
    without a new frame (parking labels, merging its metrics), so that the watch does not stop it."""

    def __init__(self, part: Path, on_write: Callable[[], None] | None = None) -> None:
        self.path, self.frames, self.beats, self._written, self._on_write = part / PROGRESS, 0, 0, 0.0, on_write

    def step(self, force: bool = False) -> None:
        self.frames += 0 if force else 1
        self._write(force)

    def beat(self) -> None:
        self.beats += 1
        self._write(False)

    def _write(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._written >= PROGRESS_PERIOD:
            self.path.with_suffix(".partial").write_text(f"{self.frames}\n{self.beats}\n")
            os.replace(self.path.with_suffix(".partial"), self.path)
            self._written = now
            if self._on_write is not None:
                self._on_write()


class LabelledFrames:
    """The bag's labels, parked on disk by stamp until their frames come; each labelled frame's score and
    label maps written to the part folder as it is scored, its OoD scores kept (they are few)."""

    def __init__(self, part: Path, bag: Path, topic: str | None, label_map: np.ndarray, progress: Progress) -> None:
        self._waiting, self._folder, self.count, self._ood = part / LABELS_WAITING, part / LABELLED, 0, []
        self._waiting.mkdir()
        self._folder.mkdir()
        self.stamps: set[int] = set()
        self.mismatched = 0  # labels whose size is not their frame's: left out, counted
        for _, _, message in read_messages(bag, [topic]) if topic else ():
            stamp = stamp_ns(message.header)  # a label sent twice: the last one holds
            np.save(self._waiting / f"{stamp}.npy", label_map[image_array(message)])
            self.stamps.add(stamp)
            progress.beat()

    def add(self, stamp: int, score: np.ndarray) -> str:
        """Keep the frame with its label; "" or why it was left out."""
        label = np.load(self._waiting / f"{stamp}.npy")
        if label.shape != score.shape:
            self.mismatched += 1
            return f"label {label.shape[1]}x{label.shape[0]}, frame {score.shape[1]}x{score.shape[0]}: left out"
        np.savez(self._folder / f"{self.count:06d}.npz", score=score, label=label)
        self._ood.append(score[label == 1])
        self.count += 1
        return ""

    def close(self) -> None:
        ood = np.concatenate(self._ood) if self._ood else np.empty(0, np.float32)
        np.save(self._folder.parent / OOD_SCORES, ood)
        shutil.rmtree(self._waiting)


def _frames_of(spec: dict, topic: str) -> Iterator[tuple[int, object]]:
    return ((received_ns, message) for _, received_ns, message in read_messages(Path(spec["bag"]), [topic]))


def score_figures(score: np.ndarray) -> dict[str, float | None]:
    """A frame row's summary of its score map (of the finite values: a log score may hold -inf)."""
    finite = score[np.isfinite(score)]
    if not finite.size:
        return {"score_mean": None, "score_max": None}
    return {"score_mean": float(finite.mean()), "score_max": float(finite.max())}


def _evaluate(spec: dict, part: Path, progress: Progress) -> tuple[list[dict], int, dict]:
    """Frame rows, the labelled count and further row fields of a bag: run through the pipeline, or
    (``recorded``) its recorded outputs scored."""
    options, bag = spec["options"], Path(spec["bag"])
    available = readable_topics(bag)
    topic = frames_topic(options, available, bag)
    label_topic = options["label_topic"]
    if label_topic not in available and not options["allow_unlabelled"]:
        raise BagError(f"no label topic {label_topic} in {bag} (--allow-unlabelled evaluates it without metrics)")
    labelled = LabelledFrames(part, bag, label_topic if label_topic in available else None,
                              LABEL_MAPS[options["label_map"]], progress)  # fmt: skip
    rows, extra = [], {}
    if options["recorded"]:
        latencies, seen = [], set()
        for received_ns, message in _frames_of(spec, topic):
            stamp, score = stamp_ns(message.header), image_array(message)
            if stamp in seen:  # the node answered a frame twice (a replay resends what it thinks lost)
                continue
            seen.add(stamp)
            latencies.append((received_ns - stamp) / 1e6)
            row = {"bag": spec["name"], "digest": spec["digest"], "index": len(rows), "stamp_ns": stamp}
            rows.append({**row, **score_figures(score), "labelled": stamp in labelled.stamps,
                         "latency_ms": latencies[-1]})  # fmt: skip
            if stamp in labelled.stamps:
                _keep(labelled, stamp, score, rows[-1])
            progress.step()
        extra = {"latency_ms": latency_figures(latencies)} if latencies else {}
    else:
        rows, extra = _run_pipeline(spec, available, topic, labelled, progress)
    labelled.close()
    if labelled.mismatched:
        extra["labels_mismatched"] = labelled.mismatched
    return rows, labelled.count, extra


def _keep(labelled: LabelledFrames, stamp: int, score: np.ndarray, row: dict) -> None:
    left_out = labelled.add(stamp, score)
    if left_out:
        row.update(labelled=False, label_error=left_out)


def _run_pipeline(spec: dict, available: dict, topic: str, labelled: LabelledFrames, progress: Progress):
    options = spec["options"]
    assembly = _assembly(json.dumps({k: v for k, v in options.items() if k in spec["model_keys"]}, sort_keys=True))
    pipeline, classes, mask = assembly.pipeline, len(assembly.loaded.class_names), assembly.threshold.mask()
    topics = output_topics(topic)
    output, partial = Path(spec["output_bag"]), partial_bag(spec)
    rows, undecodable = [], 0
    with BagWriter(partial, options["storage"]) as out:
        for index, (received_ns, message) in enumerate(_frames_of(spec, topic)):
            stamp = stamp_ns(message.header)
            row = {"bag": spec["name"], "digest": spec["digest"], "index": index, "stamp_ns": stamp}
            try:
                image = decode(message, available[topic])
            except ImageDecodeError as error:
                undecodable += 1
                rows.append({**row, "undecodable": str(error)})
                progress.step()
                continue
            started = time.perf_counter()
            prediction = pipeline.predict(image)
            row["inference_ms"] = round((time.perf_counter() - started) * 1e3, 3)
            outputs = render_outputs(image, prediction, classes, mask)
            for name, (array, encoding) in outputs.items():
                out.write(topics[name], image_message(array, encoding, message.header), received_ns)
            score = prediction.score
            row.update(**score_figures(score), labelled=stamp in labelled.stamps)
            if "ood_mask" in outputs:
                row["ood_fraction"] = float(np.count_nonzero(outputs["ood_mask"][0]) / score.size)
            rows.append(row)
            if stamp in labelled.stamps:
                _keep(labelled, stamp, score, row)
            progress.step()
    os.replace(partial, output)
    return rows, {"undecodable": undecodable, "output_bag": str(output)}


def partial_bag(spec: dict) -> Path:
    """Where the output bag is written until it is whole."""
    return Path(spec["output_bag"]).with_name(f".{spec['name']}.partial")


def tidy_failed(spec: dict) -> None:
    """What a failed bag's task left that nothing will read: parked labels, kept frames, a partial bag."""
    part = Path(spec["part"])
    for leftover in (part / LABELS_WAITING, part / LABELLED, partial_bag(spec) if "output_bag" in spec else None):
        if leftover is not None:
            shutil.rmtree(leftover, ignore_errors=True)


def evaluate_bag(spec: dict, on_progress: Callable[[], None] | None = None) -> dict:
    """Evaluate one bag into its part folder; returns its row (status ok, or failed with the error)."""
    part, started = Path(spec["part"]), time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    write_json_atomically(part / WORKER, {"host": socket.gethostname(), "pid": os.getpid()})
    row = {"bag": spec["bag"], "name": spec["name"], "digest": spec["digest"], "status": "failed", "worker": worker}
    progress = Progress(part, on_progress)
    try:
        rows, count, extra = _evaluate(spec, part, progress)
        with (part / FRAMES).open("w") as frames:
            frames.writelines(json.dumps(r) + "\n" for r in rows)
        seconds = time.monotonic() - started
        scored = sum("undecodable" not in frame for frame in rows)
        row.update(status="ok", frames=len(rows), frames_scored=scored, frames_with_labels=count, **extra)
        row.update(seconds=round(seconds, 3), frames_per_s=round(len(rows) / seconds, 3) if seconds else None)
        options = spec["options"]
        row.update(merged_metrics([part], options["min_pred"], options["min_gt"], progress.beat))  # its own
    except Exception as error:  # noqa: BLE001 - whatever it was, it is this bag's fault report
        row["error"] = str(error) if isinstance(error, BagError) else f"{type(error).__name__}: {first_line(error)}"
        row["seconds"] = round(time.monotonic() - started, 3)
        tidy_failed(spec)
    progress.step(force=True)
    write_json_atomically(part / ROW, row)
    return row


def evaluate_recorded(bag: Path, camera: str, label_topic: str, label_map: str, min_pred: int, min_gt: int) -> dict:
    """The row of one bag recorded from the live node (its uncertainty topic scored against the labels),
    evaluated in this process in a scratch part folder."""
    options = {"recorded": True, "topic": camera, "label_topic": label_topic, "label_map": label_map,
               "allow_unlabelled": True, "min_pred": min_pred, "min_gt": min_gt}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gradunc-bag-") as part:
        return evaluate_bag({"bag": str(bag), "name": Path(bag).name, "digest": "", "part": part, "options": options})


def main() -> int:
    """``python -m gradunc_ros.fleet.bag_task``: the local engine's worker.  It reads the paths of spec
    files from stdin, one per line, evaluates each bag in turn, and ends when stdin closes."""
    from gradunc_ros.processes import end_with_parent

    end_with_parent()
    for line in sys.stdin:
        if line.strip():
            row = evaluate_bag(json.loads(Path(line.strip()).read_text()))
            if row["status"] != "ok":
                print(f"gradunc-bag: {row['name']}: {row['error']}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
