"""Each user mistake on the command line: one clear line, a non-zero exit, no traceback, before long work.
And the weights rule: a model named without weights loads its shipped weights or is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.process


def _tool(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"gradunc_ros.tools.{name}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _refused(result: subprocess.CompletedProcess, reason: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1 and reason in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "frame.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory, tiny_camvid: Path) -> Path:
    path = tmp_path_factory.mktemp("bags") / "frames"
    assert _tool("bag", "from-images", str(tiny_camvid / "val" / "images"), "--out", str(path)).returncode == 0
    return path


def test_out_under_a_file_or_not_writable(tmp_path: Path, image: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    _refused(_tool("infer", "--weights", "random", "--out", str(a_file / "sub"), str(image)), "Not a directory")
    _refused(_tool("infer", "--weights", "random", "--out", str(a_file), str(image)), "is a file")
    _refused(_tool("evaluate", "--data", "x", "--out", str(a_file / "sub")), "Not a directory")
    _refused(_tool("train", "--data", "x", "--out", str(a_file / "sub")), "Not a directory")
    try:  # a place even root cannot write to
        Path("/sys/gradunc_write_probe").mkdir()
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    _refused(_tool("infer", "--weights", "random", "--out", "/sys/gradunc_out", str(image)), "cannot write to")


def test_calibrate_out_in_a_missing_folder(tmp_path: Path, tiny_camvid: Path) -> None:
    result = _tool("calibrate", "--data", str(tiny_camvid), "--best-f1", "--out", str(tmp_path / "no" / "p.yaml"))
    _refused(result, "does not exist")


def test_bag_from_images_mistakes(tmp_path: Path, tiny_camvid: Path, bag: Path) -> None:
    images = str(tiny_camvid / "val" / "images")
    _refused(_tool("bag", "from-images", images, "--rate", "0", "--out", str(tmp_path / "b")), "number > 0")
    _refused(_tool("bag", "from-images", images, "--labels", str(tmp_path / "nope"), "--out", str(tmp_path / "b")),
             "does not exist")  # fmt: skip
    _refused(_tool("bag", "from-images", images, "--out", str(bag)), "already exists")
    assert not (tmp_path / "b").exists()


def test_bag_evaluate_mistakes(tmp_path: Path, bag: Path) -> None:
    not_a_bag = tmp_path / "notes.txt"
    not_a_bag.write_text("hello")
    # A bag that cannot be evaluated fails as a bag of a fleet does: the one-line account of the run.
    _refused(_tool("bag", "evaluate", str(not_a_bag), "--recorded", "--no-progress"), "is not a readable rosbag2 bag")
    _refused(_tool("bag", "evaluate", str(bag), "--recorded", "--no-progress"), "holds no node outputs")
    _refused(_tool("bag", "evaluate", str(bag), "--weights", "random", "--out", str(bag)), "holds no results of")
    _refused(_tool("bag", "evaluate", str(bag), "--recorded", "--address", "auto"), "--address is for --engine ray")
    _refused(_tool("bag", "evaluate", str(bag), "--recorded", "--cpus-per-task", "2"), "--cpus-per-task is for")


def test_number_arguments_out_of_range(tmp_path: Path, tiny_camvid: Path, image: Path) -> None:
    _refused(_tool("train", "--data", str(tiny_camvid), "--out", str(tmp_path), "--epochs", "0"), ">= 1")
    _refused(_tool("evaluate", "--data", str(tiny_camvid), "--out", str(tmp_path), "--max-frames", "-3"), ">= 1")
    for p in ("0", "20", "nan"):  # the node's and the head's range, 0.01 to 10
        _refused(_tool("infer", "--weights", "random", "--p", p, "--out", str(tmp_path), str(image)), "0.01 to 10")
    _refused(_tool("infer", "--input-size", "100000x100000", "--out", str(tmp_path), str(image)), "8K UHD")


def test_a_garbage_pth_is_one_line(tmp_path: Path, image: Path) -> None:
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"PK\x03\x04 not a checkpoint" + bytes(100))
    _refused(_tool("infer", "--model", "erfnet", "--weights", str(garbage), "--out", str(tmp_path), str(image)),
             "cannot be read")  # fmt: skip


def test_infer_refuses_what_the_node_refuses_and_keeps_same_named_outputs_apart(tmp_path: Path, image: Path):
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(cv2.imencode(".jpg", cv2.imread(str(image)))[1].tobytes()[:-200])
    result = _tool("infer", "--weights", "random", "--out", str(tmp_path / "out"), str(truncated))
    assert result.returncode == 1 and "is a JPEG cut short" in result.stderr and "Traceback" not in result.stderr
    for folder in ("left", "right"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(image.read_bytes())
    result = _tool("infer", "--weights", "random", "--out", str(tmp_path / "out"),
                   str(tmp_path / "left" / "x.png"), str(tmp_path / "right" / "x.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "left" / "x.npz").is_file() and (tmp_path / "out" / "right" / "x.npz").is_file()
    _refused(_tool("infer", "--weights", "random", "--out", str(tmp_path / "out"), str(image), str(image)),
             "more than once")  # fmt: skip


def test_a_model_without_weights_loads_its_shipped_ones_or_is_refused(tmp_path: Path, image: Path) -> None:
    named = _tool("infer", "--model", "erfnet", "--out", str(tmp_path / "named"), str(image))
    default = _tool("infer", "--out", str(tmp_path / "default"), str(image))
    assert named.returncode == default.returncode == 0, named.stderr + default.stderr
    assert np.array_equal(np.load(tmp_path / "named" / "frame.npz")["labels"],
                          np.load(tmp_path / "default" / "frame.npz")["labels"])  # fmt: skip
    _refused(_tool("infer", "--model", "deeplabv3plus_resnet18", "--out", str(tmp_path), str(image)),
             "no weights are shipped for deeplabv3plus_resnet18")  # fmt: skip
    random = _tool("infer", "--model", "deeplabv3plus_resnet18", "--weights", "random", "--num-classes", "5",
                   "--out", str(tmp_path / "random"), str(image))  # fmt: skip
    assert random.returncode == 0, random.stderr  # random weights only when asked for


def test_the_weights_rule_in_the_library() -> None:
    from gradunc_ros.models import CheckpointError, default_weights_path, load_model

    assert load_model("erfnet").weights == default_weights_path() == load_model().weights
    assert load_model("erfnet", "random").weights is None
    with pytest.raises(CheckpointError, match="no weights are shipped"):
        load_model("deeplabv3plus_resnet50")
    shipped, named = load_model(), load_model("erfnet")
    for (key, a), b in zip(shipped.model.state_dict().items(), named.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
