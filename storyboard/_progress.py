"""Progress display for ``render`` (CLI layer: the only other place that prints).

On a terminal: a live per-take table drawn with rich, redrawn on a timer, so elapsed times
move even while no event arrives. Each take shows its stage (uploading, submitted with its
task id, queued with its position, running with the provider's percent, downloading,
verifying, stored; or waiting, cached, failed, skipped, interrupted), its elapsed time and,
once the provider reports progress, an ETA; the footer shows the run's elapsed time, its ETA
and the money committed so far (list price of the takes this run submitted) next to the
run's estimate. Not on a terminal: one plain line per change (a stage change, or a progress
step of at least 10 %). With ``-q``: nothing.

A Ctrl-C that ends the run (``KeyboardInterrupt`` through :meth:`Reporter.__exit__`, or
:meth:`Reporter.interrupt`) marks every unfinished take ``interrupted``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from storyboard.events import FINAL_STAGES, Event, Stage

__all__ = ["MIN_PROGRESS_FOR_ETA", "PLAIN_PROGRESS_STEP", "Reporter", "format_seconds"]

# An ETA needs at least this much progress observed while running: below it, say nothing.
MIN_PROGRESS_FOR_ETA = 0.05
# Plain output prints a running take again once its progress moved by this much.
PLAIN_PROGRESS_STEP = 0.10

_STYLE: dict[str, str] = {
    "waiting": "dim",
    "pending": "dim",
    "uploading": "blue",
    "submitting": "blue",
    "submitted": "blue",
    "resumed": "blue",
    "queued": "dim yellow",
    "running": "yellow",
    "downloading": "cyan",
    "verifying": "cyan",
    "stored": "green",
    "cached": "cyan",
    "failed": "bold red",
    "skipped": "magenta",
    "interrupted": "bold magenta",
}
# Stages before a take's own work starts: no elapsed time yet.
_IDLE: frozenset[str] = frozenset({"waiting", "pending"})


def format_seconds(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``: short enough for a table cell."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _money(value: float) -> str:
    return f"${value:.2f}"


def _percent(progress: float) -> int:
    """Whole percent, rounded down: never more than the provider said (29.7% shows 29%)."""
    return math.floor(progress * 100 + 1e-9)


@dataclass
class _Row:
    """What the display knows of one take."""

    shot: str
    take: int
    takes: int
    stage: Stage
    message: str = ""
    progress: float | None = None
    progress_at: float | None = None  # when the provider reported ``progress``
    anchor: tuple[float, float] | None = None  # (time, progress) first seen while running
    position: int | None = None
    task_id: str | None = None
    cost: float | None = None  # list price this run committed by submitting it
    started: float | None = None  # first stage of its own work
    ended: float | None = None
    printed_step: int = -2  # plain output: the progress step last printed

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now) - self.started

    def eta(self, now: float) -> float | None:
        """Seconds left, from the progress rate seen while running; ``None`` if unknown.

        The rate is the progress gained since the first progress seen while running, over
        the time it took; an ETA is given only once that gain is at least
        :data:`MIN_PROGRESS_FOR_ETA`, and never once it is overdue.
        """
        if self.stage != "running" or self.anchor is None:
            return None
        if self.progress is None or self.progress_at is None or not self.progress < 1.0:
            return None
        since, base = self.anchor
        gained, took = self.progress - base, self.progress_at - since
        if gained < MIN_PROGRESS_FOR_ETA or took <= 0:
            return None
        left = took * (1.0 - self.progress) / gained - (now - self.progress_at)
        return left if left >= 0 else None


class _View:
    """A renderable computed when rich draws it: time moves without events."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Any:
        return self.reporter.renderable()


class Reporter:
    """Receives render events and shows them.

    Args:
        stream: where to draw (the CLI's stderr).
        quiet: show nothing.
        live: draw the live table (default: when ``stream`` is a terminal).
        estimate: the run's estimate in USD (``render --live``), shown beside the money
            committed so far; ``None`` shows no estimate.
        clock: ``time.monotonic`` or a test's fake clock; "now" for elapsed times and ETAs.
        console: the rich console to draw on (default: one on ``stream``).
        refresh_per_second: how often the live table is redrawn.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        quiet: bool = False,
        live: bool | None = None,
        estimate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        console: Any = None,
        refresh_per_second: float = 4,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        self.live = (stream.isatty() if live is None else live) and not quiet
        self.estimate = estimate
        self.clock = clock
        self.rows: dict[tuple[str, int], _Row] = {}
        self.stitch_state: str | None = None
        self.interrupted = False
        self.view = _View(self)
        self._console = console
        self._fps = refresh_per_second
        self._live: Any = None
        self._lock = threading.RLock()  # the live table is drawn from rich's refresh thread
        self._start = clock()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Reporter:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console(file=self.stream)
            self._live = Live(
                self.view,
                console=console,
                refresh_per_second=self._fps,
                auto_refresh=True,
                transient=False,
            )
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.interrupt()
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()  # draws the last state once more

    # -- events ----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            line = self._apply(event)
        self._show(line)

    def interrupt(self) -> None:
        """The run was interrupted (Ctrl-C): every take not finished is ``interrupted``."""
        now = self.clock()
        lines: list[str | None] = []
        with self._lock:
            self.interrupted = True
            for row in self.rows.values():
                if row.stage not in FINAL_STAGES:
                    row.stage, row.message, row.ended = "interrupted", "", now
                    lines.append(self._describe(row, now))
        for line in lines:
            self._show(line)

    def stitch(self, state: str, detail: str = "") -> None:
        with self._lock:
            self.stitch_state = f"{state} {detail}".strip()
        if self._live is not None:
            self._live.refresh()
        elif not self.quiet:
            print(f"stitch: {self.stitch_state}", file=self.stream, flush=True)

    # -- state -----------------------------------------------------------------------------

    def committed(self) -> float:
        """List price (USD) of the takes this run submitted, from the ``submitted`` events."""
        with self._lock:
            return round(sum(row.cost or 0.0 for row in self.rows.values()), 6)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until every unfinished take is done, when each of them has an ETA."""
        now = self.clock() if now is None else now
        with self._lock:
            open_rows = [r for r in self.rows.values() if r.stage not in FINAL_STAGES]
            etas = [r.eta(now) for r in open_rows]
        if not open_rows or any(e is None for e in etas):
            return None
        return max(e for e in etas if e is not None)

    def _apply(self, event: Event) -> str | None:
        """Record ``event``; the plain line it is worth, if any."""
        key = (event.shot, event.take)
        stage = event.phase
        row = self.rows.get(key)
        if row is not None and row.stage in FINAL_STAGES and stage == "interrupted":
            return None  # finished before the Ctrl-C
        new = row is None
        if row is None:
            row = self.rows[key] = _Row(event.shot, event.take, event.takes, stage)
        before = (row.stage, row.message)
        if stage == "running" and (new or row.stage != "running"):
            row.anchor = None
            row.progress = row.progress_at = None
            row.printed_step = -2
        row.stage, row.takes, row.message = stage, event.takes, event.message
        if stage == "running" and event.progress is not None:
            row.progress, row.progress_at = event.progress, event.time
            if row.anchor is None:
                row.anchor = (event.time, event.progress)
        if stage in ("stored", "cached"):
            row.progress = 1.0
        row.position = event.position if stage == "queued" else None
        if event.task_id:
            row.task_id = event.task_id
        if stage == "submitted" and event.cost is not None:
            row.cost = event.cost
        if row.started is None and stage not in _IDLE and stage not in ("cached", "skipped"):
            row.started = event.time
        if stage in FINAL_STAGES:
            row.ended = event.time
        elif row.ended is not None:
            row.ended = None  # not expected: a take that goes on after a final stage
        if self.quiet or stage == "pending":
            return None
        changed = new or before != (row.stage, row.message)
        if stage == "running" and row.progress is not None:
            step = math.floor(row.progress / PLAIN_PROGRESS_STEP + 1e-9)
            if step > row.printed_step:
                row.printed_step = step
                changed = True
        elif stage == "running" and changed:
            row.printed_step = -1
        return self._describe(row, self.clock()) if changed else None

    def _show(self, line: str | None) -> None:
        if self.quiet:
            return
        if self._live is not None:
            return  # the refresh thread draws it
        if line is not None and not self.live:
            print(line, file=self.stream, flush=True)

    # -- drawing ---------------------------------------------------------------------------

    def _describe(self, row: _Row, now: float) -> str:
        """One plain line for the row's current stage."""
        take = f" take {row.take}/{row.takes}" if row.takes > 1 else ""
        what = self._stage_text(row, now)
        if row.message and row.stage not in ("submitted", "resumed", "queued", "running"):
            what += f": {row.message}"
        elif row.message:
            what += f" ({row.message})"
        return f"[{now - self._start:6.1f}s] {row.shot}{take}: {what}"

    def _stage_text(self, row: _Row, now: float) -> str:
        stage: str = row.stage
        if stage in ("submitted", "resumed") and row.task_id:
            text = f"{stage} {row.task_id}"
            if stage == "submitted" and row.cost:
                text += f" ({_money(row.cost)} committed)"
            return text
        if stage == "queued":
            where = f", position {row.position}" if row.position is not None else ""
            return f"queued at the provider{where}"
        if stage == "running" and row.progress is not None:
            eta = row.eta(now)
            left = f", about {format_seconds(eta)} left" if eta is not None else ""
            return f"running {_percent(row.progress)}%{left}"
        return stage

    def renderable(self) -> Any:
        """The table and its footer as they are now (the live display draws this)."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        table = Table(box=None, pad_edge=False, show_edge=False)
        for name in ("shot", "take", "stage", "progress", "elapsed", "eta", "task"):
            table.add_column(name, no_wrap=name in ("elapsed", "eta", "progress"))
        with self._lock:
            rows = list(self.rows.values())
            stitch_state = self.stitch_state
            for row in rows:
                table.add_row(*self._cells(row, now))
        if stitch_state:
            table.add_row("[bold]cut[/]", "", stitch_state, "", "", "", "")
        return Group(table, Text(self.footer(now), style="bold"))

    def _cells(self, row: _Row, now: float) -> tuple[str, ...]:
        from rich.markup import escape

        stage = row.stage
        label = f"[{_STYLE.get(stage, '')}]{stage}[/]"
        if stage == "queued" and row.position is not None:
            label += f" #{row.position}"
        if row.message and stage not in ("stored", "cached"):
            label += f" [dim]{escape(row.message[:60])}[/]"
        if stage == "running" and row.progress is not None:
            progress = f"{_percent(row.progress):3d}%"
        elif stage in ("stored", "cached"):
            progress = "100%"
        else:
            progress = ""
        elapsed = row.elapsed(now)
        eta = row.eta(now)
        return (
            escape(row.shot),
            f"{row.take}/{row.takes}",
            label,
            progress,
            format_seconds(elapsed) if elapsed is not None else "",
            f"~{format_seconds(eta)}" if eta is not None else "",
            escape(row.task_id or ""),
        )

    def footer(self, now: float | None = None) -> str:
        """``elapsed 1m05s · about 40.0s left · committed $0.40 of $1.20 estimated``."""
        now = self.clock() if now is None else now
        parts = [f"elapsed {format_seconds(now - self._start)}"]
        eta = self.eta(now)
        if eta is not None:
            parts.append(f"about {format_seconds(eta)} left")
        committed = self.committed()
        if self.estimate is not None:
            parts.append(f"committed {_money(committed)} of {_money(self.estimate)} estimated")
        elif committed:
            parts.append(f"committed {_money(committed)}")
        if self.interrupted:
            parts.append("interrupted")
        return " · ".join(parts)
