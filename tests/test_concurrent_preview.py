"""Two preview renders of one storyboard at the same moment share a store and both finish."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BOARD = """\
storyboard: 1
shots:
  - id: a
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
  - id: b
    model: skyreels-v4-fast
    extends: a
    prompt: the light turns
    duration: 3
  - id: c
    model: skyreels-v4-fast
    extends: b
    prompt: the sea calms
    duration: 3
"""


@pytest.mark.slow
def test_two_renders_of_one_storyboard_at_once_both_finish(tmp_path: Path) -> None:
    board = tmp_path / "storyboard.yaml"
    board.write_text(BOARD, encoding="utf-8")
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "storyboard", "render", "-q", str(board)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
    again = subprocess.run(
        [sys.executable, "-m", "storyboard", "plan", "--json", str(board)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert '"to_render": []' in again.stdout
