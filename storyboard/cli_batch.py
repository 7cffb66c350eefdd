"""What ``plan``, ``render`` and ``stitch`` print, for one storyboard and for many.

Part of the command line (:mod:`storyboard.cli` parses the arguments, maps errors to exit
codes and owns the progress display). One FILE keeps the output it always had; several
FILEs or a folder are one run (:mod:`storyboard.batch`): a table (``plan``) or a summary
(``render``, ``stitch``) per storyboard, named by its label (``dawn``), then the run's
total, and the exit code is the worst of the storyboards'. ``--json`` prints one document:
``{"storyboards": [<one storyboard's document>...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from storyboard.errors import (
    BudgetExceeded,
    CannotStart,
    InvalidStoryboard,
    StitchError,
    StoryboardError,
    UsageError,
)

if TYPE_CHECKING:
    from storyboard.batch import BatchEvent, BoardFailure
    from storyboard.pipeline import BuildReport
    from storyboard.plan import Plan

__all__ = [
    "budget_line",
    "cmd_plan_many",
    "cmd_render_many",
    "cmd_stitch_many",
    "counts",
    "is_batch",
    "missing_after",
    "money",
    "not_stitched",
    "print_error",
    "print_plan",
    "redact",
    "run_report",
]

EXIT_OK = 0


def is_batch(args: argparse.Namespace) -> bool:
    """Whether the command runs as a batch: several FILEs, or a folder."""
    files: list[str] = args.files
    return len(files) > 1 or any(Path(f).is_dir() for f in files)


def money(value: float) -> str:
    return f"${value:.2f}"


def budget_line(cost: float, budget: float) -> str:
    if cost <= budget + 1e-9:
        return f"fits the budget of {money(budget)} (this run costs {money(cost)})"
    return (
        f"over the budget of {money(budget)} by {money(cost - budget)}: "
        f"render would refuse it, nothing would be submitted"
    )


def redact(text: str) -> str:
    """``text`` with every form of the API keys in the environment replaced by ``***``.

    The last line of defence: providers and the live runner redact what they raise, and
    nothing an error prints may show a key, whatever produced the text.
    """
    from storyboard.errors import redact_secrets
    from storyboard.providers import key_vars

    keys = [os.environ.get(var, "") for var in key_vars()]
    return redact_secrets(text, [k for k in keys if k.strip()])


def print_error(exc: StoryboardError, err: TextIO, *, prefix: str = "") -> None:
    """An error as ``main`` shows it: the problems of an invalid storyboard, else one
    ``error:`` line (``prefix`` names the storyboard of a batch), its details and hint."""
    if isinstance(exc, InvalidStoryboard):
        for problem in exc.problems:
            print(str(problem), file=err)
        return
    print(redact(f"error: {prefix}{exc}"), file=err)
    if isinstance(exc, BudgetExceeded):
        for shot_id, cost in exc.per_shot:
            print(f"  {shot_id}: {money(cost)}", file=err)
    if isinstance(exc, CannotStart):
        for obstacle in exc.obstacles:
            print(redact(f"  {obstacle}"), file=err)
    hint = exc.hint()
    if hint:
        print(redact(f"hint: {hint}"), file=err)


def missing_after(plan: Plan) -> list[str]:
    """Shots of the cut that have no clip and that this run does not render either."""
    return [m for m in plan.missing if not plan.will_render(m)]


def _only_note(plan: Plan) -> str:
    return f" (outside --only {','.join(sorted(plan.only))})" if plan.only else ""


def _no_output(build: dict[str, Any]) -> None:
    """``-o`` names one cut: refused for several storyboards (taken out of ``build``)."""
    if build.pop("output", None) is not None:
        raise UsageError(
            "-o/--output names one cut, and this run makes several",
            hint="give one FILE with -o, or leave -o out: each cut goes to its output.path",
        )


# -- plan ----------------------------------------------------------------------------------


def print_plan(
    plan: Plan, args: argparse.Namespace, out: TextIO, budget: float | None, fits: bool
) -> None:
    """The table of one storyboard's plan, its cost, its budget verdict and its cut."""
    rows = [("shot", "model", "status", "run", "takes", "cost", "live $", "reason")]
    for sp in plan.shots:
        takes = f"{len(sp.stale_takes)}/{len(sp.takes)}" if sp.takes else "-"
        reason = sp.reason
        if sp.status == "stale" and not plan.in_scope(sp.id):
            reason += " (outside --only)"
        run = "render" if plan.will_render(sp.id) else "-"
        rows.append(
            (sp.id, sp.shot.model or "card", sp.status, run, takes, money(sp.cost),
             money(sp.live_cost) if sp.takes else "-", reason)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    if args.verbose:
        print("", file=out)
        for sp in plan.shots:
            for t in sp.takes:
                where = str(t.clip.path) if t.clip is not None else "not rendered"
                seed = "random" if t.seed is None else str(t.seed)
                mark = " (selected)" if len(sp.takes) > 1 and t is sp.selected else ""
                print(
                    f"{sp.id} take {t.take}{mark}: seed {seed}, key {t.key[:16]}, {where}",
                    file=out,
                )
    live_total = sum(sp.live_cost for sp in plan.shots)
    print(
        f"\n{len(plan.to_render)} shot(s) to render ({plan.backend}); this run costs "
        f"{money(plan.cost)} (all takes live: {money(live_total)})",
        file=out,
    )
    if budget is not None:
        print(budget_line(plan.cost, budget), file=out)
    missing = missing_after(plan)
    if missing:
        print(
            f"cut not stitched by this run: {', '.join(missing)} not rendered yet"
            f"{_only_note(plan)}: {plan.cut}",
            file=out,
        )
    else:
        after = "stale" if plan.to_render else plan.stitch
        print(f"cut {after}: {plan.cut}", file=out)


def _failures_json(failed: Sequence[BoardFailure]) -> list[dict[str, Any]]:
    return [
        {
            "storyboard": str(f.path),
            "message": redact(f.message),
            "hint": redact(f.hint) if f.hint else None,
            "exit_code": f.exit_code,
        }
        for f in failed
    ]


def _print_failures(failed: Sequence[BoardFailure], err: TextIO) -> None:
    from storyboard.pipeline import BuildFailed

    for f in failed:
        if isinstance(f.error, BuildFailed):
            for failure in f.error.failures:
                take = f" take {failure.take}" if failure.take > 1 else ""
                print(redact(f"error: {f.label}/{failure.shot}{take}: {failure.message}"), file=err)
                hint = failure.error.hint() if failure.error is not None else None
                if hint:
                    print(redact(f"    hint: {hint}"), file=err)
        print_error(f.error, err, prefix=f"{f.label}: ")


def cmd_plan_many(args: argparse.Namespace, out: TextIO, err: TextIO, build: dict[str, Any]) -> int:
    """``storyboard plan FILE...``: a table per storyboard, then the run's total."""
    from storyboard.batch import plan_many
    from storyboard.pipeline import check_budget

    _no_output(build)
    batch = plan_many(args.files, budget=args.budget, **build)
    code = max((f.exit_code for f in batch.failed), default=EXIT_OK)
    if not batch.fits:
        code = max(code, BudgetExceeded.exit_code)
    if args.json:
        from storyboard.cli_handoff import with_checks

        boards = []
        for plan in batch.plans:
            data = with_checks(plan, plan.to_json(), err)
            own = check_budget(plan) if batch.budget is None else None
            data["budget"] = own.budget if own is not None else None
            data["fits"] = own.fits if own is not None else True
            boards.append(data)
        document = {
            "storyboards": boards,
            "cost": batch.cost,
            "budget": batch.budget,
            "fits": batch.fits,
            "failed": _failures_json(batch.failed),
        }
        print(json.dumps(document, indent=2), file=out)
        _print_failures(batch.failed, err)
        return code
    _print_failures(batch.failed, err)
    if args.quiet:
        if batch.budget is not None and not batch.fits:
            print(f"error: {budget_line(batch.cost, batch.budget)}", file=err)
        return code
    for label, plan in zip(batch.labels, batch.plans, strict=True):
        print(f"== {label}: {plan.board.path}", file=out)
        own = check_budget(plan) if batch.budget is None else None
        print_plan(plan, args, out, own.budget if own else None, own.fits if own else True)
        print("", file=out)
    shots = sum(len(p.to_render) for p in batch.plans)
    backend = "live" if args.live else "preview"
    print(
        f"{len(batch.plans)} storyboard(s), {shots} shot(s) to render ({backend}); this run "
        f"costs {money(batch.cost)} (a generation key several storyboards share is paid once)",
        file=out,
    )
    if batch.budget is not None:
        print(budget_line(batch.cost, batch.budget), file=out)
    elif batch.over:
        print(
            f"over their own render.budget: {', '.join(batch.over)}: render would refuse "
            "the run (with --keep-going, only them), nothing would be submitted",
            file=out,
        )
    return code


# -- render ----------------------------------------------------------------------------------


def not_stitched(
    plan: Plan, args: argparse.Namespace, missing: Sequence[str], file: str
) -> tuple[str, str]:
    """Why the cut was not stitched, naming the shots still missing, and what to run next."""
    verb = "is" if len(missing) == 1 else "are"
    message = f"cut not stitched: {', '.join(missing)} {verb} not rendered yet"
    if plan.only and any(not plan.in_scope(m) for m in missing):
        message += _only_note(plan)
    if plan.cut.exists():
        message += f"; {plan.cut} is left as it was (stale)"
    command = "storyboard render " + ("--live " if args.live else "") + shlex.quote(file)
    them = "it" if len(missing) == 1 else "them"
    return message, f"{command} renders {them} and stitches the cut"


def counts(report: BuildReport) -> str:
    """``2 up to date`` after ``rendered N clip(s)``, and how many takes came from the
    project's remote (a teammate paid for them; this run did not)."""
    text = f"{len(report.up_to_date)} up to date"
    if report.pulled:
        text += f"; {len(report.pulled)} pulled from the project's remote (nothing bought)"
    return text


def run_report(report: BuildReport, args: argparse.Namespace, file: str) -> dict[str, Any]:
    """The one JSON document ``render --json`` and ``stitch --json`` print for a storyboard."""
    plan = report.plan
    failures = []
    for f in report.failures:
        hint = f.error.hint() if f.error is not None else None
        failures.append(
            {
                "shot": f.shot,
                "take": f.take,
                "message": redact(f.message),
                "hint": redact(hint) if hint else None,
            }
        )
    not_cut = None
    if report.cut is None:
        if report.missing:
            message, hint = not_stitched(plan, args, report.missing, file)
            reason = message.removeprefix("cut not stitched: ")
        else:
            reason, hint = "the render failed", None
        not_cut = {"reason": reason, "missing": list(report.missing), "hint": hint}
    return {
        "storyboard": str(plan.board.path),
        "backend": plan.backend,
        # polls: the status requests the take's task needed (null when the run failed and
        # its rendered takes were read back from the store).
        "rendered": [
            {"shot": r[0], "take": r[1], "polls": getattr(r, "polls", None)}
            for r in report.rendered
        ],
        "up_to_date": [{"shot": s, "take": t} for s, t in report.up_to_date],
        "pulled": [{"shot": s, "take": t} for s, t in report.pulled],
        "outside_only": list(report.outside_only),
        "failed": failures,
        "spent": {"usd": round(report.spent.usd, 6), "takes": report.spent.takes},
        "cut": None
        if report.cut is None
        else {
            "path": str(report.cut),
            "seconds": round(report.seconds or 0.0, 3),
            "state": "reused" if report.reused else "written",
        },
        "not_stitched": not_cut,
    }


def _board_json(
    report: BuildReport, args: argparse.Namespace, file: str, stitch: BoardFailure | None
) -> dict[str, Any]:
    data = run_report(report, args, file)
    if stitch is not None and report.cut is None:
        data["not_stitched"] = {
            "reason": redact(stitch.message),
            "missing": list(report.missing),
            "hint": redact(stitch.hint) if stitch.hint else None,
        }
    return data


def cmd_render_many(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    build: dict[str, Any],
    reporter: Callable[..., Any],
) -> int:
    """``storyboard render FILE...``: one run; progress names ``board/shot``.

    ``reporter`` makes the progress display (``storyboard._progress.Reporter``, which only
    the CLI's main module imports).
    """
    import contextlib

    from storyboard.batch import BatchStarted, build_many
    from storyboard.events import Event
    from storyboard.pipeline import Planned, Stitching

    _no_output(build)
    with contextlib.ExitStack() as stack:
        shown: list[Any] = []

        def on_event(event: BatchEvent) -> None:
            if isinstance(event, BatchStarted):
                estimate = event.cost if args.live else None
                shown.append(
                    stack.enter_context(reporter(err, quiet=args.quiet, estimate=estimate))
                )
                return
            inner, label = event.event, event.label
            if isinstance(inner, Event) and shown:
                shown[0](replace(inner, shot=f"{label}/{inner.shot}"))
            elif isinstance(inner, Planned):
                if args.verbose and not args.quiet:
                    for sp in inner.plan.to_render:
                        n = len(sp.stale_takes)
                        what = f"{n} take{'' if n == 1 else 's'} ({sp.reason})"
                        print(f"to render: {label}/{sp.id}: {what}", file=err)
            elif isinstance(inner, Stitching) and shown:
                shown[0].stitch(f"{label} {inner.state}", inner.detail)

        batch = build_many(
            args.files, **build, jobs=args.jobs, budget=args.budget,
            keep_going=args.keep_going, on_event=on_event,
        )  # fmt: skip
    stitch_failures = {f.path: f for f in batch.failed if isinstance(f.error, StitchError)}
    if args.json:
        document = {
            "storyboards": [
                _board_json(r, args, str(p), stitch_failures.get(p))
                for r, p in zip(batch.reports, batch.paths, strict=True)
            ],
            "spent": {"usd": round(batch.spent.usd, 6), "takes": batch.spent.takes},
            "failed": _failures_json(batch.failed),
            "skipped": [str(p) for p in batch.skipped],
        }
        print(json.dumps(document, indent=2), file=out)
    _print_failures(batch.failed, err)
    for path in batch.skipped:
        print(f"{batch.labels[path]}: not rendered: another storyboard failed first", file=err)
    if batch.skipped:
        print("hint: --keep-going renders the others despite a failure", file=err)
    if not args.quiet:
        failed_paths = {f.path for f in batch.failed}
        for report, path in zip(batch.reports, batch.paths, strict=True):
            label = batch.labels[path]
            if path in failed_paths:
                continue
            print(f"{label}: rendered {len(report.rendered)} clip(s), {counts(report)}", file=err)
            if report.cut is None:
                message, hint = not_stitched(report.plan, args, report.missing, str(path))
                print(f"{label}: {message}", file=err)
                print(f"hint: {hint}", file=err)
            elif not args.json:
                print(f"cut: {report.cut} ({report.seconds or 0.0:.1f} s)", file=out)
        if args.live:
            count, usd = batch.spent.takes, batch.spent.usd
            print(f"spent {money(usd)} on {count} take{'' if count == 1 else 's'} (list price)",
                  file=err)  # fmt: skip
    return batch.exit_code


# -- stitch ----------------------------------------------------------------------------------


def cmd_stitch_many(
    args: argparse.Namespace, out: TextIO, err: TextIO, build: dict[str, Any]
) -> int:
    """``storyboard stitch FILE...``: each storyboard's cut, the others despite a failure
    (stitching spends nothing)."""
    from storyboard.batch import board_labels, find_storyboards
    from storyboard.pipeline import BuildReport, Planned, restitch

    _no_output(build)
    files = find_storyboards(args.files)
    boards: list[dict[str, Any]] = []
    failed: list[tuple[Path, str, StoryboardError]] = []  # file, label, error
    for path, label in zip(files, board_labels(files), strict=True):
        planned: list[Plan] = []

        def on_event(event: Any, planned: list[Plan] = planned) -> None:
            if isinstance(event, Planned):
                planned.append(event.plan)

        try:
            report = restitch(path, **build, on_event=on_event)
        except StoryboardError as exc:
            failed.append((path, label, exc))
            if planned:
                plan = planned[0]
                missing = BuildReport(plan, plan, missing=plan.missing)
                boards.append(run_report(missing, args, str(path)))
            continue
        boards.append(run_report(report, args, str(path)))
        if not args.json and not args.quiet:
            state = "up to date" if report.reused else "written"
            print(f"cut: {report.cut} ({report.seconds or 0.0:.1f} s, {state})", file=out)
    if args.json:
        document = {
            "storyboards": boards,
            "failed": [
                {
                    "storyboard": str(path),
                    "message": redact(str(error)),
                    "hint": redact(error.hint() or "") or None,
                    "exit_code": error.exit_code,
                }
                for path, _label, error in failed
            ],
        }
        print(json.dumps(document, indent=2), file=out)
    for _path, label, error in failed:
        print_error(error, err, prefix=f"{label}: ")
    return max((error.exit_code for _p, _l, error in failed), default=EXIT_OK)
