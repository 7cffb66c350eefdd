"""End-to-end: render with the preview backend, rerun, change things, stitch (issue 3)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, Project, run_cli, write_image

from storyboard.catalog import frame_size
from storyboard.media.probe import probe

pytestmark = pytest.mark.slow

BOARD = """\
storyboard: 1
title: pipeline test
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 24
shots:
  - id: a
    first_frame: refs/a.png
    prompt: a red kite over a field, push-in
  - id: b
    extends: a
    prompt: the kite climbs higher
  - id: c
    model: skyreels-v1
    first_frame: refs/b.png
    prompt: a blue door, pan left
    seed: 7
  - id: card
    card: {text: "The end", duration: 1.0}
"""


def _cut_seconds(project: Project) -> float:
    return probe(project.root / "renders" / "storyboard.preview.mp4").duration


def test_render_writes_cut_and_rerun_renders_nothing(project: Project) -> None:
    project.write(BOARD)
    first = run_cli("render", str(project.file))
    assert first.code == 0, first.err
    cut = project.root / "renders" / "storyboard.preview.mp4"
    info = probe(cut)
    # a: 3 s, b: 3 s of new footage (V4 returns source + new; the cut takes only the new),
    # c: V1's 97 frames at 24 fps, card: 1 s; all hard cuts.
    expected = 3 + 3 + 97 / 24 + 1.0
    assert info.duration == pytest.approx(expected, abs=0.15)
    assert (info.width, info.height) == frame_size("480p", "16:9")
    assert info.fps == pytest.approx(24)
    plan = project.plan()
    assert {s["id"]: s["status"] for s in plan["shots"]} == dict.fromkeys("abc", "fresh") | {
        "card": "fresh"
    }
    assert plan["stitch"] == "fresh"
    assert all(s["output"] for s in plan["shots"] if s["kind"] == "model")
    mtime = cut.stat().st_mtime_ns
    again = run_cli("render", str(project.file))
    assert again.code == 0
    assert "rendered 0 clip(s)" in again.err
    assert cut.stat().st_mtime_ns == mtime


def test_changes_rerender_exactly_the_affected_shots(project: Project) -> None:
    project.write(BOARD)
    assert run_cli("render", "-q", str(project.file)).code == 0

    project.edit("the kite climbs higher", "the kite dives")
    st = project.statuses()
    assert st["a"][0] == "fresh" and st["c"][0] == "fresh"
    assert st["b"] == ("stale", "prompt changed")

    project.edit("the kite dives", "the kite climbs higher")  # back: the old clip is reused
    assert project.statuses()["b"][0] == "fresh"

    project.edit("a red kite over a field", "a green kite over a field")
    st = project.statuses()
    assert st["a"] == ("stale", "prompt changed")
    assert st["b"] == ("stale", "upstream a changed")
    assert st["c"][0] == "fresh"
    project.edit("a green kite over a field", "a red kite over a field")

    write_image(project.root / "refs" / "b.png", (10, 200, 10))
    st = project.statuses()
    assert st["c"] == ("stale", "refs/b.png changed")
    assert st["a"][0] == "fresh" and st["b"][0] == "fresh"

    assert run_cli("render", "-q", str(project.file)).code == 0
    project.edit("seed: 7", "seed: 8")
    st = project.statuses()
    assert st["c"] == ("stale", "seed 7 → 8")
    assert st["a"][0] == st["b"][0] == "fresh"

    result = run_cli("render", str(project.file))
    assert result.code == 0
    assert "rendered 1 clip(s)" in result.err


def test_edit_only_changes_restitch_without_rendering(project: Project) -> None:
    project.write(BOARD.replace("    seed: 7\n", "    seed: 7\n    takes: 2\n"))
    assert run_cli("render", "-q", str(project.file)).code == 0
    cut = project.root / "renders" / "storyboard.preview.mp4"
    before = _cut_seconds(project)
    for old, new in [
        ("    takes: 2\n", "    takes: 2\n    select: 2\n"),
        (
            "    prompt: the kite climbs higher\n",
            "    prompt: the kite climbs higher\n    trim: {start: 1}\n",
        ),
        ("output:\n", "output:\n  transition: {type: crossfade, duration: 0.5}\n"),
        ('card: {text: "The end", duration: 1.0}', 'card: {text: "Fin", duration: 2.0}'),
    ]:
        project.edit(old, new)
        plan = project.plan()
        assert all(s["status"] == "fresh" for s in plan["shots"]), plan
        assert plan["stitch"] == "stale"
        mtime = cut.stat().st_mtime_ns
        result = run_cli("render", str(project.file))
        assert result.code == 0, result.err
        assert "rendered 0 clip(s)" in result.err
        assert cut.stat().st_mtime_ns != mtime
    # trim removed 1 s, three crossfades of 0.5 s overlap, the card grew by 1 s.
    assert _cut_seconds(project) == pytest.approx(before - 1 - 1.5 + 1, abs=0.2)


def test_failed_shot_fails_only_its_dependants(project: Project) -> None:
    # Valid to `validate` (right type and size) but not a decodable image.
    (project.root / "refs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    project.write(BOARD.replace("first_frame: refs/a.png", "first_frame: refs/broken.png"))
    result = run_cli("render", "--keep-going", str(project.file))
    assert result.code == 1
    assert "a: " in result.err and "broken.png" in result.err
    assert "b: upstream a did not render" in result.err
    st = project.statuses()
    assert st["c"][0] == "fresh"  # the sibling rendered
    assert st["a"][0] == st["b"][0] == "stale"
    assert not (project.root / "renders" / "storyboard.preview.mp4").exists()


def test_stitch_alone_needs_rendered_clips(project: Project) -> None:
    project.write(BOARD)
    result = run_cli("stitch", str(project.file))
    assert result.code == 1
    assert "not rendered" in result.err
    assert run_cli("render", "-q", "--only", "c", str(project.file)).code == 0
    st = project.statuses()
    assert st["c"][0] == "fresh" and st["a"][0] == "stale"


def test_only_and_force(project: Project) -> None:
    project.write(BOARD)
    assert run_cli("render", "-q", str(project.file)).code == 0
    st = {s["id"]: (s["status"], s["reason"]) for s in project.plan("--force", "c")["shots"]}
    assert st["c"] == ("stale", "forced")
    assert st["a"][0] == "fresh"
    result = run_cli("render", "--force", "c", str(project.file))
    assert "rendered 1 clip(s)" in result.err
    bad = run_cli("render", "--only", "nope", str(project.file))
    assert bad.code == 2 and "nope" in bad.err


def test_interrupt_keeps_finished_clips(project: Project) -> None:
    shots = "".join(
        f"  - id: s{i}\n    prompt: shot {i}, slow pan right\n    duration: 5\n" for i in range(6)
    )
    project.write(
        "storyboard: 1\ndefaults: {model: skyreels-v4-fast, resolution: 480p}\nshots:\n" + shots
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", "--jobs", "1", str(project.file)],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    keys = project.root / ".storyboard" / "keys"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (keys.exists() and any(keys.rglob("*.json"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    statuses = [s["status"] for s in project.plan()["shots"]]
    assert statuses.count("fresh") >= 1
    assert "stale" in statuses  # it really stopped early
    leftovers = list((project.root / ".storyboard" / "tmp").rglob("*.mp4"))
    assert leftovers == []


@pytest.mark.parametrize("name", ["minimal", "templated", "dawn"])
def test_examples_render_end_to_end(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    shutil.copytree(
        EXAMPLES / name, folder, ignore=shutil.ignore_patterns(".storyboard", "renders")
    )
    board = folder / "storyboard.yaml"
    result = run_cli("render", "-q", str(board))
    assert result.code == 0, result.err
    plan = run_cli("plan", "--json", str(board)).json()
    assert plan["stitch"] == "fresh"
    info = probe(Path(plan["cut"]))
    from storyboard.validate import load_storyboard

    sb = load_storyboard(board)
    assert (info.width, info.height) == frame_size(sb.output.resolution, sb.output.aspect_ratio)
    assert info.fps == pytest.approx(sb.output.fps)
    # The storyboard implies the length: each shot's (trimmed) new footage, minus overlaps.
    expected = 0.0
    shots = [s for s in plan["shots"] if s["kind"] != "skipped"]
    for i, entry in enumerate(shots):
        shot = sb.shot(entry["id"])
        if shot.card is not None:
            length = shot.card.duration
        else:
            spec = shot.spec
            assert spec is not None
            length = spec.clip_seconds(shot.duration)
            if shot.trim is not None:
                length = (shot.trim.end or length) - shot.trim.start
        expected += length
        transition = shot.transition or sb.output.transition
        if i < len(shots) - 1 and transition.type != "cut":
            expected -= transition.duration
    assert info.duration == pytest.approx(expected, abs=0.25)
