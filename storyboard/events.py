"""Progress events emitted by ``render`` (shared kernel: plain data, no imports of note)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Event", "State"]

State = Literal["waiting", "queued", "rendering", "done", "cached", "failed", "skipped"]


@dataclass(frozen=True)
class Event:
    """Progress of one take, for the progress display."""

    shot: str
    take: int
    takes: int
    state: State
    progress: float | None = None
    message: str = ""
    time: float = field(default_factory=time.monotonic)
