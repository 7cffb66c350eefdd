"""The commands that come after a render: ``review``, ``sheet`` and ``export`` (issue 11).

Part of the command line (:mod:`storyboard.cli` parses the arguments and maps errors to exit
codes); each command here calls the library and prints what it did.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from storyboard.errors import StitchError, UsageError

if TYPE_CHECKING:
    from storyboard.cache import Store
    from storyboard.plan import Plan
    from storyboard.takecheck import TakeCheck
    from storyboard.timeline import Timeline

__all__ = ["EXAMPLES", "cmd_export", "cmd_review", "cmd_sheet", "with_checks"]

# The examples that end each command's --help.
EXAMPLES = {
    "push": """\
examples:
  storyboard push                                  # every storyboard of the project
  storyboard push films/ads/                       # the storyboards below a folder
  storyboard push --json examples/dawn/storyboard.yaml

The remote is the [remote] table of the project's storyboard.toml; credentials come from
the backend's usual places (environment, ~/.aws, a profile), never from a file here.""",
    "pull": """\
examples:
  storyboard pull                                  # what every lock of the project names
  storyboard pull --jobs 16 examples/dawn/storyboard.yaml""",
    "gc": """\
examples:
  storyboard gc --dry-run                          # what would go, and the bytes it frees
  storyboard gc
  storyboard gc --remote --dry-run films/

Never removes a clip that a lock in the working tree names, or while a render holds the
store.""",
    "review": """\
examples:
  storyboard review examples/dawn/storyboard.yaml          # renders/dawn.preview.review/
  storyboard review --serve examples/dawn/storyboard.yaml  # pick takes in the browser
  storyboard review --live -o client-review examples/dawn/storyboard.yaml

--serve listens on 127.0.0.1 only; the URL it prints carries the session's token. A pick
changes only the shot's select: line and re-stitches the cut (nothing is rendered).""",
    "sheet": """\
examples:
  storyboard sheet examples/dawn/storyboard.yaml
  storyboard sheet --live -o review/dawn.jpg examples/dawn/storyboard.yaml""",
    "export": """\
examples:
  storyboard export --format otio examples/dawn/storyboard.yaml
  storyboard export --format fcp7xml --copy-media -o handoff/dawn.xml examples/dawn/storyboard.yaml
  storyboard export --format edl --live examples/dawn/storyboard.yaml

What a format cannot hold (FCPXML: transitions; EDL: the soundtrack and metadata) is said on
stderr, never dropped silently.""",
}


SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")


def _open(args: argparse.Namespace, *, stitch: bool) -> tuple[Plan, Store]:
    """The plan of ``args.file`` and its store; with ``stitch``, the cut made current first
    when every shot is rendered (a re-stitch: nothing is rendered, nothing is spent)."""
    from storyboard.cache import Store
    from storyboard.overrides import parse_set
    from storyboard.pipeline import plan_build, restitch

    variables = parse_set(args.set)
    plan = plan_build(args.file, live=args.live, variables=variables)
    if stitch and not plan.missing and plan.stitch != "fresh":
        restitch(args.file, live=args.live, variables=variables)
        plan = plan_build(args.file, live=args.live, variables=variables)
    return plan, Store.for_storyboard(plan.board.path)


def _not_rendered(plan: Plan, what: str) -> StitchError:
    missing = ", ".join(plan.missing)
    live = " --live" if plan.backend == "live" else ""
    return StitchError(
        f"{len(plan.missing)} shot(s) of the cut are not rendered ({missing}): "
        f"there is no cut to {what} yet",
        shot=plan.missing[0],
        hint=f"storyboard render{live} {plan.board.path}",
    )


def _timeline(plan: Plan, store: Store, what: str) -> Timeline:
    from storyboard.timeline import timeline_of

    if plan.missing:
        raise _not_rendered(plan, what)
    return timeline_of(plan, store)


def _target(
    plan: Plan, given: str | None, default: Path, suffixes: tuple[str, ...], what: str
) -> Path:
    """Where to write: ``-o`` as given (anywhere, with a right suffix) or ``default`` (which
    must stay inside the storyboard's tree)."""
    from storyboard.paths import check_container, safe_output_path

    if given is None:
        return safe_output_path(plan.board.path.parent, default, suffixes=suffixes, what=what)
    path = Path(given).expanduser().absolute()
    check_container(path, suffixes, shown=given, what=what)
    if path.is_dir():
        raise UsageError(
            f"the {what} path {given!r} is a folder", hint=f"name a file: {given}/cut{suffixes[0]}"
        )
    return path


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def with_checks(plan: Plan, data: dict[str, Any], err: TextIO) -> dict[str, Any]:
    """``plan --json`` with each rendered take's automatic checks (``checks`` on every entry of
    ``take_plan``: null while the take is not rendered). Checks are computed once per clip and
    cached in the store."""
    from storyboard.cache import Store

    checks: Mapping[tuple[str, int], TakeCheck] = {}
    if any(t.clip is not None for sp in plan.shots for t in sp.takes):
        checks = checks_of(plan, Store.for_storyboard(plan.board.path), err)
    for shot in data["shots"]:
        for entry in shot["take_plan"]:
            found = checks.get((shot["id"], entry["take"]))
            entry["checks"] = found.to_json() if found is not None else None
    return data


def checks_of(plan: Plan, store: Store, err: TextIO) -> Mapping[tuple[str, int], TakeCheck]:
    """Every rendered take's checks; a clip that cannot be decoded is a warning, not the end."""
    from storyboard.takecheck import ClipUnreadable, check_plan

    try:
        return check_plan(plan, store)
    except ClipUnreadable as exc:
        for shot, take in exc.takes:
            print(f"warning: {shot} take {take}: the clip cannot be decoded, not checked", file=err)
        hint = exc.hint()
        if hint:
            print(f"hint: {hint}", file=err)
        return exc.checks


# -- review ------------------------------------------------------------------------------------


def _review_folder(plan: Plan, given: str | None) -> Path:
    from storyboard.paths import safe_output_path

    if given is None:
        return safe_output_path(
            plan.board.path.parent,
            plan.cut.with_suffix(".review"),
            what="review folder",
            folder=True,
        )
    path = Path(given).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"the review folder {given!r} is a file",
            hint="name a folder for the page and its media",
        )
    return path


def cmd_review(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``storyboard review FILE``: write the review folder, or serve it with ``--serve``."""
    if args.serve:
        return _serve(args, out, err)
    from storyboard.review import write_review

    plan, store = _open(args, stitch=True)
    folder = _review_folder(plan, args.output)
    checks = checks_of(plan, store, err)
    page = write_review(plan, store, folder, checks=checks)
    if not args.quiet:
        flagged = sum(1 for c in checks.values() if not c.ok)
        note = f"; checks flag {flagged} take(s)" if flagged else ""
        missing = f"; not rendered: {', '.join(plan.missing)}" if plan.missing else ""
        print(
            f"review: {_shown(page.index)} ({page.shots} shots, {page.takes} takes{note}{missing})",
            file=out,
        )
        print(f"open it: file://{page.index}", file=out)
    return 0


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from storyboard.overrides import parse_set
    from storyboard.pipeline import plan_build
    from storyboard.review.server import ChangeEvent, ReviewServer

    variables = parse_set(args.set)
    folder = None
    if args.output is not None:
        folder = _review_folder(
            plan_build(args.file, live=args.live, variables=variables), args.output
        )

    def changed(event: ChangeEvent) -> None:
        print(
            f"{event.shot}: take {event.old} -> {event.new}, cut re-stitched ({event.seconds:.1f} s)",
            file=out,
            flush=True,
        )

    server = ReviewServer(
        Path(args.file),
        live=args.live,
        variables=variables,
        out_dir=folder,
        port=args.port,
        on_change=changed,
    )
    print(f"review page: {server.url}", file=out)
    print("pick takes in the browser; Ctrl-C stops the server", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=err)
    finally:
        server.shutdown()
    return 0


# -- sheet -------------------------------------------------------------------------------------


def cmd_sheet(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``storyboard sheet FILE``: one contact-sheet image of the cut."""
    from storyboard.sheet import write_sheet

    plan, store = _open(args, stitch=False)
    timeline = _timeline(plan, store, "draw")
    target = _target(plan, args.output, plan.cut.with_suffix(".sheet.png"), SHEET_SUFFIXES, "sheet")
    sheet = write_sheet(timeline, target)
    if args.json:
        data: dict[str, Any] = {
            "path": str(sheet.path),
            "width": sheet.width,
            "height": sheet.height,
            "tiles": sheet.tiles,
            "rows": sheet.rows,
            "columns": sheet.columns,
        }
        print(json.dumps(data, indent=2), file=out)
    elif not args.quiet:
        print(
            f"sheet: {_shown(sheet.path)} ({sheet.width}x{sheet.height}, {sheet.tiles} frames "
            f"of {len(timeline.items)} shots)",
            file=out,
        )
    return 0


# -- export ------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``storyboard export FILE --format F``: the cut as an editor's timeline."""
    from storyboard.export import FORMATS, export_timeline

    plan, store = _open(args, stitch=False)
    timeline = _timeline(plan, store, "export")
    suffix = FORMATS[args.format]
    target = _target(
        plan, args.output, plan.cut.with_suffix(suffix), (suffix,), f"{args.format} export"
    )
    done = export_timeline(timeline, args.format, target, copy_media=args.copy_media)
    for warning in done.warnings:
        print(f"warning: {warning}", file=err)
    if args.json:
        data: dict[str, Any] = {
            "path": str(done.path),
            "format": done.format,
            "clips": done.clips,
            "frames": timeline.frames,
            "fps": timeline.fps,
            "seconds": timeline.seconds,
            "warnings": list(done.warnings),
            "media": [str(p) for p in done.media],
        }
        print(json.dumps(data, indent=2), file=out)
    elif not args.quiet:
        print(
            f"{args.format}: {_shown(done.path)} ({done.clips} clips, {timeline.frames} frames "
            f"at {timeline.fps} fps = {timeline.seconds:.3f} s)",
            file=out,
        )
    return 0
