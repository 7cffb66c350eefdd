"""The progress display: a live table on a terminal, plain lines otherwise, silence with -q.

The Reporter is driven with events at chosen times and a fake clock, and its table is
rendered by rich into a string, so elapsed times, ETAs, stages, task ids and money are read
off what a user would see.
"""

from __future__ import annotations

import io
import itertools
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from storyboard._progress import Reporter, format_seconds
from storyboard.events import Event

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _events() -> list[Event]:
    return [
        Event("canopy", 1, 1, "queued"),
        Event("canopy", 1, 1, "rendering", 0.4),
        Event("hover", 2, 3, "waiting", message="for canopy"),
        Event("canopy", 1, 1, "done", 1.0),
        Event("hover", 2, 3, "failed", message="task failed: bad prompt"),
    ]


def draw(reporter: Reporter, width: int = 160) -> str:
    """The live view as a terminal shows it now (colours stripped)."""
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=width).print(reporter.view)
    return _ANSI.sub("", buffer.getvalue())


def row_of(text: str, shot: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(shot + " "))


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Reporter(stream, live=False) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("written", "7.5s")
    text = stream.getvalue()
    assert "canopy: running 40%" in text and "canopy: stored" in text
    assert "hover take 2/3: failed: task failed: bad prompt" in text
    assert "queued" not in text  # waiting for a local slot is not worth a line
    assert "stitch: written 7.5s" in text


def test_live_table_on_a_terminal() -> None:
    stream = io.StringIO()
    with Reporter(stream, live=True) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("stitching")
    text = stream.getvalue()
    for word in ("shot", "canopy", "hover", "2/3", "stored", "failed", "cut", "stitching"):
        assert word in text


def test_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    with Reporter(stream, quiet=True) as reporter:
        for event in _events():
            reporter(event)
        reporter.stitch("written")
    assert stream.getvalue() == ""


def test_elapsed_and_eta_move_with_the_clock_without_events() -> None:
    clock = Clock()
    reporter = Reporter(io.StringIO(), live=False, estimate=1.0, clock=clock)
    reporter(Event("hover", 1, 1, "queued", time=0.0))
    reporter(Event("hover", 1, 1, "rendering", stage="submitting", time=1.0))
    reporter(
        Event("hover", 1, 1, "rendering", stage="submitted", task_id="tk-7f3a", cost=0.2, time=2.0)
    )
    reporter(Event("hover", 1, 1, "rendering", 0.0, stage="running", task_id="tk-7f3a", time=2.0))
    clock.now = 12.0
    reporter(Event("hover", 1, 1, "rendering", 0.5, stage="running", task_id="tk-7f3a", time=12.0))
    # 50% in 10 s of running: 10 s left.
    row = row_of(draw(reporter), "hover")
    assert "running" in row and "50%" in row and "11.0s" in row and "~10.0s" in row
    assert "tk-7f3a" in row
    clock.now = 15.0  # no event: the time moves anyway
    text = draw(reporter)
    row = row_of(text, "hover")
    assert "14.0s" in row and "~7.0s" in row
    assert "elapsed 15.0s" in text and "about 7.0s left" in text
    assert "committed $0.20 of $1.00 estimated" in text


def test_no_eta_before_the_provider_reports_progress() -> None:
    clock = Clock(30.0)
    reporter = Reporter(io.StringIO(), live=False, clock=clock)
    reporter(Event("v1", 1, 1, "rendering", None, stage="running", task_id="ws-1", time=0.0))
    reporter(Event("v1", 1, 1, "rendering", None, stage="running", task_id="ws-1", time=20.0))
    reporter(Event("v3", 1, 1, "rendering", 0.01, stage="running", time=0.0))
    reporter(Event("v3", 1, 1, "rendering", 0.03, stage="running", time=20.0))  # 2%: too little
    text = draw(reporter)
    assert "~" not in text and "left" not in text
    assert "30.0s" in row_of(text, "v1")  # elapsed still shown
    assert reporter.eta() is None


def test_an_overdue_estimate_says_nothing() -> None:
    clock = Clock(100.0)
    reporter = Reporter(io.StringIO(), live=False, clock=clock)
    reporter(Event("v3", 1, 1, "rendering", 0.0, stage="running", time=0.0))
    reporter(Event("v3", 1, 1, "rendering", 0.5, stage="running", time=10.0))  # due at 20 s
    assert reporter.eta() is None and "~" not in draw(reporter)


def test_overall_eta_waits_for_every_open_take() -> None:
    clock = Clock(10.0)
    reporter = Reporter(io.StringIO(), live=False, clock=clock)
    reporter(Event("a", 1, 1, "rendering", 0.0, stage="running", time=0.0))
    reporter(Event("a", 1, 1, "rendering", 0.5, stage="running", time=10.0))
    reporter(Event("b", 1, 1, "waiting", message="for a", time=0.0))
    assert reporter.eta() is None  # b has no estimate yet
    reporter(Event("b", 1, 1, "cached", 1.0, time=10.0))
    assert reporter.eta() == pytest.approx(10.0)
    reporter(Event("c", 1, 1, "rendering", 0.0, stage="running", time=0.0))
    reporter(Event("c", 1, 1, "rendering", 0.2, stage="running", time=10.0))
    assert reporter.eta() == pytest.approx(40.0)  # the slowest open take


def test_every_stage_is_shown_with_its_detail() -> None:
    clock = Clock(5.0)
    reporter = Reporter(io.StringIO(), live=False, clock=clock)
    stages = [
        Event("up", 1, 1, "rendering", stage="uploading", message="first_frame a.png"),
        Event("sub", 1, 1, "rendering", stage="submitted", task_id="qb-42", cost=0.28),
        Event("old", 1, 1, "rendering", stage="resumed", task_id="ws-9"),
        Event("que", 1, 1, "rendering", stage="queued", task_id="qb-43", position=3),
        Event("run", 1, 1, "rendering", 0.4, stage="running", task_id="qb-44"),
        Event("dl", 1, 1, "rendering", stage="downloading", task_id="qb-45"),
        Event("ver", 1, 1, "rendering", stage="verifying", task_id="qb-46"),
        Event("ok", 1, 1, "done", 1.0),
        Event("hit", 1, 1, "cached", 1.0),
        Event("bad", 1, 1, "failed", message="qingbo task qb-47 failed: nsfw"),
        Event("skp", 1, 1, "skipped", message="upstream bad failed"),
        Event("wai", 1, 1, "waiting", message="for up"),
        Event("int", 1, 1, "interrupted"),
    ]
    for event in stages:
        reporter(event)
    text = draw(reporter, width=200)
    expect = {
        "up": ("uploading", "first_frame a.png"),
        "sub": ("submitted", "qb-42"),
        "old": ("resumed", "ws-9"),
        "que": ("queued #3", "qb-43"),
        "run": ("running", "40%"),
        "dl": ("downloading", "qb-45"),
        "ver": ("verifying", "qb-46"),
        "ok": ("stored", "100%"),
        "hit": ("cached", "100%"),
        "bad": ("failed", "qb-47 failed: nsfw"),
        "skp": ("skipped", "upstream bad failed"),
        "wai": ("waiting", "for up"),
        "int": ("interrupted", ""),
    }
    for shot, words in expect.items():
        row = row_of(text, shot)
        assert all(w in row for w in words), (shot, row)
    assert "committed $0.28" in text  # no estimate given: the money alone


def test_money_committed_counts_this_runs_submits_only() -> None:
    reporter = Reporter(io.StringIO(), live=False, estimate=0.72)
    reporter(Event("a", 1, 2, "rendering", stage="submitted", task_id="t1", cost=0.2))
    reporter(Event("a", 2, 2, "rendering", stage="submitted", task_id="t2", cost=0.2))
    reporter(Event("b", 1, 1, "rendering", stage="resumed", task_id="t0"))  # an earlier run's
    reporter(Event("c", 1, 1, "rendering", stage="submitted", task_id="t3"))  # resent: no cost
    reporter(Event("a", 1, 2, "rendering", 0.5, stage="running", task_id="t1"))
    assert reporter.committed() == pytest.approx(0.4)
    assert "committed $0.40 of $0.72 estimated" in reporter.footer()


def test_plain_lines_say_each_stage_once_in_order() -> None:
    stream = io.StringIO()
    clock = Clock()
    with Reporter(stream, live=False, clock=clock) as reporter:
        reporter(Event("v4", 1, 1, "queued"))
        reporter(Event("v4", 1, 1, "rendering", stage="uploading", message="first_frame a.png"))
        reporter(Event("v4", 1, 1, "rendering", stage="submitting"))
        reporter(Event("v4", 1, 1, "rendering", stage="submitted", task_id="qb-1", cost=0.2))
        for _ in range(3):  # polls that change nothing print nothing
            reporter(Event("v4", 1, 1, "rendering", stage="queued", task_id="qb-1", position=2))
        for percent in (1, 4, 9, 10, 12, 35, 36, 99):
            clock.now = percent  # 1% a second: the ETA says 99 s, on every line
            reporter(Event("v4", 1, 1, "rendering", percent / 100, stage="running", time=percent))
        reporter(Event("v4", 1, 1, "rendering", stage="downloading", task_id="qb-1"))
        reporter(Event("v4", 1, 1, "rendering", stage="verifying", task_id="qb-1"))
        reporter(Event("v4", 1, 1, "done", 1.0))
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "v4: uploading: first_frame a.png",
        "v4: submitting",
        "v4: submitted qb-1 ($0.20 committed)",
        "v4: queued at the provider, position 2",
        "v4: running 1%",
        "v4: running 10%, about 1m30s left",
        "v4: running 35%, about 1m05s left",
        "v4: running 99%, about 1.0s left",
        "v4: downloading",
        "v4: verifying",
        "v4: stored",
    ]


@given(st.lists(st.floats(min_value=0.0, max_value=0.999), min_size=1, max_size=60))
def test_plain_progress_prints_one_line_per_ten_percent(values: list[float]) -> None:
    stream = io.StringIO()
    reporter = Reporter(stream, live=False)
    seen: set[int] = set()
    for value in sorted(values):
        reporter(Event("s", 1, 1, "rendering", value, stage="running"))
        seen.add(int(value * 10 + 1e-9))
    printed = [int(m) for m in re.findall(r"running (\d+)%", stream.getvalue())]
    assert len(printed) == len(seen)  # one line per 10 % step reached, not per poll
    assert all(b - a >= 1 and b // 10 > a // 10 for a, b in itertools.pairwise(printed))


def test_ctrl_c_marks_unfinished_takes_interrupted() -> None:
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt), Reporter(stream, live=False) as reporter:
        reporter(Event("done", 1, 1, "done", 1.0))
        reporter(Event("bad", 1, 1, "failed", message="nsfw"))
        reporter(Event("run", 1, 1, "rendering", 0.3, stage="running", task_id="qb-1"))
        reporter(Event("slot", 1, 1, "queued"))
        reporter(Event("up", 1, 1, "waiting", message="for run"))
        raise KeyboardInterrupt
    text = stream.getvalue()
    for shot in ("run", "slot", "up"):
        assert f"{shot}: interrupted" in text
    for shot in ("done", "bad"):
        assert f"{shot}: interrupted" not in text
    stages = {key[0]: row.stage for key, row in reporter.rows.items()}
    assert stages == {
        "done": "stored",
        "bad": "failed",
        "run": "interrupted",
        "slot": "interrupted",
        "up": "interrupted",
    }
    # An "interrupted" event for a take already finished changes nothing.
    reporter(Event("done", 1, 1, "interrupted"))
    assert reporter.rows[("done", 1)].stage == "stored"


def test_live_table_redraws_on_a_timer() -> None:
    """With no event at all after the first, the terminal shows the time moving."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    clock = Clock()
    with Reporter(buffer, live=True, console=console, clock=clock, refresh_per_second=50) as rep:
        rep(Event("hover", 1, 1, "rendering", stage="submitted", task_id="tk-1", time=0.0))
        time.sleep(0.15)
        clock.now = 42.0
        time.sleep(0.3)
        shown = _ANSI.sub("", buffer.getvalue())
        assert "42.0s" in shown  # drawn by the refresh timer, not by an event
        clock.now = 43.5
    assert "43.5s" in _ANSI.sub("", buffer.getvalue())  # the last state, drawn at the end


def test_format_seconds() -> None:
    assert format_seconds(4.25) == "4.2s" or format_seconds(4.25) == "4.3s"
    assert format_seconds(185) == "3m05s"
    assert format_seconds(3720) == "1h02m"
    assert format_seconds(-1) == "0.0s"
