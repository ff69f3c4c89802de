"""One bag's evaluation, the unit of work of a fleet run: in this process, in a local worker process
(``python -m gradunc_ros.fleet.bag_task``, handed spec files on stdin) or as a Ray task, the same
function.

The task reads the bag with rosbags (CDR decoded in Python), runs the pipeline and the scores of the node
on each camera frame, writes the node's topics to an output bag (the arrays of ``outputs.render_outputs``,
the threshold rule of ``thresholds.py``), and leaves its results in its part folder (``results.py``): the
frame rows, the labelled frames' score and label maps (what the merged metrics need), and last its row.
Whatever goes wrong goes into the row as this bag's error; the task never takes the run down with it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS, IDENTITY_OOD
from gradunc_ros.evaluation.metrics import component_metrics, pixel_metrics
from gradunc_ros.imageio import ImageDecodeError
from gradunc_ros.outputs import render_outputs
from gradunc_ros.streams.bags import COMPRESSED, BagWriter, image_message, read_messages, topics_of
from gradunc_ros.streams.codec import compressed_to_rgb, image_array, image_to_rgb
from gradunc_ros.streams.stamps import stamp_ns
from gradunc_ros.streams.topics import output_topics

from .results import FRAMES, LABELLED, PROGRESS, ROW, WORKER, write_json_atomically

LABEL_MAPS = {"camvid": CAMVID_OOD_LABELS, "binary": IDENTITY_OOD}
PROGRESS_PERIOD = 0.2  # seconds between writes of the progress file


class BagError(ValueError):
    """The bag cannot be evaluated as asked (unreadable, or without a topic it needs)."""


def readable_topics(bag: Path) -> dict[str, str]:
    try:
        return topics_of(bag)
    except Exception as error:  # noqa: BLE001 - rosbags says "not a bag" in several ways
        raise BagError(f"{bag} is not a readable rosbag2 bag ({type(error).__name__}: {error})") from None


def camera_topic(topic: str, available: dict[str, str], bag: Path) -> str:
    """The camera topic as asked, or its /compressed form."""
    if topic not in available and topic + "/compressed" in available:
        topic += "/compressed"
    if topic not in available:
        raise BagError(f"no topic {topic} in {bag} (topics: {', '.join(available) or 'none'})")
    return topic


def decode(message, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(message) if msgtype == COMPRESSED else image_to_rgb(message)


def score_recorded(bag: Path, camera: str, label_topic: str) -> tuple[dict, dict, dict]:
    """(stamp -> score map, stamp -> label image, stamp -> receive latency in ms) of a recorded node output
    bag."""
    topics = output_topics(camera)
    scores, labels, latencies = {}, {}, {}
    for topic, received_ns, message in read_messages(bag, [topics["uncertainty"], label_topic]):
        if topic == label_topic:
            labels[stamp_ns(message.header)] = image_array(message)
        else:
            scores[stamp_ns(message.header)] = image_array(message)
            latencies[stamp_ns(message.header)] = (received_ns - stamp_ns(message.header)) / 1e6
    return scores, labels, latencies


def own_metrics(score_maps: list[np.ndarray], label_maps: list[np.ndarray], min_pred: int, min_gt: int) -> dict:
    """The pixel and component metrics of these frames, or why there are none (e.g. no OoD pixel)."""
    if not score_maps:
        return {}
    try:
        return {
            "pixel": pixel_metrics(score_maps, label_maps),
            "component": component_metrics(score_maps, label_maps, min_pred=min_pred, min_gt=min_gt),
        }
    except ValueError as error:
        return {"metrics_error": str(error)}


def summarise(
    bag: Path, scores: dict, labels: dict, latencies: dict, label_map: np.ndarray, min_pred: int, min_gt: int
) -> dict:
    """Counts, latencies and the OoD metrics of the frames that have labels (stamp -> map or ms dicts)."""
    matched = sorted(set(scores) & set(labels))
    summary = {"bag": str(bag), "frames_scored": len(scores), "frames_with_labels": len(matched)}
    if latencies:
        summary["latency_ms"] = latency_figures(list(latencies.values()))
    summary.update(own_metrics([scores[s] for s in matched], [label_map[labels[s]] for s in matched], min_pred, min_gt))
    return summary


def latency_figures(latencies: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}


@functools.lru_cache(maxsize=1)
def _assembly(options_json: str):
    """The model, pipeline and threshold of these options: loaded once per process (a Ray worker runs many
    tasks; the local engine's processes one bag each)."""
    from gradunc_ros.tools.common import assemble_from, settings_from

    options = json.loads(options_json)
    if options.get("input_size") is not None:
        options["input_size"] = tuple(options["input_size"])
    args = argparse.Namespace(**options)
    return assemble_from(args, settings_from(args), "gradunc-bag", args.threshold)


class Progress:
    """Frames done, in a file the driver reads for its progress bar (rewritten at most every 0.2 s)."""

    def __init__(self, part: Path) -> None:
        self.path, self.frames, self._written = part / PROGRESS, 0, 0.0

    def step(self, force: bool = False) -> None:
        self.frames += 0 if force else 1
        now = time.monotonic()
        if force or now - self._written >= PROGRESS_PERIOD:
            self.path.with_suffix(".partial").write_text(str(self.frames))
            os.replace(self.path.with_suffix(".partial"), self.path)
            self._written = now


def _labels_by_stamp(bag: Path, topic: str, label_map: np.ndarray) -> dict[int, np.ndarray]:
    """The label images (ids mapped to 0 / 1 / 255): read first, so that only labelled frames' score maps
    are kept however long the bag."""
    return {stamp_ns(message.header): label_map[image_array(message)] for _, _, message in read_messages(bag, [topic])}


def _offline(spec: dict, part: Path, progress: Progress) -> tuple[list[dict], list, dict]:
    """Frame rows, labelled (stamp, score, label) and counts of a bag run through the pipeline."""
    options, bag = spec["options"], Path(spec["bag"])
    available = readable_topics(bag)
    camera = camera_topic(options["topic"], available, bag)
    label_topic = options["label_topic"]
    if label_topic not in available and not options["allow_unlabelled"]:
        raise BagError(f"no label topic {label_topic} in {bag} (--allow-unlabelled evaluates it without metrics)")
    labels = _labels_by_stamp(bag, label_topic, LABEL_MAPS[options["label_map"]]) if label_topic in available else {}
    assembly = _assembly(json.dumps({k: v for k, v in options.items() if k in spec["model_keys"]}, sort_keys=True))
    pipeline, classes, mask = assembly.pipeline, len(assembly.loaded.class_names), assembly.threshold.mask()
    topics = output_topics(camera)
    output, partial = Path(spec["output_bag"]), Path(spec["output_bag"]).with_name(f".{spec['name']}.partial")
    rows, labelled, undecodable = [], [], 0
    with BagWriter(partial, options["storage"]) as out:
        for index, (_, received_ns, message) in enumerate(read_messages(bag, [camera])):
            stamp = stamp_ns(message.header)
            row = {"bag": spec["name"], "digest": spec["digest"], "index": index, "stamp_ns": stamp}
            try:
                image = decode(message, available[camera])
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
            row.update(score_mean=float(score.mean()), score_max=float(score.max()), labelled=stamp in labels)
            if "ood_mask" in outputs:
                row["ood_fraction"] = float(np.count_nonzero(outputs["ood_mask"][0]) / score.size)
            if stamp in labels:
                labelled.append((stamp, score, labels[stamp]))
            rows.append(row)
            progress.step()
    os.replace(partial, output)
    return rows, labelled, {"undecodable": undecodable, "output_bag": str(output)}


def _recorded(spec: dict, progress: Progress) -> tuple[list[dict], list, dict]:
    """Frame rows, labelled (stamp, score, label) and latencies of a bag recorded from the live node."""
    options, bag = spec["options"], Path(spec["bag"])
    available = readable_topics(bag)
    uncertainty = output_topics(options["topic"])["uncertainty"]
    if uncertainty not in available:
        raise BagError(f"{bag} holds no node outputs ({uncertainty}); its topics: {', '.join(available) or 'none'}")
    scores, labels, latencies = score_recorded(bag, options["topic"], options["label_topic"])
    label_map = LABEL_MAPS[options["label_map"]]
    rows, labelled = [], []
    for index, stamp in enumerate(sorted(scores)):
        score = scores[stamp]
        row = {"bag": spec["name"], "digest": spec["digest"], "index": index, "stamp_ns": stamp}
        rows.append({**row, "score_mean": float(score.mean()), "score_max": float(score.max()),
                     "labelled": stamp in labels, "latency_ms": latencies[stamp]})  # fmt: skip
        if stamp in labels:
            labelled.append((stamp, score, label_map[labels[stamp]]))
        progress.step()
    return rows, labelled, {"latency_ms": latency_figures(list(latencies.values()))} if latencies else {}


def _save_labelled(path: Path, labelled: list) -> None:
    """The labelled frames' maps, each frame its own arrays (frames of a bag may differ in size), and their
    OoD scores apart: the merge reads those first, for every bag, before any frame."""
    arrays = {"stamps": np.asarray([stamp for stamp, _, _ in labelled], dtype=np.int64)}
    for k, (_, score, label) in enumerate(labelled):
        arrays[f"score_{k}"], arrays[f"label_{k}"] = score, label
    ood = [score[label == 1] for _, score, label in labelled]
    arrays["ood_scores"] = np.concatenate(ood) if ood else np.empty(0, np.float32)
    with path.with_suffix(".partial").open("wb") as handle:
        np.savez(handle, **arrays)
    os.replace(path.with_suffix(".partial"), path)


def evaluate_bag(spec: dict) -> dict:
    """Evaluate one bag into its part folder; returns its row (status ok, or failed with the error)."""
    part, started = Path(spec["part"]), time.monotonic()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    write_json_atomically(part / WORKER, {"host": socket.gethostname(), "pid": os.getpid()})
    row = {"bag": spec["bag"], "name": spec["name"], "digest": spec["digest"], "status": "failed", "worker": worker}
    progress = Progress(part)
    try:
        if spec["options"]["recorded"]:
            rows, labelled, extra = _recorded(spec, progress)
        else:
            rows, labelled, extra = _offline(spec, part, progress)
        with (part / FRAMES).open("w") as frames:
            frames.writelines(json.dumps(r) + "\n" for r in rows)
        _save_labelled(part / LABELLED, labelled)
        options = spec["options"]
        seconds = time.monotonic() - started
        scored = sum("undecodable" not in frame for frame in rows)
        row.update(status="ok", frames=len(rows), frames_scored=scored, frames_with_labels=len(labelled), **extra)
        row.update(seconds=round(seconds, 3), frames_per_s=round(len(rows) / seconds, 3) if seconds else None)
        row.update(own_metrics([s for _, s, _ in labelled], [lab for _, _, lab in labelled],
                               options["min_pred"], options["min_gt"]))  # fmt: skip
    except Exception as error:  # noqa: BLE001 - whatever it was, it is this bag's fault report
        from gradunc_ros.tools.common import first_line

        row["error"] = f"{type(error).__name__}: {first_line(error)}" if not isinstance(error, BagError) else str(error)
        row["seconds"] = round(time.monotonic() - started, 3)
    progress.step(force=True)
    write_json_atomically(part / ROW, row)
    return row


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
