"""The pipeline as a library call: a storyboard file in, a finished cut (and what it cost) out.

::

    report = storyboard.build("examples/minimal/storyboard.yaml")
    print(report.cut, report.seconds)

:func:`build` runs every stage in order: load (validate, template) -> read what the lock and
the journal know -> plan -> render what is stale -> write the lock -> plan again -> stitch.
:func:`build_async` is the same in the caller's event loop. :func:`plan_build` stops after
planning (``storyboard plan``) and :func:`restitch` stitches rendered clips only
(``storyboard stitch``). The command line is a thin layer over these: it parses arguments,
calls them, prints and maps errors to exit codes.

Progress reaches ``on_event``: a :class:`Planned` event once the plan of the run is made
(nothing spent yet), :class:`Started` when the run begins, the render's
:class:`~storyboard.events.Event` for every take, and :class:`Stitching` for the cut.

Failures raise the library's errors (:class:`~storyboard.errors.StoryboardError`): a render
in which some takes failed finishes everything it can (clips kept, lock written, the cut
stitched when every clip is there) and raises :class:`BuildFailed`, a
:class:`~storyboard.errors.RenderFailed` that carries the run's :class:`BuildReport`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storyboard import boardcache
from storyboard.cache import Store
from storyboard.errors import RenderFailed, ShotFailure, StitchError, StoryboardError, UsageError
from storyboard.events import Event
from storyboard.plan import Facts, Plan, check_selection, make_plan

if TYPE_CHECKING:
    from storyboard.journal import Journal
    from storyboard.model import Storyboard
    from storyboard.render import RenderReport, TakeRunner
    from storyboard.stitcher import StitchResult
    from storyboard.teamwork import Team

__all__ = [
    "BudgetCheck",
    "BuildEvent",
    "BuildFailed",
    "BuildReport",
    "Planned",
    "Spent",
    "Started",
    "Stitching",
    "build",
    "build_async",
    "check_budget",
    "check_output",
    "known_facts",
    "plan_build",
    "restitch",
    "up_to_date",
]

# Leftovers of interrupted renders older than this are removed when a render starts.
_TMP_MAX_AGE = 24 * 3600.0


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """The plan this run works from, made and checked before anything is spent."""

    plan: Plan


@dataclass(frozen=True)
class Started:
    """The run begins: renders (when something is stale) and the stitch follow."""

    plan: Plan


@dataclass(frozen=True)
class Stitching:
    """Where the cut is: ``stitching`` (being written), ``failed``, ``written`` or ``reused``.

    ``detail`` is its length once there is one (``"12.5s"``).
    """

    state: Literal["stitching", "failed", "written", "reused"]
    detail: str = ""


BuildEvent = Event | Planned | Started | Stitching


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spent:
    """What a live run bought: takes the providers accepted, at list price (USD)."""

    takes: int = 0
    usd: float = 0.0


@dataclass(frozen=True)
class BuildReport:
    """What a build did.

    Attributes:
        plan: what the run was asked to do: its scope, and what was up to date before it.
        final: the plan after rendering, which the cut was stitched from.
        rendered: ``(shot, take)`` of every take this run rendered.
        failures: the takes that failed (empty for a run that succeeded).
        spent: what a live run bought (nothing for a preview).
        cut: the final cut, ``None`` when it was not stitched.
        seconds: the cut's length.
        reused: the cut was already up to date (nothing was written).
        missing: shots with no clip after the run (why the cut was not stitched).
        pulled: ``(shot, take)`` of every take taken from the project's remote instead of
            being rendered (a teammate's clip: nothing was bought).
    """

    plan: Plan
    final: Plan
    rendered: tuple[tuple[str, int], ...] = ()
    failures: tuple[ShotFailure, ...] = ()
    spent: Spent = Spent()
    cut: Path | None = None
    seconds: float | None = None
    reused: bool = False
    missing: tuple[str, ...] = ()
    pulled: tuple[tuple[str, int], ...] = ()

    @property
    def backend(self) -> str:
        return self.plan.backend

    @property
    def up_to_date(self) -> tuple[tuple[str, int], ...]:
        """``(shot, take)`` of every take already in the store: what the run did not render."""
        return up_to_date(self.plan)

    @property
    def outside_only(self) -> tuple[str, ...]:
        """Stale shots the run left alone (``only`` did not name them)."""
        plan = self.plan
        return tuple(
            sp.id for sp in plan.shots if sp.status == "stale" and not plan.in_scope(sp.id)
        )

    @property
    def ok(self) -> bool:
        """Whether every take of the run rendered."""
        return not self.failures


class BuildFailed(RenderFailed):
    """Some takes failed; everything else went through. ``report`` says what the run did."""

    def __init__(self, report: BuildReport, failures: Iterable[ShotFailure]) -> None:
        super().__init__(tuple(failures))
        self.report = report


def up_to_date(plan: Plan) -> tuple[tuple[str, int], ...]:
    """Every take the plan found in the store: what a run did not have to render."""
    return tuple(
        (sp.id, t.take) for sp in plan.shots if sp.kind == "model" for t in sp.takes if t.fresh
    )


# -- what the stages share -------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """A run's arguments, checked."""

    path: str | Path
    live: bool = False
    variables: Mapping[str, Any] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    force: tuple[str, ...] = ()
    force_all: bool = False
    output: Path | None = None  # -o: the cut's path, absolute
    remote: bool = True  # False (--no-remote): no look in, push to or claim on the remote

    @property
    def backend(self) -> Literal["preview", "live"]:
        return "live" if self.live else "preview"


def _options(
    path: str | Path,
    *,
    live: bool,
    variables: Mapping[str, Any] | None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    output: str | Path | None = None,
    remote: bool = True,
) -> _Options:
    if output is not None:
        check_output(Path(output))
    forced: tuple[str, ...] = ()
    if isinstance(force, bool):
        force_all = force_all or force
    else:
        forced = _names(force)
    return _Options(
        path=path,
        live=live,
        variables=dict(variables or {}),
        only=_names(only),
        force=forced,
        force_all=force_all,
        output=Path(output).absolute() if output is not None else None,
        remote=remote,
    )


def _names(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def check_output(path: Path) -> None:
    """A cut path chosen by the caller (``-o``) may point anywhere but must name a video file.

    Raises:
        UsageError: it is a folder, or does not end in ``.mp4`` or ``.mov``.
    """
    from storyboard.paths import VIDEO_CONTAINERS

    if path.suffix.lower() not in VIDEO_CONTAINERS or path.is_dir():
        what = "is a folder" if path.is_dir() else "does not name a .mp4 or .mov file"
        raise UsageError(
            f"-o/--output {str(path)!r} {what}",
            hint=f"give the cut's file name, e.g. -o {(path.stem or 'cut').lstrip('.')}.mp4",
        )


def known_facts(board: Storyboard, store: Store, backend: str) -> Facts:
    """What the lock and the journal know, for :func:`~storyboard.plan.make_plan`.

    A preview knows neither (its clips are never paid for nor locked).

    Raises:
        LockUnreadable: the lock exists but cannot be read.
        UnsafePath: the lock is a link leading outside the storyboard's folder.
    """
    if backend != "live":
        return Facts()
    from storyboard.journal import journal_path, read_facts
    from storyboard.lockfile import lock_index

    locked = lock_index(board.path)
    # Takes an earlier run submitted are resumed, not bought again (unless forced).
    return Facts(locked=locked, tasks=read_facts(journal_path(store.root)))


def _plan(
    board: Storyboard,
    store: Store,
    backend: Literal["preview", "live"],
    *,
    only: Iterable[str] = (),
    force: Iterable[str] = (),
    force_all: bool = False,
    output: Path | None = None,
    board_id: str | None = None,
    on_remote: frozenset[str] = frozenset(),
) -> Plan:
    """Read the facts, plan, and record in the store the clips the plan found by the lock.

    ``on_remote``: keys the project's remote holds (:func:`_look_in_remote`)."""
    check_selection(board, only, force)  # a usage error before the lock is read
    facts = known_facts(board, store, backend)
    if on_remote:
        facts = replace(facts, remote=on_remote)
    plan = make_plan(
        board, store, backend=backend, only=only, force=force, force_all=force_all,
        output=output, facts=facts, board_id=board_id,
    )  # fmt: skip
    for entry in plan.adopted:
        store.link(entry)
    return plan


def _open(options: _Options) -> tuple[Plan, Store]:
    """Load the storyboard and plan it (the store's memo is not saved yet)."""
    # Checked before and unchanged (the usual no-op): the checking stages are not even
    # imported (load_storyboard would find the same entry), and the plan may use the keys
    # its last plan of this board made.
    found = boardcache.checked(boardcache.resolve(options.path), options.variables, write=True)
    if found is not None:
        board, board_id = found.board, found.identity
    else:
        from storyboard.validate import load_storyboard

        board = load_storyboard(options.path, overrides=options.variables, remember=True)
        board_id = None
    store = Store.for_storyboard(board.path)
    plan = _plan(
        board, store, options.backend, only=options.only, force=options.force,
        force_all=options.force_all, output=options.output, board_id=board_id,
    )  # fmt: skip
    return plan, store


# -- plan and stitch alone -------------------------------------------------------------------


def plan_build(
    path: str | Path,
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    output: str | Path | None = None,
    remote: bool = True,
) -> Plan:
    """What :func:`build` would do with the same arguments, and what it would cost.

    Nothing is rendered or bought; the store learns only file digests and clips the lock
    names. ``remote``: (live) look in the project's remote, when it names one, for the
    stale takes a render would pull instead of paying (nothing is pulled).

    Raises:
        InvalidStoryboard: the storyboard has problems.
        UsageError: ``only``/``force`` name no shot, or ``output`` names no video file.
        PlanError: an input changed or vanished since it was validated.
        LockUnreadable: (live) the lock exists but cannot be read.
    """
    options = _options(
        path, live=live, variables=variables, only=only, force=force, force_all=force_all,
        output=output, remote=remote,
    )  # fmt: skip
    plan, store = _open(options)
    if options.live and options.remote:
        plan = _look_in_remote(plan, store, options)
    store.save()
    return plan


def _look_in_remote(plan: Plan, store: Store, options: _Options) -> Plan:
    """(a live plan) The plan again, knowing which stale takes the project's remote holds:
    a render pulls those instead of paying for them. A remote that cannot be looked in is
    said in :attr:`Plan.remote_problem`, and the plan counts every stale take."""
    keys = {t.key for sp in plan.to_render if sp.id not in plan.forced for t in sp.stale_takes}
    if not keys:
        return plan
    from storyboard.project import find_project
    from storyboard.remote_base import RemoteError
    from storyboard.teamwork import Team

    board = plan.board
    try:
        team = Team.open(find_project(board.path), store, board=board.path)
        if team is None or not team.pull:
            return plan
        held = team.held(keys)
    except RemoteError as exc:
        return replace(plan, remote_problem=str(exc))
    if not held:
        return plan
    return _plan(
        board, store, plan.backend, only=options.only, force=options.force,
        force_all=options.force_all, output=options.output, on_remote=held,
    )  # fmt: skip


@dataclass(frozen=True)
class BudgetCheck:
    """Whether a run fits a budget: ``budget`` is ``None`` when there is none (it fits)."""

    budget: float | None
    fits: bool


def check_budget(plan: Plan, budget: float | None = None) -> BudgetCheck:
    """The budget a render of ``plan`` would apply (``budget``, else the storyboard's
    ``render.budget`` for a live plan) and whether the plan's cost fits it.

    Raises:
        UsageError: ``budget`` is negative.
    """
    if budget is not None:
        if budget < 0:
            raise UsageError(f"--budget must be 0 or more, not {budget:g}")
        limit: float | None = float(budget)
    elif plan.backend == "live" and plan.board.render.budget is not None:
        limit = float(plan.board.render.budget)
    else:
        limit = None
    return BudgetCheck(limit, limit is None or plan.cost <= limit + 1e-9)


def restitch(
    path: str | Path,
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    on_event: Callable[[BuildEvent], None] | None = None,
) -> BuildReport:
    """Stitch the final cut from rendered clips only (nothing is rendered).

    ``on_event`` sees :class:`Planned` before the stitch.

    Raises:
        StitchError: a shot of the cut is not rendered, or ffmpeg failed.
    """
    from storyboard.stitcher import stitch

    options = _options(path, live=live, variables=variables, output=output)
    plan, store = _open(options)
    if on_event is not None:
        on_event(Planned(plan))
    try:
        result = stitch(plan, store)
    finally:
        store.save()
    return BuildReport(plan, plan, cut=result.path, seconds=result.seconds, reused=result.reused)


# -- the whole run ---------------------------------------------------------------------------


class _Build:
    """One run of the pipeline, step by step, so the sync and async entry points share it.

    Every step but the render blocks (files, ffmpeg): :func:`build_async` runs them in a
    worker thread.
    """

    def __init__(
        self,
        options: _Options,
        *,
        jobs: int | None,
        budget: float | None,
        keep_going: bool,
        on_event: Callable[[BuildEvent], None],
    ) -> None:
        self.options = options
        self.jobs = jobs
        self.budget = budget
        self.keep_going = keep_going
        self.emit = on_event
        self.concurrency: dict[str, int] = {}
        self.failed: RenderFailed | None = None
        self.render_report: RenderReport | None = None
        self.result: StitchResult | None = None
        self.journal: Journal | None = None
        self.new: dict[str, float] = {}  # generation key -> list price: takes bought now
        self.paid: tuple[int, float] | None = None
        self.on_shot_done: Callable[[str], None] | None = None
        self.team: Team | None = None  # the project's remote, for a live run that uses it
        self.pulled: tuple[tuple[str, int], ...] = ()  # taken from it before the render

    def prepare(self) -> None:
        """Load, plan, check the clips of a stale cut, and get ready to render."""
        from storyboard.stitcher import verify_cut

        self.plan, self.store = _open(self.options)
        if verify_cut(self.plan, self.store):
            # A clip of the cut changed on disk and was dropped: plan again to render it.
            self.plan, self.store = _open(self.options)
        self.use_remote()
        self.before = self.plan  # what this run was asked to do
        self.emit(Planned(self.plan))
        board = self.plan.board
        self.concurrency = dict(board.render.concurrency)
        if self.jobs is not None:
            if self.jobs < 1:
                raise UsageError("--jobs must be at least 1")
            from storyboard.providers import PROVIDERS

            self.concurrency = dict.fromkeys(PROVIDERS, self.jobs)
        self.store.clean_tmp(older_than=_TMP_MAX_AGE)

    def use_remote(self) -> None:
        """(live, something to render) The project's remote, when it names one and the run
        may use it: proved reachable (and able to hold claims) before anything is spent, and
        the stale takes it already has pulled, then the run planned again: a teammate's clip
        costs nothing.

        Raises:
            RemoteUnavailable: the remote cannot be reached or used (nothing was submitted).
            RemoteError: a pull failed (nothing was submitted).
        """
        options, plan = self.options, self.plan
        if not options.live or not options.remote or not plan.to_render:
            return
        from storyboard.project import find_project
        from storyboard.teamwork import Team

        board = plan.board
        team = Team.open(find_project(board.path), self.store, board=board.path)
        if team is None:
            return
        team.check()
        self.team = team
        self.pulled = team.pull_stale(plan)
        if self.pulled:
            from storyboard.lockfile import write_lock

            self.plan = _plan(
                board, self.store, plan.backend, only=options.only, force=options.force,
                force_all=options.force_all, output=options.output,
            )  # fmt: skip
            write_lock(self.plan, self.store, None)  # the lock names what the team paid for

    def runner(self) -> TakeRunner:
        """The runner of the takes: the live providers (checked before any submit), or the
        local preview."""
        plan, store = self.plan, self.store
        if self.options.live:
            from storyboard.live import start_live
            from storyboard.lockfile import new_takes, write_lock

            options = self.options
            forced = {s.id for s in plan.shots if options.force_all or s.id in options.force}
            budget = self.budget if self.budget is not None else plan.board.render.budget
            runner, journal = start_live(plan, store, budget=budget, forced=forced, team=self.team)
            self.journal = journal
            self.new = new_takes(plan, journal)

            def on_shot_done(_shot: str) -> None:
                write_lock(plan, store, journal)

            self.on_shot_done = on_shot_done
            return runner
        from storyboard.providers.preview import PreviewProvider
        from storyboard.render import ProviderRunner

        return ProviderRunner(PreviewProvider(store.tmp_dir()), store)

    def rendered(self) -> None:
        """After the render, failed or not: the lock records every stored take (also those
        of failed shots), and what the run bought is counted."""
        if self.on_shot_done is not None:
            self.on_shot_done("")
        if self.journal is not None:
            from storyboard.lockfile import spent

            if self.team is not None:  # a task taken over was bought by the run that sent it
                self.new = {k: v for k, v in self.new.items() if k not in self.team.resumed}
            self.paid = spent(self.new, self.journal)

    def replan(self) -> None:
        """Plan again: the clips just rendered are fresh now."""
        plan = self.plan
        try:
            self.plan = _plan(
                plan.board, self.store, plan.backend,
                output=plan.cut if self.options.output else None,
            )  # fmt: skip
        except StoryboardError:
            if self.failed is None:  # an input gone mid-run: its take's failure says more
                raise

    def stitch(self) -> None:
        """Stitch the cut when every shot has a clip."""
        from storyboard.stitcher import stitch

        if self.plan.missing:
            return
        if self.plan.stitch == "stale":
            self.emit(Stitching("stitching"))
        try:
            result = stitch(self.plan, self.store)
        except StitchError:
            self.emit(Stitching("failed"))
            raise
        self.result = result
        self.emit(Stitching("reused" if result.reused else "written", f"{result.seconds:.1f}s"))

    def close(self) -> None:
        self.store.save()
        if self.journal is not None:
            self.journal.close()

    def report(self) -> BuildReport:
        """What the run did; raises :class:`BuildFailed` (with it) when some takes failed."""
        count, usd = self.paid or (0, 0.0)
        if self.render_report is not None:
            rendered = tuple(self.render_report.rendered)
        else:  # a failed run reports no list: what it stored is what the new plan finds fresh
            now = set(up_to_date(self.plan))
            rendered = tuple(
                (sp.id, t.take)
                for sp in self.before.to_render
                for t in sp.stale_takes
                if (sp.id, t.take) in now
            )
        pulled = self.pulled
        if self.team is not None and self.team.pulled:  # waited for, then pulled
            late = {
                (sp.id, t.take)
                for sp in self.before.shots
                for t in sp.takes
                if t.key in self.team.pulled
            }
            rendered = tuple(r for r in rendered if r not in late)
            pulled = tuple(sorted({*pulled, *late}))
        result = self.result
        report = BuildReport(
            plan=self.before,
            final=self.plan,
            rendered=rendered,
            failures=self.failed.failures if self.failed is not None else (),
            spent=Spent(count, usd),
            cut=result.path if result is not None else None,
            seconds=result.seconds if result is not None else None,
            reused=result.reused if result is not None else False,
            missing=self.plan.missing,
            pulled=pulled,
        )
        if self.failed is not None:
            raise BuildFailed(report, self.failed.failures) from self.failed
        return report


def build(
    path: str | Path,
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    jobs: int | None = None,
    budget: float | None = None,
    keep_going: bool = False,
    output: str | Path | None = None,
    on_event: Callable[[BuildEvent], None] | None = None,
    remote: bool = True,
) -> BuildReport:
    """Render what is stale in a storyboard and stitch its final cut.

    Args:
        path: the storyboard YAML file.
        live: render through the hosted providers (costs money); default: the free, local
            preview (an animatic of the same cut).
        variables: values for ``vars`` (as ``--set``): they replace variables of the same name.
        only: render only these shots (and the shots they extend or continue).
        force: render these shots again even when up to date (``True``: every shot).
        force_all: render every shot again.
        jobs: tasks in flight per provider (default: ``render.concurrency``).
        budget: refuse a live run whose estimate is over this many USD (default:
            ``render.budget``).
        keep_going: render everything possible despite failures.
        output: write the cut here instead of ``output.path``.
        on_event: receives :class:`Planned`, :class:`Started`, every take's
            :class:`~storyboard.events.Event` and :class:`Stitching`.
        remote: (live) when the project's ``storyboard.toml`` names a remote: look in it
            before paying for a take, claim each take on it before submitting (a take a
            teammate is rendering is waited for, not bought again), and push each clip once
            it is stored. ``False`` (``--no-remote``): work alone, with the local store only.

    Returns:
        What the run did: the takes it rendered, what it bought, the cut and its length.

    Raises:
        InvalidStoryboard: the storyboard has problems (nothing was done).
        UsageError: an argument names no shot or is out of range.
        BudgetExceeded: the live estimate is over the budget (nothing was submitted).
        CannotStart: (live) something would stop the run; nothing was submitted.
        BuildFailed: some takes failed; the report says what the run did.
        StitchError: the cut could not be written.
    """
    run = _Build(
        _options(
            path, live=live, variables=variables, only=only, force=force, force_all=force_all,
            output=output, remote=remote,
        ),
        jobs=jobs, budget=budget, keep_going=keep_going, on_event=on_event or _ignore,
    )  # fmt: skip
    run.prepare()
    try:
        run.emit(Started(run.plan))
        if run.plan.to_render:  # a no-op render starts no event loop, imports no media code
            from storyboard.render import render_plan

            runner = run.runner()
            try:
                run.render_report = render_plan(
                    run.plan, run.store, runner, concurrency=run.concurrency,
                    keep_going=keep_going, on_event=run.emit, on_shot_done=run.on_shot_done,
                )  # fmt: skip
            except RenderFailed as exc:
                run.failed = exc
            finally:
                run.rendered()
            run.replan()
        run.stitch()
    finally:
        run.close()
    return run.report()


async def build_async(
    path: str | Path,
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    jobs: int | None = None,
    budget: float | None = None,
    keep_going: bool = False,
    output: str | Path | None = None,
    on_event: Callable[[BuildEvent], None] | None = None,
    remote: bool = True,
) -> BuildReport:
    """:func:`build` in the caller's event loop (asyncio or trio, through anyio).

    The blocking stages (loading, planning, the lock, the stitch) run in a worker thread;
    ``on_event`` is always called in the event loop's thread.
    """
    import anyio

    from storyboard.render import render_plan_async

    emit = _in_loop(on_event or _ignore)
    run = _Build(
        _options(
            path, live=live, variables=variables, only=only, force=force, force_all=force_all,
            output=output, remote=remote,
        ),
        jobs=jobs, budget=budget, keep_going=keep_going, on_event=emit,
    )  # fmt: skip
    await anyio.to_thread.run_sync(run.prepare)
    try:
        run.emit(Started(run.plan))
        if run.plan.to_render:
            runner = await anyio.to_thread.run_sync(run.runner)
            try:
                run.render_report = await render_plan_async(
                    run.plan, run.store, runner, concurrency=run.concurrency,
                    keep_going=keep_going, on_event=run.emit, on_shot_done=run.on_shot_done,
                )  # fmt: skip
            except RenderFailed as exc:
                run.failed = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(run.rendered)
            await anyio.to_thread.run_sync(run.replan)
        await anyio.to_thread.run_sync(run.stitch)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(run.close)
    return run.report()


def _ignore(_event: BuildEvent) -> None:
    return None


def _in_loop(on_event: Callable[[BuildEvent], None]) -> Callable[[BuildEvent], None]:
    """``on_event`` called in this (the event loop's) thread, from worker threads too."""
    loop_thread = threading.current_thread()

    def emit(event: BuildEvent) -> None:
        if threading.current_thread() is loop_thread:
            on_event(event)
        else:
            from anyio import from_thread

            from_thread.run_sync(on_event, event)

    return emit
