"""The progress display: a live table on a terminal, plain lines otherwise, silence with -q."""

from __future__ import annotations

import io

from storyboard._progress import Reporter
from storyboard.events import Event


def _events() -> list[Event]:
    return [
        Event("canopy", 1, 1, "queued"),
        Event("canopy", 1, 1, "rendering", 0.4),
        Event("hover", 2, 3, "waiting", message="for canopy"),
        Event("canopy", 1, 1, "done", 1.0),
        Event("hover", 2, 3, "failed", message="task failed: bad prompt"),
    ]


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Reporter(stream, live=False) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("written", "7.5s")
    text = stream.getvalue()
    assert "canopy: rendering" in text and "canopy: done" in text
    assert "hover take 2/3: failed: task failed: bad prompt" in text
    assert "queued" not in text  # not worth a line
    assert "stitch: written 7.5s" in text


def test_live_table_on_a_terminal() -> None:
    stream = io.StringIO()
    with Reporter(stream, live=True) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("stitching")
    text = stream.getvalue()
    for word in ("shot", "canopy", "hover", "2/3", "done", "failed", "cut", "stitching"):
        assert word in text


def test_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    with Reporter(stream, quiet=True) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("written")
    assert stream.getvalue() == ""
