"""The command line: ``main(argv) -> int`` is the only place that prints errors or exits.

Every library error is a :class:`~storyboard.errors.StoryboardError`; it is shown as one
``error:`` line (plus ``hint:`` where there is one) and mapped to the exit code of
CONTRACT §3: 0 success, 1 render/provider/stitch failure, 2 usage error or invalid
storyboard, 3 refused by the budget, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from storyboard import __version__
from storyboard.errors import (
    BudgetExceeded,
    CannotStart,
    InvalidStoryboard,
    Problem,
    StoryboardError,
    UsageError,
)

__all__ = ["main", "main_entry"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` keeps control of exit codes."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn; we raise
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="storyboard",
        description="Turn a versioned YAML storyboard into a finished multi-shot video.",
    )
    parser.add_argument("--version", action="version", version=f"storyboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument(
        "--set",
        dest="set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template variable (repeatable; VALUE is read as YAML)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    common.add_argument("-v", "--verbose", action="store_true", help="say more")

    p = sub.add_parser(
        "validate",
        parents=[common],
        help="check storyboards: schema, model rules, references, templates (no network)",
    )
    p.add_argument("files", nargs="+", metavar="FILE")

    shot_opts = _Parser(add_help=False)
    shot_opts.add_argument("--live", action="store_true", help="use the real providers")
    shot_opts.add_argument(
        "--only", type=_csv, default=[], metavar="ID[,ID]", help="only these shots"
    )
    shot_opts.add_argument(
        "--force", type=_csv, default=[], metavar="ID[,ID]", help="render these shots again"
    )
    shot_opts.add_argument("--force-all", action="store_true", help="render every shot again")

    p = sub.add_parser(
        "plan", parents=[common, shot_opts], help="what render would do, and what it would cost"
    )
    p.add_argument("file", metavar="FILE")

    p = sub.add_parser(
        "render", parents=[common, shot_opts], help="render what is stale, then stitch the cut"
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="tasks in flight per provider"
    )
    p.add_argument("--budget", type=float, default=None, metavar="USD", help="spending cap")
    p.add_argument(
        "--keep-going", action="store_true", help="render everything possible despite failures"
    )
    p.add_argument("-o", "--output", default=None, metavar="PATH", help="where to write the cut")

    p = sub.add_parser(
        "stitch", parents=[common], help="re-stitch the final cut from rendered clips only"
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--live", action="store_true", help="stitch the live clips, not the preview")
    p.add_argument("-o", "--output", default=None, metavar="PATH", help="where to write the cut")

    sub.add_parser("schema", help="print the JSON Schema of the storyboard format")

    p = sub.add_parser("emulate", help="run the provider emulator on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, metavar="N", help="port (default: any free)")
    p.add_argument(
        "--qingbo-status-names",
        choices=("task", "events"),
        default=None,
        help="Qingbo task states: the task pages' queued/processing/completed (default) or "
        "the SkyReels page's queued/running/succeeded",
    )
    p.add_argument(
        "--qingbo-cost",
        choices=("quota", "usd", "none"),
        default=None,
        help="how Qingbo tasks report their cost (default: quota; none: not at all)",
    )
    return parser


# -- commands ------------------------------------------------------------------------------


def _print_problems(problems: Sequence[Problem], err: TextIO) -> None:
    for problem in problems:
        print(str(problem), file=err)


def _cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.templating import parse_set
    from storyboard.validate import load_storyboard

    overrides = parse_set(args.set)
    all_problems: list[Problem] = []
    for file in args.files:
        try:
            board = load_storyboard(file, overrides=overrides)
        except InvalidStoryboard as exc:
            all_problems.extend(exc.problems)
            if not args.json:
                _print_problems(exc.problems, err)
                n = len(exc.problems)
                print(f"{file}: {n} problem{'s' if n != 1 else ''}", file=err)
            continue
        if not args.json and not args.quiet:
            models = sum(1 for s in board.shots if s.model and not s.skip)
            print(
                f"{file}: valid ({len(board.shots)} shots, {models} rendered by a model)", file=out
            )
    if args.json:
        print(json.dumps([p.to_json() for p in all_problems], indent=2), file=out)
    return EXIT_USAGE if all_problems else EXIT_OK


def _cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.schema import schema_text

    out.write(schema_text())
    return EXIT_OK


def _load_plan(args: argparse.Namespace, *, output: str | None = None) -> tuple[Any, Any]:
    from pathlib import Path

    from storyboard.cache import Store
    from storyboard.plan import make_plan
    from storyboard.templating import parse_set
    from storyboard.validate import load_storyboard

    if output:
        _check_output_option(Path(output))
    board = load_storyboard(args.file, overrides=parse_set(args.set))
    store = Store.for_storyboard(board.path)
    plan = make_plan(
        board,
        store,
        backend="live" if getattr(args, "live", False) else "preview",
        only=getattr(args, "only", []),
        force=getattr(args, "force", []),
        force_all=getattr(args, "force_all", False),
        output=Path(output).absolute() if output else None,
    )
    return plan, store


def _check_output_option(path: Path) -> None:
    """``-o/--output`` may point anywhere (the user chose it) but must name a video file."""
    from storyboard.paths import VIDEO_CONTAINERS

    if path.suffix.lower() not in VIDEO_CONTAINERS or path.is_dir():
        what = "is a folder" if path.is_dir() else "does not name a .mp4 or .mov file"
        raise UsageError(
            f"-o/--output {str(path)!r} {what}",
            hint=f"give the cut's file name, e.g. -o {(path.stem or 'cut').lstrip('.')}.mp4",
        )


def _money(value: float) -> str:
    return f"${value:.2f}"


def _cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, store = _load_plan(args)
    store.save()
    if args.json:
        print(json.dumps(plan.to_json(), indent=2), file=out)
        return EXIT_OK
    rows = [("shot", "model", "status", "takes", "cost", "live $", "reason")]
    for sp in plan.shots:
        takes = f"{len(sp.stale_takes)}/{len(sp.takes)}" if sp.takes else "-"
        rows.append(
            (sp.id, sp.shot.model or "card", sp.status, takes, _money(sp.cost),
             _money(sp.live_cost) if sp.takes else "-", sp.reason)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    stale = sum(1 for sp in plan.shots if sp.status == "stale")
    live_total = sum(sp.live_cost for sp in plan.shots)
    print(
        f"\n{stale} shot(s) to render ({plan.backend}); this run costs {_money(plan.cost)} "
        f"(all takes live: {_money(live_total)}); cut {plan.stitch}: {plan.cut}",
        file=out,
    )
    return EXIT_OK


def _cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard._progress import Reporter
    from storyboard.errors import RenderFailed, StitchError
    from storyboard.plan import make_plan
    from storyboard.stitch import stitch, verify_cut

    plan, store = _load_plan(args, output=args.output)
    if verify_cut(plan, store):  # a clip of the cut changed on disk: dropped, so render it again
        plan, store = _load_plan(args, output=args.output)
    board = plan.board
    concurrency = dict(board.render.concurrency)
    if args.jobs is not None:
        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        concurrency = {k: args.jobs for k in ("preview", "wavespeed", "qingbo")}
    store.clean_tmp(older_than=24 * 3600)
    failed: RenderFailed | None = None
    report = None
    result = None
    journal = None
    paid: tuple[int, float] | None = None  # (takes, USD at list price) this live run submitted
    try:
        with Reporter(err, quiet=args.quiet) as reporter:
            if plan.to_render:  # a no-op render starts no event loop, imports no media code
                from storyboard.render import render_plan

                runner: Any
                on_shot_done = None
                new: dict[str, float] = {}
                if args.live:
                    from storyboard.live import start_live
                    from storyboard.lockfile import new_takes, write_lock

                    forced = {s.id for s in plan.shots if args.force_all or s.id in args.force}
                    budget = args.budget if args.budget is not None else board.render.budget
                    runner, journal = start_live(plan, store, budget=budget, forced=forced)
                    live_journal = journal
                    new = new_takes(plan, journal)

                    def on_shot_done(_shot: str) -> None:
                        write_lock(plan, store, live_journal)

                else:
                    from storyboard.providers.preview import PreviewProvider
                    from storyboard.render import ProviderRunner

                    runner = ProviderRunner(PreviewProvider(store.tmp_dir()), store)
                try:
                    report = render_plan(
                        plan, store, runner, concurrency=concurrency,
                        keep_going=args.keep_going, on_event=reporter, on_shot_done=on_shot_done,
                    )  # fmt: skip
                except RenderFailed as exc:
                    failed = exc
                finally:
                    if on_shot_done is not None:
                        on_shot_done("")  # the lock also records takes of failed shots
                    if journal is not None:
                        from storyboard.lockfile import spent

                        paid = spent(new, journal)
                try:
                    plan = make_plan(
                        board, store, backend=plan.backend, output=plan.cut if args.output else None
                    )
                except StoryboardError:
                    if failed is None:  # an input gone mid-run: its take's failure says more
                        raise
            missing = [sp.id for sp in plan.shots if sp.kind == "model" and sp.output is None]
            if not missing:
                if plan.stitch == "stale":
                    reporter.stitch("stitching")
                try:
                    result = stitch(plan, store)
                except StitchError:
                    reporter.stitch("failed")
                    raise
                state = "reused" if result.reused else "written"
                reporter.stitch(state, f"{result.seconds:.1f}s")
    finally:
        store.save()
        if journal is not None:
            journal.close()
    if args.live and not args.quiet:
        count, usd = paid or (0, 0.0)
        spent_line = f"spent {_money(usd)} on {count} take{'' if count == 1 else 's'} (list price)"
    else:
        spent_line = None
    if failed is not None:
        if spent_line:
            print(spent_line, file=err)
        for failure in failed.failures:
            take = f" take {failure.take}" if failure.take > 1 else ""
            print(_redact(f"error: {failure.shot}{take}: {failure.message}"), file=err)
            hint = failure.error.hint() if failure.error is not None else None
            if hint:
                print(_redact(f"    hint: {hint}"), file=err)
        print(_redact(f"error: {failed}"), file=err)
        hint = failed.hint()
        if hint:
            print(_redact(f"hint: {hint}"), file=err)
        return EXIT_FAILED
    if not args.quiet:
        rendered = len(report.rendered) if report else 0
        cached = len(report.cached) if report else 0
        print(f"rendered {rendered} clip(s), {cached} up to date", file=err)
        if result is not None:
            print(f"cut: {result.path} ({result.seconds:.1f} s)", file=out)
        else:
            print(f"cut not stitched: not rendered yet: {', '.join(missing)}", file=err)
        if spent_line:
            print(spent_line, file=err)  # the last line: what this run bought
    return EXIT_OK


def _cmd_stitch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.stitch import stitch

    plan, store = _load_plan(args, output=args.output)
    result = stitch(plan, store)
    store.save()
    if not args.quiet:
        state = "up to date" if result.reused else "written"
        print(f"cut: {result.path} ({result.seconds:.1f} s, {state})", file=out)
    return EXIT_OK


def _cmd_emulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.testing.emulator import run_forever

    def ready(lines: list[str]) -> None:
        print("\n".join(lines), file=out, flush=True)

    try:
        run_forever(
            args.port,
            on_ready=ready,
            qingbo_status_names=args.qingbo_status_names,
            qingbo_cost_unit=args.qingbo_cost,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror}") from exc
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "emulate": _cmd_emulate,
    "validate": _cmd_validate,
    "schema": _cmd_schema,
    "plan": _cmd_plan,
    "render": _cmd_render,
    "stitch": _cmd_stitch,
}


def _redact(text: str) -> str:
    """``text`` with every form of the API keys in the environment replaced by ``***``.

    The last line of defence: providers and the live runner redact what they raise, and
    nothing an error prints may show a key, whatever produced the text.
    """
    import os

    from storyboard.errors import redact_secrets

    keys = [os.environ.get(var, "") for var in ("WAVESPEED_API_KEY", "QINGBO_API_KEY")]
    return redact_secrets(text, [k for k in keys if k.strip()])


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (never raises for user errors)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _build_parser()
    try:
        try:
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # --help and --version exit 0 through argparse
            return int(exc.code or 0)
        if not args.command:
            parser.print_help(out)
            return EXIT_USAGE
        command = _COMMANDS.get(args.command)
        if command is None:
            raise UsageError(f"storyboard {args.command} is not available in this version")
        return command(args, out, err)
    except InvalidStoryboard as exc:
        _print_problems(exc.problems, err)
        return exc.exit_code
    except StoryboardError as exc:
        print(_redact(f"error: {exc}"), file=err)
        if isinstance(exc, BudgetExceeded):
            for shot_id, cost in exc.per_shot:
                print(f"  {shot_id}: {_money(cost)}", file=err)
        if isinstance(exc, CannotStart):
            for obstacle in exc.obstacles:
                print(_redact(f"  {obstacle}"), file=err)
        hint = exc.hint()
        if hint:
            print(_redact(f"hint: {hint}"), file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `storyboard schema | head`
        return EXIT_OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
