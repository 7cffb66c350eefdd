"""Stage 5, render: run the stale takes of a plan through a provider, as a DAG.

One anyio task group over all shots; a ``CapacityLimiter`` per provider caps the tasks in
flight; a shot waits for its upstream shot; a failed shot fails only its dependants. Without
``keep_going`` the first failure stops new work and lets running work finish. Finished clips
are moved into the store as they complete, so an interruption loses only work in progress.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio

from storyboard.cache import Store
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
from storyboard.providers.base import Failed, Job, Provider, Succeeded, TaskRef

__all__ = ["Event", "RenderReport", "render_plan"]


@dataclass(frozen=True)
class RenderReport:
    """What a render did."""

    rendered: tuple[tuple[str, int], ...]
    cached: tuple[tuple[str, int], ...]
    failures: tuple[ShotFailure, ...]


@dataclass(frozen=True)
class Timing:
    """Waits of the render loop; every one has a deadline."""

    poll_first: float = 0.0
    poll_max: float = 15.0
    task_deadline: float = 3 * 3600.0  # a video task that runs longer has gone wrong


def _backoff(attempt: int, first: float, cap: float) -> float:
    """Capped exponential backoff with full jitter."""
    if first <= 0:
        return 0.0
    return random.uniform(0, min(cap, first * math.pow(2, attempt)))


async def _render_take(
    provider: Provider,
    job: Job,
    store: Store,
    tmp: Path,
    timing: Timing,
    emit: Callable[[Event], None],
) -> None:
    shot = job.shot
    emit(Event(shot.id, job.take, shot.takes, "rendering", 0.0))
    task: TaskRef = await provider.submit(job)
    deadline = time.monotonic() + timing.task_deadline
    attempt = 0
    while True:
        status = await provider.poll(task)
        if isinstance(status, Succeeded):
            break
        if isinstance(status, Failed):
            raise TaskFailed(
                status.message,
                provider=provider.name,
                task_id=task.task_id,
                code=status.code,
                user_fixable=status.user_fixable,
                shot=shot.id,
            )
        if time.monotonic() > deadline:
            raise ProviderTimeout(
                f"task {task.task_id} did not finish within {timing.task_deadline:.0f} s",
                provider=provider.name,
                shot=shot.id,
                task_id=task.task_id,
                hint="run the same command again: the task is resumed, not resubmitted",
            )
        progress = getattr(status, "progress", None)
        emit(Event(shot.id, job.take, shot.takes, "rendering", progress))
        await anyio.sleep(_backoff(attempt, timing.poll_first, timing.poll_max))
        attempt += 1
    part = tmp / f"{job.key}.part.mp4"
    await provider.download(task, status, part)
    seconds = await anyio.to_thread.run_sync(_verify, part, job)
    store.put(
        job.key,
        part,
        seconds=seconds,
        shot=shot.id,
        take=job.take,
        info={
            "provider": provider.name,
            "model": job.spec.id,
            "task_id": task.task_id,
            "cost": status.cost,
        },
    )


def _verify(path: Path, job: Job) -> float:
    """Check that a downloaded clip is a video of plausible length; its duration."""
    from storyboard.cutter import probe

    try:
        info = probe(path)
    except StoryboardError as exc:
        raise DownloadError(
            f"the output of {job.shot.id} take {job.take} is not a readable video: {exc}",
            provider="preview",
            shot=job.shot.id,
        ) from exc
    if info.duration < min(0.5, job.seconds / 2):
        raise DownloadError(
            f"the output of {job.shot.id} take {job.take} is {info.duration:.2f} s long; "
            f"expected about {job.seconds:.2f} s",
            provider="preview",
            shot=job.shot.id,
        )
    return info.duration


def render_plan(
    plan: Plan,
    store: Store,
    provider: Provider,
    *,
    concurrency: Mapping[str, int] | None = None,
    keep_going: bool = False,
    on_event: Callable[[Event], None] | None = None,
    timing: Timing | None = None,
) -> RenderReport:
    """Render every stale take of ``plan`` (blocking; runs its own event loop).

    Raises:
        RenderFailed: some takes failed; finished ones are in the store.
        KeyboardInterrupt: the user interrupted; finished clips are kept.
    """
    return anyio.run(
        _render_async, plan, store, provider, dict(concurrency or {}), keep_going,
        on_event or (lambda e: None), timing or Timing(),
    )  # fmt: skip


async def _render_async(
    plan: Plan,
    store: Store,
    provider: Provider,
    concurrency: dict[str, int],
    keep_going: bool,
    emit: Callable[[Event], None],
    timing: Timing,
) -> RenderReport:
    limit = concurrency.get(provider.name) or 2
    limiter = anyio.CapacityLimiter(limit)
    done: dict[str, anyio.Event] = {sp.id: anyio.Event() for sp in plan.shots}
    ok: dict[str, bool] = {}
    failures: list[ShotFailure] = []
    rendered: list[tuple[str, int]] = []
    cached: list[tuple[str, int]] = []
    stopping = False
    tmp = store.tmp_dir() / f"run-{time.time_ns()}"
    tmp.mkdir(parents=True, exist_ok=True)

    def in_scope(sp: ShotPlan) -> bool:
        return not plan.selected or sp.id in plan.selected

    async def take_job(sp: ShotPlan, take: TakePlan, upstream: Path | None) -> bool:
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
        async with limiter:
            if stopping:
                emit(
                    Event(
                        shot.id, take.take, shot.takes, "skipped", message="stopped after a failure"
                    )
                )
                return False
            try:
                await _render_take(provider, job, store, tmp, timing, emit)
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
            if sp.kind != "model" or not in_scope(sp):
                ok[sp.id] = sp.kind != "model" or sp.status == "fresh"
                return
            upstream_clip: Path | None = None
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
            for take in sp.takes:
                if take.fresh:
                    cached.append((shot.id, take.take))
                    emit(Event(shot.id, take.take, shot.takes, "cached", 1.0))
            results: dict[int, bool] = {}

            async def one(take: TakePlan) -> None:
                results[take.take] = await take_job(sp, take, upstream_clip)

            async with anyio.create_task_group() as tg:
                for take in sp.stale_takes:
                    tg.start_soon(one, take)
            ok[sp.id] = all(results.values())
            if ok[sp.id] and sp.stale_takes:
                store.record_material(plan.backend, shot.id, sp.takes[0].material)
        finally:
            done[sp.id].set()

    try:
        async with anyio.create_task_group() as tg:
            for sp in plan.shots:
                tg.start_soon(run_shot, sp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        store.save()
    if failures:
        raise RenderFailed(failures)
    return RenderReport(tuple(rendered), tuple(cached), ())
