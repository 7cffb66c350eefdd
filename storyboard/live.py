"""Live rendering: one take through a hosted provider, journalled so money is spent once.

For each take: upload local inputs (once per content digest, reused while the URL is
valid), claim the generation key in the journal, submit, record the task id, poll until the
task ends, download, verify, store, record the digest. A rerun resumes every known task id
instead of submitting again. The scheduler in ``storyboard.render`` calls :meth:`run_take`.

Money rules kept here:

* ``--force`` buys a new generation: the journal moves the key to its next *attempt*, which
  the submit carries (``Job.attempt``); a resent submit of the same attempt keeps it.
* A submit whose reply was lost is settled before anyone is asked to ``--force``: a provider
  that can list its tasks (:class:`~storyboard.providers.base.TaskFinder`) is asked for the
  task created since the journalled intent; one found is resumed, never bought again.
* Every lost reply ends in one message with one instruction, the same on every run (see
  :meth:`LiveSession._unknown`), and the journal records that instruction as the key's
  *next step*, so ``plan`` says what the next render will do.
* An output the provider no longer serves (an expired link) fails the take naming the task;
  the journal keeps the task and records the link as gone: only ``--force`` buys it again.
* A submit in flight is shielded from cancellation (Ctrl-C) for at most
  ``Timing.submit_deadline``, so its task id reaches the journal.
* One deadline per take (``Timing.task_deadline``, ``$STORYBOARD_TASK_DEADLINE`` seconds)
  bounds the provider-busy waits and the polling; SQLite and file hashing run in worker
  threads, off the event loop.
* With the project's remote (:mod:`storyboard.teamwork`): before its uploads a take looks at
  the remote (a teammate's clip is pulled, a teammate's live claim waited for, a stale one
  reported or, forced, taken over and its task resumed); after the journal's intent and
  before the POST the key is claimed on the remote, the task id recorded in the claim, and
  the stored clip pushed before the claim is released.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from storyboard.cache import Charge, ClipEntry, Provenance, Store
from storyboard.errors import (
    BudgetExceeded,
    DownloadError,
    MissingAPIKey,
    NextStep,
    OutputGone,
    ProviderBusy,
    ProviderError,
    ProviderTimeout,
    ShortOutput,
    StoryboardError,
    SubmitOutcomeUnknown,
    TaskFailed,
    UsageError,
    redact_secrets,
)
from storyboard.events import Event, Stage
from storyboard.journal import Journal, JournalEntry
from storyboard.plan import Plan, take_price
from storyboard.polling import RenderTimes, Timing, wait_for_task
from storyboard.providers import ProviderEntry, ProviderSetup, hosts, key_vars
from storyboard.providers import entry as provider_entry
from storyboard.providers.base import Failed, Job, Provider, Succeeded, TaskFinder, TaskRef
from storyboard.render import fetch_to_store, take_error, verified_upstream

if TYPE_CHECKING:
    from collections.abc import Collection

    from storyboard.teamwork import Team

_T = TypeVar("_T")

__all__ = ["LiveRunner", "LiveSession", "check_budget", "resolve_seed", "start_live"]

_BUSY_ATTEMPTS = 20


def _resends_safely(provider: Provider) -> bool:
    """Whether resending a submit of the same attempt can never create a second task.

    The provider table says: Qingbo de-duplicates submits by ``Idempotency-Key`` (derived
    from the generation key and the attempt) for 24 h; WaveSpeed has no such key.
    """
    return provider_entry(provider.name).idempotent_submit


def _first_step(provider: Provider) -> NextStep:
    """What a later run does with a submit of ``provider`` whose reply never came."""
    return "resend" if _resends_safely(provider) else "look"


def _lifetime(provider: Provider) -> float:
    """Seconds the provider serves a finished output (the provider table says)."""
    return provider_entry(provider.name).output_lifetime


def _display(path: Path | None) -> str:
    """A storyboard path as the user would type it (relative to the working folder if inside)."""
    if path is None:
        return "FILE"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resolve_seed(seed: int | None, takes_seed: bool) -> int | None:
    """A concrete seed for a take whose seed is random (-1 or unset) on a seeded model."""
    if seed is not None or not takes_seed:
        return seed
    return random.randrange(0, 2**31 - 1)


def _poll_interval(environ: Mapping[str, str]) -> float:
    """``STORYBOARD_POLL_INTERVAL``: the least seconds between two status checks of a task.

    The default, 5 s, is what the providers advise for video; the emulator and the tests use
    a small value. Within it and ``Timing.poll_max`` each task is polled on a plan that fits
    it (:mod:`storyboard.polling`): its expected length and the progress it reports.
    """
    raw = environ.get("STORYBOARD_POLL_INTERVAL", "5")
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise UsageError(
            f"STORYBOARD_POLL_INTERVAL must be a number of seconds, not {raw!r}"
        ) from None


def _task_deadline(environ: Mapping[str, str]) -> float:
    """``STORYBOARD_TASK_DEADLINE``: seconds a take may take, from its submit to its clip.

    The default, 3 hours, outlasts any video task that has not gone wrong. It is also the
    deadline of the take's claim on the project's remote: a teammate waits that long for the
    clip before the claim counts as stale.
    """
    raw = environ.get("STORYBOARD_TASK_DEADLINE", "").strip()
    if not raw:
        return Timing.task_deadline
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(
            f"STORYBOARD_TASK_DEADLINE must be a positive number of seconds, not {raw!r}"
        )
    return value


def _age(known: JournalEntry | None) -> float:
    """Seconds since an earlier run submitted the task (from the journal's intent); at least
    a millisecond, so the task is asked about at once (it may be done)."""
    since = known.intent_at if known is not None else None
    return max(time.time() - since, 1e-3) if since else 1e-3


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
    team: Team | None = None,
) -> tuple[LiveRunner, Journal]:
    """Everything a ``render --live`` checks before its first request, then its runner.

    The budget and the API keys are checked first; only then does ``--force`` move the forced
    takes to their next attempt in the journal (a new purchase), so a refused run loses
    nothing it knew.

    ``team`` (the project's remote, see :mod:`storyboard.teamwork`) is checked by the caller
    before this: the runner claims, waits, pulls and pushes through it.

    Raises:
        BudgetExceeded: the estimate is over budget (nothing was sent).
        MissingAPIKey: a provider this run needs has no key.
    """
    journal = Journal(store.root / "journal.sqlite")
    try:
        check_budget(plan, budget)
        from storyboard.preflight import preflight

        preflight(plan, journal=journal, forced=forced, environ=environ)  # every obstacle at once
        session = LiveSession(
            store, journal, environ=environ, board_file=plan.board.path, team=team,
            forced=forced,
        )  # fmt: skip
        session.check_keys({sp.shot.spec.provider for sp in plan.to_render if sp.shot.spec})
        for sp in plan.shots:
            if sp.id in forced:
                for take in sp.takes:
                    journal.force(take.key)
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
        poll_max: float = Timing.poll_max,
        task_deadline: float | None = None,
        submit_deadline: float = Timing.submit_deadline,
        sleep: Callable[[float], Any] = anyio.sleep,
        board_file: Path | None = None,
        team: Team | None = None,
        forced: Collection[str] = (),
    ) -> None:
        self.store = store
        self.journal = journal
        self.environ = dict(os.environ if environ is None else environ)
        self.transport = transport
        if poll_interval is None:
            poll_interval = _poll_interval(self.environ)
        if task_deadline is None:
            task_deadline = _task_deadline(self.environ)
        self.team = team
        self.forced = frozenset(forced)
        self.timing = Timing(poll_interval, poll_max, task_deadline, submit_deadline)
        self.sleep = sleep
        # How long this run's tasks have taken: later tasks of the model are polled for it.
        self.times = RenderTimes()
        self.board_file = board_file
        self._providers: dict[str, Provider] = {}
        # One lock per content digest: takes running at once that share an input upload it
        # once (the second waits and then finds the URL in the journal).
        self._upload_locks: dict[str, anyio.Lock] = {}

    # -- providers -------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        """The client of a provider, made from its environment variables on first use.

        Raises:
            ProviderError: the provider table has no such provider.
            MissingAPIKey: its key variable is not set.
        """
        if name not in self._providers:
            setup = ProviderSetup(environ=self.environ, transport=self.transport)
            self._providers[name] = provider_entry(name).factory(setup)
        return self._providers[name]

    def check_keys(self, providers: set[str]) -> None:
        """Fail early, naming the variable, when a provider needed by this run has no key."""
        for name in sorted(providers):
            self.provider(name)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    async def _db(self, call: Callable[[], _T]) -> _T:
        """Run a journal call (SQLite, fsync) in a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(call)

    def secrets(self) -> tuple[str, ...]:
        """The API keys in use (as set and stripped), to keep out of every message."""
        values = [self.environ.get(v, "") for v in key_vars()]
        return tuple(dict.fromkeys(x for v in values for x in (v, v.strip()) if x))

    def _board(self) -> str:
        return _display(self.board_file)

    def _command(self, *extra: str) -> str:
        """The command line that does the next step, as the user would type it."""
        return "`" + " ".join(["storyboard render", self._board(), "--live", *extra]) + "`"

    async def resumes(self, job: Job) -> bool:
        """Whether ``job``'s key has a task the journal knows (paid for: resume, never stop)."""
        known = await self._db(partial(self.journal.get, job.key))
        return known is not None and known.state in ("submitted", "done") and bool(known.task_id)

    # -- inputs ----------------------------------------------------------------------------

    async def _upload(
        self,
        path: Path,
        shot: str,
        what: str,
        announce: Callable[[], None] | None = None,
    ) -> str:
        digest = await anyio.to_thread.run_sync(self.store.memo.digest, path)
        lock = self._upload_locks.setdefault(digest, anyio.Lock())
        async with lock:
            return await self._upload_once(path, digest, shot, what, announce)

    async def _upload_once(
        self,
        path: Path,
        digest: str,
        shot: str,
        what: str,
        announce: Callable[[], None] | None = None,
    ) -> str:
        host = self._host(shot)
        url = await self._db(partial(self.journal.upload_url, digest, host.name))
        if url is not None:
            return url
        try:
            client = self.provider(host.name)
        except MissingAPIKey:
            raise ProviderError(
                f"shot {shot}: {what} {path.name!r} is a local file and needs hosting",
                provider=host.name,
                shot=shot,
                hint=f"put an https:// URL in the storyboard, or set {host.key_var} so "
                f"storyboard can upload local files through the {host.label} media API",
            ) from None
        assert host.uploader is not None  # a host has one (see _host)
        uploader = host.uploader(client)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if announce is not None:
            announce()
        url, expires = await uploader.upload(path, content_type)
        await self._db(partial(self.journal.record_upload, digest, host.name, url, expires))
        return str(url)

    def _host(self, shot: str) -> ProviderEntry:
        """The provider that hosts local files: the first in the table with its key set.

        Raises:
            ProviderError: the table has no provider that can host files.
        """
        able = hosts()
        if not able:  # pragma: no cover - the table has a host
            raise ProviderError(
                f"shot {shot}: a local file needs hosting and no provider can host files",
                provider="",
                shot=shot,
                hint="put an https:// URL in the storyboard",
            )
        ready = [h for h in able if h.key_var and self.environ.get(h.key_var, "").strip()]
        return (ready or able)[0]

    async def prepare(
        self,
        job: Job,
        upstream_key: str | None,
        tmp: Path | None = None,
        emit: Callable[[Event], None] | None = None,
    ) -> Job:
        """The job with a URL for every local input and for the upstream clip or frame.

        The upstream's last frame (``continues``) is extracted into ``tmp`` (the run's work
        folder), under a name of this take's own: never beside the clip in the store, whose
        ``objects/`` hold only clips, and never a file another take may be rewriting.
        ``emit`` receives an ``uploading`` event for each file actually uploaded.
        """
        urls: dict[str, str] = dict(job.urls)
        shot = job.shot

        def uploading(what: str) -> Callable[[], None]:
            def announce() -> None:
                if emit is not None:
                    emit(
                        Event(
                            shot.id,
                            job.take,
                            shot.takes,
                            "rendering",
                            None,
                            what,
                            stage="uploading",
                        )
                    )

            return announce

        for media in shot.media():
            if media.path is not None and media.source not in urls:
                urls[media.source] = await self._upload(
                    media.path, shot.id, media.kind, uploading(media.source)
                )
        if job.upstream is not None and job.upstream_mode == "extends":
            # The provider's own URL of the upstream clip while it is valid, else upload ours.
            url = (
                await self._db(partial(self.journal.output_url, upstream_key))
                if upstream_key
                else None
            )
            # Our own bytes leave the machine only once a full read proves them.
            urls["upstream"] = url or await self._upload(
                await verified_upstream(self.store, job, upstream_key),
                shot.id,
                "upstream clip",
                uploading(f"the clip of {shot.upstream}"),
            )
        elif job.upstream is not None and job.upstream_mode == "continues":
            from storyboard.media.probe import last_frame

            folder = tmp if tmp is not None else self.store.tmp_dir()
            frame = folder / f"{job.key}.last.png"
            clip = await verified_upstream(self.store, job, upstream_key)
            await anyio.to_thread.run_sync(last_frame, clip, frame)
            urls["upstream_frame"] = await self._upload(
                frame,
                shot.id,
                "upstream last frame",
                uploading(f"the last frame of {shot.upstream}"),
            )
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
        """Render one take live, resuming whatever the journal knows about its key.

        Raises:
            StoryboardError: the take failed (anything unexpected becomes a
                :class:`~storyboard.errors.TakeError` naming the shot).
        """
        try:
            return await self._run_take(job, tmp=tmp, upstream_key=upstream_key, emit=emit)
        except StoryboardError:
            raise
        except Exception as exc:
            error = take_error(job, exc, secrets=self.secrets())
            known = None
            with contextlib.suppress(Exception):  # the journal itself may be what broke
                known = self.journal.get(job.key)
            if known is not None and known.task_id:
                error.task_id = known.task_id
            raise error from exc

    async def _run_take(
        self,
        job: Job,
        *,
        tmp: Path,
        upstream_key: str | None,
        emit: Callable[[Event], None],
    ) -> ClipEntry:
        shot = job.shot
        provider = self.provider(job.spec.provider)
        journal = self.journal
        # One deadline for every wait of this take: busy resubmits and polling.
        deadline = time.monotonic() + self.timing.task_deadline
        known = await self._db(partial(journal.get, job.key))
        task: TaskRef | None = None
        fresh = False  # the task was submitted just now (not resumed): its length is learned
        seed = job.seed
        if known is not None:
            job = replace(job, attempt=known.attempt)  # a resent submit keeps its attempt
        if known is not None and known.state != "new":
            seed = known.seed
            if not await self._db(partial(journal.take_over, job.key)):
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
        # A random seed (-1 or none) on a seeded model becomes concrete before the submit and
        # is journalled with the intent, so a resumed take keeps it.
        job = replace(job, seed=resolve_seed(seed, job.spec.seed_range is not None))

        def stage(name: Stage, task_id: str, cost: float | None = None, message: str = "") -> None:
            emit(
                Event(
                    shot.id, job.take, shot.takes, "rendering", None, message,
                    stage=name, task_id=task_id, cost=cost,
                )
            )  # fmt: skip

        team = self.team
        unsettled = known is not None and known.state in ("intent", "unknown")
        if task is not None:
            stage("resumed", task.task_id, message="submitted by an earlier run")
        try:
            while task is None:
                if team is not None and not unsettled:
                    # The project's remote first: a teammate's clip is pulled, a teammate's
                    # claim waited for, a stale claim reported (or, forced, taken over).
                    looked = await team.gate(
                        job, forced=shot.id in self.forced, emit=emit,
                        first_wait=self.timing.poll_interval, limit=self.timing.task_deadline,
                        sleep=self.sleep,
                    )  # fmt: skip
                    if looked.entry is not None:
                        return looked.entry
                    if looked.task_id is not None:
                        if looked.seed is not None:
                            job = replace(job, seed=looked.seed)
                        task = await self._resume_taken(provider, job, looked.task_id)
                        stage("resumed", task.task_id, message=f"taken over from {looked.host}")
                        break
                    deadline = time.monotonic() + self.timing.task_deadline  # after any wait
                job = await self.prepare(job, upstream_key, tmp, emit)
                if unsettled and known is not None and not _resends_safely(provider):
                    # A submit of this attempt was sent before and its reply never came: look
                    # for the task it may have created before anyone pays again.
                    task = await self._settle(provider, job, known, emit)
                    stage("resumed", task.task_id, message="found in the provider's task list")
                    break
                # Qingbo intent/unknown: resending the same Idempotency-Key (same attempt)
                # returns the original task if there is one and cannot bill twice.
                emit(Event(shot.id, job.take, shot.takes, "rendering", stage="submitting"))
                task = await self._submit(provider, job, emit, deadline, claim=not unsettled)
                if task is None:
                    continue  # another run claimed it on the remote first: look again
                fresh = not unsettled
                # The task id is journalled: the list price is committed by this run, unless
                # an earlier run sent this attempt (its money, as `spent` counts it).
                price = None if unsettled else take_price(job.shot, job.spec)
                stage("submitted", task.task_id, price)
            if team is not None:  # a task an earlier run here sent: its claim becomes ours
                await team.adopt(job, task.task_id)
            age = 0.0 if fresh else _age(known)
            entry = await self._complete(provider, task, job, tmp, emit, deadline, age)
            if team is not None:
                await team.stored(entry)
        except BaseException:
            if team is not None:
                with anyio.CancelScope(shield=True):
                    await team.stopped(job.key, await self._sent(job.key))
            raise
        return entry

    async def _sent(self, key: str) -> Literal["sent", "unsent", "failed"]:
        """What the journal says was sent for ``key`` (for the claim of a take that stopped)."""
        try:
            known = await self._db(partial(self.journal.get, key))
        except StoryboardError:
            return "sent"  # not known: the claim is kept, as if a task may deliver
        if known is None or known.state == "new":
            return "unsent"
        return "failed" if known.state == "failed" else "sent"

    async def _resume_taken(self, provider: Provider, job: Job, task_id: str) -> TaskRef:
        """A stale claim taken over with ``--force``: its task is journalled as this run's and
        resumed; the provider already has it, so nothing is bought."""
        journal = self.journal
        await self._db(
            partial(
                journal.claim, job.key, shot=job.shot.id, take=job.take, provider=provider.name,
                model=job.spec.id, seed=job.seed,
            )
        )  # fmt: skip
        await self._db(partial(journal.submitted, job.key, task_id))
        return TaskRef(provider.name, task_id, job.key)

    async def _complete(
        self,
        provider: Provider,
        task: TaskRef,
        job: Job,
        tmp: Path,
        emit: Callable[[Event], None],
        deadline: float,
        age: float = 0.0,
    ) -> ClipEntry:
        """Wait for the task (``age`` seconds old: 0 when just submitted), download, verify
        and store its clip, and journal it done."""
        journal = self.journal
        status = await self._wait(provider, task, job, emit, deadline, age)
        reported = status.reported
        info = Provenance(
            provider=provider.name,
            model=job.spec.id,
            task_id=task.task_id,
            seed=job.seed,
            # What the provider says it charged, in its own unit (the lock keeps it beside the
            # list price; never converted into dollars).
            reported_cost=None if reported is None else Charge(reported.amount, reported.unit),
        )
        entry = await self._fetch(provider, task, status, job, tmp, info, emit)
        await self._db(partial(journal.done, job.key, entry.digest, None))
        if status.outputs:
            # The expiry the provider reports (Qingbo does), else its documented lifetime.
            expires = status.expires_at or time.time() + _lifetime(provider)
            await self._db(partial(journal.record_output, job.key, status.outputs[0], expires))
        return entry

    async def _fetch(
        self,
        provider: Provider,
        task: TaskRef,
        status: Succeeded,
        job: Job,
        tmp: Path,
        info: Provenance,
        emit: Callable[[Event], None] | None = None,
    ) -> ClipEntry:
        """Download, verify and store the output; a failure names the provider and task.

        An output the provider no longer serves is recorded as gone in the journal, which
        keeps the task: nothing is bought again unless the user passes ``--force``.
        """
        shot = job.shot.id
        where = f"{provider.name} task {task.task_id} (shot {shot} take {job.take})"
        try:
            return await fetch_to_store(provider, task, status, job, self.store, tmp, info, emit)
        except ShortOutput as exc:
            # The provider delivered, too short: the task is failed in the journal, so it is
            # never bought again by itself.
            message = f"{exc}; the journal keeps the task, so nothing is bought again by itself"
            await self._db(partial(self.journal.failed, job.key, message))
            raise ShortOutput(
                message,
                provider=provider.name,
                shot=shot,
                task_id=task.task_id,
                asked=exc.asked,
                received=exc.received,
                hint=f"{self._command('--force', shot)} buys it again (and pays again)",
            ) from exc
        except OutputGone as exc:
            await self._db(partial(self.journal.output_gone, job.key))
            served = provider_entry(provider.name)
            lifetime = served.output_lifetime_text if served.output_lifetime else ""
            expiry = f"; links expire after {lifetime}" if lifetime else ""
            raise OutputGone(
                f"{where}: the provider no longer has this output (HTTP {exc.status}{expiry}); "
                "the journal keeps the task, so nothing is bought again by itself",
                provider=provider.name,
                shot=shot,
                task_id=task.task_id,
                status=exc.status,
                hint=f"{self._command('--force', shot)} buys it again (and pays again)",
            ) from exc
        except DownloadError as exc:
            if type(exc) is not DownloadError:
                raise  # a kind of its own (a short output...) says what it needs itself
            text = redact_secrets(str(exc), self.secrets())
            raise DownloadError(
                text if text.startswith(where) else f"{where}: {text}",
                provider=provider.name,
                shot=shot,
                task_id=task.task_id,
                status=exc.status,
                hint=exc.hint()
                or f"{self._command()} downloads it again at no cost (the task is resumed); "
                f"if the provider keeps sending this, {self._command('--force', shot)} buys "
                "a new take",
            ) from exc

    # -- submitting, once ------------------------------------------------------------------

    async def _submit(
        self,
        provider: Provider,
        job: Job,
        emit: Callable[[Event], None],
        deadline: float,
        *,
        claim: bool,
    ) -> TaskRef | None:
        """Claim the key (when ``claim``), submit, journal the task id; wait out busy replies.

        ``None``: the project's remote says another run claimed the key first (or its clip
        arrived); nothing was sent, and the caller looks at the remote again.

        The claim, the request and the journalling of its answer are shielded from
        cancellation (a Ctrl-C) for at most ``Timing.submit_deadline``: a task the provider
        created reaches the journal. A busy provider (429, a full queue, a quota window) is
        waited out and asked again, all within the take's ``deadline``.
        """
        shot = job.shot
        for _attempt in range(_BUSY_ATTEMPTS):
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + self.timing.submit_deadline
                outcome = await self._submit_once(provider, job, claim=claim)
            if scope.cancelled_caught:
                # The submit outlived its deadline and was cut off in flight.
                with anyio.CancelScope(shield=True):
                    message = f"no reply to the submit within {self.timing.submit_deadline:.0f} s"
                    step = _first_step(provider)
                    await self._db(partial(self.journal.unknown, job.key, message, next_step=step))
                return await self._settle_after_loss(provider, job, message, emit)
            if outcome is None or isinstance(outcome, TaskRef):
                return outcome
            if isinstance(outcome, SubmitOutcomeUnknown):
                return await self._settle_after_loss(provider, job, str(outcome), emit, outcome)
            # ProviderBusy: the provider created nothing; waiting and resubmitting is safe.
            wait = max(outcome.retry_after, 0.0)
            if time.monotonic() + wait > deadline:
                raise ProviderTimeout(
                    f"shot {shot.id}: {provider.name} refuses new tasks for {wait:.0f} s more "
                    f"({outcome}), past this take's deadline of "
                    f"{self.timing.task_deadline:.0f} s; nothing was submitted",
                    provider=provider.name,
                    shot=shot.id,
                    hint="run the same command again later: nothing was submitted for this take",
                ) from outcome
            emit(
                Event(
                    shot.id, job.take, shot.takes, "rendering", None,
                    f"provider busy: {outcome}", stage="submitting",
                )
            )  # fmt: skip
            await self.sleep(wait)
        raise ProviderError(
            f"shot {shot.id}: {provider.name} kept refusing new tasks",
            provider=provider.name,
            shot=shot.id,
            hint="try again later; nothing was submitted",
        )

    async def _submit_once(
        self, provider: Provider, job: Job, *, claim: bool
    ) -> TaskRef | ProviderBusy | SubmitOutcomeUnknown | None:
        """One submit and its journalling (runs shielded; see :meth:`_submit`); ``None`` when
        the key is claimed on the project's remote by another run (nothing was sent)."""
        shot, journal = job.shot, self.journal
        if claim:
            claimed, created = await self._db(
                partial(
                    journal.claim,
                    job.key,
                    shot=shot.id,
                    take=job.take,
                    provider=provider.name,
                    model=job.spec.id,
                    seed=job.seed,
                    next_step=_first_step(provider),
                )
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
            if self.team is not None and not await self._claim_remote(provider, job):
                return None
        try:
            task = await provider.submit(job)
        except ProviderBusy as exc:
            if claim:
                # Nothing was created: the key is free again (same attempt) while we wait.
                await self._db(partial(journal.release, job.key))
            return exc
        except SubmitOutcomeUnknown as exc:
            message = redact_secrets(str(exc), self.secrets())
            await self._db(
                partial(journal.unknown, job.key, message, next_step=_first_step(provider))
            )
            return exc
        except StoryboardError:
            # A definite refusal (bad request, auth): nothing was created, so the key is
            # free to be submitted again (same attempt) once the cause is fixed.
            await self._db(partial(journal.release, job.key))
            raise
        await self._db(partial(journal.submitted, job.key, task.task_id))
        if self.team is not None:
            await self.team.submitted(job, task.task_id)
        return task

    async def _claim_remote(self, provider: Provider, job: Job) -> bool:
        """After the journal's intent, before the POST: claim the key on the project's remote.

        ``False``: another run holds it (the journal's intent is released: nothing was sent).
        A remote that fails releases the intent too, and the take fails: no submit without
        a claim.
        """
        team = self.team
        if team is None:
            return True
        try:
            claimed = await team.claim(job, provider.name, self.timing.task_deadline)
        except BaseException:
            await self._db(partial(self.journal.release, job.key))
            raise
        if not claimed:
            await self._db(partial(self.journal.release, job.key))
        return claimed

    # -- lost replies -----------------------------------------------------------------------

    async def _settle(
        self, provider: Provider, job: Job, known: JournalEntry, emit: Callable[[Event], None]
    ) -> TaskRef:
        """A rerun finds the key ``intent``/``unknown``: find its task, or say what to do."""
        if known.state == "intent":
            # A crash (or a cut-off submit) left the intent: the request may have been sent.
            await self._db(
                partial(
                    self.journal.unknown,
                    job.key,
                    "the run stopped while submitting",
                    next_step="look",
                )
            )
        return await self._find(provider, job, known.intent_at, emit)

    async def _settle_after_loss(
        self,
        provider: Provider,
        job: Job,
        reason: str,
        emit: Callable[[Event], None],
        lost: SubmitOutcomeUnknown | None = None,
    ) -> TaskRef:
        """The submit just sent got no usable reply: find its task, or say what to do."""
        if _resends_safely(provider):
            # The same Idempotency-Key is resent by the next run: no need to look.
            detail = redact_secrets(reason, self.secrets())
            if "may exist" not in detail:
                detail += "; the task may exist"
            raise self._unknown(job, provider, detail, "resend") from lost
        known = await self._db(partial(self.journal.get, job.key))
        return await self._find(provider, job, known.intent_at if known else None, emit)

    async def _find(
        self,
        provider: Provider,
        job: Job,
        since: float | None,
        emit: Callable[[Event], None],
    ) -> TaskRef:
        """Look the task of an unknown submit up in the provider's task list.

        A task found is journalled as submitted and resumed (no new purchase). Otherwise the
        key stays ``unknown`` and the one "outcome unknown" message is raised.
        """
        shot = job.shot
        if not isinstance(provider, TaskFinder):
            await self._db(
                partial(self.journal.unknown, job.key, "no task list", next_step="force")
            )
            raise self._unknown(
                job,
                provider,
                f"{provider.name} cannot list the tasks it created: check its dashboard",
                "force",
            )
        emit(
            Event(
                shot.id, job.take, shot.takes, "rendering", None, "looking for a lost task",
                stage="submitting",
            )
        )  # fmt: skip
        held = await self._db(partial(self.journal.task_ids, provider.name))
        try:
            found = await provider.find_task(job, since=since or 0.0, exclude=held)
        except ProviderError as exc:
            # Still unsettled: the next run looks again (never --force: the task may exist).
            await self._db(
                partial(self.journal.unknown, job.key, "task list unreadable", next_step="look")
            )
            detail = redact_secrets(str(exc), self.secrets())
            raise self._unknown(
                job, provider, f"the provider's task list could not be read ({detail})", "look"
            ) from exc
        if found is None:
            await self._db(
                partial(self.journal.unknown, job.key, "not in the task list", next_step="force")
            )
            raise self._unknown(
                job, provider, "the provider's task list shows no such task", "force"
            )
        await self._db(partial(self.journal.submitted, job.key, found.task_id))
        return found

    def _unknown(
        self, job: Job, provider: Provider, finding: str, next_step: NextStep
    ) -> SubmitOutcomeUnknown:
        """The one "outcome unknown" error of a situation, in the same words on every run.

        The message says what is known; the hint gives the one command that helps next, and
        ``next_step`` (journalled too, so ``plan`` agrees) says which it is:

        * ``resend`` (Qingbo): the same command resends the submit under the same
          Idempotency-Key, which returns the task if there is one and bills once;
        * ``look`` (WaveSpeed, its task list unreadable): the same command looks again;
        * ``force`` (the task list shows no task): ``--force SHOT`` buys it again.
        """
        shot = job.shot.id
        if next_step == "force":
            hint = f"{self._command('--force', shot)} submits it again (and pays again)"
        elif next_step == "look":
            hint = (
                f"{self._command()} looks for its task in the provider's task list again; "
                "nothing is bought again meanwhile"
            )
        else:
            hint = (
                f"{self._command()} resends it with the same Idempotency-Key: "
                f"{provider.name} answers with its task if it made one, and bills it once"
            )
        return SubmitOutcomeUnknown(
            f"outcome unknown: provider {provider.name}, shot {shot} take {job.take}: the "
            f"submit got no usable reply; {finding}",
            provider=provider.name,
            shot=shot,
            status="unknown",
            hint=hint,
            next_step=next_step,
        )

    async def _wait(
        self,
        provider: Provider,
        task: TaskRef,
        job: Job,
        emit: Callable[[Event], None],
        deadline: float,
        age: float = 0.0,
    ) -> Succeeded:
        shot = job.shot
        status = await wait_for_task(
            provider, task, job, emit, self.timing, self.sleep, deadline=deadline,
            times=self.times, age=age,
        )  # fmt: skip
        if isinstance(status, Failed):
            said = redact_secrets(status.message, self.secrets())
            message = f"{provider.name} task {task.task_id} failed: {said}"
            await self._db(partial(self.journal.failed, job.key, message))
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

    async def resumes(self, job: Job) -> bool:
        return await self.session.resumes(job)

    async def run(
        self, job: Job, *, tmp: Path, upstream_key: str | None, emit: Callable[[Event], None]
    ) -> ClipEntry:
        return await self.session.run_take(job, tmp=tmp, upstream_key=upstream_key, emit=emit)

    async def aclose(self) -> None:
        await self.session.aclose()
