"""Progress that moves, through the real CLI (issue 9 item 3).

* ``render --live`` against the provider emulator on 127.0.0.1: the plain progress lines
  (stderr is not a terminal) name each stage of a take in order, with the task id the
  emulator created, the provider's percent and the money committed.
* A Ctrl-C (SIGINT to the process group, as a terminal sends it) while the preview backend's
  ffmpeg runs: the takes are "interrupted", not "failed ffmpeg could not write ...".
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Project, run_cli

from storyboard.testing.emulator import Emulator, EmulatorServer

pytestmark = pytest.mark.slow

WS_KEY = "ws-progress-test-key-4Hd82Ls"
QB_KEY = "qb-progress-test-key-9Kq31Zt"

V4_BOARD = """\
storyboard: 1
title: progress
output:
  resolution: 480p
  fps: 24
shots:
  - id: door
    model: skyreels-v4-fast
    first_frame: refs/a.png
    prompt: the door opens
    resolution: 480p
    duration: 3
"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    emu = Emulator(
        wavespeed_keys=(WS_KEY,),
        qingbo_keys=(QB_KEY,),
        scale=1 / 16,
        max_seconds=1.0,
        polls_to_start=2,
        polls_to_finish=5,  # running 20%, 40%, ... as the polls go
    )
    server = EmulatorServer(emu)
    for name, value in {
        "WAVESPEED_API_KEY": WS_KEY,
        "QINGBO_API_KEY": QB_KEY,
        "WAVESPEED_BASE_URL": server.url,
        "QINGBO_BASE_URL": server.url,
        "STORYBOARD_POLL_INTERVAL": "0.01",
        "STORYBOARD_MIN_OUTPUT_SHARE": "0",  # served clips are cut to 1 s
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield emu
    finally:
        server.close()
    assert emu.internal_errors == []


def _stages(err: str, shot: str) -> list[str]:
    """What the plain progress lines say of ``shot``, in order, without the timestamps."""
    found = re.findall(rf"^\[\s*[\d.]+s\] {re.escape(shot)}: (.*)$", err, re.MULTILINE)
    return [str(line) for line in found]


def test_live_plain_lines_show_every_stage_in_order(project: Project, emulator: Emulator) -> None:
    project.write(V4_BOARD)
    result = run_cli("render", "--live", str(project.file))
    assert result.code == 0, result.err
    (submission,) = emulator.submissions
    task_id = submission.task_id
    assert task_id
    lines = _stages(result.err, "door")
    assert lines, result.err

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    order = [
        first("uploading"),
        first(f"submitted {task_id}"),
        first("running "),
        first("downloading"),
        first("stored"),
    ]
    assert order == sorted(order), lines
    assert "uploading: refs/a.png" in lines
    # The list price committed by the submit is the one the spent line reports.
    assert f"submitted {task_id} ($0.20 committed)" in lines
    assert "spent $0.20 on 1 take (list price)" in result.err
    # The provider's percent, one line per change of at least 10 %, never every poll.
    percents = [int(m) for line in lines for m in re.findall(r"^running (\d+)%", line)]
    assert percents and all(0 < p < 100 for p in percents), lines
    assert all(b // 10 > a // 10 for a, b in itertools.pairwise(percents)), lines
    assert len(lines) == len(set(lines)), lines  # one line per change


PREVIEW_BOARD = """\
storyboard: 1
title: slow animatic
output:
  resolution: 480p
  fps: 24
shots:
  - id: long-a
    model: skyreels-v4-fast
    first_frame: refs/a.png
    prompt: a slow push-in
    resolution: 1080p
    duration: 15
  - id: long-b
    model: skyreels-v4-fast
    first_frame: refs/b.png
    prompt: a slow pull-out
    resolution: 1080p
    duration: 15
"""


def _children(pid: int) -> list[str]:
    """The command names of ``pid``'s child processes (from /proc)."""
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.rsplit(")", 1)
        if int(rest.split()[1]) == pid:
            names.append(name.split("(", 1)[1])
    return names


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_ctrl_c_during_the_preview_says_interrupted_not_ffmpeg(project: Project) -> None:
    project.write(PREVIEW_BOARD)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", str(project.file)],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while not any("ffmpeg" in name for name in _children(proc.pid)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "ffmpeg never started"
            time.sleep(0.01)
        time.sleep(0.2)
        assert any("ffmpeg" in name for name in _children(proc.pid)), "ffmpeg ended too soon"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "ffmpeg" not in err and "failed" not in err, err
    assert re.search(r"long-[ab]: interrupted", err), err
    assert err.rstrip().endswith("interrupted"), err
