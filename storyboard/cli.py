"""The command line: ``main(argv) -> int`` is the only place that prints errors or exits.

Every library error is a :class:`~storyboard.errors.StoryboardError`; it is shown as one
``error:`` line (plus ``hint:`` where there is one) and mapped to the exit code of
CONTRACT §3: 0 success, 1 render/provider/stitch failure, 2 usage error or invalid
storyboard, 3 refused by the budget, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from storyboard import __version__
from storyboard.cli_batch import (
    budget_line,
    cmd_plan_many,
    cmd_render_many,
    cmd_stitch_many,
    counts,
    is_batch,
    money,
    not_stitched,
    print_plan,
    redact,
    run_report,
)
from storyboard.cli_handoff import EXAMPLES as HANDOFF_EXAMPLES
from storyboard.cli_options import add_option
from storyboard.errors import (
    BudgetExceeded,
    CannotStart,
    InvalidStoryboard,
    Problem,
    StoryboardError,
    UsageError,
)

if TYPE_CHECKING:
    from storyboard.plan import Plan

__all__ = ["main", "main_entry"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` keeps control of exit codes."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn; we raise
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


_EXIT_CODES = """\
exit codes:
  0 success
  1 a render, provider or stitch failure
  2 usage error or invalid storyboard
  3 refused by the budget{budget}
  130 interrupted"""

_EXAMPLES = {
    "": """\
examples:
  storyboard validate examples/*/storyboard.yaml
  storyboard plan examples/dawn/storyboard.yaml
  storyboard render examples/dawn/storyboard.yaml        # free, offline animatic
  storyboard render --live --budget 5 examples/dawn/storyboard.yaml

FILE is a storyboard YAML file; `storyboard COMMAND --help` lists the options of each
command, and a command refuses an option it does not take.""",
    "validate": """\
examples:
  storyboard validate examples/dawn/storyboard.yaml
  storyboard validate --json examples/*/storyboard.yaml
  storyboard validate --set weather=snow examples/templated/storyboard.yaml""",
    "plan": """\
examples:
  storyboard plan examples/dawn/storyboard.yaml
  storyboard plan --live --budget 5 examples/dawn/storyboard.yaml
  storyboard plan --json --only hover --force hover examples/dawn/storyboard.yaml
  storyboard plan --live examples/                         # every storyboard below it

With --budget (or render.budget, for --live), plan says whether the run fits and, like
`make -q`, exits 3 when `render` would refuse it: `plan -q --live && render --live`.""",
    "render": """\
examples:
  storyboard render examples/dawn/storyboard.yaml
  storyboard render --live --budget 5 examples/dawn/storyboard.yaml
  storyboard render --only hover --force hover --json examples/dawn/storyboard.yaml
  storyboard render --live --keep-going examples/          # every storyboard below it

Several FILEs (or a folder: every storyboard below it) are one run: provider limits hold
across all of them, a shot two storyboards share is rendered (and paid) once, and each gets
its own cut and lock. --budget caps the whole run (a shared shot counted once); without it
each storyboard's render.budget caps its own estimate. --keep-going lets one storyboard
fail without stopping the others; the exit code is the worst of the storyboards'.""",
    "stitch": """\
examples:
  storyboard stitch examples/dawn/storyboard.yaml
  storyboard stitch --live -o cut.mp4 examples/dawn/storyboard.yaml
  storyboard stitch --json examples/dawn/storyboard.yaml
  storyboard stitch examples/                              # every storyboard below it""",
    **HANDOFF_EXAMPLES,
}


def _epilog(command: str) -> str:
    budget = {
        "plan": " (plan: the run it describes would be refused)",
        "render": " before anything was submitted",
    }.get(command, "")
    return _EXAMPLES[command] + "\n\n" + _EXIT_CODES.format(budget=budget)


# Which command takes which option. A command takes only the options it honours; any other
# is refused with a hint naming the commands that do take it (see `_check_options`).
_TAKES: dict[str, tuple[str, ...]] = {
    "validate": ("--set", "--json", "-q"),
    "plan": ("--live", "--set", "--only", "--force", "--force-all", "--budget", "--no-remote",
             "-o", "--json", "-q", "-v"),
    "render": ("--live", "--set", "--only", "--force", "--force-all", "--jobs", "--budget",
               "--keep-going", "--no-remote", "-o", "--json", "-q", "-v"),
    "stitch": ("--live", "--set", "-o", "--json", "-q"),
    "review": ("--live", "--set", "-o", "--serve", "--port", "-q"),
    "sheet": ("--live", "--set", "-o", "--json", "-q"),
    "export": ("--live", "--set", "--format", "-o", "--copy-media", "--json", "-q"),
    "push": ("--jobs", "--json", "-q"),
    "pull": ("--jobs", "--json", "-q"),
    "gc": ("--remote", "--dry-run", "--json", "-q"),
}  # fmt: skip


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="storyboard",
        description="Turn a versioned YAML storyboard into a finished multi-shot video.",
        epilog=_epilog(""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"storyboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, summary: str) -> _Parser:
        p: _Parser = sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=_epilog(name) if name in _EXAMPLES else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        for option in _TAKES.get(name, ()):
            add_option(p, name, option)
        return p

    p = command(
        "validate", "check storyboards: schema, model rules, references, templates (no network)"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="one or more storyboard YAML files")
    board = "a storyboard YAML file (paths inside it are relative to its folder)"
    boards = board + "; several, or a folder (every storyboard below it): one run"
    for name, summary in (
        ("plan", "what render would do, and what it would cost"),
        ("render", "render what is stale, then stitch the cut"),
        ("stitch", "re-stitch the final cut from rendered clips only"),
    ):
        command(name, summary).add_argument("files", nargs="+", metavar="FILE", help=boards)
    command(
        "review", "write a review page of the cut and every take (--serve: pick takes in it)"
    ).add_argument("file", metavar="FILE", help=board)
    command("sheet", "draw a contact sheet of the cut: three frames a shot").add_argument(
        "file", metavar="FILE", help=board
    )
    command(
        "export", "write the cut as an editor's timeline (OTIO, FCP XML, FCPXML, EDL)"
    ).add_argument("file", metavar="FILE", help=board)
    files = "storyboard files or folders (default: every storyboard of the project here)"
    for name, summary in (
        ("push", "send the clips the locks name to the project's remote store"),
        ("pull", "fetch the clips the locks name from the project's remote store"),
        ("gc", "remove from the store what no lock and no current plan names"),
    ):
        command(name, summary).add_argument("files", nargs="*", metavar="FILE", help=files)
    command("schema", "print the JSON Schema of the storyboard format")

    p = command("emulate", "run the provider emulator on 127.0.0.1")
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


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)$")


def _check_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Refuse an option the command does not take, before argparse reads anything.

    argparse would say "unrecognized arguments"; this says which commands take the option,
    or which option was meant, and an option written before the command is shown where it
    goes.

    Raises:
        UsageError: the first option the command does not take.
    """
    commands = _subparsers(parser)
    names = [a for a in argv if a in commands]
    if not names:
        return  # no command: argparse answers (help, version, or what is missing)
    name = names[0]
    at = list(argv).index(name)
    before, after = list(argv[:at]), list(argv[at + 1 :])
    if any(a in ("-h", "--help", "--version") for a in [*before, *after]):
        return
    sub = commands[name]
    takes = sub._option_string_actions

    def refuse(option: str) -> UsageError:
        who = [c for c, p in commands.items() if option in p._option_string_actions]
        if who:
            hint = f"{option} is taken by {', '.join(who)}"
        else:
            from storyboard.suggest import did_you_mean

            near = did_you_mean(option, [o for o in takes if o.startswith("-")])
            hint = near or f"see `storyboard {name} --help`"
        return UsageError(f"storyboard {name} does not take {option}", hint=hint)

    for option in before:
        flag = option.split("=", 1)[0]
        if flag in takes:
            rest = " ".join([option, *after])
            raise UsageError(
                f"{option} goes after the command",
                hint=f"storyboard {name} {rest}",
            )
        raise refuse(flag)

    i = 0
    while i < len(after):
        token = after[i]
        i += 1
        if token == "--":
            break
        if not token.startswith("-") or token == "-" or _NUMBER.match(token):
            continue
        flag, eq, _ = token.partition("=")
        if token.startswith("--"):
            action = takes.get(flag)
            if action is None:
                raise refuse(flag)
            if action.nargs != 0 and not eq:
                i += 1  # its value
            continue
        # -q, -qv, -o PATH, -oPATH
        for pos in range(1, len(token)):
            short = "-" + token[pos]
            action = takes.get(short)
            if action is None:
                raise refuse(short if pos > 1 or len(token) == 2 else token[:2])
            if action.nargs != 0:
                if pos == len(token) - 1:
                    i += 1  # its value is the next argument
                break


# -- commands ------------------------------------------------------------------------------


def _print_problems(problems: Sequence[Problem], err: TextIO) -> None:
    for problem in problems:
        print(str(problem), file=err)


def _cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.overrides import parse_set
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
                f"{file}: valid ({len(board.shots)} shots, {models} rendered by a model; "
                f"cut {board.output.describe()})",
                file=out,
            )
    if args.json:
        print(json.dumps([p.to_json() for p in all_problems], indent=2), file=out)
    return EXIT_USAGE if all_problems else EXIT_OK


def _cmd_schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.schema import schema_text

    out.write(schema_text())
    return EXIT_OK


def _build_args(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline's arguments from a command's options (each command has its own)."""
    from storyboard.overrides import parse_set

    return {
        "live": getattr(args, "live", False),
        "variables": parse_set(args.set),
        "output": args.output,
    }


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    return {"only": args.only, "force": args.force, "force_all": args.force_all}


def _one_file(args: argparse.Namespace) -> None:
    """One FILE: the command as it always was (``args.file``)."""
    args.file = args.files[0]


def _cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.pipeline import check_budget, plan_build

    remote = not args.no_remote
    if is_batch(args):
        build = {**_build_args(args), **_selection(args), "remote": remote}
        return cmd_plan_many(args, out, err, build)
    _one_file(args)
    plan = plan_build(args.file, **_build_args(args), **_selection(args), remote=remote)
    if plan.remote_problem is not None:
        print(
            f"warning: {plan.remote_problem}; the estimate counts every stale take, also "
            "those a render would pull from the remote",
            file=err,
        )
    verdict = check_budget(plan, args.budget)
    budget, fits = verdict.budget, verdict.fits
    code = EXIT_OK if fits else BudgetExceeded.exit_code
    if args.json:
        from storyboard.cli_handoff import with_checks

        data = with_checks(plan, plan.to_json(), err)
        data["budget"] = budget
        data["fits"] = fits
        print(json.dumps(data, indent=2), file=out)
        return code
    if args.quiet:
        if budget is not None and not fits:
            print(f"error: {budget_line(plan.cost, budget)}", file=err)
        return code
    print_plan(plan, args, out, budget, fits)
    return code


def _cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard._progress import Reporter
    from storyboard.events import Event
    from storyboard.pipeline import BuildEvent, BuildFailed, Planned, Started, build

    if is_batch(args):
        build_args = {**_build_args(args), **_selection(args), "remote": not args.no_remote}
        return cmd_render_many(args, out, err, build_args, Reporter)
    _one_file(args)
    failed: BuildFailed | None = None
    with contextlib.ExitStack() as stack:
        shown: list[Reporter] = []

        def on_event(event: BuildEvent) -> None:
            if isinstance(event, Event):
                shown[0](event)
            elif isinstance(event, Planned):
                if args.verbose and not args.quiet:
                    for sp in event.plan.to_render:
                        n = len(sp.stale_takes)
                        what = f"{n} take{'' if n == 1 else 's'} ({sp.reason})"
                        print(f"to render: {sp.id}: {what}", file=err)
            elif isinstance(event, Started):
                estimate = event.plan.cost if args.live else None  # "committed $X of $Y"
                shown.append(
                    stack.enter_context(Reporter(err, quiet=args.quiet, estimate=estimate))
                )
            else:
                shown[0].stitch(event.state, event.detail)

        try:
            report = build(
                args.file, **_build_args(args), **_selection(args), jobs=args.jobs,
                budget=args.budget, keep_going=args.keep_going, on_event=on_event,
                remote=not args.no_remote,
            )  # fmt: skip
        except BuildFailed as exc:
            failed, report = exc, exc.report
    before = report.plan
    count, usd = report.spent.takes, report.spent.usd
    if args.live and not args.quiet:
        spent_line = f"spent {money(usd)} on {count} take{'' if count == 1 else 's'} (list price)"
    else:
        spent_line = None
    if args.json:
        print(json.dumps(run_report(report, args, args.file), indent=2), file=out)
    if failed is not None:
        if spent_line:
            print(spent_line, file=err)
        for failure in failed.failures:
            take = f" take {failure.take}" if failure.take > 1 else ""
            print(redact(f"error: {failure.shot}{take}: {failure.message}"), file=err)
            hint = failure.error.hint() if failure.error is not None else None
            if hint:
                print(redact(f"    hint: {hint}"), file=err)
        print(redact(f"error: {failed}"), file=err)
        hint = failed.hint()
        if hint:
            print(redact(f"hint: {hint}"), file=err)
        return EXIT_FAILED
    if not args.quiet:
        print(f"rendered {len(report.rendered)} clip(s), {counts(report)}", file=err)
        if report.cut is None:
            message, hint = not_stitched(before, args, report.missing, args.file)
            print(message, file=err)
            print(f"hint: {hint}", file=err)
        elif not args.json:
            print(f"cut: {report.cut} ({report.seconds or 0.0:.1f} s)", file=out)
        if spent_line:
            print(spent_line, file=err)  # the last line: what this run bought
    return EXIT_OK


def _cmd_stitch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.errors import StitchError
    from storyboard.pipeline import BuildEvent, BuildReport, Planned, restitch

    if is_batch(args):
        return cmd_stitch_many(args, out, err, _build_args(args))
    _one_file(args)
    planned: list[Plan] = []

    def on_event(event: BuildEvent) -> None:
        if isinstance(event, Planned):
            planned.append(event.plan)

    try:
        report = restitch(args.file, **_build_args(args), on_event=on_event)
    except StitchError:
        if args.json and planned:
            plan = planned[0]
            failed = BuildReport(plan, plan, missing=plan.missing)
            print(json.dumps(run_report(failed, args, args.file), indent=2), file=out)
        raise
    if args.json:
        print(json.dumps(run_report(report, args, args.file), indent=2), file=out)
    elif not args.quiet:
        state = "up to date" if report.reused else "written"
        print(f"cut: {report.cut} ({report.seconds or 0.0:.1f} s, {state})", file=out)
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
    "render": lambda *a: _holding(_cmd_render, *a),
    "stitch": lambda *a: _holding(_cmd_stitch, *a),
    "review": lambda *a: _handoff("cmd_review", *a),
    "sheet": lambda *a: _handoff("cmd_sheet", *a),
    "export": lambda *a: _handoff("cmd_export", *a),
    "push": lambda *a: _team("cmd_push", *a),
    "pull": lambda *a: _team("cmd_pull", *a),
    "gc": lambda *a: _team("cmd_gc", *a),
}


def _holding(
    command: Callable[[argparse.Namespace, TextIO, TextIO], int],
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run ``command`` holding, shared, the store of every storyboard it names, so that
    ``storyboard gc`` keeps out of a store while a render or a stitch uses it (waiting, with
    a word on stderr, while a gc runs)."""
    from storyboard.locks import hold_store

    with contextlib.ExitStack() as stack:
        for root in _stores(args.files):

            def waiting(root: Path = root) -> None:
                print(f"waiting for `storyboard gc` to finish with the store {root} ...", file=err)

            stack.enter_context(hold_store(root, on_wait=waiting))
        return command(args, out, err)


def _stores(files: Sequence[str]) -> list[Path]:
    """The existing stores of these storyboards, in one order for every process."""
    from storyboard.batch import find_storyboards
    from storyboard.paths import store_root

    try:
        found = find_storyboards(files)
    except StoryboardError:
        return []  # the command itself says what is wrong with its arguments
    roots: set[Path] = set()
    for path in found:
        with contextlib.suppress(StoryboardError, OSError):
            root = store_root(path.resolve())
            if root.is_dir():  # a store not made yet holds nothing gc could take
                roots.add(root)
    return sorted(roots)


def _team(name: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The project's store commands live in :mod:`storyboard.cli_team` (imported on use)."""
    module = importlib.import_module("storyboard.cli_team")
    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = getattr(module, name)
    return command(args, out, err)


def _handoff(name: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The commands after a render live in :mod:`storyboard.cli_handoff` (imported on use)."""
    from storyboard import cli_handoff

    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = getattr(cli_handoff, name)
    return command(args, out, err)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (never raises for user errors)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _build_parser()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        _check_options(parser, argv)
        try:
            with contextlib.redirect_stdout(out):  # --help and --version print to `out`
                args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help and --version exit 0 through argparse
            return int(exc.code or 0)
        if extra:
            one_file = ("review", "sheet", "export")
            what = "one FILE" if args.command in one_file else "no arguments"
            raise UsageError(
                f"storyboard {args.command} takes {what}, not also {' '.join(extra)}",
                hint=f"see `storyboard {args.command} --help`",
            )
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
        print(redact(f"error: {exc}"), file=err)
        if isinstance(exc, BudgetExceeded):
            for shot_id, cost in exc.per_shot:
                print(f"  {shot_id}: {money(cost)}", file=err)
        if isinstance(exc, CannotStart):
            for obstacle in exc.obstacles:
                print(redact(f"  {obstacle}"), file=err)
        hint = exc.hint()
        if hint:
            print(redact(f"hint: {hint}"), file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `storyboard schema | head`
        return EXIT_OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
