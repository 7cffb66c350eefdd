"""Stage 2 (with validate): the checked-document cache.

A storyboard checked before is not parsed, validated or templated again while nothing it
reads has changed: :func:`storyboard.validate.load_storyboard` finds the checked
:class:`~storyboard.model.Storyboard` in the store, ``<store>/boards/<namespace>.json``
(the namespace is the store's, one entry per storyboard file), and checks only that its
inputs are what they were:

* the storyboard file: the sha256 of its bytes (read each time: a few KB);
* every file a template included, and every include looked for and not found: the sha256
  of its text, or that it is still not there;
* every local media file the board names: its real path (still inside the storyboard's
  folder, no link out) and its ``(size, mtime_ns, inode)``, the digest memo's rule
  (:class:`storyboard.hashing.DigestMemo`): a file with another stamp is compared by its
  sha256 when the entry knows it, and a file changed within :data:`RACY_NS` before it was
  checked is never trusted by its stamp (git's "racily clean" rule);
* the ``--set`` values and ``$STORYBOARD_CACHE``;
* the tool: the package's version and the stamps of the modules and the schema that check
  a storyboard, and of PyYAML, Jinja2 and jsonschema.

What no digest sees (a link that now leads the cut or the store out of the folder) is
checked again on every hit (:func:`still_safe`); when it fails, the full check says why.

An entry is plain JSON (never pickle: a store may come from someone else) behind a line
with the sha256 of the rest, written atomically; a damaged, foreign or unexpected entry is
a miss. Entries are written by the pipeline (``load_storyboard(..., remember=True)``), only
into a store that exists (``validate`` creates none) and only when the board survives the
JSON round trip unchanged; every other reader (gc, a dry run) writes nothing. The pipeline
asks :func:`cached` before it imports the checking stages at all: a hit imports neither
the loader (PyYAML) nor Jinja nor jsonschema.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import os
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from storyboard import __version__
from storyboard.errors import StoryboardError
from storyboard.hashing import DigestMemo, atomic_write, canonical_json, sha256_bytes
from storyboard.model import Media, Storyboard
from storyboard.paths import VIDEO_CONTAINERS, preview_path, safe_output_path, store_root
from storyboard.project import DEFAULT_STORE, find_project

__all__ = [
    "MAX_SOURCE_BYTES",
    "RACY_NS",
    "Checked",
    "Inputs",
    "beside",
    "cached",
    "checked",
    "keep",
    "lookup",
    "read_source",
    "resolve",
    "save",
    "still_safe",
]

_FORMAT = 1
#: A file changed this close before the check began is not trusted by its stamp alone.
RACY_NS = 2_000_000_000
# The modules whose code decides what a storyboard checks to (and the keys a plan makes of
# it: plans remember keys per entry), and the schema they read.
_CHECKING = (
    "__init__", "boardcache", "catalog", "errors", "hashing", "keys", "loader", "mediainfo",
    "model", "paths", "plan", "project", "rules", "schema", "suggest", "templating", "validate",
)  # fmt: skip
_PACKAGE = Path(__file__).resolve().parent
_SCHEMAS = (
    _PACKAGE / "_schemas" / "storyboard.schema.json",
    _PACKAGE.parent / "schemas" / "storyboard.schema.json",
)
_LIBRARIES = ("yaml", "jinja2", "jsonschema")
#: The largest storyboard file read (the loader's :data:`~storyboard.loader.MAX_FILE_BYTES`;
#: not imported from there: a hit loads no YAML parser).
MAX_SOURCE_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass
class Inputs:
    """What one check of a storyboard read, for :func:`save`.

    Attributes:
        digest: sha256 of the storyboard file's bytes as they were parsed.
        started: ``time.time_ns()`` before anything was read.
        includes: every template file looked for (absolute path) -> sha256 of its text,
            ``None`` when it was not there.
    """

    digest: str
    started: int
    includes: Mapping[str, str | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Checked:
    """A cache hit: the board, the identity of its entry (the sha256 of the entry: the
    plan's generation keys are remembered for it, see :mod:`storyboard.keyindex`), and
    whether the entry should be written again (a stamp was confirmed by its digest)."""

    board: Storyboard
    identity: str = ""
    refresh: Inputs | None = None


def read_source(path: Path) -> bytes | None:
    """The storyboard file's bytes (as the loader bounds them), or ``None``."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SOURCE_BYTES + 1)
    except OSError:
        return None
    return raw if len(raw) <= MAX_SOURCE_BYTES else None


def resolve(file: str | Path) -> Path:
    """The real absolute path of a storyboard file, as
    :func:`storyboard.loader.storyboard_path` gives it (links followed)."""
    try:
        return Path(file).resolve()
    except (OSError, RuntimeError):  # a link loop: the loader reports it
        return Path(file).absolute()


# -- what validate calls -------------------------------------------------------------------


def cached(path: Path, overrides: Mapping[str, Any], *, write: bool = False) -> Storyboard | None:
    """The checked board of the storyboard at ``path`` (real, absolute) when nothing it
    reads changed and the files it writes still stay in its folder; ``None``: check it.

    ``write``: the store may be written (the entry again when a stamp was confirmed by its
    digest, and the digest memo); without it, nothing is written.
    """
    found = checked(path, overrides, write=write)
    return found.board if found is not None else None


def checked(path: Path, overrides: Mapping[str, Any], *, write: bool = False) -> Checked | None:
    """:func:`cached`, with the identity of the entry the board came from."""
    found = lookup(path, overrides, write=write)
    if found is None or not still_safe(found.board):
        return None
    if write and found.refresh is not None:
        save(found.board, overrides, found.refresh)
    return found


def keep(
    board: Storyboard,
    overrides: Mapping[str, Any],
    digest: str | None,
    started: int,
    included: Mapping[str, str | None],
) -> None:
    """Keep a board just checked (see :func:`save`); ``digest``: its file's sha256 as parsed
    (``None``: not read from a file), ``started``: ``time.time_ns()`` before it was read."""
    if digest is not None:
        save(board, overrides, Inputs(digest, started, included))


def still_safe(board: Storyboard) -> bool:
    """Whether the files a checked board writes still stay in its folder (a link may have
    appeared since it was checked); when not, the full check says where and why."""
    root = board.path.parent
    try:
        cut = board.output.path
        safe_output_path(root, cut, suffixes=VIDEO_CONTAINERS, what="output")
        safe_output_path(root, preview_path(cut), what="preview cut")
        for folder, name, what, is_folder in beside(board.path):
            safe_output_path(folder, name, what=what, folder=is_folder)
    except StoryboardError:
        return False
    return True


def beside(storyboard: Path) -> Iterator[tuple[Path, str, str, bool]]:
    """``(folder, name, what, is a folder)`` of what is written beside a storyboard and must
    not lead out of its folder through a link: its lock, and its project's store when that
    is at the project root.

    Raises:
        ProjectConfigError: the project's ``storyboard.toml`` cannot be used.
    """
    yield storyboard.parent, storyboard.with_suffix(".lock").name, "lock", False
    if not os.environ.get("STORYBOARD_CACHE"):  # a store the user chose may be anywhere
        project = find_project(storyboard)
        if project.store == project.root / DEFAULT_STORE:
            yield project.root, DEFAULT_STORE, "store folder", True


# -- the key: what is not a file --------------------------------------------------------------


def _stamp(path: Path | str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


@functools.cache
def _library_stamps() -> tuple[Any, ...]:
    out: list[Any] = []
    for name in _LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        out.append([name, origin, _stamp(origin) if origin else None])
    return tuple(out)


def _tool() -> list[Any]:
    """The version of the code that checks: stamps of its files (an edited checkout counts)."""
    modules = [[name, _stamp(_PACKAGE / f"{name}.py")] for name in _CHECKING]
    schemas = [[str(path), _stamp(path)] for path in _SCHEMAS]
    return [__version__, modules, schemas, list(_library_stamps())]


def _key(path: Path, overrides: Mapping[str, Any]) -> str | None:
    """The entry's key, or ``None`` when the ``--set`` values are not plain JSON data."""
    if not _plain(dict(overrides)):
        return None
    material = {
        "format": _FORMAT,
        "storyboard": str(path),
        "set": dict(overrides),
        "cache_env": os.environ.get("STORYBOARD_CACHE"),
        "tool": _tool(),
    }
    return sha256_bytes(canonical_json(material))


def _entry_path(path: Path) -> Path | None:
    """Where the entry of the storyboard at ``path`` lives; ``None`` without a store."""
    try:
        root = store_root(path)
    except StoryboardError:  # a broken storyboard.toml: the full check reports it
        return None
    namespace = sha256_bytes(str(path).encode())[:16]  # the store's (storyboard.cache)
    return root / "boards" / f"{namespace}.json"


# -- reading ----------------------------------------------------------------------------------


def lookup(
    path: Path,
    overrides: Mapping[str, Any],
    source: bytes | None = None,
    *,
    write: bool = False,
) -> Checked | None:
    """The checked board of the storyboard at ``path`` (real, absolute) if nothing it reads
    changed since it was checked; ``source``: the file's bytes now (read here when not
    given). ``write``: digests computed to confirm a changed stamp are kept in the store's
    digest memo.

    Never raises for anything found in the store: a damaged or foreign entry is a miss.
    """
    started = time.time_ns()
    entry_path = _entry_path(path)
    read = _read_entry(entry_path) if entry_path is not None else None
    if read is None:
        return None
    entry, identity = read
    if entry.get("key") != _key(path, overrides):
        return None
    if source is None:
        source = read_source(path)
    try:
        if source is None or entry["source"] != sha256_bytes(source):
            return None
        includes = entry["includes"]
        if not isinstance(includes, dict) or not _includes_unchanged(includes):
            return None
        board = _decode_board(entry["board"], path)
        confirmed = _media_unchanged(board, entry["media"], int(entry["started"]), path, write)
    except (KeyError, TypeError, ValueError, AttributeError, OSError):
        return None
    if confirmed is None:
        return None
    refresh = Inputs(entry["source"], started, includes) if confirmed else None
    return Checked(board, identity, refresh)


def _read_entry(entry_path: Path) -> tuple[dict[str, Any], str] | None:
    """The entry and its checksum (its identity), or ``None``."""
    try:
        raw = entry_path.read_bytes()
    except OSError:
        return None
    check, _, body = raw.partition(b"\n")
    identity = sha256_bytes(body)
    if check.decode("ascii", "replace") != identity:
        return None
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT:
        return None
    return entry, identity


def _text_digest(name: str) -> str | None:
    """sha256 of a template file's text as Jinja reads it (UTF-8, universal newlines)."""
    try:
        text = Path(name).read_text(encoding="utf-8")  # universal newlines, as Jinja
    except (OSError, ValueError):
        return None
    return sha256_bytes(text.encode("utf-8"))


def _includes_unchanged(includes: Mapping[str, Any]) -> bool:
    for name, digest in includes.items():
        if digest is None:
            if Path(name).is_file():
                return False
        elif _text_digest(name) != digest:
            return False
    return True


def _media_unchanged(
    board: Storyboard, known: Mapping[str, Any], checked: int, storyboard: Path, write: bool
) -> bool | None:
    """Whether every local file the board names is the file it was checked as: ``None`` if
    not, ``True`` when some stamp changed but its digest is the same (the entry is written
    again), ``False`` when every stamp is the same."""
    root = storyboard.parent
    real_root = Path(os.path.realpath(root))
    folders: dict[Path, Path] = {}
    memo: DigestMemo | None = None
    confirmed = False
    seen: set[tuple[str, Path]] = set()
    for media, path in _local_media(board):
        if (media.source, path) in seen:
            continue  # a file named by many shots is checked once
        seen.add((media.source, path))
        if _real(root / media.source, folders) != path or not path.is_relative_to(real_root):
            return None
        record = known[str(path)]
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        if stamp == record[:3] and st.st_mtime_ns < checked - RACY_NS:
            continue
        digest = record[3]
        if digest is None:
            return None
        if memo is None:
            memo = DigestMemo(store_root(storyboard) / "digests.json")
        if memo.digest(path) != digest:
            return None
        confirmed = True
    if memo is not None and write:
        memo.save()
    return confirmed


def _real(lexical: Path, folders: dict[Path, Path]) -> Path:
    """``os.path.realpath(lexical)``, resolving each folder once (a link to a file too)."""
    name = Path(os.path.normpath(lexical))
    real_folder = folders.get(name.parent)
    if real_folder is None:
        real_folder = folders[name.parent] = Path(os.path.realpath(name.parent))
    candidate = real_folder / name.name
    return Path(os.path.realpath(candidate)) if candidate.is_symlink() else candidate


def _local_media(board: Storyboard) -> Iterator[tuple[Media, Path]]:
    """Every local file the board names, with its (real) path."""
    for shot in board.shots:
        for media in shot.media():
            if media.path is not None:
                yield media, media.path
    audio = board.output.audio
    if audio is not None and audio.media.path is not None:
        yield audio.media, audio.media.path


# -- writing ----------------------------------------------------------------------------------


def save(board: Storyboard, overrides: Mapping[str, Any], inputs: Inputs) -> bool:
    """Keep the checked ``board`` for the next check; whether it was kept.

    Best effort and never raises: a store that does not exist (``validate`` creates none)
    or cannot be written, ``--set`` values or a board that JSON would not give back exactly,
    all only mean the next check does the work again.
    """
    path = board.path
    entry_path = _entry_path(path)
    key = _key(path, overrides)
    if entry_path is None or key is None or not entry_path.parent.parent.is_dir():
        return False
    try:
        encoded = _encode(board)
        if _decode_board(encoded, path) != board:
            return False
        media = _media_records(board, path, inputs.started)
        body = canonical_json(
            {
                "format": _FORMAT,
                "key": key,
                "started": inputs.started,
                "source": inputs.digest,
                "includes": dict(inputs.includes),
                "media": media,
                "board": encoded,
            }
        )
        atomic_write(entry_path, sha256_bytes(body).encode() + b"\n" + body)
    except (_NotPlain, OSError, TypeError, ValueError):
        return False
    return True


def _media_records(board: Storyboard, storyboard: Path, started: int) -> dict[str, Any]:
    """``real path -> [size, mtime_ns, inode, digest or None]`` of every local file; the
    digest only when the store's memo knows it for a stamp older than the check."""
    memo: DigestMemo | None = None
    out: dict[str, Any] = {}
    for _media, path in _local_media(board):
        st = path.stat()
        digest = None
        if st.st_mtime_ns < started - RACY_NS:
            if memo is None:
                memo = DigestMemo(store_root(storyboard) / "digests.json")
            digest = memo.known(path, st)
        out[str(path)] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
    return out


# -- the board as plain JSON (types from the model's annotations) ------------------------------


class _NotPlain(Exception):
    """A value JSON would not give back as it is (bytes, a set, a date, NaN ...)."""


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            # A default is left out only when it is the very same value (0 is not 0.0: keys
            # are made from these values' JSON).
            if f.default is not dataclasses.MISSING and _same_value(item, f.default):
                continue
            if f.default_factory is not dataclasses.MISSING and _same_value(
                item, f.default_factory()
            ):
                continue
            out[f.name] = _encode(item)
        return out
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        plain = dict(value)
        if not _plain(plain):
            raise _NotPlain
        return plain
    if not _plain(value):
        raise _NotPlain
    return value


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def _decode_board(data: Any, path: Path) -> Storyboard:
    board = _decoder(Storyboard)(data)
    if not isinstance(board, Storyboard) or board.path != path:
        raise ValueError("not this storyboard's entry")
    return board


Decode = Callable[[Any], Any]


@functools.cache
def _decoder(tp: Any) -> Decode:
    """A function from plain JSON to a value of the annotated type ``tp``."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [_decoder(a) for a in args if a is not type(None)]
        if len(inner) != 1 or inner[0] is _same:
            return _same
        one = inner[0]
        return lambda v: None if v is None else one(v)
    if origin is tuple:
        item = _decoder(args[0])
        return lambda v: tuple(item(x) for x in v)
    if tp is Path:
        return _path
    return _same  # str, int, float, bool, Literal, Mapping[str, Any]: plain already


def _same(value: Any) -> Any:
    return value


@functools.lru_cache(maxsize=4096)
def _path(text: str) -> Path:
    """A path (one object for the many shots that name one file)."""
    return Path(text)


def _dataclass_decoder(cls: type[Any]) -> Decode:
    hints = typing.get_type_hints(cls)
    special = {
        f.name: decode
        for f in dataclasses.fields(cls)
        if (decode := _decoder(hints[f.name])) is not _same
    }

    def build(data: Any) -> Any:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: not a mapping")
        return cls(**{k: (special[k](v) if k in special else v) for k, v in data.items()})

    return build
