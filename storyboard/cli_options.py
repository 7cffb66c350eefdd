"""The options of the command line: each option's definition and per-command help.

Which command takes which option is :data:`storyboard.cli._TAKES`; this module says what
each option is.
"""

from __future__ import annotations

import argparse

__all__ = ["add_option"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


_HELP = {
    "plan": {
        "--live": "plan the live render (its real cost, what the journal and the lock know)",
        "--budget": "say whether this run fits USD; exit 3 when it does not",
        "-o": "plan the cut at PATH instead of output.path",
        "--json": "the plan as JSON on stdout",
        "-v": "also list every take: seed, key, clip",
    },
    "render": {
        "--live": "render through the hosted providers (costs money)",
        "--budget": "refuse a live run whose estimate is over USD (overrides render.budget)",
        "-o": "write the cut to PATH",
        "--json": "one JSON report on stdout: rendered, up to date, failed, spent, the cut",
        "-v": "say which shots this run renders and why, before rendering",
    },
    "stitch": {
        "--live": "stitch the live clips, not the preview",
        "-o": "write the cut to PATH",
        "--json": "one JSON report on stdout: the cut's path and length, or why not",
    },
    "validate": {"--json": "the problems as a JSON list on stdout"},
    "review": {
        "--live": "review the live takes and cut",
        "-o": "write the review folder to DIR (default: renders/<cut>.review/)",
    },
    "sheet": {
        "--live": "the live cut",
        "-o": "write the image to PATH, .png or .jpg (default: renders/<cut>.sheet.png)",
        "--json": "the sheet's path, size and tiles as JSON on stdout",
    },
    "push": {
        "--jobs": "transfers at a time (default 8)",
        "--json": "what was sent as JSON on stdout (clips, bytes, failures)",
    },
    "pull": {
        "--jobs": "transfers at a time (default 8)",
        "--json": "what was fetched as JSON on stdout (clips, bytes, failures)",
    },
    "gc": {"--json": "what was removed and kept (local and remote) as JSON on stdout"},
    "export": {
        "--live": "export the live cut",
        "-o": "write the timeline to PATH (default: beside the cut, the format's suffix)",
        "--json": "what was written as JSON on stdout (path, clips, frames, warnings)",
    },
}


def add_option(p: argparse.ArgumentParser, command: str, name: str) -> None:
    helps = _HELP.get(command, {})
    if name == "--set":
        p.add_argument(
            "--set",
            dest="set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a variable of vars: or one a template reads (repeatable; VALUE "
            "is read as YAML)",
        )
    elif name == "--json":
        p.add_argument("--json", action="store_true", help=helps.get(name))
    elif name == "-q":
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    elif name == "-v":
        p.add_argument("-v", "--verbose", action="store_true", help=helps.get(name))
    elif name == "--live":
        p.add_argument("--live", action="store_true", help=helps.get(name))
    elif name == "--only":
        p.add_argument(
            "--only", type=_csv, default=[], metavar="ID[,ID]",
            help="only these shots (and the shots they extend or continue)",
        )  # fmt: skip
    elif name == "--force":
        p.add_argument(
            "--force", type=_csv, default=[], metavar="ID[,ID]",
            help="render these shots again even if they are up to date",
        )  # fmt: skip
    elif name == "--force-all":
        p.add_argument("--force-all", action="store_true", help="render every shot again")
    elif name == "--budget":
        p.add_argument("--budget", type=float, default=None, metavar="USD", help=helps.get(name))
    elif name == "--jobs":
        p.add_argument(
            "--jobs", type=int, default=None, metavar="N",
            help=helps.get(name, "tasks in flight per provider (default: render.concurrency)"),
        )  # fmt: skip
    elif name == "--keep-going":
        p.add_argument(
            "--keep-going", action="store_true",
            help="render everything possible despite failures",
        )  # fmt: skip
    elif name == "-o":
        metavar = "DIR" if command == "review" else "PATH"
        p.add_argument("-o", "--output", default=None, metavar=metavar, help=helps.get(name))
    elif name == "--serve":
        p.add_argument(
            "--serve", action="store_true",
            help="serve the page on 127.0.0.1 and let the reviewer pick takes: the choice is "
            "written to the storyboard's select: line and the cut re-stitched (no render)",
        )  # fmt: skip
    elif name == "--port":
        p.add_argument(
            "--port", type=int, default=0, metavar="N",
            help="with --serve: the port on 127.0.0.1 (default: any free one)",
        )  # fmt: skip
    elif name == "--format":
        p.add_argument(
            "--format", required=True, choices=("otio", "otioz", "fcpxml", "fcp7xml", "edl"),
            help="otio (OpenTimelineIO), otioz (with its media), fcpxml (Final Cut Pro X), "
            "fcp7xml (Final Cut Pro 7 XML: Premiere, Resolve), edl (CMX 3600)",
        )  # fmt: skip
    elif name == "--no-remote":
        p.add_argument(
            "--no-remote", action="store_true",
            help="work alone: do not look in, claim on or push to the project's remote store "
            "(storyboard.toml [remote])",
        )  # fmt: skip
    elif name == "--remote":
        p.add_argument(
            "--remote", action="store_true",
            help="also remove from the project's remote store what nothing names",
        )  # fmt: skip
    elif name == "--dry-run":
        p.add_argument(
            "--dry-run", action="store_true",
            help="say what would be removed and the bytes it would free; remove nothing",
        )  # fmt: skip
    elif name == "--copy-media":
        p.add_argument(
            "--copy-media", action="store_true",
            help="copy the clips next to the export (relative references) instead of "
            "pointing into the store",
        )  # fmt: skip
    else:  # pragma: no cover - a name in _TAKES with no definition here
        raise AssertionError(name)
