"""Stage 5, render: run the stale takes of a plan through a provider, as a DAG.

One anyio task group over all shots; a ``CapacityLimiter`` per provider caps the tasks in
flight; a shot waits for its upstream shot; a failed shot fails only its dependants. Without
``keep_going`` the first failure stops new work and lets running work finish. Finished clips
are moved into the store as they complete, so an interruption loses only work in progress.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from storyboard.cache import ClipEntry, Store
from storyboard.errors import (
    DownloadError,
    ProviderTimeout,
    RenderFailed,
    ShotFailure,
    StoryboardError,
    TaskFailed,
)
from storyboard.events import Event
from storyboard.plan import Plan, ShotPlan, TakePlan
from storyboard.providers.base import Failed, Job, Provider, Queued, Running, Succeeded, TaskRef

__all__ = [
    "Event",
    "ProviderRunner",
    "RenderReport",
    "TakeRunner",
    "Timing",
    "fetch_to_store",
    "render_plan",
    "verify_clip",
    "wait_for_task",
]


@dataclass(frozen=True)
class RenderReport:
    """What a render did (failures are raised as :class:`RenderFailed`)."""

    rendered: tuple[tuple[str, int], ...]
    cached: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Timing:
    """How a task is waited for; every wait has a deadline."""

    poll_interval: float = 0.0  # first wait between polls; it grows 1.5x per poll
    poll_max: float = 30.0
    task_deadline: float = 3 * 3600.0  # a video task that runs longer has gone wrong


async def wait_for_task(
    provider: Provider,
    task: TaskRef,
    job: Job,
    emit: Callable[[Event], None],
    timing: Timing,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
) -> Succeeded | Failed:
    """Poll ``task`` until it ends, with growing jittered waits and a deadline.

    Raises:
        ProviderTimeout: the task did not end before ``timing.task_deadline``.
    """
    shot = job.shot
    deadline = time.monotonic() + timing.task_deadline
    attempt = 0
    while True:
        status = await provider.poll(task)
        if isinstance(status, (Succeeded, Failed)):
            return status
        if time.monotonic() > deadline:
            raise ProviderTimeout(
                f"task {task.task_id} did not finish within {timing.task_deadline:.0f} s",
                provider=provider.name,
                shot=shot.id,
                task_id=task.task_id,
                hint="run the same command again: the task is resumed, not resubmitted",
            )
        if isinstance(status, Queued):
            emit(Event(shot.id, job.take, shot.takes, "rendering", None, "queued at the provider"))
        elif isinstance(status, Running):
            emit(Event(shot.id, job.take, shot.takes, "rendering", status.progress))
        else:  # issue 7: bounded below by the live runner's wait
            emit(Event(shot.id, job.take, shot.takes, "rendering", None, f"status {status.status!r}"))
        delay = min(timing.poll_max, timing.poll_interval * (1.5**attempt))
        await sleep(random.uniform(0.5 * delay, delay) if delay > 0 else 0.0)
        attempt += 1


async def fetch_to_store(
    provider: Provider,
    task: TaskRef,
    status: Succeeded,
    job: Job,
    store: Store,
    tmp: Path,
    info: dict[str, object],
) -> ClipEntry:
    """Download a finished task's output, verify it is a plausible video, and store it."""
    part = tmp / f"{job.key}.part.mp4"
    await provider.download(task, status, part)
    seconds = await anyio.to_thread.run_sync(verify_clip, part, job)
    return store.put(job.key, part, seconds=seconds, shot=job.shot.id, take=job.take, info=info)


class TakeRunner(Protocol):
    """Renders one take and puts its clip in the store (preview or live)."""

    def provider_name(self, job: Job) -> str: ...

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

    async def aclose(self) -> None:
        await self.provider.aclose()

    async def run(
        self, job: Job, *, tmp: Path, upstream_key: str | None, emit: Callable[[Event], None]
    ) -> ClipEntry:
        provider, shot = self.provider, job.shot
        emit(Event(shot.id, job.take, shot.takes, "rendering", 0.0))
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
        info: dict[str, object] = {
            "provider": provider.name,
            "model": job.spec.id,
            "task_id": task.task_id,
        }
        return await fetch_to_store(provider, task, status, job, self.store, tmp, info)


def verify_clip(path: Path, job: Job) -> float:
    """Check that a downloaded clip is a video of plausible length; its duration."""
    from storyboard.cutter import probe

    try:
        info = probe(path)
    except StoryboardError as exc:
        raise DownloadError(
            f"the output of {job.shot.id} take {job.take} is not a readable video: {exc}",
            provider=job.spec.provider,
            shot=job.shot.id,
        ) from exc
    if info.duration < min(0.5, job.seconds / 2):
        raise DownloadError(
            f"the output of {job.shot.id} take {job.take} is {info.duration:.2f} s long; "
            f"expected about {job.seconds:.2f} s",
            provider=job.spec.provider,
            shot=job.shot.id,
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

    Raises:
        RenderFailed: some takes failed; finished ones are in the store.
        KeyboardInterrupt: the user interrupted; finished clips are kept.
    """
    return anyio.run(
        _render_async, plan, store, runner, dict(concurrency or {}), keep_going,
        on_event or (lambda e: None), on_shot_done or (lambda s: None),
    )  # fmt: skip


_DEFAULT_CONCURRENCY = {"preview": 2, "wavespeed": 2, "qingbo": 5}


async def _render_async(
    plan: Plan,
    store: Store,
    runner: TakeRunner,
    concurrency: dict[str, int],
    keep_going: bool,
    emit: Callable[[Event], None],
    shot_done: Callable[[str], None],
) -> RenderReport:
    limiters: dict[str, anyio.CapacityLimiter] = {}

    def limiter_for(name: str) -> anyio.CapacityLimiter:
        if name not in limiters:
            cap = concurrency.get(name) or _DEFAULT_CONCURRENCY.get(name, 2)
            limiters[name] = anyio.CapacityLimiter(cap)
        return limiters[name]

    done: dict[str, anyio.Event] = {sp.id: anyio.Event() for sp in plan.shots}
    ok: dict[str, bool] = {}
    failures: list[ShotFailure] = []
    rendered: list[tuple[str, int]] = []
    cached: list[tuple[str, int]] = []
    stopping = False
    tmp = store.tmp_dir() / f"run-{time.time_ns()}"
    tmp.mkdir(parents=True, exist_ok=True)

    async def take_job(
        sp: ShotPlan, take: TakePlan, upstream: Path | None, upstream_key: str | None
    ) -> bool:
        nonlocal stopping
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
        emit(Event(shot.id, take.take, shot.takes, "queued"))
        async with limiter_for(runner.provider_name(job)):
            if stopping:
                emit(
                    Event(
                        shot.id, take.take, shot.takes, "skipped", message="stopped after a failure"
                    )
                )
                return False
            try:
                await runner.run(job, tmp=tmp, upstream_key=upstream_key, emit=emit)
            except StoryboardError as exc:
                failures.append(ShotFailure(shot.id, take.take, exc, str(exc)))
                emit(Event(shot.id, take.take, shot.takes, "failed", message=str(exc)))
                if not keep_going:
                    stopping = True
                return False
        rendered.append((shot.id, take.take))
        emit(Event(shot.id, take.take, shot.takes, "done", 1.0))
        return True

    async def run_shot(sp: ShotPlan) -> None:
        try:
            if sp.kind != "model" or not plan.in_scope(sp.id):
                ok[sp.id] = sp.kind != "model" or sp.status == "fresh"
                return
            upstream_clip: Path | None = None
            upstream_key: str | None = None
            shot = sp.shot
            if shot.upstream:
                for take in sp.stale_takes:
                    emit(
                        Event(
                            shot.id,
                            take.take,
                            shot.takes,
                            "waiting",
                            message=f"for {shot.upstream}",
                        )
                    )
                await done[shot.upstream].wait()
                if not ok.get(shot.upstream):
                    for take in sp.stale_takes:
                        failures.append(
                            ShotFailure(
                                shot.id,
                                take.take,
                                None,
                                f"upstream {shot.upstream} did not render",
                                shot.upstream,
                            )
                        )
                        emit(
                            Event(
                                shot.id,
                                take.take,
                                shot.takes,
                                "skipped",
                                message=f"upstream {shot.upstream} failed",
                            )
                        )
                    ok[sp.id] = False
                    return
                up = plan.shot(shot.upstream).selected
                entry = store.lookup(up.key) if up is not None else None
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
        finally:
            done[sp.id].set()

    try:
        async with anyio.create_task_group() as tg:
            for sp in plan.shots:
                tg.start_soon(run_shot, sp)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.aclose()
        shutil.rmtree(tmp, ignore_errors=True)
        store.save()
    if failures:
        raise RenderFailed(failures)
    return RenderReport(tuple(rendered), tuple(cached))
