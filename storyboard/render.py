"""Stage 5, render: run the stale takes of a plan through a provider, as a DAG.

One anyio task group over all shots; the scheduler's slots per provider cap the tasks in
flight and hand a freed slot to the waiting take with the longest chain of expected render
ahead of it (:mod:`storyboard.scheduler`); a shot waits for its upstream shot; a failed shot
fails only its dependants. Tasks are polled on a plan that fits them (:mod:`storyboard.polling`),
and each rendered take reports its status requests (:class:`RenderedTake`). Without
``keep_going`` the first failure stops new work and lets running work finish; a take that
resumes a task already paid for is never stopped (its output would be stranded). Finished
clips are moved into the store as they complete, so an interruption loses only work in
progress.

Nothing inside a take reaches the user as a traceback: a :class:`StoryboardError` is that
take's failure, anything else becomes a :class:`TakeError` naming the shot, and an exception
group never leaves :func:`render_plan` (failures are gathered into :class:`RenderFailed`,
an interruption is a ``KeyboardInterrupt``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

import anyio

from storyboard.cache import ClipEntry, Provenance, Store
from storyboard.errors import (
    ClipCorrupt,
    DownloadError,
    RenderFailed,
    ShortOutput,
    ShotFailure,
    StoryboardError,
    TakeError,
    TaskFailed,
    UsageError,
)
from storyboard.events import Event, Stage
from storyboard.plan import Plan, ShotPlan, TakePlan
from storyboard.polling import (
    MAX_UNRECOGNISED_POLLS,
    Timing,
    counting_polls,
    shown_task_id,
    typical_render_seconds,
    wait_for_task,
)
from storyboard.providers.base import (
    Failed,
    Job,
    Provider,
    Succeeded,
    TaskRef,
)
from storyboard.scheduler import Flight, Node, Scheduler, adopt_clip

__all__ = [
    "MAX_UNRECOGNISED_POLLS",
    "MIN_OUTPUT_SHARE",
    "Event",
    "ProviderRunner",
    "RenderReport",
    "RenderedTake",
    "TakeRunner",
    "Timing",
    "fetch_to_store",
    "min_output_share",
    "render_plan",
    "render_plan_async",
    "short_output",
    "take_error",
    "verified_upstream",
    "verify_clip",
    "wait_for_task",
]


class RenderedTake(tuple[str, int]):
    """``(shot, take)`` of a take this run rendered, with ``polls``: the status requests its
    task needed (0 for a clip another take of the run rendered, or the remote had)."""

    polls: int

    def __new__(cls, shot: str, take: int, polls: int = 0) -> RenderedTake:
        self = super().__new__(cls, (shot, take))
        self.polls = polls
        return self

    def __getnewargs__(self) -> tuple[str, int, int]:
        return (self[0], self[1], self.polls)


@dataclass(frozen=True)
class RenderReport:
    """What a render did (failures are raised as :class:`RenderFailed`).

    ``rendered`` holds :class:`RenderedTake` items (a ``(shot, take)`` pair that also says
    how many status requests its task took).
    """

    rendered: tuple[tuple[str, int], ...]
    cached: tuple[tuple[str, int], ...]


# What a take not started after a failure says.
_STOPPED = "stopped after a failure"


async def fetch_to_store(
    provider: Provider,
    task: TaskRef,
    status: Succeeded,
    job: Job,
    store: Store,
    tmp: Path,
    info: Provenance,
    emit: Callable[[Event], None] | None = None,
) -> ClipEntry:
    """Download a finished task's output, verify it is a plausible video, and store it.

    ``emit`` receives the ``downloading`` and ``verifying`` stages of the take.
    """
    shot = job.shot
    shown = shown_task_id(task, job)

    def stage(name: Stage) -> None:
        if emit is not None:
            emit(Event(shot.id, job.take, shot.takes, "rendering", stage=name, task_id=shown))

    part = tmp / f"{job.key}.part.mp4"
    stage("downloading")
    await provider.download(task, status, part)
    stage("verifying")
    check = partial(verify_clip, provider=provider.name, task_id=task.task_id)
    seconds = await anyio.to_thread.run_sync(check, part, job)

    def put() -> ClipEntry:  # hashes the clip: off the event loop
        return store.put(
            job.key, part, seconds=seconds, shot=job.shot.id, take=job.take, provenance=info
        )

    return await anyio.to_thread.run_sync(put)


async def verified_upstream(store: Store, job: Job, upstream_key: str | None) -> Path:
    """The stored upstream clip of ``job``, proven by a full read before its bytes (or a frame
    of them) leave the machine; used by uploads (see :meth:`Store.verify`).

    Raises:
        ClipCorrupt: the clip no longer matches its digest (it was dropped from the store, so
            the next plan renders or downloads the upstream take again); nothing was sent.
    """
    if job.upstream is None:
        raise ValueError("the job has no upstream clip")
    entry = await anyio.to_thread.run_sync(store.verify, upstream_key) if upstream_key else None
    if entry is not None and entry.path == job.upstream:
        return entry.path
    shot, upstream = job.shot.id, job.shot.upstream or "the upstream shot"
    raise ClipCorrupt(
        f"the stored clip of {upstream} no longer matches its digest (changed on disk); it was "
        f"removed from the store, and nothing was uploaded or submitted for {shot}",
        shots=(shot,),
        hint=f"run the same command again: {upstream} is brought back first (downloaded "
        "again for free while the provider keeps it; `plan --live` shows any cost)",
    )


class TakeRunner(Protocol):
    """Renders one take and puts its clip in the store (preview or live)."""

    def provider_name(self, job: Job) -> str: ...

    async def resumes(self, job: Job) -> bool:
        """Whether the take resumes a task already paid for (never stopped after a failure)."""
        ...

    async def run(
        self, job: Job, *, tmp: Path, upstream_key: str | None, emit: Callable[[Event], None]
    ) -> ClipEntry: ...

    async def aclose(self) -> None:
        """Release clients; called inside the render's event loop when it ends."""
        ...


class ProviderRunner:
    """Runs takes through a provider with no journal: submit, poll, download, verify, store.

    Used for the preview backend, whose work is free and local.
    """

    def __init__(self, provider: Provider, store: Store, timing: Timing | None = None) -> None:
        self.provider = provider
        self.store = store
        self.timing = timing or Timing()

    def provider_name(self, job: Job) -> str:
        return self.provider.name

    async def resumes(self, job: Job) -> bool:
        return False  # no journal: nothing is ever resumed

    async def aclose(self) -> None:
        await self.provider.aclose()

    async def run(
        self, job: Job, *, tmp: Path, upstream_key: str | None, emit: Callable[[Event], None]
    ) -> ClipEntry:
        provider, shot = self.provider, job.shot
        emit(Event(shot.id, job.take, shot.takes, "rendering", stage="running"))
        task = await provider.submit(job)
        status = await wait_for_task(provider, task, job, emit, self.timing)
        if isinstance(status, Failed):
            raise TaskFailed(
                status.message,
                provider=provider.name,
                task_id=task.task_id,
                code=status.code,
                user_fixable=status.user_fixable,
                shot=shot.id,
            )
        info = Provenance(provider=provider.name, model=job.spec.id, task_id=task.task_id)
        return await fetch_to_store(provider, task, status, job, self.store, tmp, info, emit)


def take_error(job: Job, exc: BaseException, *, secrets: Iterable[str] = ()) -> TakeError:
    """The failure of a take that something unexpected stopped, named by its shot.

    Every form of ``secrets`` (API keys: raw, escaped, URL-encoded, base64) is replaced by
    ``***`` wherever the exception's text shows it (:func:`~storyboard.errors.redact_secrets`).
    """
    from storyboard.errors import redact_secrets

    shot = job.shot
    if isinstance(exc, sqlite3.Error):
        what = f"the task journal failed: {exc}"
    elif isinstance(exc, OSError) and exc.filename is not None:
        what = f"{exc.strerror or exc}: {exc.filename}"
    elif isinstance(exc, OSError):
        what = f"{exc.strerror or exc}"
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    what = redact_secrets(what, secrets)
    return TakeError(
        f"shot {shot.id} take {job.take} stopped: {what}",
        shot=shot.id,
        take=job.take,
        provider=job.spec.provider,
        hint="fix the cause and run the same command again: a task already submitted for "
        "this take is resumed from the journal, not paid for again",
    )


# A take whose output holds less than this share of the new footage asked for fails. The
# models return the asked length or a frame more (V1 97 frames at 24 fps, ~4.04 s; V3
# duration*24+1 frames; V4 duration*32 at 32 fps); an extension returns the new footage, or
# the source followed by it (judged as the stitcher does: media.footage). So a
# real output is never far below what is asked; 1.0 s for a 4 s request is a broken take.
MIN_OUTPUT_SHARE = 0.75
# Whatever the share, a clip this short (or half the asked length, if less) is never a take.
_MIN_OUTPUT_SECONDS = 0.5


def min_output_share(environ: Mapping[str, str] | None = None) -> float:
    """``STORYBOARD_MIN_OUTPUT_SHARE`` (0-1), else :data:`MIN_OUTPUT_SHARE`.

    For a provider whose outputs really are shorter than the registry says (hosted lengths
    of some models are unconfirmed), and for emulators that serve shortened files.

    Raises:
        UsageError: the value is not a number from 0 to 1.
    """
    raw = (os.environ if environ is None else environ).get("STORYBOARD_MIN_OUTPUT_SHARE")
    if raw is None or not raw.strip():
        return MIN_OUTPUT_SHARE
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise UsageError(
            f"STORYBOARD_MIN_OUTPUT_SHARE must be a number from 0 to 1, not {raw!r}",
            hint=f"unset it to use the default, {MIN_OUTPUT_SHARE}",
        )
    return share


def short_output(
    actual: float,
    asked: float,
    upstream: float | None,
    extend_output: str,
    *,
    share: float = MIN_OUTPUT_SHARE,
) -> float | None:
    """The seconds of new footage in an output too short for the take; ``None`` if long enough.

    Args:
        actual: the output's length.
        asked: the new footage asked for (``ModelSpec.clip_seconds``).
        upstream: the source clip's length when the take extends one, else ``None``.
        extend_output: what the registry says an extension returns (``new``/``source+new``).
        share: the least share of ``asked`` that passes.
    """
    from storyboard.media.footage import new_footage_seconds

    received = new_footage_seconds(actual, asked, upstream, extend_output)
    least = max(share * asked, min(_MIN_OUTPUT_SECONDS, asked / 2))
    return received if received < least - 1e-6 else None


def verify_clip(
    path: Path, job: Job, *, provider: str | None = None, task_id: str | None = None
) -> float:
    """Check that a downloaded clip is a video of plausible length; its duration.

    ``provider`` and ``task_id`` name the task in the errors (``provider`` defaults to the
    model's).

    Raises:
        DownloadError: the file is not a readable video (the journal keeps the task as
            submitted: a rerun downloads it again, for free).
        ShortOutput: it holds much less new footage than asked (:data:`MIN_OUTPUT_SHARE`);
            the live runner journals the task as failed, so only ``--force`` buys it again.
    """
    from storyboard.media.probe import probe

    name = provider or job.spec.provider
    shot = job.shot.id
    # Worded as the live runner names a task: "<provider> task <id> (shot <s> take <n>)".
    what = (
        f"{name} task {task_id} (shot {shot} take {job.take}): the output"
        if task_id
        else f"{name}: the output of {shot} take {job.take}"
    )
    try:
        info = probe(path)
    except StoryboardError as exc:
        raise DownloadError(
            f"{what} is not a readable video: {exc}",
            provider=name,
            shot=shot,
            task_id=task_id,
            hint="run the same command again: the task's output is downloaded again, "
            "not paid for again",
        ) from exc
    upstream: float | None = None
    if job.upstream_mode == "extends" and job.upstream is not None:
        try:
            upstream = probe(job.upstream).duration
        except StoryboardError:
            upstream = None  # judged as footage of its own
    share = min_output_share()
    received = short_output(
        info.duration, job.seconds, upstream, job.spec.extend_output, share=share
    )
    if received is not None:
        of = f" of new footage (the clip is {info.duration:.2f} s)" if upstream else ""
        raise ShortOutput(
            f"{what} is too short: {received:.2f} s{of} where {job.seconds:.2f} s was asked "
            f"(less than {share:.0%})",
            provider=name,
            shot=shot,
            task_id=task_id,
            asked=job.seconds,
            received=received,
            hint=f"--force {shot} buys it again (and pays again)",
        )
    return info.duration


def render_plan(
    plan: Plan,
    store: Store,
    runner: TakeRunner,
    *,
    concurrency: Mapping[str, int] | None = None,
    keep_going: bool = False,
    on_event: Callable[[Event], None] | None = None,
    on_shot_done: Callable[[str], None] | None = None,
    scheduler: Scheduler | None = None,
    label: str = "",
) -> RenderReport:
    """Render every stale take of ``plan`` (blocking; runs its own event loop).

    Args:
        plan: what to render (stale takes of the shots in scope).
        store: where finished clips go.
        runner: renders one take (preview or live).
        concurrency: tasks in flight per provider name.
        keep_going: render everything possible despite failures.
        on_event: receives progress events.
        on_shot_done: called with a shot id once all its takes are rendered.
        scheduler: the limits and keys in flight shared with the other storyboards of the
            run (then ``concurrency`` and ``keep_going`` are the scheduler's); default: one
            of this render's own.
        label: the storyboard's name in a run of several (``dawn``): a take waiting for a
            key another storyboard renders names it ``dawn/hover``.

    Raises:
        RenderFailed: some takes failed; finished ones are in the store.
        KeyboardInterrupt: the user interrupted; finished clips are kept (the first Ctrl-C
            lets submits in flight reach the journal, a second one leaves at once).
    """
    scheduler = scheduler or Scheduler(concurrency, keep_going=keep_going)
    try:
        return anyio.run(
            _render_async, plan, store, runner, scheduler, label,
            on_event or (lambda e: None), on_shot_done or (lambda s: None),
        )  # fmt: skip
    except BaseExceptionGroup as group:
        raise _from_group(group, []) from None
    except asyncio.CancelledError:
        # The event loop's main task was cancelled from outside (a Ctrl-C).
        raise KeyboardInterrupt from None


async def render_plan_async(
    plan: Plan,
    store: Store,
    runner: TakeRunner,
    *,
    concurrency: Mapping[str, int] | None = None,
    keep_going: bool = False,
    on_event: Callable[[Event], None] | None = None,
    on_shot_done: Callable[[str], None] | None = None,
    scheduler: Scheduler | None = None,
    label: str = "",
) -> RenderReport:
    """:func:`render_plan` in the caller's event loop (asyncio or trio, through anyio).

    Raises:
        RenderFailed: some takes failed; finished ones are in the store.
    """
    try:
        return await _render_async(
            plan, store, runner, scheduler or Scheduler(concurrency, keep_going=keep_going),
            label, on_event or (lambda e: None), on_shot_done or (lambda s: None),
        )  # fmt: skip
    except BaseExceptionGroup as group:
        raise _from_group(group, []) from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _from_group(
    group: BaseExceptionGroup[BaseException], failures: list[ShotFailure]
) -> BaseException:
    """What the user sees instead of an exception group: an interruption, or RenderFailed."""
    leaves = _leaves(group)
    for exc in leaves:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
    if any(isinstance(exc, asyncio.CancelledError) for exc in leaves):
        return KeyboardInterrupt()
    found = list(failures)
    for exc in leaves:
        error = exc if isinstance(exc, StoryboardError) else None
        if error is None:
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            error = TakeError(
                f"the render stopped: {what}",
                shot="",
                take=0,
                hint="run the same command again: finished clips and journalled tasks are kept",
            )
        shot = str(getattr(error, "shot", None) or "")
        found.append(ShotFailure(shot or "(render)", 0, error, str(error)))
    return RenderFailed(found)


async def _render_async(
    plan: Plan,
    store: Store,
    runner: TakeRunner,
    scheduler: Scheduler,
    label: str,
    emit: Callable[[Event], None],
    shot_done: Callable[[str], None],
) -> RenderReport:
    done: dict[str, anyio.Event] = {sp.id: anyio.Event() for sp in plan.shots}
    ok: dict[str, bool] = {}
    failures: list[ShotFailure] = []
    rendered: list[tuple[str, int]] = []
    cached: list[tuple[str, int]] = []
    tmp = store.tmp_dir() / f"run-{time.time_ns()}"
    tmp.mkdir(parents=True, exist_ok=True)
    board = scheduler.board(_nodes(plan))

    def fail(job: Job, exc: Exception) -> None:
        shot = job.shot
        error = exc if isinstance(exc, StoryboardError) else take_error(job, exc)
        failures.append(ShotFailure(shot.id, job.take, error, str(error)))
        if scheduler.interrupted:
            # Killed by the Ctrl-C (the preview's ffmpeg dies with the process group)
            # before the cancellation reached it: interrupted, not failed.
            emit(Event(shot.id, job.take, shot.takes, "interrupted"))
        else:
            emit(Event(shot.id, job.take, shot.takes, "failed", message=str(error)))
        scheduler.failed()

    async def take_job(
        sp: ShotPlan, take: TakePlan, upstream: Path | None, upstream_key: str | None
    ) -> bool:
        shot = sp.shot
        spec = shot.spec
        if spec is None:  # cards never reach here
            return True
        width, height = spec.size(shot.resolution, shot.aspect_ratio)
        job = Job(
            shot=shot,
            spec=spec,
            take=take.take,
            key=take.key,
            seed=take.seed,
            seconds=sp.seconds,
            width=width,
            height=height,
            fps=spec.fps,
            upstream=upstream,
            upstream_mode="extends" if shot.extends else ("continues" if shot.continues else None),
        )
        flight = scheduler.flight(take.key)
        if flight is not None:  # another take of this run renders the same key: once is enough
            board.skip(shot.id)
            return await shared(job, flight)
        owner = (f"{label}/{shot.id}" if label else shot.id) + (
            f" take {take.take}" if shot.takes > 1 else ""
        )
        flight = scheduler.take_off(take.key, owner=owner, board=label)
        outcome: ClipEntry | Literal["failed", "skipped"] = "failed"
        try:
            outcome = await own(job, upstream_key)
        finally:
            entry = outcome if isinstance(outcome, ClipEntry) else None
            flight.land(entry, skipped=outcome == "skipped")
        return entry is not None

    async def own(job: Job, upstream_key: str | None) -> ClipEntry | Literal["failed", "skipped"]:
        shot, take = job.shot, job.take
        emit(Event(shot.id, take, shot.takes, "queued"))
        ticket = board.ask(shot.id, take, runner.provider_name(job))
        try:
            await ticket.wait()  # cancelled while waiting: it was never started
        except BaseException:
            board.finished(shot.id, ticket, rendered=False)
            raise
        stored = False
        try:
            # After a failure no new work starts, but a task already paid for is always
            # resumed and downloaded (a provider's output links expire).
            if scheduler.stopping and not await runner.resumes(job):
                emit(Event(shot.id, take, shot.takes, "skipped", message=_STOPPED))
                return "skipped"
            with counting_polls() as polls:
                entry = await runner.run(job, tmp=tmp, upstream_key=upstream_key, emit=emit)
            stored = True
        except anyio.get_cancelled_exc_class():
            emit(Event(shot.id, take, shot.takes, "interrupted"))
            raise
        except Exception as exc:
            fail(job, exc)
            return "failed"
        finally:
            board.finished(shot.id, ticket, rendered=stored)
        rendered.append(RenderedTake(shot.id, take, polls.count))
        emit(Event(shot.id, take, shot.takes, "done", 1.0))
        return entry

    async def shared(job: Job, flight: Flight) -> bool:
        """The take's key is another take's of this run: wait for it, take its clip."""
        shot, take = job.shot, job.take
        if not flight.landed:
            emit(
                Event(
                    shot.id, take, shot.takes, "waiting",
                    message=f"for {flight.owner} (the same generation key)",
                )
            )  # fmt: skip
        entry = await flight.wait()
        if entry is None:
            if not flight.skipped:
                failures.append(
                    ShotFailure(
                        shot.id, take, None,
                        f"{flight.owner}, which renders the same generation key, did not render",
                        flight.owner,
                    )
                )  # fmt: skip
            why = _STOPPED if flight.skipped else f"{flight.owner} did not render"
            emit(Event(shot.id, take, shot.takes, "skipped", message=why))
            return False
        try:
            adopt = partial(adopt_clip, store, entry, shot=shot.id, take=take)
            await anyio.to_thread.run_sync(adopt)
        except Exception as exc:
            fail(job, exc)
            return False
        rendered.append(RenderedTake(shot.id, take))
        emit(Event(shot.id, take, shot.takes, "done", 1.0, f"shared with {flight.owner}"))
        return True

    async def run_shot(sp: ShotPlan) -> None:
        try:
            await render_shot(sp)
        except Exception as exc:
            # Outside any take (the store, the lock, a bug): the shot fails, never the run.
            error = exc if isinstance(exc, StoryboardError) else None
            message = str(exc) if error is not None else f"{type(exc).__name__}: {exc}"
            if error is None:
                error = TakeError(
                    f"shot {sp.id} stopped: {message}",
                    shot=sp.id,
                    take=0,
                    hint="fix the cause and run the same command again: finished clips and "
                    "journalled tasks are kept",
                )
            failures.append(ShotFailure(sp.id, 0, error, str(error)))
            ok[sp.id] = False
        finally:
            done[sp.id].set()
            board.settle(sp.id)

    async def render_shot(sp: ShotPlan) -> None:
        if sp.kind != "model" or not plan.in_scope(sp.id):
            ok[sp.id] = sp.kind != "model" or sp.status == "fresh"
            return
        upstream_clip: Path | None = None
        upstream_key: str | None = None
        shot = sp.shot
        if shot.upstream:
            for take in sp.stale_takes:
                emit(
                    Event(shot.id, take.take, shot.takes, "waiting", message=f"for {shot.upstream}")
                )
            await done[shot.upstream].wait()
            if not ok.get(shot.upstream):
                for take in sp.stale_takes:
                    message = f"upstream {shot.upstream} did not render"
                    failures.append(ShotFailure(shot.id, take.take, None, message, shot.upstream))
                    skipped = f"upstream {shot.upstream} failed"
                    emit(Event(shot.id, take.take, shot.takes, "skipped", message=skipped))
                ok[sp.id] = False
                return
            up = plan.shot(shot.upstream).selected
            entry = await anyio.to_thread.run_sync(store.lookup, up.key) if up is not None else None
            upstream_clip = entry.path if entry is not None else None
            upstream_key = up.key if up is not None else None
        for take in sp.takes:
            if take.fresh:
                cached.append((shot.id, take.take))
                emit(Event(shot.id, take.take, shot.takes, "cached", 1.0))
        results: dict[int, bool] = {}

        async def one(take: TakePlan) -> None:
            results[take.take] = await take_job(sp, take, upstream_clip, upstream_key)

        async with anyio.create_task_group() as tg:
            for take in sp.stale_takes:
                tg.start_soon(one, take)
        ok[sp.id] = all(results.values())
        if ok[sp.id] and sp.stale_takes:
            store.record_material(plan.backend, shot.id, sp.takes[0].material)
            shot_done(shot.id)

    try:
        with scheduler.watching():
            async with anyio.create_task_group() as tg:
                for sp in plan.shots:
                    tg.start_soon(run_shot, sp)
    except BaseExceptionGroup as group:
        raise _from_group(group, failures) from None
    finally:
        board.close()
        with anyio.CancelScope(shield=True):
            await runner.aclose()
        shutil.rmtree(tmp, ignore_errors=True)
        store.save()
    if failures:
        raise RenderFailed(failures)
    return RenderReport(tuple(rendered), tuple(cached))


def _nodes(plan: Plan) -> list[Node]:
    """The plan's shots as the scheduler weighs them: what each renders, for how long."""
    nodes = []
    for sp in plan.shots:
        spec = sp.shot.spec
        renders = sp.kind == "model" and spec is not None and plan.in_scope(sp.id)
        seconds = typical_render_seconds(spec.id, sp.seconds) if spec is not None else 0.0
        takes = len(sp.stale_takes) if renders else 0
        nodes.append(Node(sp.id, sp.shot.upstream, seconds, takes))
    return nodes
