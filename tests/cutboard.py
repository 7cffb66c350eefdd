"""A tiny rendered storyboard with every kind of item and join a cut can have.

Shared by the timeline and export tests: a title card, a shot with two takes of which the
second is selected and trimmed, an extension (V4 returns source + new footage, so the cut
starts in the middle of its clip), two more cards, a skipped shot, a fade, a hard cut, a
wipe of an odd number of frames and a crossfade, and a soundtrack shorter than the picture
(it loops) with a volume and a fade-out. 480p at 24 fps; the preview renders it in seconds.
"""

from __future__ import annotations

import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_image

from storyboard.cache import Store
from storyboard.media.probe import probe
from storyboard.plan import Plan
from storyboard.timeline import Timeline

BOARD = """\
storyboard: 1
title: Export test
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 24
  transition: {type: crossfade, duration: 0.5}
  audio: {path: music.wav, volume: 0.8, fade_out: 0.5}
shots:
  - id: title
    card: {text: "Export test", duration: 1.0, background: "#102030"}
    transition: {type: fade, duration: 0.25}
  - id: kite
    first_frame: refs/a.png
    prompt: a red kite over a field, push-in
    takes: 2
    select: 2
    trim: {start: 0.5, end: 2.5}
    transition: cut
  - id: kite-more
    extends: kite
    prompt: the kite climbs higher
    transition: {type: wipe-left, duration: 0.3}
  - id: outtake
    card: {text: "left out", duration: 1.0}
    skip: true
  - id: interlude
    card: {text: "Later", duration: 1.0}
  - id: end
    card: {text: "End", duration: 1.0, color: "#ffcc00"}
"""

# What the board implies, at 24 fps: (shot, kind, frames, transition, transition frames).
EXPECTED = (
    ("title", "card", 24, "fade", 6),
    ("kite", "clip", 48, "cut", 0),  # trim 0.5..2.5 s
    ("kite-more", "clip", 72, "wipe-left", 7),  # the 3 s of new footage; 0.3 s = 7.2 frames
    ("interlude", "card", 24, "crossfade", 12),
    ("end", "card", 24, "cut", 0),
)
MUSIC_SECONDS = 1.3


def write_music(path: Path, seconds: float = MUSIC_SECONDS) -> Path:
    """A quiet 440 Hz tone as a mono 16-bit WAV."""
    rate = 22_050
    samples = round(rate * seconds)
    data = b"".join(
        struct.pack("<h", round(6000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(samples)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return path


def make_project(root: Path, board: str = BOARD) -> Path:
    """The storyboard folder: the board, its image and its music. Returns the board's path."""
    root.mkdir(parents=True, exist_ok=True)
    write_image(root / "refs" / "a.png", (200, 60, 40))
    write_music(root / "music.wav")
    path = root / "storyboard.yaml"
    path.write_text(board, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Rendered:
    """A rendered and stitched storyboard, its plan, store and timeline."""

    board: Path
    plan: Plan
    store: Store
    timeline: Timeline
    cut_frames: int  # the stitched MP4's length, probed, in frames


def render(root: Path, board: str = BOARD) -> Rendered:
    """Render ``board`` with the free preview backend and describe its cut."""
    from storyboard.pipeline import build, plan_build
    from storyboard.timeline import timeline_of

    path = make_project(root, board)
    with pytest.MonkeyPatch.context() as env:  # module-scoped: conftest's clean env is not on yet
        for name in ("STORYBOARD_CACHE", "WAVESPEED_API_KEY", "QINGBO_API_KEY"):
            env.delenv(name, raising=False)
        report = build(path)
        assert report.cut is not None
        plan = plan_build(path)
        store = Store.for_storyboard(plan.board.path)
        timeline = timeline_of(plan, store)
    info = probe(report.cut)
    return Rendered(path, plan, store, timeline, round(info.duration * timeline.fps))
