"""The provider protocol: ``submit``, ``poll``, ``download`` — wire format in, typed status out.

Providers hold no policy: polling cadence, deadlines, concurrency caps, retries of tasks and
the journal live in ``storyboard.render`` so every backend behaves the same. Raw provider
JSON never leaves a provider module; what crosses this boundary is the frozen data below.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from storyboard.catalog import ModelSpec
from storyboard.model import Shot

__all__ = [
    "Failed",
    "Job",
    "Provider",
    "Queued",
    "ReportedCost",
    "Running",
    "Succeeded",
    "TaskFinder",
    "TaskRef",
    "TaskStatus",
    "Unrecognised",
]


@dataclass(frozen=True)
class Job:
    """One take of one shot to render."""

    shot: Shot
    spec: ModelSpec
    take: int  # 1-based
    key: str  # generation key
    seed: int | None
    seconds: float  # length of the new footage
    width: int
    height: int
    fps: int
    upstream: Path | None = None  # the upstream shot's selected clip
    upstream_mode: Literal["extends", "continues"] | None = None
    # Live providers take URLs: every local input (by ``Media.source``) and, under the key
    # "upstream", the upstream clip, already uploaded or still valid at the provider.
    urls: Mapping[str, str] = field(default_factory=dict)
    # Which purchase of this generation key this is: 0 for the first, one more for each
    # ``--force`` (journalled). A provider with idempotent submits keys them on it, so a
    # forced take really buys a new generation while a resent submit reuses the same key.
    attempt: int = 0


@dataclass(frozen=True)
class TaskRef:
    """A submitted task: enough to poll it again after a crash."""

    provider: str
    task_id: str
    key: str


@dataclass(frozen=True)
class Queued:
    position: int | None = None


@dataclass(frozen=True)
class Running:
    progress: float | None = None  # 0..1 when the provider says


@dataclass(frozen=True)
class ReportedCost:
    """A charge as the provider reported it, in the provider's own unit (never converted)."""

    amount: float
    unit: str  # e.g. "usd", "quota"


@dataclass(frozen=True)
class Succeeded:
    outputs: tuple[str, ...]  # URLs (or local paths for the preview backend)
    reported: ReportedCost | None = None  # what the provider says it charged, if anything
    expires_at: float | None = None  # Unix time the output links stop working, if it says


@dataclass(frozen=True)
class Failed:
    message: str
    code: str | None = None
    user_fixable: bool = False  # the storyboard must change (e.g. WaveSpeed 1xxx)


@dataclass(frozen=True)
class Unrecognised:
    """A status this client does not know (the caller bounds how often it accepts one)."""

    status: str


TaskStatus = Queued | Running | Succeeded | Failed | Unrecognised


@runtime_checkable
class Provider(Protocol):
    """What every backend implements."""

    name: str

    @property
    def idempotent_submit(self) -> bool:
        """Whether submitting the same job again can never create a second task.

        True for Qingbo (its Idempotency-Key) and the free local preview: a submit whose
        reply was lost is then resent instead of being looked for or left to ``--force``.
        """
        ...

    async def submit(self, job: Job) -> TaskRef:
        """Start the task. Never retried automatically by callers."""
        ...

    async def poll(self, task: TaskRef) -> TaskStatus:
        """The task's current state."""
        ...

    async def download(self, task: TaskRef, status: Succeeded, dest: Path) -> None:
        """Write the task's output video to ``dest``."""
        ...

    async def aclose(self) -> None:
        """Release connections and worker resources."""
        ...


@runtime_checkable
class TaskFinder(Protocol):
    """A provider that can list the tasks an account created (to settle a lost reply)."""

    async def find_task(
        self, job: Job, *, since: float, exclude: Collection[str] = ()
    ) -> TaskRef | None:
        """The task this account created for ``job`` at or after ``since`` (Unix seconds).

        ``exclude`` lists task ids the caller already holds (other takes of the same shot
        send the same input, so they must not be found again). ``None`` when the provider's
        listing shows no such task. Raises a :class:`~storyboard.errors.ProviderError` when
        the listing cannot be read or more than one task matches.
        """
        ...
