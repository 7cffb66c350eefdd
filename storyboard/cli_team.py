"""The project's store commands: ``push``, ``pull`` and ``gc`` (dispatched from ``cli``).

Each takes storyboard files or folders (none: every storyboard of the project here) and
prints a summary on stdout (``--json``: one JSON document), warnings on stderr, nothing but
errors with ``-q``. Library errors are raised to ``storyboard.cli.main``, which prints them
and maps them to exit codes; a transfer that left some clips unmoved exits 1 after naming
each one and why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from storyboard.gc import Collected, Removal
    from storyboard.sharing import Transfer

__all__ = ["cmd_gc", "cmd_pull", "cmd_push"]

EXIT_OK = 0
EXIT_FAILED = 1


def size(n: int) -> str:
    """Bytes for people: ``512 B``, ``12.3 KB``, ``4.5 MB`` (powers of 1000, as du -h --si)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# -- gc --------------------------------------------------------------------------------------


def cmd_gc(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.gc import collect

    report = collect(args.files, remote=args.remote, dry_run=args.dry_run)
    failed = report.remote.failed if report.remote is not None else ()
    code = EXIT_FAILED if failed else EXIT_OK
    if args.json:
        print(json.dumps(report.to_json(), indent=2), file=out)
        return code
    if not args.quiet:
        for path, why in report.skipped:
            print(
                f"warning: {path} was not planned ({why}); only its lock protects its clips",
                file=err,
            )
        _print_gc(report, out)
    if report.remote is not None:
        for name, why in failed:
            print(f"error: {report.remote.url}: {name[:16]}: {why}", file=err)
    return code


def _what(objects: int, keys: int) -> str:
    return f"{_plural(objects, 'clip')} and {_plural(keys, 'key record')}"


def _print_gc(report: Collected, out: TextIO) -> None:
    removed, kept = report.removed, report.kept
    if report.dry_run:
        print(
            f"would remove {_what(removed.objects, removed.keys)} from {report.store}, "
            f"freeing {size(removed.bytes)} (dry run: nothing removed)",
            file=out,
        )
        _print_removals(report.removals, out)
    elif removed.objects or removed.keys or removed.bytes:
        print(
            f"removed {_what(removed.objects, removed.keys)} from {report.store}: "
            f"freed {size(removed.bytes)}",
            file=out,
        )
    else:
        print(f"nothing to remove from {report.store}", file=out)
    if not (kept.objects or kept.keys or removed.objects or removed.keys):
        _print_remote(report, out)
        return  # an empty store: no more to say
    extras = []
    if report.pieces:
        extras.append(_plural(report.pieces, "unused cut piece"))
    if report.checks:
        extras.append(_plural(report.checks, "check record"))
    if extras:
        verb = "would also remove" if report.dry_run else "also removed"
        print(f"{verb} {' and '.join(extras)}", file=out)
    locks = f", {_plural(len(report.locks), 'lock')}" if report.locks else ""
    print(
        f"kept {_what(kept.objects, kept.keys)} ({size(kept.bytes)}): named by the plans of "
        f"{_plural(len(report.storyboards), 'storyboard')}{locks}",
        file=out,
    )
    _print_remote(report, out)


def _print_remote(report: Collected, out: TextIO) -> None:
    far = report.remote
    if far is not None:
        verb = "would remove" if report.dry_run else "removed"
        print(
            f"remote {far.url}: {verb} {_what(far.removed.objects, far.removed.keys)} "
            f"({size(far.removed.bytes)}); kept {_plural(far.kept.objects, 'clip')}",
            file=out,
        )
        if report.dry_run:
            _print_removals(far.removals, out)


def _print_removals(removals: tuple[Removal, ...], out: TextIO) -> None:
    for r in removals:
        what = "clip" if r.kind == "object" else "key "
        who = ""
        if r.shot is not None:
            who = f"  {r.shot}" + (f" take {r.take}" if r.take and r.take > 1 else "")
        print(f"  {what} {r.name[:16]}  {size(r.bytes):>9}{who}", file=out)


# -- push and pull ---------------------------------------------------------------------------


def cmd_push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.sharing import push

    with _progress(args, err, "pushing") as shown:
        report = push(args.files, jobs=_jobs(args), on_progress=shown)
    return _report(report, args, out, err)


def cmd_pull(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.sharing import pull

    with _progress(args, err, "pulling") as shown:
        report = pull(args.files, jobs=_jobs(args), on_progress=shown)
    return _report(report, args, out, err)


@contextlib.contextmanager
def _progress(
    args: argparse.Namespace, err: TextIO, verb: str
) -> Iterator[Callable[[int, int], None] | None]:
    """One line on a terminal that counts the clips done (nothing elsewhere, or with -q)."""
    if args.quiet or args.json or not err.isatty():
        yield None
        return
    lock = threading.Lock()
    shown = [False]

    def show(done: int, total: int) -> None:
        with lock:
            err.write(f"\r{verb} {done}/{total} clips")
            err.flush()
            shown[0] = True

    try:
        yield show
    finally:
        if shown[0]:
            err.write("\r\033[K")
            err.flush()


def _jobs(args: argparse.Namespace) -> int:
    from storyboard.errors import UsageError

    jobs = 8 if args.jobs is None else int(args.jobs)
    if jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}")
    return jobs


def _report(report: Transfer, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    code = EXIT_OK if report.ok else EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_json(), indent=2), file=out)
        return code
    for failure in report.failed:
        print(f"error: {failure}", file=err)
    if report.failed:
        verb = "sent" if report.direction == "push" else "fetched"
        print(
            f"error: {_plural(len(report.failed), 'clip')} not {verb}; "
            f"`storyboard {report.direction}` again retries them",
            file=err,
        )
    if not args.quiet:
        verb, where = ("pushed", "to") if report.direction == "push" else ("pulled", "from")
        print(
            f"{verb} {_plural(report.moved, 'clip')} ({size(report.bytes)}) {where} "
            f"{report.url}; {report.skipped} already there (the locks of "
            f"{_plural(len(report.storyboards), 'storyboard')} name "
            f"{_plural(report.clips, 'clip')})",
            file=out,
        )
    return code
