"""Progress events emitted by ``render`` (shared kernel: plain data, no imports of note).

An event says where one take is. ``state`` is the coarse state the scheduler knows
(``waiting``, ``queued`` for a slot, ``rendering``, ``done``...); ``stage`` is the finer step
a take is at, typed so the display never parses a message:

* ``waiting`` for an upstream shot, ``pending`` a free slot of its provider;
* ``uploading`` a local input (the message names it), ``submitting`` (a busy provider or a
  lost reply is waited out or looked for here);
* ``submitted`` once the task id is journalled (``task_id``; ``cost`` is the list price this
  run committed, ``None`` when nothing new was bought), ``resumed`` for a task an earlier run
  paid for;
* ``queued`` at the provider (``position`` when it says), ``running`` (``progress`` 0-1 when
  it says);
* ``downloading``, ``verifying``, ``stored``; or ``cached``, ``failed``, ``skipped``,
  ``interrupted`` (a Ctrl-C stopped it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FINAL_STAGES", "Event", "Stage", "State"]

State = Literal[
    "waiting", "queued", "rendering", "done", "cached", "failed", "skipped", "interrupted"
]

Stage = Literal[
    "waiting",
    "pending",
    "uploading",
    "submitting",
    "submitted",
    "resumed",
    "queued",
    "running",
    "downloading",
    "verifying",
    "stored",
    "cached",
    "failed",
    "skipped",
    "interrupted",
]

# Stages a take does not leave in this run.
FINAL_STAGES: frozenset[str] = frozenset({"stored", "cached", "failed", "skipped", "interrupted"})

# The stage an event without one is at, from its coarse state.
_STAGE_OF_STATE: dict[str, Stage] = {
    "waiting": "waiting",
    "queued": "pending",
    "rendering": "running",
    "done": "stored",
    "cached": "cached",
    "failed": "failed",
    "skipped": "skipped",
    "interrupted": "interrupted",
}


@dataclass(frozen=True)
class Event:
    """Progress of one take, for the progress display.

    Attributes:
        progress: the provider's progress, 0-1, when it reports one.
        time: ``time.monotonic()`` when it happened.
        stage: the step the take is at (see the module); derived from ``state`` if omitted.
        task_id: the provider's task, from ``submitted``/``resumed`` on.
        cost: with ``submitted``: the list price (USD) this run committed by the submit.
        position: with ``queued``: the place in the provider's queue, when it says.
    """

    shot: str
    take: int
    takes: int
    state: State
    progress: float | None = None
    message: str = ""
    time: float = field(default_factory=time.monotonic)
    stage: Stage | None = None
    task_id: str | None = None
    cost: float | None = None
    position: int | None = None

    @property
    def phase(self) -> Stage:
        """The stage, given or derived from the state."""
        return self.stage if self.stage is not None else _STAGE_OF_STATE[self.state]
