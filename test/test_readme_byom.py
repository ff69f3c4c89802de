"""README's "Bring your own model" example, run as written: its Python file, its card and its commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.process
README = Path(__file__).parent.parent / "README.md"


def _example_blocks() -> dict[str, str]:
    section = README.read_text().split("### Bring your own model", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(python|yaml|bash)\n(.*?)```", section, flags=re.S))


def test_the_readmes_bring_your_own_model_example_runs_as_written(tmp_path: Path) -> None:
    blocks = _example_blocks()
    assert set(blocks) == {"python", "yaml", "bash"}
    (tmp_path / "my_segmenter.py").write_text(blocks["python"])
    (tmp_path / "my_segmenter.card.yaml").write_text(blocks["yaml"])
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    venv_bin = str(Path(sys.executable).parent) + "/"
    commands = [line for line in blocks["bash"].splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2
    for command in commands:
        result = subprocess.run(
            command.replace(".venv/bin/", venv_bin), shell=True, cwd=tmp_path, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stderr)
    assert "assumed" not in result.stderr  # the card beside the weights said everything
    arrays = np.load(tmp_path / "out" / "frame.npz")
    assert arrays["labels"].shape == (120, 160) and set(np.unique(arrays["labels"])) <= {0, 1, 2}
    assert np.isfinite(arrays["score"]).all()
