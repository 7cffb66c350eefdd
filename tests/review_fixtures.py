"""The tiny storyboard the review page's tests render (shared by the page and browser tests).

A title card with its own colours and hostile text, a crossfade into a model shot with two
takes and a trim, a wipe into a second shot: cards, seams and takes on a page that renders
in about ten seconds with the free preview backend (480p, the smallest size).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storyboard.cache import Store
from storyboard.plan import Plan

HOSTILE = "</script><img src=x onerror=alert(1)>"

BOARD = f"""\
storyboard: 1
title: 'review <b>test</b> {HOSTILE}'
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 24
  transition: {{type: crossfade, duration: 0.5}}
shots:
  - id: open
    card: {{text: "{HOSTILE}", duration: 1.0, background: "#203040", color: "#ffeecc"}}
  - id: sea
    prompt: 'a lighthouse at dusk {HOSTILE} & more'
    takes: 2
    select: 1
    trim: {{start: 0.5}}
    transition: {{type: wipe-left, duration: 0.5}}
  - id: kite
    prompt: a red kite over a field, pan left
"""


def render_board(root: Path, text: str = BOARD) -> Path:
    """Write ``text`` as ``root/storyboard.yaml`` and render its free preview; its path."""
    from storyboard.pipeline import build

    root.mkdir(parents=True, exist_ok=True)
    path = root / "storyboard.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STORYBOARD_CACHE", raising=False)
        report = build(path)
    assert not report.missing and report.cut is not None
    return path


def plan_of(path: Path) -> tuple[Plan, Store]:
    """The preview plan of ``path`` and its store, as the review command reads them."""
    from storyboard.pipeline import plan_build

    assert "STORYBOARD_CACHE" not in os.environ
    plan = plan_build(path)
    return plan, Store.for_storyboard(plan.board.path)
