"""Team-wide never-pay-twice (issue 12 item 4): a live render's side of the project's remote.

When the project's ``storyboard.toml`` names a remote (``[remote] url``) and the run may use
it (``remote=True``; ``--no-remote`` turns it all off), a ``render --live``:

1. proves the remote answers (and can hold claims) before anything is submitted: a remote
   that cannot be reached stops the run (:class:`~storyboard.remote.RemoteUnavailable`, exit
   2), never a silent solo run that could pay twice (:meth:`Team.check`);
2. pulls the stale takes the remote has, and plans again: a teammate's clip costs nothing
   (:meth:`Team.pull_stale`, with ``[remote] pull = true``, the default);
3. looks at the remote before each take's uploads (:meth:`Team.gate`): its clip there is
   pulled; a live claim of another run is waited for (progress shows "rendering on HOST since
   HH:MM") and its clip pulled once pushed; a stale claim (past its deadline, or made on this
   host by a process that is gone) is reported (:class:`StaleClaim`), and taken over only
   with ``--force SHOT``: a claim with a task id then has that task *resumed* (the provider
   has it: nothing is bought again), one without is submitted anew;
4. claims the key atomically after the journal's intent and before the POST
   (:meth:`Team.claim`), records the provider's task id in the claim (:meth:`Team.submitted`),
   and once the clip is stored pushes it and releases the claim (:meth:`Team.stored`,
   with ``[remote] push = true``, the default; a run that does not push claims nothing, as
   nobody could take its clip).

A claim's deadline is the run's task deadline (``$STORYBOARD_TASK_DEADLINE`` seconds, 3 hours
by default). A claim is kept when the take stops with a task that may still deliver (so the
team waits for it, then resumes it by ``--force``); it is released when nothing was created or
the provider said the task failed. ``$STORYBOARD_HOST`` names this machine in claims.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from storyboard.errors import StoryboardError
from storyboard.events import Event
from storyboard.remote import Claim, ClaimInfo, Held, Remote, RemoteCorrupt, RemoteError

if TYPE_CHECKING:
    from storyboard.cache import ClipEntry, Store
    from storyboard.plan import Plan
    from storyboard.project import Project
    from storyboard.providers.base import Job

__all__ = ["ClaimedElsewhere", "Looked", "StaleClaim", "Team"]

_T = TypeVar("_T")
# Between two looks at a claim held elsewhere: the first wait grows 1.5x up to this.
_LOOK_MAX = 30.0


def _clock(moment: float) -> str:
    """``14:05`` today, ``2026-11-28 14:05`` another day (local time)."""
    here = time.localtime(moment)
    if here[:3] == time.localtime()[:3]:
        return time.strftime("%H:%M", here)
    return time.strftime("%Y-%m-%d %H:%M", here)


def _task(info: ClaimInfo) -> str:
    return f"task {info.task_id} at {info.provider}" if info.task_id else "no task id yet"


class StaleClaim(StoryboardError):
    """Another run claimed this take on the remote and stopped: its clip never came (exit 1).

    Attributes:
        info: the claim.
        shot, take: the take.
        command: the one command that takes it over (``... --force SHOT``).
    """

    def __init__(self, info: ClaimInfo, *, shot: str, take: int, board: str) -> None:
        why = (
            "that run's process is gone"
            if info.gone()
            else f"its deadline passed at {_clock(info.deadline)}"
        )
        super().__init__(
            f"shot {shot} take {take} was claimed on the remote by {info.host} (pid "
            f"{info.pid}) since {_clock(info.since)}, {_task(info)}; {why} and its clip "
            "never reached the remote"
        )
        self.info = info
        self.shot = shot
        self.take = take
        self.command = f"storyboard render --live {board} --force {shot}"

    def hint(self) -> str | None:
        if self.info.task_id:
            return (
                f"`{self.command}` takes it over and resumes task {self.info.task_id} (the "
                "provider has it: nothing is bought again)"
            )
        return (
            f"`{self.command}` takes it over and submits it anew (and pays: the claim has no "
            "task id, so there is nothing to resume)"
        )


class ClaimedElsewhere(StoryboardError):
    """A live claim of another run holds this take and this run cannot take its clip: pull is
    off, or the claim outlasted this run's own deadline (exit 1; nothing was submitted)."""

    def __init__(self, info: ClaimInfo, *, shot: str, take: int, reason: str) -> None:
        super().__init__(
            f"shot {shot} take {take} is being rendered on {info.host} since "
            f"{_clock(info.since)} ({_task(info)}); {reason}; nothing was submitted"
        )
        self.info = info
        self.shot = shot
        self.take = take

    def hint(self) -> str | None:
        return "run the same command again once it is done: its clip is then pulled for $0"


@dataclass(frozen=True)
class Looked:
    """What the remote says about a take before its uploads (see :meth:`Team.gate`).

    ``entry``: its clip, pulled (nothing else to do). ``task_id``: a claim taken over with
    ``--force`` whose task this run resumes (``seed`` as it was submitted, ``host`` the
    machine that submitted it). Neither: this run renders it.
    """

    entry: ClipEntry | None = None
    task_id: str | None = None
    seed: int | None = None
    host: str = ""


@dataclass
class Team:
    """A live run's dealings with the project's remote (see the module).

    Attributes:
        remote: the remote store.
        store: the run's local store.
        board: the storyboard as the user types it (for commands in messages).
        name: the storyboard as the project names it (relative to its root), for claims.
        pull: look in the remote before paying, and wait for a teammate's claim.
        push: claim before paying, push each clip once stored.
        resumed: keys whose task this run took over (paid by the run that submitted it).
        pulled: keys whose clip came from the remote during the render.
    """

    remote: Remote
    store: Store
    board: str
    name: str
    pull: bool = True
    push: bool = True
    claims: dict[str, Claim] = field(default_factory=dict)
    resumed: set[str] = field(default_factory=set)
    pulled: set[str] = field(default_factory=set)

    @classmethod
    def open(
        cls, project: Project, store: Store, *, board: Path, enabled: bool = True
    ) -> Team | None:
        """The run's team, or ``None`` when the project names no remote or ``enabled`` is off.

        Args:
            project: the storyboard's project (its ``[remote]``).
            board: the storyboard's path.

        Raises:
            RemoteUnavailable: the backend is not installed or refuses the options.
        """
        config = project.remote
        if config is None or not enabled or not (config.pull or config.push):
            return None
        try:
            name = board.absolute().relative_to(project.root.absolute()).as_posix()
        except ValueError:
            name = board.name
        try:
            shown = str(board.relative_to(Path.cwd()))  # as the user would type it
        except ValueError:
            shown = str(board)
        return cls(Remote.open(config), store, shown, name, pull=config.pull, push=config.push)

    # -- before the render -----------------------------------------------------------------

    def check(self) -> None:
        """Prove the remote answers, and (when this run claims) that it holds claims.

        Raises:
            RemoteUnavailable: it cannot be reached or used; nothing was submitted.
        """
        self.remote.check(claims=self.push)

    def held(self, keys: Iterable[str], *, jobs: int = 8) -> frozenset[str]:
        """Which of ``keys`` the remote holds a key record for (a look: nothing is moved or
        written; a pull still checks the bytes).

        Raises:
            RemoteError: the remote cannot be reached or read.
        """
        wanted = sorted(set(keys))
        if not wanted:
            return frozenset()
        self.remote.check()  # a missing folder or bucket holds nothing, but is an error
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(wanted)))) as pool:
            found = list(pool.map(self.remote.has_key, wanted))
        return frozenset(k for k, here in zip(wanted, found, strict=True) if here)

    def pull_stale(self, plan: Plan, *, jobs: int = 8) -> tuple[tuple[str, int], ...]:
        """Pull every stale take in scope (not forced) that the remote has.

        A remote copy whose bytes are wrong is refused (and rendered here, then pushed).

        Returns:
            ``(shot, take)`` of every take pulled.

        Raises:
            RemoteError: a transfer failed (nothing was submitted).
        """
        if not self.pull:
            return ()
        takes = {
            t.key: (sp.id, t.take)
            for sp in plan.to_render
            if sp.id not in plan.forced
            for t in sp.stale_takes
        }
        if not takes:
            return ()
        report = self.remote.pull_many(self.store, takes, jobs=jobs)
        if report.failed:
            key, message = report.failed[0]
            shot, take = takes[key]
            more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
            raise RemoteError(
                f"shot {shot} take {take} could not be pulled from the remote{more}: {message}",
                url=self.remote.url,
                operation="pull",
                hint="run the same command again (nothing was submitted), or add --no-remote "
                "to render without the team's clips (and pay for them)",
            )
        here = set(takes) - set(report.missing) - set(report.corrupt)
        return tuple(sorted(takes[k] for k in here))

    # -- a take ----------------------------------------------------------------------------

    async def _call(self, call: Callable[[], _T]) -> _T:
        return await anyio.to_thread.run_sync(call)

    async def gate(
        self,
        job: Job,
        *,
        forced: bool,
        emit: Callable[[Event], None],
        first_wait: float,
        limit: float,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> Looked:
        """Look at the remote before a take is uploaded and submitted.

        Args:
            forced: the shot is forced: its clip on the remote is not taken (a new purchase
                is asked for), and a stale claim is taken over.
            first_wait: seconds before the first look again at a claim held elsewhere.
            limit: seconds this run waits at most for a claim held elsewhere (its deadline
                ends the wait earlier).

        Raises:
            StaleClaim: a stale claim holds the take (and it is not forced).
            ClaimedElsewhere: a live claim holds it and this run cannot take its clip.
            RemoteError: the remote failed.
        """
        shot = job.shot
        waited_for: tuple[str, int, str] | None = None
        wait = max(first_wait, 0.05)
        give_up = time.time() + limit
        while True:
            if self.pull and not forced:
                entry = await self._pull(job.key)
                if entry is not None:
                    self.pulled.add(job.key)
                    emit(
                        Event(
                            shot.id, job.take, shot.takes, "rendering", None,
                            "pulled from the remote", stage="downloading",
                        )
                    )  # fmt: skip
                    return Looked(entry=entry)
            info = await self._call(partial(self.remote.read_claim, job.key))
            if info is None or self._ours(info):
                return Looked()
            if info.stale():
                if not forced:
                    raise StaleClaim(info, shot=shot.id, take=job.take, board=self.board)
                reason = f"--force {shot.id}: " + (
                    "the process is gone" if info.gone() else "past its deadline"
                )
                claim = await self._call(
                    partial(self.remote.take_over, job.key, reason=reason, expected=info)
                )
                if claim is None:  # another run took it over first: look again
                    await sleep(wait)
                    continue
                self.claims[job.key] = claim
                if info.task_id:
                    self.resumed.add(job.key)
                    return Looked(task_id=info.task_id, seed=info.seed, host=info.host)
                return Looked()
            if not self.pull:
                raise ClaimedElsewhere(
                    info, shot=shot.id, take=job.take,
                    reason="with [remote] pull = false this run cannot take its clip",
                )  # fmt: skip
            if time.time() > give_up:
                raise ClaimedElsewhere(
                    info, shot=shot.id, take=job.take,
                    reason="this run waited for it as long as its own deadline allows",
                )  # fmt: skip
            seen = (info.host, info.pid, info.run_id)
            if waited_for != seen:
                waited_for = seen
                emit(
                    Event(
                        shot.id, job.take, shot.takes, "waiting", None,
                        f"rendering on {info.host} since {_clock(info.since)}",
                        stage="waiting", task_id=info.task_id,
                    )
                )  # fmt: skip
            until = min(info.deadline, give_up) - time.time()
            await sleep(max(min(wait, until + 0.05), 0.0))
            wait = min(wait * 1.5, _LOOK_MAX)

    async def _pull(self, key: str) -> ClipEntry | None:
        try:
            return await self._call(partial(self.remote.pull_clip, self.store, key))
        except RemoteCorrupt:
            return None  # refused (and removed from the remote): rendered here instead

    def _ours(self, info: ClaimInfo) -> bool:
        remote = self.remote
        return (info.host, info.pid, info.run_id) == (remote.host, remote.pid, remote.run_id)

    async def claim(self, job: Job, provider: str, deadline_s: float) -> bool:
        """Claim ``job``'s key right before its POST: ``True`` when this run may submit it.

        ``False``: another run claimed it first, or its clip reached the remote since the
        gate; the caller looks again (:meth:`gate`) and submits nothing. A run that does not
        push claims nothing (``True``).

        Raises:
            RemoteError: the remote failed (nothing may be submitted without a claim).
        """
        if not self.push:
            return True
        if job.key in self.claims:
            return True  # taken over, or claimed before a busy provider was waited out
        outcome = await self._call(
            partial(
                self.remote.claim, job.key, provider=provider, shot=job.shot.id,
                storyboard=self.name, deadline_s=deadline_s, take=job.take, seed=job.seed,
            )
        )  # fmt: skip
        if isinstance(outcome, Held):
            return False
        if self.pull and await self._call(partial(self.remote.has_key, job.key)):
            # Pushed (and released) between the gate's look and this claim: take that clip.
            await self._call(partial(self.remote.release, outcome))
            return False
        self.claims[job.key] = outcome
        return True

    async def submitted(self, job: Job, task_id: str) -> None:
        """Record the provider's task id in the claim (best effort: the journal has it)."""
        claim = self.claims.get(job.key)
        if claim is None:
            return
        try:
            self.claims[job.key] = await self._call(
                partial(self.remote.update_claim, claim, task_id)
            )
        except RemoteError:
            return

    async def adopt(self, job: Job, task_id: str) -> None:
        """A take resumed from this machine's journal: make its claim (left by an earlier run
        here, or holding that task) this run's, so its clip is pushed and the claim released."""
        if not self.push or job.key in self.claims:
            return  # claimed (or taken over) by this run already
        try:
            info = await self._call(partial(self.remote.read_claim, job.key))
            if info is None:
                return
            if self._ours(info) or info.task_id == task_id or info.gone():
                reason = "resumed by the run that submitted it"
                claim = await self._call(
                    partial(self.remote.take_over, job.key, reason=reason, expected=info)
                )
                if claim is not None:
                    self.claims[job.key] = claim
        except RemoteError:
            return  # the clip is still pushed once stored

    async def stored(self, entry: ClipEntry) -> None:
        """The take's clip is in the store: push it (object, then key record), then release
        the claim.

        Raises:
            RemoteError: the push failed; the claim is kept (the task id in it lets a
                teammate resume the task for free) and ``storyboard push`` sends the clip.
        """
        if self.push:
            try:
                await self._call(partial(self.remote.push_clip, self.store, entry))
            except RemoteError as exc:
                raise RemoteError(
                    f"shot {entry.shot} take {entry.take} is stored here but was not pushed to "
                    f"the remote: {exc}",
                    url=self.remote.url,
                    operation="push",
                    path=exc.path,
                    hint=f"`storyboard push {self.board}` sends it (nothing is bought again)",
                ) from exc
        await self.release(entry.key)

    async def release(self, key: str) -> None:
        """Release this run's claim on ``key``, if it holds one (best effort)."""
        claim = self.claims.pop(key, None)
        if claim is None:
            return
        try:
            await self._call(partial(self.remote.release, claim))
        except RemoteError:
            return

    async def stopped(self, key: str, state: Literal["sent", "unsent", "failed"]) -> None:
        """A take stopped before its clip was stored: release the claim unless a task may
        still deliver (``sent``: kept, so the team resumes that task instead of paying)."""
        if state != "sent":
            with anyio.CancelScope(shield=True):
                await self.release(key)
