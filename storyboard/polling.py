"""Waiting for a provider's task: when to ask about it, and how many times it was asked.

A video task runs for minutes at a hosted provider and seconds at the emulator. Asking at a
fixed pace either hammers the API or notices a finished task late, and a late notice delays
every shot that extends or continues it. So each task is polled on a plan that fits it
(:class:`PollPlan`), within a floor (``Timing.poll_interval``, ``$STORYBOARD_POLL_INTERVAL``,
default 5 s) and a cap (``Timing.poll_max``, 60 s; half of it unless the task reports a
measured rate of progress):

* **its expected length**: the model's typical render time for the asked footage
  (:func:`typical_render_seconds`, a rough prior), corrected by what the tasks of this run
  have taken (:class:`RenderTimes`: tasks of the same model, else of any model);
* **what the provider reports**: progress readings over at least a tenth of the task give
  a rate and so a finish time (a closer pair a rougher one); a queue position puts the
  finish further off;
* the first poll after the submit comes at the share of the expected length the estimate
  is sure of, the next at the estimated finish; from there every :data:`NEAR_SHARE` of the
  task's length (at least the floor), doubling per poll once the estimate is past;
* while the length is only the prior (no progress yet, no task of this run finished), no
  wait is longer than half the task's age: a task far quicker than the prior is still
  noticed by 1.5x its real length, as the growing interval of the first release did; on
  progress readings no wait is longer than twice its age (a rougher rate: its age), in case
  the progress is not steady. A task an earlier run submitted is asked at once.

Each status request counts (:func:`counting_polls`), so ``render --json`` reports how many a
rendered take needed.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import anyio

from storyboard.errors import ProviderTimeout, UnrecognisedStatus
from storyboard.events import Event
from storyboard.providers.base import (
    Failed,
    Job,
    Provider,
    Queued,
    Running,
    Succeeded,
    TaskRef,
    TaskStatus,
    Unrecognised,
)

__all__ = [
    "MAX_UNRECOGNISED_POLLS",
    "NEAR_SHARE",
    "RENDER_SECONDS_PER_SECOND",
    "PollCount",
    "PollPlan",
    "RenderTimes",
    "Timing",
    "counting_polls",
    "shown_task_id",
    "typical_render_seconds",
    "wait_for_task",
]


@dataclass(frozen=True)
class Timing:
    """How a task is waited for; every wait has a deadline."""

    # The floor: no two status requests of a task are closer than this (and the first one
    # waits at least this long after the submit).
    poll_interval: float = 0.0
    # The cap: no wait between two status requests is longer (half of it unless the task
    # reports a measured rate of progress).
    poll_max: float = 60.0
    # One deadline per take: the provider-busy resubmits and the polling of a live take all
    # end by then (a video task that runs longer has gone wrong).
    task_deadline: float = 3 * 3600.0
    # A submit in flight finishes (shielded from Ctrl-C) within this, so its task id reaches
    # the journal; past it the outcome is unknown.
    submit_deadline: float = 120.0


# Consecutive polls answered with a status the client does not know before the take fails
# (the task stays journalled: a rerun resumes it).
MAX_UNRECOGNISED_POLLS = 10

# Seconds of rendering per second of output, by model: priors only. Neither host publishes
# its latency (UNCONFIRMED); the one measured figure is V1's README, ~107 s for a 4 s 544p
# clip on 8 A800s, about 27 s a second. The others are scaled by model size and steps. They
# order a render's takes (longest chains first; only their ratios matter there) and shape
# the first polls of a task until a task of this run has finished (see RenderTimes).
RENDER_SECONDS_PER_SECOND: Mapping[str, float] = {
    "skyreels-v1": 27.0,
    "skyreels-v3-reference": 30.0,
    "skyreels-v3-extend": 30.0,
    "skyreels-v3-cutshot": 30.0,
    "skyreels-v4-fast": 15.0,
    "skyreels-v4-std": 30.0,
}
_UNKNOWN_MODEL = 30.0
# Queueing, loading and encoding around any render, whatever its length (a guess too).
_TASK_OVERHEAD = 10.0

# Near the expected finish, a task is polled every this share of its expected length.
NEAR_SHARE = 0.03
# How far the wait goes toward the estimated finish, by how much the estimate is trusted.
_TRUST_RATE = 0.9  # a rate of progress measured over at least _RATE_SPAN
_TRUST_READING = 0.75  # rougher readings, or the length of the tasks this run finished
_TRUST_PRIOR = 0.5  # the prior alone
_RATE_SPAN = 0.1  # a rate is measured over at least this much progress
# While only the prior is known, no wait is longer than this share of the task's age.
_PRIOR_GROWTH = 0.5
_LATE_GROWTH = 2.0  # past the estimate, each wait is this much longer than the one before


def typical_render_seconds(model: str, seconds: float) -> float:
    """The prior: seconds a task of ``model`` takes for ``seconds`` of footage."""
    rate = RENDER_SECONDS_PER_SECOND.get(model, _UNKNOWN_MODEL)
    return _TASK_OVERHEAD + rate * max(seconds, 0.0)


class RenderTimes:
    """How long tasks take, as this run has seen them: the priors, corrected.

    Each finished task (submitted by this run) records its length against the prior of its
    model and footage; later tasks expect the prior times the median of those ratios (of the
    same model when there are some, else of every model), so an account or an emulator far
    quicker or slower than the priors is learned from its first task.
    """

    def __init__(self) -> None:
        self._ratios: dict[str, list[float]] = {}

    def expected(self, model: str, seconds: float) -> tuple[float, bool]:
        """Seconds a task should take from its submit, and whether this run measured it."""
        prior = typical_render_seconds(model, seconds)
        ratios = self._ratios.get(model) or [r for rs in self._ratios.values() for r in rs]
        if not ratios:
            return prior, False
        return prior * statistics.median(ratios), True

    def observe(self, model: str, seconds: float, took: float) -> None:
        """A task of ``model`` for ``seconds`` of footage took ``took`` seconds."""
        if took > 0:
            prior = typical_render_seconds(model, seconds)
            self._ratios.setdefault(model, []).append(took / prior)


class PollPlan:
    """When to ask about one task next, from what it said and how long it should take.

    Args:
        floor: the least wait between two polls.
        cap: the longest wait between two polls.
        expected: seconds the task should take from its submit.
        measured: ``expected`` comes from tasks this run finished (not only the prior).
    """

    def __init__(self, *, floor: float, cap: float, expected: float, measured: bool) -> None:
        self.floor = max(floor, 0.0)
        self.cap = max(cap, self.floor)
        self.expected = max(expected, 0.0)
        self.measured = measured
        self._readings: list[tuple[float, float]] = []  # (age, progress) as it grew
        self._waiting_until = 0.0  # the last age it was seen waiting: it started later
        self._late = 0  # polls since the estimated finish passed
        self._prior_only = True  # the last estimate had nothing but the expected length

    def first(self, age: float = 0.0) -> float:
        """The wait before the first poll of a task ``age`` seconds old (0: just submitted).

        A task an earlier run submitted (``age`` > 0) is asked at once: it may be done.
        """
        if age > 0:
            return 0.0
        return self.after(None, 0.0)

    def after(self, status: TaskStatus | None, age: float) -> float:
        """The wait before the next poll, after ``status`` at ``age`` seconds since the submit
        (``None``: not asked yet)."""
        finish, trust, guarded = self._estimate(status, age)
        step = min(max(NEAR_SHARE * finish, self.floor), self.cap)
        if finish - age > step:
            # First at the share of the expected length the estimate is sure of, then at
            # the estimated finish itself.
            delay = (trust * finish if age < trust * finish else finish) - age
            self._late = 0
        else:
            delay = step * _LATE_GROWTH**self._late
            self._late += 1
            if guarded and self._prior_only:  # past a mere prior: its age says more
                delay = max(delay, _PRIOR_GROWTH / 2 * age)
        if self._prior_only:
            if guarded:
                delay = min(delay, _PRIOR_GROWTH * age)
        else:
            # Progress readings: however steady the rate so far, a wait at most doubles the
            # task's age (once less sure, equals it), in case its progress is not steady.
            delay = min(delay, (2.0 if trust >= _TRUST_RATE else 1.0) * age)
        if trust < _TRUST_RATE:  # the full cap only on a measured rate of progress
            delay = min(delay, self.cap / 2)
        return min(max(delay, self.floor), self.cap)

    def _estimate(self, status: TaskStatus | None, age: float) -> tuple[float, float, bool]:
        """The age at which the task should finish, how far that is trusted, and whether the
        task's age bounds the wait (nothing measured supports the estimate). Notes whether
        the estimate had nothing but the expected length (``_prior_only``)."""
        prior = _TRUST_READING if self.measured else _TRUST_PRIOR
        guarded = not self.measured
        self._prior_only = True
        if isinstance(status, Queued) or status is None:
            self._waiting_until = age
            self._readings.clear()
            ahead = status.position if isinstance(status, Queued) and status.position else 0
            # Each task ahead in the provider's queue keeps it at least one near-step away.
            step = max(NEAR_SHARE * self.expected, self.floor)
            return max(self.expected, age + ahead * step), prior, guarded
        if not isinstance(status, Running) or not status.progress:
            return self.expected, prior, guarded
        progress = status.progress
        self._prior_only = False
        if progress >= 1:
            return age, _TRUST_RATE, False  # all but done
        readings = self._readings
        # The rate is measured from the first reading since it started running: the longest
        # span, where a coarse percentage (whole percents) errs least; under _RATE_SPAN it
        # says little.
        base = readings[0] if readings else None
        if not readings or progress > readings[-1][1]:
            readings.append((age, progress))
        if base is not None and progress > base[1] and age > base[0]:
            rate = (progress - base[1]) / (age - base[0])
            sure = progress - base[1] >= _RATE_SPAN
            return (
                age + (1 - progress) / rate,
                _TRUST_RATE if sure else _TRUST_READING,
                (guarded and not sure),
            )
        ran = age - self._waiting_until
        if ran <= 0:
            return self.expected, prior, guarded
        # One reading: when it started running is known only roughly, and a coarse early
        # percentage can put the finish far off, so the age still bounds the wait.
        return age + (1 - progress) * ran / progress, _TRUST_READING, guarded


class PollCount:
    """The status requests of the tasks waited for inside :func:`counting_polls`."""

    def __init__(self) -> None:
        self.count = 0


_COUNT: ContextVar[PollCount | None] = ContextVar("storyboard_poll_count", default=None)


@contextlib.contextmanager
def counting_polls() -> Iterator[PollCount]:
    """Count the status requests :func:`wait_for_task` makes in this task (an anyio task
    has a context of its own, so takes running at once count apart)."""
    count = PollCount()
    token = _COUNT.set(count)
    try:
        yield count
    finally:
        _COUNT.reset(token)


def shown_task_id(task: TaskRef, job: Job) -> str | None:
    """The task id progress shows: none for a local task named by its generation key."""
    return None if task.task_id == job.key else task.task_id


async def wait_for_task(
    provider: Provider,
    task: TaskRef,
    job: Job,
    emit: Callable[[Event], None],
    timing: Timing,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    *,
    deadline: float | None = None,
    times: RenderTimes | None = None,
    age: float = 0.0,
) -> Succeeded | Failed:
    """Poll ``task`` until it ends, on a :class:`PollPlan` that fits it, within a deadline.

    Args:
        deadline: ``time.monotonic()`` by which the task must end (default:
            ``timing.task_deadline`` from now); no poll or wait runs past it.
        times: the render times this run has seen (the task's length is learned into it);
            default: the prior alone.
        age: seconds since the task was submitted (0: just now; more for a task an earlier
            run submitted, which is asked at once).

    Raises:
        ProviderTimeout: the task did not end before the deadline.
        UnrecognisedStatus: the provider answered :data:`MAX_UNRECOGNISED_POLLS` polls in a
            row with a status the client does not know.
    """
    shot = job.shot
    shown = shown_task_id(task, job)
    now = time.monotonic()
    end = deadline if deadline is not None else now + timing.task_deadline
    submitted = now - max(age, 0.0)
    if times is not None:
        expected, measured = times.expected(job.spec.id, job.seconds)
    else:
        expected, measured = typical_render_seconds(job.spec.id, job.seconds), False
    plan = PollPlan(
        floor=timing.poll_interval, cap=timing.poll_max, expected=expected, measured=measured
    )
    count = _COUNT.get()
    unrecognised = 0
    last_unfinished: float | None = None

    def timeout() -> ProviderTimeout:
        return ProviderTimeout(
            f"{provider.name} task {task.task_id} of shot {shot.id} did not finish in time "
            f"(deadline {timing.task_deadline:.0f} s)",
            provider=provider.name,
            shot=shot.id,
            task_id=task.task_id,
            hint="run the same command again: the task is resumed, not resubmitted",
        )

    async def pause(delay: float) -> None:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise timeout()
        delay = min(delay, remaining)
        # A little jitter, never later than planned, so tasks submitted together spread out.
        await sleep(random.uniform(0.9 * delay, delay) if delay > 0 else 0.0)

    async def poll() -> TaskStatus:
        # A poll in flight at the deadline is cut short: no wait outlives the deadline.
        with anyio.move_on_after(max(end - time.monotonic(), 0.0)):
            if count is not None:
                count.count += 1
            return await provider.poll(task)
        raise timeout()

    await pause(plan.first(age))
    while True:
        status = await poll()
        asked = time.monotonic()
        if isinstance(status, (Succeeded, Failed)):
            if isinstance(status, Succeeded) and times is not None and age <= 0:
                # It ended between the last poll that saw it running and this one.
                took = asked - submitted
                if last_unfinished is not None:
                    took = (last_unfinished + asked) / 2 - submitted
                times.observe(job.spec.id, job.seconds, took)
            return status
        last_unfinished = asked
        if isinstance(status, Unrecognised):
            unrecognised += 1
            if unrecognised >= MAX_UNRECOGNISED_POLLS:
                raise UnrecognisedStatus(
                    f"{provider.name} task {task.task_id} of shot {shot.id} reported the status "
                    f"{status.status!r} {unrecognised} times in a row, and storyboard does not "
                    "know what it means; the journal keeps the task, so a rerun resumes it",
                    provider=provider.name,
                    shot=shot.id,
                    task_id=task.task_id,
                    status=status.status,
                    hint="run the same command again later: the task is resumed, not paid again",
                )
            emit(
                Event(
                    shot.id, job.take, shot.takes, "rendering", None,
                    f"status {status.status!r}", stage="running", task_id=shown,
                )
            )  # fmt: skip
        else:
            unrecognised = 0
            if isinstance(status, Queued):
                emit(
                    Event(
                        shot.id, job.take, shot.takes, "rendering", stage="queued",
                        task_id=shown, position=status.position,
                    )
                )  # fmt: skip
            else:
                emit(
                    Event(
                        shot.id, job.take, shot.takes, "rendering", status.progress,
                        stage="running", task_id=shown,
                    )
                )  # fmt: skip
        await pause(plan.after(status, asked - submitted))
