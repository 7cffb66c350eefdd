"""Progress display for ``render`` (CLI layer: the only other place that prints).

On a terminal: a live per-take table (state, take, progress, elapsed) and the stitch, drawn
with rich. Not on a terminal: one plain line per state change. With ``-q``: nothing.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from storyboard.events import Event

__all__ = ["Reporter"]

_STYLE = {
    "waiting": "dim",
    "queued": "dim",
    "rendering": "yellow",
    "done": "green",
    "cached": "cyan",
    "failed": "bold red",
    "skipped": "magenta",
}


class Reporter:
    """Receives render events and shows them."""

    def __init__(self, stream: TextIO, *, quiet: bool = False, live: bool | None = None) -> None:
        self.stream = stream
        self.quiet = quiet
        self.live = (stream.isatty() if live is None else live) and not quiet
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.stitch_state: str | None = None
        self._live: Any = None
        self._start = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Reporter:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(self._table(), console=console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None

    # -- events ----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        key = (event.shot, event.take)
        row = self.rows.get(key)
        changed = row is None or row["state"] != event.state
        if row is None:
            row = self.rows[key] = {"started": event.time}
        if event.state == "rendering" and row.get("state") != "rendering":
            row["started"] = event.time
        row.update(
            state=event.state, takes=event.takes, progress=event.progress, message=event.message
        )
        if event.state in ("done", "failed", "cached", "skipped"):
            row["ended"] = event.time
        if self._live is not None:
            self._live.update(self._table())
        elif changed and not self.quiet:
            self._line(event)

    def stitch(self, state: str, detail: str = "") -> None:
        self.stitch_state = f"{state} {detail}".strip()
        if self._live is not None:
            self._live.update(self._table())
        elif not self.quiet:
            print(f"stitch: {self.stitch_state}", file=self.stream, flush=True)

    # -- drawing ---------------------------------------------------------------------------

    def _line(self, event: Event) -> None:
        if event.state in ("queued",):
            return
        take = f" take {event.take}/{event.takes}" if event.takes > 1 else ""
        extra = f": {event.message}" if event.message else ""
        elapsed = time.monotonic() - self._start
        print(
            f"[{elapsed:6.1f}s] {event.shot}{take}: {event.state}{extra}",
            file=self.stream,
            flush=True,
        )

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_edge=False)
        for name in ("shot", "take", "state", "progress", "elapsed"):
            table.add_column(name)
        now = time.monotonic()
        for (shot, take), row in self.rows.items():
            state = row["state"]
            progress = row.get("progress")
            bar = ""
            if state == "rendering":
                bar = f"{progress * 100:3.0f}%" if progress else "…"
            elif state in ("done", "cached"):
                bar = "100%"
            ended = row.get("ended", now)
            elapsed = ended - row["started"] if state not in ("waiting", "queued") else 0.0
            label = f"[{_STYLE.get(state, '')}]{state}[/]"
            if row.get("message") and state in ("failed", "skipped", "waiting"):
                label += f" [dim]{row['message'][:60]}[/]"
            table.add_row(shot, f"{take}/{row['takes']}", label, bar, f"{elapsed:5.1f}s")
        if self.stitch_state:
            table.add_row("[bold]cut[/]", "", self.stitch_state, "", "")
        return table
