"""Live rendering: one take through a hosted provider, journalled so money is spent once.

For each take: upload local inputs (once per content digest, reused while the URL is
valid), claim the generation key in the journal, submit, record the task id, poll until the
task ends, download, verify, store, record the digest. A rerun resumes every known task id
instead of submitting again. The scheduler in ``storyboard.render`` calls :meth:`run_take`.
"""

from __future__ import annotations

import mimetypes
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from storyboard.cache import ClipEntry, Store
from storyboard.errors import (
    BudgetExceeded,
    MissingAPIKey,
    ProviderBusy,
    ProviderError,
    StoryboardError,
    SubmitOutcomeUnknown,
    TaskFailed,
    UsageError,
)
from storyboard.events import Event
from storyboard.journal import Journal
from storyboard.plan import Plan
from storyboard.providers.base import Failed, Job, Provider, Succeeded, TaskRef
from storyboard.render import Timing, fetch_to_store, wait_for_task

__all__ = ["LiveRunner", "LiveSession", "check_budget", "resolve_seed", "start_live"]

# How long a provider's output URL stays usable (PROVIDERS §1.6: WaveSpeed keeps outputs 7
# days; §3.3: Qingbo links are valid 24 h).
_OUTPUT_LIFETIME = {"wavespeed": 7 * 24 * 3600.0, "qingbo": 24 * 3600.0}
_BUSY_ATTEMPTS = 20


def resolve_seed(seed: int | None, takes_seed: bool) -> int | None:
    """A concrete seed for a take whose seed is random (-1 or unset) on a seeded model."""
    if seed is not None or not takes_seed:
        return seed
    return random.randrange(0, 2**31 - 1)


def _poll_interval(environ: Mapping[str, str]) -> float:
    """``STORYBOARD_POLL_INTERVAL``: seconds between status checks.

    The default, 5 s, is what the providers advise for video; the emulator and the tests use
    a small value.
    """
    raw = environ.get("STORYBOARD_POLL_INTERVAL", "5")
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise UsageError(
            f"STORYBOARD_POLL_INTERVAL must be a number of seconds, not {raw!r}"
        ) from None


def check_budget(plan: Plan, budget: float | None) -> None:
    """Refuse before any submit when the plan's estimate of new paid work is over ``budget``.

    The plan already leaves out takes an earlier run paid for (they are resumed) unless
    they are forced.

    Raises:
        BudgetExceeded: with the per-shot figures.
    """
    per_shot = [(sp.id, sp.cost) for sp in plan.to_render if sp.cost > 0]
    estimate = round(sum(cost for _, cost in per_shot), 6)
    if budget is not None and estimate > budget + 1e-9:
        raise BudgetExceeded(estimate, budget, per_shot)


def start_live(
    plan: Plan,
    store: Store,
    *,
    budget: float | None,
    forced: set[str],
    environ: Mapping[str, str] | None = None,
) -> tuple[LiveRunner, Journal]:
    """Everything a ``render --live`` checks before its first request, then its runner.

    The budget and the API keys are checked first; only then does ``--force`` make the
    journal forget the forced takes, so a refused run loses nothing it knew.

    Raises:
        BudgetExceeded: the estimate is over budget (nothing was sent).
        MissingAPIKey: a provider this run needs has no key.
    """
    journal = Journal(store.root / "journal.sqlite")
    try:
        check_budget(plan, budget)
        from storyboard.preflight import preflight

        preflight(plan, journal=journal, forced=forced, environ=environ)  # every obstacle at once
        session = LiveSession(store, journal, environ=environ)
        session.check_keys({sp.shot.spec.provider for sp in plan.to_render if sp.shot.spec})
        for sp in plan.shots:
            if sp.id in forced:
                for take in sp.takes:
                    journal.forget(take.key)
    except BaseException:
        journal.close()
        raise
    return LiveRunner(session), journal


class LiveSession:
    """Providers, uploads and the journal for one ``render --live`` run."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        *,
        environ: Mapping[str, str] | None = None,
        transport: Any = None,
        poll_interval: float | None = None,
        poll_max: float = 30.0,
        task_deadline: float = 3 * 3600.0,
        sleep: Callable[[float], Any] = anyio.sleep,
    ) -> None:
        self.store = store
        self.journal = journal
        self.environ = dict(os.environ if environ is None else environ)
        self.transport = transport
        if poll_interval is None:
            poll_interval = _poll_interval(self.environ)
        self.timing = Timing(poll_interval, poll_max, task_deadline)
        self.sleep = sleep
        self._providers: dict[str, Provider] = {}
        # One lock per content digest: takes running at once that share an input upload it
        # once (the second waits and then finds the URL in the journal).
        self._upload_locks: dict[str, anyio.Lock] = {}

    # -- providers -------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        """The client of a provider, made from its environment variables on first use."""
        if name not in self._providers:
            if name == "wavespeed":
                from storyboard.providers.wavespeed import WaveSpeedProvider

                self._providers[name] = WaveSpeedProvider.from_env(
                    environ=self.environ, transport=self.transport
                )
            elif name == "qingbo":
                from storyboard.providers.qingbo import QingboProvider

                self._providers[name] = QingboProvider.from_env(
                    environ=self.environ, transport=self.transport
                )
            else:  # pragma: no cover - the registry names only these two
                raise ProviderError(f"unknown provider {name!r}", provider=name)
        return self._providers[name]

    def check_keys(self, providers: set[str]) -> None:
        """Fail early, naming the variable, when a provider needed by this run has no key."""
        for name in sorted(providers):
            self.provider(name)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    # -- inputs ----------------------------------------------------------------------------

    async def _upload(self, path: Path, shot: str, what: str) -> str:
        digest = self.store.memo.digest(path)
        lock = self._upload_locks.setdefault(digest, anyio.Lock())
        async with lock:
            return await self._upload_once(path, digest, shot, what)

    async def _upload_once(self, path: Path, digest: str, shot: str, what: str) -> str:
        url = self.journal.upload_url(digest, "wavespeed")
        if url is not None:
            return url
        try:
            uploader = self.provider("wavespeed")
        except MissingAPIKey:
            raise ProviderError(
                f"shot {shot}: {what} {path.name!r} is a local file and needs hosting",
                provider="wavespeed",
                shot=shot,
                hint="put an https:// URL in the storyboard, or set WAVESPEED_API_KEY so "
                "storyboard can upload local files through the WaveSpeed media API",
            ) from None
        upload = getattr(uploader, "upload", None)
        if upload is None:  # pragma: no cover - WaveSpeed always uploads
            raise ProviderError("the WaveSpeed client cannot upload", provider="wavespeed")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        url, expires = await upload(path, content_type)
        self.journal.record_upload(digest, "wavespeed", url, expires)
        return str(url)

    async def prepare(self, job: Job, upstream_key: str | None, tmp: Path | None = None) -> Job:
        """The job with a URL for every local input and for the upstream clip or frame.

        The upstream's last frame (``continues``) is extracted into ``tmp`` (the run's work
        folder), under a name of this take's own: never beside the clip in the store, whose
        ``objects/`` hold only clips, and never a file another take may be rewriting.
        """
        urls: dict[str, str] = dict(job.urls)
        shot = job.shot
        for media in shot.media():
            if media.path is not None and media.source not in urls:
                urls[media.source] = await self._upload(media.path, shot.id, media.kind)
        if job.upstream is not None and job.upstream_mode == "extends":
            # The provider's own URL of the upstream clip while it is valid, else upload ours.
            url = self.journal.output_url(upstream_key) if upstream_key else None
            urls["upstream"] = url or await self._upload(job.upstream, shot.id, "upstream clip")
        elif job.upstream is not None and job.upstream_mode == "continues":
            from storyboard.providers.animatic import last_frame

            folder = tmp if tmp is not None else self.store.tmp_dir()
            frame = folder / f"{job.key}.last.png"
            await anyio.to_thread.run_sync(last_frame, job.upstream, frame)
            urls["upstream_frame"] = await self._upload(frame, shot.id, "upstream last frame")
        return replace(job, urls=urls)

    # -- one take --------------------------------------------------------------------------

    async def run_take(
        self,
        job: Job,
        *,
        tmp: Path,
        upstream_key: str | None,
        emit: Callable[[Event], None],
    ) -> ClipEntry:
        """Render one take live, resuming whatever the journal knows about its key."""
        shot = job.shot
        provider = self.provider(job.spec.provider)
        journal = self.journal
        known = journal.get(job.key)
        task: TaskRef | None = None
        seed = job.seed
        if known is not None:
            seed = known.seed
            if not journal.take_over(job.key):
                raise ProviderError(
                    f"shot {shot.id} take {job.take} is being rendered by another storyboard "
                    f"process ({known.owner})",
                    provider=provider.name,
                    shot=shot.id,
                    hint="wait for it to finish, then run again",
                )
            if known.state == "failed":
                raise TaskFailed(
                    known.error or "the task failed",
                    provider=known.provider,
                    task_id=known.task_id,
                    shot=shot.id,
                    hint=f"change the shot, or pass --force {shot.id} to submit it again (and pay again)",
                )
            if known.state in ("submitted", "done") and known.task_id:
                task = TaskRef(provider.name, known.task_id, job.key)
            elif known.state in ("intent", "unknown") and provider.name != "qingbo":
                raise SubmitOutcomeUnknown(
                    f"shot {shot.id} take {job.take}: outcome unknown — the submit was sent but "
                    "its reply was lost, so a task may exist and be billed",
                    provider=provider.name,
                    shot=shot.id,
                    hint=f"check the provider's dashboard; --force {shot.id} submits it again",
                )
            # Qingbo intent/unknown: resending the same Idempotency-Key returns the original
            # task if there is one and cannot bill twice, so it is submitted again below.
        # A random seed (-1 or none) on a seeded model becomes concrete before the submit and
        # is journalled with the intent, so a resumed take keeps it.
        job = replace(job, seed=resolve_seed(seed, job.spec.seed_range is not None))
        if task is None:
            emit(Event(shot.id, job.take, shot.takes, "rendering", 0.0, "uploading inputs"))
            job = await self.prepare(job, upstream_key, tmp)
            if known is None:
                claimed, created = journal.claim(
                    job.key,
                    shot=shot.id,
                    take=job.take,
                    provider=provider.name,
                    model=job.spec.id,
                    seed=job.seed,
                )
                if not created:
                    # Another render process claimed the key while this one uploaded: that
                    # process submits it; submitting here too could pay twice.
                    raise ProviderError(
                        f"shot {shot.id} take {job.take} is being rendered by another "
                        f"storyboard process ({claimed.owner})",
                        provider=provider.name,
                        shot=shot.id,
                        hint="wait for it to finish, then run again",
                    )
            task = await self._submit(provider, job, emit)
        status = await self._wait(provider, task, job, emit)
        info: dict[str, object] = {
            "provider": provider.name,
            "model": job.spec.id,
            "task_id": task.task_id,
            # What the provider says it charged, in its own unit (the lock keeps it beside the
            # list price; never converted into dollars).
            "reported_cost": None
            if status.reported is None
            else {"amount": status.reported.amount, "unit": status.reported.unit},
            "seed": job.seed,
        }
        entry = await fetch_to_store(provider, task, status, job, self.store, tmp, info)
        journal.done(job.key, entry.digest, None)
        if status.outputs:
            journal.record_output(
                job.key, status.outputs[0], time.time() + _OUTPUT_LIFETIME.get(provider.name, 0)
            )
        return entry

    async def _submit(self, provider: Provider, job: Job, emit: Callable[[Event], None]) -> TaskRef:
        shot = job.shot
        for _attempt in range(_BUSY_ATTEMPTS):
            try:
                task = await provider.submit(job)
            except ProviderBusy as exc:
                # 429: the provider created nothing; waiting and resubmitting is safe.
                emit(Event(shot.id, job.take, shot.takes, "queued", None, f"provider busy: {exc}"))
                await self.sleep(max(exc.retry_after, 0.0))
                continue
            except SubmitOutcomeUnknown as exc:
                self.journal.unknown(job.key, str(exc))
                # Said in the same words as on a rerun, which finds the key still unknown.
                raise SubmitOutcomeUnknown(
                    f"shot {shot.id} take {job.take}: outcome unknown — {exc}",
                    provider=exc.provider,
                    shot=exc.shot or shot.id,
                    task_id=exc.task_id,
                    status=exc.status,
                    hint=exc.hint(),
                ) from exc
            except StoryboardError:
                # A definite refusal (bad request, auth): nothing was created, so the key is
                # free to be submitted again once the cause is fixed.
                self.journal.forget(job.key)
                raise
            self.journal.submitted(job.key, task.task_id)
            return task
        self.journal.forget(job.key)
        raise ProviderError(
            f"shot {shot.id}: {provider.name} kept refusing new tasks",
            provider=provider.name,
            shot=shot.id,
            hint="try again later; nothing was submitted",
        )

    async def _wait(
        self, provider: Provider, task: TaskRef, job: Job, emit: Callable[[Event], None]
    ) -> Succeeded:
        shot = job.shot
        status = await wait_for_task(provider, task, job, emit, self.timing, self.sleep)
        if isinstance(status, Failed):
            message = f"{provider.name} task {task.task_id} failed: {status.message}"
            self.journal.failed(job.key, message)
            hint = (
                "change the storyboard as the message says, then run again"
                if status.user_fixable
                else f"provider trouble: --force {shot.id} submits it again (and pays again)"
            )
            raise TaskFailed(
                message,
                provider=provider.name,
                task_id=task.task_id,
                code=status.code,
                user_fixable=status.user_fixable,
                shot=shot.id,
                hint=hint,
            )
        return status


class LiveRunner:
    """The scheduler's take runner for ``render --live``."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session

    def provider_name(self, job: Job) -> str:
        return job.spec.provider

    async def run(
        self, job: Job, *, tmp: Path, upstream_key: str | None, emit: Callable[[Event], None]
    ) -> ClipEntry:
        return await self.session.run_take(job, tmp=tmp, upstream_key=upstream_key, emit=emit)

    async def aclose(self) -> None:
        await self.session.aclose()
