"""gradunc-bag evaluate over many bags: on a local Ray the merged metrics equal one process's, faults stay
with their bag, a worker killed mid-bag costs that bag only, and a rerun resumes without counting twice."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradunc_ros.evaluation.datasets import CAMVID_OOD_LABELS
from gradunc_ros.evaluation.metrics import component_metrics, pixel_metrics
from gradunc_ros.streams.bags import BagWriter, header, image_message, read_messages
from gradunc_ros.streams.codec import image_array
from gradunc_ros.streams.stamps import stamp_ns
from gradunc_ros.tools.bag_offline import frames_in, write_frames_bag

pytestmark = pytest.mark.process
CAMERA, LABELS = "/camera/image_raw", "/camera/labels_gt"


def _bag(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gradunc_ros.tools.bag", "evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _write(images: list[Path], labels: Path | None, out: Path, storage: str = "mcap", compressed: bool = False):
    options = argparse.Namespace(rate=10.0, storage=storage, frame_id="camera", compressed=compressed, topic=CAMERA,
                                 label_topic=LABELS)  # fmt: skip
    write_frames_bag(images, labels, out, options)
    return out


@pytest.fixture(scope="module")
def fleet(tiny_camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good bags (mcap raw, sqlite3, mcap compressed), one truncated, one without the label topic, one
    without the camera topic."""
    root = tmp_path_factory.mktemp("fleet")
    val, train = tiny_camvid / "val", tiny_camvid / "train"
    train_images = frames_in(train / "images")
    _write(frames_in(val / "images"), val / "labels", root / "a")
    _write(train_images[:3], train / "labels", root / "b", storage="sqlite3")
    _write(train_images[3:], train / "labels", root / "c", compressed=True)
    corrupt = _write(frames_in(val / "images"), val / "labels", root / "corrupt")
    storage = next(corrupt.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])  # a copy cut short
    _write(train_images[:2], None, root / "unlabelled")
    with BagWriter(root / "no_camera") as bag:  # labels, and an image topic of another name
        bag.write("/other/image_raw", image_message(np.zeros((4, 4, 3), np.uint8), "rgb8", header(1, "o")), 1)
        bag.write(LABELS, image_message(np.zeros((4, 4), np.uint8), "mono8", header(1, "o")), 1)
    return root


# A model whose every frame takes 50 ms or more (test/byom_models.py), whatever the machine: a 60-frame bag
# lasts 3 s at least, so that a kill after its second frame lands in its middle.
SLOW = ["--model", "byom_models:slow_segmenter", "--model-path", str(Path(__file__).parent), "--threads", "1",
        "--min-pred", "5", "--min-gt", "5", "--input-size", "64x48", "--threshold", "0.0", "--no-progress"]  # fmt: skip


def _common(weights: Path) -> list[str]:
    return ["--weights", str(weights), "--threshold", "0.0", "--threads", "1", "--min-pred", "5", "--min-gt", "5",
            "--input-size", "64x48", "--no-progress"]  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_fleet_on_local_ray_merges_exactly_and_reports_its_broken_bags(
    fleet: Path, random_erfnet: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install gradunc_ros[ray])")
    single = _bag(*(str(fleet / name) for name in "abc"), *_common(random_erfnet), "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    run = _bag(str(fleet), *_common(random_erfnet), "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "ray"),
               "--summary", str(tmp_path / "ray.json"))  # fmt: skip
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("gradunc-bag: 3 of 6 bag(s) failed (corrupt-") and "Traceback" not in run.stderr, last
    summary, reference = json.loads((tmp_path / "ray.json").read_text()), json.loads(single.stdout)
    assert summary["bags_ok"] == 3 and summary["frames_scored"] == summary["frames_with_labels"] == 9
    assert summary["pixel"] == reference["pixel"] and summary["component"] == reference["component"]
    per_bag = summary["per_bag"]
    statuses = {name.rsplit("-", 1)[0]: entry["status"] for name, entry in per_bag.items()}
    assert statuses == {"a": "ok", "b": "ok", "c": "ok", "corrupt": "failed", "unlabelled": "failed",
                        "no_camera": "failed"}  # fmt: skip
    errors = {name.rsplit("-", 1)[0]: entry.get("error", "") for name, entry in per_bag.items()}
    assert (
        "is not a readable rosbag2 bag" in errors["corrupt"] and f"no label topic {LABELS}" in errors["unlabelled"]
    ), errors
    assert f"no topic {CAMERA}" in errors["no_camera"] and "/other/image_raw" in errors["no_camera"], errors

    # The merged figures against the metrics of every frame the output bags hold, computed here in one call.
    scores, labels = [], []
    for name, entry in per_bag.items():
        if entry["status"] != "ok":
            continue
        truth = {
            stamp_ns(m.header): CAMVID_OOD_LABELS[image_array(m)] for _, _, m in read_messages(entry["bag"], [LABELS])
        }
        outputs = [m for _, _, m in read_messages(entry["output_bag"], ["/camera/gradunc/uncertainty"])]
        bag_scores, bag_labels = [image_array(m) for m in outputs], [truth[stamp_ns(m.header)] for m in outputs]
        assert entry["pixel"] == pixel_metrics(bag_scores, bag_labels), name  # each bag's own figures beside
        scores, labels = scores + bag_scores, labels + bag_labels
    assert summary["pixel"] == pixel_metrics(scores, labels)
    assert summary["component"] == component_metrics(scores, labels, min_pred=5, min_gt=5)

    frames = _rows(tmp_path / "ray" / "frames.jsonl")
    assert len(frames) == 9 and len({(row["bag"], row["index"]) for row in frames}) == 9
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["engine"] == "ray" and sorted(b["status"] for b in manifest["bags"]) == ["failed"] * 3 + ["ok"] * 3


def _long_bag(path: Path, frames: int = 60) -> Path:
    """Frames enough that a bag takes seconds with the slow model (SLOW): a kill lands in its middle."""
    rng = np.random.default_rng(1)
    label = np.full((120, 160), 3, np.uint8)
    label[40:80, 50:90] = 9  # held out: OoD
    with BagWriter(path) as bag:
        for k in range(frames):
            stamp = 1_000_000_000 + k * 100_000_000
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            bag.write(CAMERA, image_message(image, "rgb8", header(stamp, "camera")), stamp)
            bag.write(LABELS, image_message(label, "mono8", header(stamp, "camera")), stamp)
    return path


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def _worker_mid_bag(out: Path, bag: Path) -> int | None:
    """The pid of the worker evaluating ``bag`` once it is a few frames in, and not done."""
    for spec_file in (out / "parts").glob("*/spec.json"):
        part = spec_file.parent
        try:
            spec, frames = json.loads(spec_file.read_text()), int((part / "progress").read_text().split()[0])
            pid = json.loads((part / "worker.json").read_text())["pid"]
        except (OSError, ValueError, IndexError):
            continue
        if Path(spec["bag"]) == bag.resolve() and frames >= 2 and not (part / "row.json").exists():
            return pid
    return None


def test_a_worker_killed_mid_bag_costs_that_bag_only_and_a_rerun_resumes_it(
    fleet: Path, random_erfnet: Path, tmp_path: Path
) -> None:
    from gradunc_ros.processes import start, stop

    long = _long_bag(tmp_path / "long")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradunc_ros.tools.bag", "evaluate", str(long), str(fleet / "a"),
               str(fleet / "b"), *SLOW, "--workers", "2", "--out", str(out)]  # fmt: skip
    run = start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        os.kill(_wait_for(lambda: _worker_mid_bag(out, long), 120, "the long bag's worker starting"), signal.SIGKILL)
        _, err = run.communicate(timeout=300)
    finally:
        stop(run)
    assert run.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("gradunc-bag: 1 of 3 bag(s) failed (long-") and "SIGKILL" in err, err
    first = {row["name"].rsplit("-", 1)[0]: row for row in _rows(out / "bags.jsonl")}
    assert {name: row["status"] for name, row in first.items()} == {"long": "failed", "a": "ok", "b": "ok"}
    assert {row["bag"].rsplit("-", 1)[0] for row in _rows(out / "frames.jsonl")} == {"a", "b"}  # none of the long

    again = subprocess.run([*command[:-4], "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # in one process this time: the engine is no setting
    assert "2 of 3 bag(s) already done" in again.stderr
    second = {row["name"].rsplit("-", 1)[0]: row for row in _rows(out / "bags.jsonl")}
    assert second["a"] == first["a"] and second["b"] == first["b"]  # not evaluated again: the same rows
    frames = _rows(out / "frames.jsonl")
    counted = [(row["bag"].rsplit("-", 1)[0], row["index"]) for row in frames]
    assert sorted(counted) == sorted([("long", k) for k in range(60)] + [("a", k) for k in range(3)]
                                     + [("b", k) for k in range(3)])  # fmt: skip
    outputs = [
        stamp_ns(m.header) for _, _, m in read_messages(second["long"]["output_bag"], ["/camera/gradunc/uncertainty"])
    ]
    assert len(outputs) == len(set(outputs)) == 60  # the killed attempt's half-written bag is gone
    assert not list((out / "bags").glob(".*.partial"))


def test_a_rerun_skips_what_is_done_and_refuses_other_settings(
    fleet: Path, random_erfnet: Path, tmp_path: Path
) -> None:
    """The results folder inside the folder of bags searched: its output bags are not taken for input."""
    import shutil

    drives = tmp_path / "drives"
    for name in "ab":
        shutil.copytree(fleet / name, drives / name)
    out = drives / "results"
    first = _bag(str(drives), *_common(random_erfnet), "--out", str(out))
    assert first.returncode == 0, first.stderr
    rows = _rows(out / "bags.jsonl")
    assert len(rows) == 2
    shutil.copytree(fleet / "c", drives / "c")  # one bag more
    shutil.copytree(fleet / "a", drives / "a_copy")  # and a copy: counted once
    again = _bag(str(drives), *_common(random_erfnet), "--out", str(out))
    assert again.returncode == 0 and "2 of 3 bag(s) already done" in again.stderr, again.stderr
    assert f"{drives / 'a_copy'} has the content of {drives / 'a'}: counted once" in again.stderr
    assert _rows(out / "bags.jsonl")[:2] == rows
    assert json.loads(again.stdout)["frames_scored"] == 9 and len(_rows(out / "frames.jsonl")) == 9
    other = _bag(str(drives), *_common(random_erfnet)[:2], "--threshold", "0.5", "--no-progress", "--out", str(out))
    assert other.returncode == 1 and "holds results made with other settings" in other.stderr, other.stderr
    assert "threshold" in other.stderr.strip().splitlines()[-1]


def test_ray_missing_is_one_line_saying_what_to_install(fleet: Path, tmp_path: Path) -> None:
    argv = ["evaluate", str(fleet / "a"), "--engine", "ray", "--out", str(tmp_path / "o")]
    code = f"import sys; sys.modules['ray'] = None; from gradunc_ros.tools.bag import main; sys.exit(main({argv!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "pip install" in lines[0] and "ray" in lines[0], result.stderr


def _ray_processes_of(folders: list[Path]) -> list[int]:
    from gradunc_ros.fleet.ray_reaper import holders

    return [pid for folder in folders for pid in holders(str(folder), {os.getpid()})]


def test_a_ray_run_killed_with_sigkill_leaves_no_ray_process_behind(random_erfnet: Path, tmp_path: Path) -> None:
    """Ray's agents outlive a driver killed with SIGKILL unless someone ends them (the reaper does)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install gradunc_ros[ray])")
    from gradunc_ros.processes import start, stop

    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("gradunc-ray-*"))
    long = _long_bag(tmp_path / "long")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gradunc_ros.tools.bag", "evaluate", str(long), *SLOW,
               "--engine", "ray", "--workers", "1", "--out", str(out)]  # fmt: skip
    run = start(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _worker_mid_bag(out, long) or run.poll() is not None, 120, "the Ray task starting")
        assert run.poll() is None, run.stderr.read()
        ours = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("gradunc-ray-*") if p not in before]
        assert len(ours) == 1 and _ray_processes_of(ours), "no Ray of this run found"
        run.kill()
        run.wait(30)
    finally:
        stop(run)
    _wait_for(lambda: not _ray_processes_of(ours) and not ours[0].exists(), 30, "Ray's processes ending")
    # The driver itself was killed: the folder, manifest and all, resumes (here in one process).
    resumed = _bag(str(long), *SLOW, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["frames_scored"] == 60 and len(_rows(out / "frames.jsonl")) == 60


def test_a_stalled_task_is_stopped_and_its_bag_failed(fleet: Path, tmp_path: Path) -> None:
    """A model that never loads (a factory stuck on a model server): no frame comes, so after --stall-after
    the worker is killed and the bag failed, in bounded time."""
    started = time.monotonic()
    test_folder = str(Path(__file__).parent)
    run = _bag(str(fleet / "a"), "--model", "byom_models:hanging_factory", "--model-path", test_folder, "--workers",
               "2", "--stall-after", "3", "--no-progress", "--out", str(tmp_path / "out"), timeout=120)  # fmt: skip
    assert run.returncode == 1 and time.monotonic() - started < 60, run.stderr
    stalled = "no sign of life (frame, label, metric chunk) for 3 s: its task was stopped"
    assert stalled in run.stderr.strip().splitlines()[-1], run.stderr
    assert not [p for p in _worker_pids(tmp_path / "out") if Path(f"/proc/{p}").exists()]


def _worker_pids(out: Path) -> list[int]:
    pids = []
    for worker in (out / "parts").glob("*/worker.json"):
        pids.append(json.loads(worker.read_text())["pid"])
    return pids


def test_a_ray_task_no_node_can_take_is_refused(capsys: pytest.CaptureFixture) -> None:
    """Ray would queue such a task for ever: refused on a Ray started for the run, said on a cluster (which
    may grow nodes); the check reads the nodes Ray reports."""
    from gradunc_ros.fleet.engines import _check_resources

    class Nodes:
        def __init__(self, *resources: dict) -> None:
            self.resources = resources

        def nodes(self) -> list[dict]:
            return [{"Alive": True, "Resources": r} for r in self.resources] + [{"Alive": False, "Resources": {}}]

    nodes = Nodes({"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0})
    _check_resources(nodes, 4, 1, cluster=False)  # the second node can
    with pytest.raises(
        RuntimeError, match=r"no Ray node has 4 CPU\(s\) and 2 GPU\(s\) for a task \(the largest has 8 and 1\)"
    ):
        _check_resources(nodes, 4, 2, cluster=False)
    _check_resources(nodes, 4, 2, cluster=True)
    assert "the tasks wait for the cluster to grow" in capsys.readouterr().err


def test_the_progress_bar_counts_the_frames_of_each_bag_from_its_index(fleet: Path) -> None:
    from gradunc_ros.fleet.inputs import BagInput
    from gradunc_ros.fleet.run import _frame_count

    options = {"recorded": False, "topic": CAMERA}
    counts = {name: _frame_count(BagInput(fleet / name, ""), options) for name in ("a", "b", "c", "corrupt")}
    assert counts == {"a": 3, "b": 3, "c": 3, "corrupt": 0}  # c: its /compressed form; corrupt: unreadable
