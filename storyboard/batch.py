"""Many storyboards in one run: ``storyboard plan|render FILE...`` (files or folders).

::

    report = storyboard.batch.build_many(["films/"], live=True, keep_going=True)
    for one in report.reports:
        print(one.plan.board.path, one.cut, one.spent.usd)

:func:`build_many` plans every storyboard first (nothing is spent), checks the budget of the
whole run, then renders all of them in one task group with one
:class:`~storyboard.scheduler.Scheduler`:

* **one cap per provider** across every storyboard: the smallest ``render.concurrency`` any
  storyboard of the run sets for that provider (or ``jobs`` for every provider);
* **a shared generation key is rendered once**: keys are content addresses, so a shot two
  storyboards share has one key; the first take to reach it renders it, the other waits and
  takes the stored clip (the run pays once and reports it once in ``spent``);
* **one budget for the run**, checked before anything is submitted: with ``budget`` (the
  ``--budget`` option) the run's estimate, a shared key counted once, must fit it, or the
  run is refused (:class:`~storyboard.errors.BudgetExceeded`, exit 3, nothing submitted).
  Without it each storyboard's own ``render.budget`` caps that storyboard's own estimate,
  the figure ``plan --live`` shows for it alone: a storyboard refused alone is refused in a
  batch too, and a key it shares is still bought once;
* **failures**: without ``keep_going`` a storyboard that cannot start (invalid, over its
  budget, a missing key...) means nothing is rendered at all, and the first failed take
  stops new work in every storyboard (takes already paid for are still resumed, journalled
  and downloaded); with ``keep_going`` such a storyboard is left out and the others go on.
  Stitching spends nothing: every storyboard whose clips are all there gets its cut;
* **each storyboard keeps its own** cut, lock and report (:class:`BatchReport`).

:func:`plan_many` is ``storyboard plan FILE...``: every plan and the run's estimate.
:func:`find_storyboards` turns the command line's files and folders into storyboard files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyboard.errors import (
    BudgetExceeded,
    RenderFailed,
    StitchError,
    StoryboardError,
    UsageError,
)
from storyboard.pipeline import (
    BuildEvent,
    BuildFailed,
    BuildReport,
    Spent,
    Started,
    _Build,
    _options,
    check_budget,
    known_facts,
    plan_build,
)

if TYPE_CHECKING:
    from storyboard.cache import Store
    from storyboard.plan import Plan
    from storyboard.render import TakeRunner
    from storyboard.scheduler import Scheduler

__all__ = [
    "BatchEvent",
    "BatchPlan",
    "BatchReport",
    "BatchStarted",
    "BoardEvent",
    "BoardFailure",
    "board_labels",
    "build_many",
    "find_storyboards",
    "is_storyboard",
    "plan_many",
    "run_concurrency",
]

# A storyboard says so in its first key; this much of a file is read to decide.
_SNIFF_BYTES = 8192
_FIRST_KEY = re.compile(rb"^([\"']?)storyboard\1[ \t]*:", re.MULTILINE)
_SUFFIXES = (".yaml", ".yml")
# Folders a walk never enters (besides hidden ones): the store and the cuts.
_NOT_SOURCES = frozenset({".storyboard", "renders", "node_modules", "__pycache__"})


# -- which files ----------------------------------------------------------------------------


def is_storyboard(path: Path) -> bool:
    """Whether ``path`` is a ``.yaml``/``.yml`` file whose top-level mapping has a
    ``storyboard:`` key (only the first few KiB are read)."""
    if path.suffix.lower() not in _SUFFIXES or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return _FIRST_KEY.search(head.removeprefix(b"\xef\xbb\xbf")) is not None


def find_storyboards(paths: Sequence[str | Path]) -> tuple[Path, ...]:
    """The storyboard files that command-line arguments name, in order, each once.

    A file is taken as it is (a file that is no storyboard fails when it is loaded, as
    with one FILE); a folder means every storyboard below it (a folder's own files first,
    then its folders, each in name order), skipping hidden folders, ``.storyboard``,
    ``renders`` and files that are not storyboards.

    Raises:
        UsageError: no argument, a file named twice, a path that does not exist, or a folder
            with no storyboard in it.
    """
    if not paths:
        raise UsageError("no storyboard given", hint="name a storyboard FILE or a folder")
    found: dict[Path, Path] = {}  # resolved -> as given
    named: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = _walk(path)
            if not inside:
                raise UsageError(
                    f"no storyboard in {path}",
                    hint="a storyboard is a .yaml file whose first key is `storyboard: 1`",
                )
            for file in inside:
                found.setdefault(file.resolve(), file)
            continue
        if not path.exists():
            raise UsageError(f"{path} does not exist", hint="name a storyboard FILE or a folder")
        real = path.resolve()
        if real in named:
            raise UsageError(
                f"{path} is named twice",
                hint="give one FILE per storyboard (a folder names each storyboard in it once)",
            )
        named.add(real)
        found.setdefault(real, path)
    return tuple(found.values())


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _NOT_SOURCES)
        for name in sorted(files):
            path = Path(top) / name
            if not name.startswith(".") and is_storyboard(path):
                out.append(path)
    return out


def board_labels(paths: Sequence[Path]) -> tuple[str, ...]:
    """Short names for progress (``dawn`` in ``dawn/hover``): the file's stem, or its
    folder's name for a file called ``storyboard.yaml``; where two would be the same, the
    path from the folder they share (without the suffix)."""
    first = [
        (p.absolute().parent.name or p.stem) if p.stem == "storyboard" else p.stem for p in paths
    ]
    if len(set(first)) == len(first):
        return tuple(first)
    absolute = [p.absolute() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    short = [str(p.with_suffix("").relative_to(common)) for p in absolute]
    if len(set(short)) == len(short):
        return tuple(short)
    return tuple(str(p.relative_to(common)) for p in absolute)  # a.yaml and a.yml


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardFailure:
    """Why one storyboard of the run failed (or could not start).

    Attributes:
        path: the storyboard file.
        label: its name in progress (``dawn``).
        message: the error, one line (an invalid storyboard: its first problem).
        hint: the one command or change that helps, if any.
        exit_code: what the storyboard alone would have exited with (1, 2 or 3).
        error: the error itself (an :class:`~storyboard.errors.InvalidStoryboard` carries
            every problem; a :class:`~storyboard.pipeline.BuildFailed` the storyboard's
            report).
    """

    path: Path
    label: str
    message: str
    hint: str | None
    exit_code: int
    error: StoryboardError = field(compare=False, repr=False)


def _failure(path: Path, label: str, error: StoryboardError) -> BoardFailure:
    return BoardFailure(path, label, str(error), error.hint(), error.exit_code, error)


@dataclass(frozen=True)
class BatchReport:
    """What a run of several storyboards did.

    Attributes:
        reports: one :class:`~storyboard.pipeline.BuildReport` per storyboard that ran, in
            the order given (failed takes are in its ``failures``).
        failed: every storyboard that failed: could not start, had failed takes, or its cut
            could not be stitched.
        spent: what the run bought, a key two storyboards share counted once (list price).
        skipped: storyboards not run because another one failed first (no ``keep_going``).
        paths: the storyboard file of each report, as given (or as found in a folder).
        labels: the name in progress of every storyboard of the run, by path.
    """

    reports: tuple[BuildReport, ...] = ()
    failed: tuple[BoardFailure, ...] = ()
    spent: Spent = field(default_factory=Spent)
    skipped: tuple[Path, ...] = ()
    paths: tuple[Path, ...] = ()
    labels: Mapping[Path, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The worst of the storyboards': 0 when every one succeeded."""
        return max((f.exit_code for f in self.failed), default=0)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


@dataclass(frozen=True)
class BoardEvent:
    """An event of one storyboard of the run (``event`` as :func:`storyboard.build` sends)."""

    label: str
    path: Path
    event: BuildEvent


@dataclass(frozen=True)
class BatchStarted:
    """Every storyboard is planned and checked; the renders begin.

    ``cost`` is the run's estimate (a key two storyboards share counted once).
    """

    plans: tuple[Plan, ...]
    cost: float


BatchEvent = BoardEvent | BatchStarted


# -- plans, limits and money of the run ------------------------------------------------------


def run_concurrency(boards: Iterable[Mapping[str, int]], jobs: int | None) -> dict[str, int]:
    """Tasks in flight per provider for the run: ``jobs`` for every provider, else the
    smallest cap any storyboard sets for that provider (its ``render.concurrency``); a
    provider no storyboard names keeps the provider table's default.

    Raises:
        UsageError: ``jobs`` is less than 1.
    """
    if jobs is not None:
        if jobs < 1:
            raise UsageError("--jobs must be at least 1")
        from storyboard.providers import PROVIDERS

        return dict.fromkeys(PROVIDERS, jobs)
    caps: dict[str, int] = {}
    for concurrency in boards:
        for provider, cap in concurrency.items():
            caps[provider] = min(cap, caps.get(provider, cap))
    return caps


def _prices(plan: Plan, store: Store) -> dict[str, float]:
    """Generation key -> list price of every take the plan's run would buy (its ``cost``)."""
    if plan.backend != "live":
        return {}
    from storyboard.plan import take_price

    paid = known_facts(plan.board, store, plan.backend).tasks
    prices: dict[str, float] = {}
    for sp in plan.to_render:
        spec = sp.shot.spec
        if spec is None:
            continue
        price = take_price(sp.shot, spec)
        forced = sp.id in plan.forced
        for take in sp.stale_takes:
            # a take the journal resumes, or the project's remote holds, is not bought
            if forced or (take.key not in paid and take.take not in sp.on_remote):
                prices[take.key] = price
    return prices


def _run_estimate(
    entries: Sequence[tuple[str, Plan, Store]],
) -> tuple[float, list[tuple[str, float]]]:
    """The run's estimate, a shared key counted once (for the storyboard that comes first),
    and its per-shot figures (``dawn/hover``)."""
    seen: set[str] = set()
    per_shot: list[tuple[str, float]] = []
    for label, plan, store in entries:
        prices = _prices(plan, store)
        for sp in plan.to_render:
            cost = 0.0
            for take in sp.stale_takes:
                if take.key in prices and take.key not in seen:
                    seen.add(take.key)
                    cost += prices[take.key]
            if cost > 0:
                per_shot.append((f"{label}/{sp.id}", round(cost, 6)))
    return round(sum(c for _, c in per_shot), 6), per_shot


@dataclass(frozen=True)
class BatchPlan:
    """``storyboard plan FILE...``: every storyboard's plan and what the run costs.

    Attributes:
        plans: the plan of every storyboard that could be planned, in the order given.
        labels: their names in progress, in the same order.
        failed: the storyboards that could not be planned.
        cost: what a render of all of them would spend, a shared key counted once.
        budget: the run's budget (``budget`` given), else ``None``.
        fits: whether the run fits: its cost within ``budget``, or, without one, each live
            storyboard's own estimate within its ``render.budget``.
        over: labels of the storyboards over their own ``render.budget`` (no ``budget``).
    """

    plans: tuple[Plan, ...]
    labels: tuple[str, ...]
    failed: tuple[BoardFailure, ...]
    cost: float
    budget: float | None
    fits: bool
    over: tuple[str, ...] = ()


def plan_many(
    paths: Sequence[str | Path],
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    budget: float | None = None,
    remote: bool = True,
) -> BatchPlan:
    """Plan every storyboard of ``paths`` (files or folders) as one run; nothing is spent.

    A storyboard that cannot be planned is reported in ``failed``; the others are planned.

    Raises:
        UsageError: ``paths`` names no storyboard, or ``budget`` is negative.
    """
    if budget is not None and budget < 0:
        raise UsageError(f"--budget must be 0 or more, not {budget:g}")
    from storyboard.cache import Store

    files = find_storyboards(paths)
    names = board_labels(files)
    plans: list[Plan] = []
    labels: list[str] = []
    failed: list[BoardFailure] = []
    entries: list[tuple[str, Plan, Store]] = []
    for path, label in zip(files, names, strict=True):
        try:
            plan = plan_build(
                path, live=live, variables=variables, only=only, force=force,
                force_all=force_all, remote=remote,
            )  # fmt: skip
            store = Store.for_storyboard(plan.board.path)
            entries.append((label, plan, store))
        except StoryboardError as exc:
            failed.append(_failure(path, label, exc))
            continue
        plans.append(plan)
        labels.append(label)
    cost, _ = _run_estimate(entries)
    over = () if budget is not None else tuple(
        label for label, plan, _store in entries if not check_budget(plan).fits
    )  # fmt: skip
    fits = cost <= budget + 1e-9 if budget is not None else not over
    return BatchPlan(tuple(plans), tuple(labels), tuple(failed), cost, budget, fits, over)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class _Board:
    """One storyboard of the run, and how far it got."""

    path: Path
    label: str
    build: _Build
    runner: TakeRunner | None = None


def build_many(
    paths: Sequence[str | Path],
    *,
    live: bool = False,
    variables: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] | bool | None = None,
    force_all: bool = False,
    jobs: int | None = None,
    budget: float | None = None,
    keep_going: bool = False,
    remote: bool = True,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchReport:
    """Render what is stale in many storyboards as one run, and stitch each one's cut.

    Args:
        paths: storyboard files, or folders (every storyboard below them).
        live: render through the hosted providers (costs money); default: the preview.
        variables: values for ``vars`` (as ``--set``), for every storyboard.
        only: render only these shots of each storyboard (each must have them).
        force: render these shots of each storyboard again (``True``: every shot).
        force_all: render every shot again.
        jobs: tasks in flight per provider for the whole run (default: the smallest
            ``render.concurrency`` of the storyboards, per provider).
        budget: refuse the run when its estimate (a shared key once) is over this many USD
            (default: each storyboard's ``render.budget`` caps its own estimate).
        keep_going: a storyboard that fails does not stop the others.
        remote: use the project's remote store (pull before paying, push what is stored)
            when one is configured.
        on_event: receives :class:`BoardEvent` (each storyboard's events) and
            :class:`BatchStarted`.

    Returns:
        Every storyboard's report, the failures, and what the run bought.

    Raises:
        UsageError: ``paths`` names no storyboard, or an argument is out of range.
        BudgetExceeded: the run's estimate is over ``budget`` (nothing was submitted).
        KeyboardInterrupt: the user interrupted; finished clips and journalled tasks are kept.
    """
    if budget is not None and budget < 0:
        raise UsageError(f"--budget must be 0 or more, not {budget:g}")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    files = find_storyboards(paths)
    names = board_labels(files)
    emit = on_event or _ignore
    boards: list[_Board] = []
    failed: list[BoardFailure] = []

    def drop(board: _Board, error: StoryboardError) -> None:
        failed.append(_failure(board.path, board.label, error))
        boards.remove(board)
        board.build.close()

    try:
        # 1. Plan every storyboard: nothing is spent, every one is checked.
        for path, label in zip(files, names, strict=True):
            relay = _relay(label, path, emit)
            options = _options(
                path, live=live, variables=variables, only=only, force=force,
                force_all=force_all, remote=remote,
            )  # fmt: skip
            # The run's limits are the scheduler's: no storyboard sets its own ``jobs``.
            run = _Build(options, jobs=None, budget=budget, keep_going=keep_going, on_event=relay)
            try:
                run.prepare()
            except StoryboardError as exc:
                failed.append(_failure(path, label, exc))
                continue
            boards.append(_Board(path, label, run))
        if failed and not keep_going:
            return _stopped(boards, failed, names, files)
        concurrency = run_concurrency((b.build.plan.board.render.concurrency for b in boards), jobs)
        # 2. The budget of the run, or else each storyboard's own; nothing is sent before.
        if budget is not None:
            cost, per_shot = _run_estimate([(b.label, b.build.plan, b.build.store) for b in boards])
            if cost > budget + 1e-9:
                raise BudgetExceeded(cost, budget, per_shot)
        else:
            for board in list(boards):
                plan = board.build.plan
                verdict = check_budget(plan)
                if not verdict.fits and verdict.budget is not None:
                    own = [(sp.id, sp.cost) for sp in plan.to_render if sp.cost > 0]
                    drop(board, BudgetExceeded(plan.cost, verdict.budget, own))
            if failed and not keep_going:
                return _stopped(boards, failed, names, files)
        # 3. The runners (live: the keys and every obstacle, checked before any submit).
        for board in [b for b in boards if b.build.plan.to_render]:
            try:
                board.runner = board.build.runner()
            except StoryboardError as exc:
                drop(board, exc)
                if not keep_going:
                    break
        if failed and not keep_going:
            _close_runners(boards)
            return _stopped(boards, failed, names, files)
        cost, _ = _run_estimate([(b.label, b.build.plan, b.build.store) for b in boards])
        emit(BatchStarted(tuple(b.build.plan for b in boards), cost))
        # 4. One task group, one scheduler, for every storyboard.
        _render_all(boards, concurrency, keep_going)
        # 5. Each storyboard's plan again, its cut and its report.
        reports = [_finish(board, failed) for board in boards]
    finally:
        for board in boards:
            board.build.close()
    by_path = dict(zip(files, names, strict=True))
    failed.sort(key=lambda f: files.index(f.path))
    spent = Spent(sum(r.spent.takes for r in reports), round(sum(r.spent.usd for r in reports), 6))
    ran = tuple(b.path for b in boards)
    return BatchReport(tuple(reports), tuple(failed), spent, (), ran, by_path)


def _relay(
    label: str, path: Path, emit: Callable[[BatchEvent], None]
) -> Callable[[BuildEvent], None]:
    def relay(event: BuildEvent) -> None:
        emit(BoardEvent(label, path, event))

    return relay


def _stopped(
    boards: list[_Board],
    failed: list[BoardFailure],
    names: Sequence[str],
    files: Sequence[Path],
) -> BatchReport:
    """A run that stops before anything was sent: the storyboards that were fine are skipped."""
    failed.sort(key=lambda f: files.index(f.path))
    skipped = tuple(b.path for b in boards)
    by_path = dict(zip(files, names, strict=True))
    return BatchReport((), tuple(failed), Spent(), skipped, (), by_path)


def _close_runners(boards: list[_Board]) -> None:
    """Release the clients of runners that will not run (nothing was sent through them)."""
    import anyio

    async def close() -> None:
        for board in boards:
            if board.runner is not None:
                await board.runner.aclose()

    anyio.run(close)


def _render_all(boards: list[_Board], concurrency: Mapping[str, int], keep_going: bool) -> None:
    """Render every storyboard in one event loop; each one's failures stay its own."""
    import asyncio

    import anyio

    from storyboard.render import render_plan_async
    from storyboard.scheduler import Scheduler

    scheduler = Scheduler(concurrency, keep_going=keep_going)

    async def one(board: _Board) -> None:
        run, runner = board.build, board.runner
        run.emit(Started(run.plan))
        if runner is None:
            return
        try:
            run.render_report = await render_plan_async(
                run.plan, run.store, runner, scheduler=scheduler, label=board.label,
                on_event=run.emit, on_shot_done=run.on_shot_done,
            )  # fmt: skip
        except RenderFailed as exc:
            run.failed = exc

    async def all_of_them() -> None:
        with scheduler.watching():
            async with anyio.create_task_group() as tg:
                for board in boards:
                    tg.start_soon(one, board)

    try:
        anyio.run(all_of_them)
    except BaseExceptionGroup as group:
        raise _interrupt(group) from None
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        _settle(boards, scheduler)


def _settle(boards: list[_Board], scheduler: Scheduler) -> None:
    """After the renders, failed or interrupted: each lock records its stored takes, and each
    storyboard counts what it bought (a shared key only where it was rendered)."""
    rendered_by = scheduler.rendered_by()
    for board in boards:
        run = board.build
        if board.runner is None:
            continue
        run.new = {
            k: v for k, v in run.new.items() if rendered_by.get(k, board.label) == board.label
        }
        run.rendered()


def _interrupt(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What leaves the task group: an interruption, or the first unexpected error."""
    import asyncio

    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
    if any(isinstance(exc, asyncio.CancelledError) for exc in leaves):
        return KeyboardInterrupt()
    return leaves[0]


def _finish(board: _Board, failed: list[BoardFailure]) -> BuildReport:
    """Plan a storyboard again, stitch its cut, and report it (a failure is noted in
    ``failed``, never raised: the other storyboards still get theirs)."""
    run = board.build
    try:
        if board.runner is not None:
            run.replan()
        run.stitch()
    except StitchError as exc:
        failed.append(_failure(board.path, board.label, exc))
    except StoryboardError as exc:
        if run.failed is None:
            failed.append(_failure(board.path, board.label, exc))
    try:
        return run.report()
    except BuildFailed as exc:
        failed.append(_failure(board.path, board.label, exc))
        return exc.report


def _ignore(_event: BatchEvent) -> None:
    return None
