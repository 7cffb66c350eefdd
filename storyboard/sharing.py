"""``storyboard push`` / ``pull``: the clips the locks name, to and from the project's remote.

A storyboard's lock (``<stem>.lock``) names, for every take a live render bought, its
generation key and the sha256 of its clip. :func:`push` sends those clips with their key
records to the project's remote store (``[remote]`` in ``storyboard.toml``), and :func:`pull`
fetches them into the local store, so a teammate's checkout renders the cut for $0: a
pulled clip is recorded in the store's key index, and ``plan --live`` shows it fresh.

Both go through :class:`storyboard.remote.Remote` (fsspec): transfers run ``jobs`` at a
time, every object is verified by its sha256 before it is used (on the remote, against the
key record; locally, before it enters the store), and they are resumable: what is already
there is skipped, so a re-run after an interruption sends or fetches only what is missing.

A pull downloads into ``tmp/pull-<pid>/`` of the store: a pull killed mid-transfer leaves
its part files there, never in ``objects/``, and the next pull removes them.

Which storyboards: the files or folders named (a folder: every storyboard under it), or,
with none, every storyboard of the project the current folder is in
(:func:`find_storyboards`). A storyboard is what :func:`storyboard.batch.is_storyboard`
says (a ``.yaml``/``.yml`` file with a top-level ``storyboard:`` key); hidden folders
(``.git``, the store), ``renders``, ``node_modules`` and nested projects (a folder with its
own ``storyboard.toml`` or ``.git``) are not searched. The same search lists every lock
file of the project's working tree, and :func:`git_locks` every lock of every branch and
tag: what ``storyboard gc`` keeps (:mod:`storyboard.gc`).

Credentials never pass through here: the backend reads its usual ones (the environment,
``~/.aws``, a profile); reports carry the remote's URL as ``storyboard.toml`` names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storyboard.batch import is_storyboard
from storyboard.cache import Store
from storyboard.errors import LockUnreadable, StoryboardError, UsageError
from storyboard.paths import UnsafePath

if TYPE_CHECKING:
    from storyboard.cache import ClipEntry
    from storyboard.lockfile import LockRecord
    from storyboard.project import Project
    from storyboard.remote import Remote, TransferEvent

__all__ = [
    "REMOTE_EXAMPLE",
    "Failure",
    "Listed",
    "NoRemote",
    "Progress",
    "Selection",
    "Transfer",
    "find_storyboards",
    "git_locks",
    "lock_takes",
    "locked_clips",
    "named_digests",
    "pull",
    "push",
    "read_locks",
    "remote_listing",
]

# Folders never searched for storyboards or locks (besides hidden ones and nested projects).
_SKIPPED_FOLDERS = frozenset({"renders", "node_modules", "__pycache__", "venv", "site-packages"})
# Seconds each git command of the branch scan may take.
_GIT_DEADLINE = 60.0
# The folder (in the store's tmp/) where the pull of process PID downloads.
_PULL_FOLDER = re.compile(r"^pull-(\d+)$")

#: The ``[remote]`` table a project without a remote is shown (in :class:`NoRemote`'s hint).
REMOTE_EXAMPLE = (
    '[remote]\nurl = "s3://BUCKET/PREFIX"   # or a shared folder: url = "/mnt/team/renders"'
)


class NoRemote(UsageError):
    """The project has no remote store (no ``[remote]`` table in its ``storyboard.toml``).

    Attributes:
        root: the project root.
        config: the project's ``storyboard.toml``, ``None`` when it has none.
    """

    def __init__(self, root: Path, config: Path | None, command: str) -> None:
        where = str(config) if config is not None else f"{root} (no storyboard.toml)"
        super().__init__(f"storyboard {command}: the project has no remote store: {where}")
        self.root = root
        self.config = config

    def hint(self) -> str | None:
        target = self.config if self.config is not None else self.root / "storyboard.toml"
        table = REMOTE_EXAMPLE.replace("\n", "\n    ")
        return f"add a [remote] table to {target}:\n    {table}"


@dataclass(frozen=True)
class Selection:
    """The storyboards a command works on, and their project.

    Attributes:
        project: the project they belong to (one store, one remote).
        storyboards: the storyboard files, absolute, in a stable order.
        named: whether the caller named them (``False``: found by searching the project).
        locks: every storyboard lock under the searched folders (for ``gc``).
    """

    project: Project
    storyboards: tuple[Path, ...]
    named: bool
    locks: tuple[Path, ...] = ()


def find_storyboards(
    paths: Sequence[str | Path] = (), *, cwd: Path | None = None, what: str = "storyboard"
) -> Selection:
    """The storyboards ``paths`` name (files or folders), or every one of the project.

    Args:
        paths: storyboard files, or folders to search; none: the project of ``cwd``.
        cwd: the folder relative paths start from (default: the current folder).
        what: the command, for messages (``push``, ``gc``...).

    Returns:
        The storyboards and their project. ``locks`` holds every lock file found while
        searching the project root (always searched, whatever ``paths`` names).

    Raises:
        UsageError: a path does not exist, a folder holds no storyboard, or the storyboards
            belong to projects with different stores or remotes.
        ProjectConfigError: a project's ``storyboard.toml`` cannot be used.
    """
    from storyboard.project import find_project

    here = (cwd or Path.cwd()).absolute()
    found: list[Path] = []
    projects: list[tuple[Path, Project]] = []
    if not paths:
        project = find_project(here / "storyboard.yaml")
        found = _search(project.root, project)[0]
        if not found:
            raise UsageError(
                f"storyboard {what}: no storyboard under {project.root}",
                hint=f"name one: storyboard {what} FILE",
            )
        projects.append((project.root, project))
    for given in paths:
        path = here / Path(given).expanduser()
        if path.is_dir():
            project = find_project(path / "storyboard.yaml")
            inside = _search(path, project)[0]
            if not inside:
                raise UsageError(
                    f"storyboard {what}: no storyboard in {given}",
                    hint="a storyboard is a .yaml file with a top-level storyboard: line",
                )
            found.extend(inside)
            projects.append((path, project))
        elif path.is_file():
            project = find_project(path)
            found.append(Path(os.path.realpath(path)))
            projects.append((path, project))
        else:
            raise UsageError(f"storyboard {what}: no such file or folder: {given}")
    project = projects[0][1]
    for origin, other in projects[1:]:
        if other.store != project.store or other.remote != project.remote:
            raise UsageError(
                f"storyboard {what}: {origin} belongs to another project ({other.root}) than "
                f"{projects[0][0]} ({project.root})",
                hint=f"run storyboard {what} once per project",
            )
    locks = _search(project.root, project)[1]
    unique = tuple(dict.fromkeys(found))
    return Selection(project, unique, named=bool(paths), locks=tuple(locks))


def _search(folder: Path, project: Project) -> tuple[list[Path], list[Path]]:
    """Storyboards and lock files under ``folder`` (sorted), not entering hidden folders,
    the store, other projects or links."""
    store = Path(os.path.realpath(project.store))
    boards: list[Path] = []
    locks: list[Path] = []
    for current, dirs, files in os.walk(os.path.realpath(folder)):
        here = Path(current)
        keep = []
        for name in sorted(dirs):
            inner = here / name
            if name.startswith(".") or name in _SKIPPED_FOLDERS or inner == store:
                continue
            if (inner / "storyboard.toml").is_file() or os.path.lexists(inner / ".git"):
                continue  # a project of its own
            keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            path = here / name
            if name.endswith(".lock"):
                locks.append(path)
            elif is_storyboard(path):
                boards.append(path)
    return boards, locks


# -- what the locks name ---------------------------------------------------------------------


def locked_clips(storyboards: Iterable[Path]) -> dict[str, tuple[Path, LockRecord]]:
    """Generation key -> ``(storyboard, lock record)`` of every take the storyboards' locks
    name, once per key (the first lock naming it wins).

    Raises:
        LockUnreadable: a lock exists but cannot be read (a merge conflict, bad JSON).
    """
    from storyboard.lockfile import lock_index

    seen: dict[str, tuple[Path, LockRecord]] = {}
    for board in storyboards:
        for key, record in lock_index(board).items():
            seen.setdefault(key, (board, record))
    return seen


def _stored(store: Store, record: LockRecord) -> ClipEntry | None:
    """The clip of ``record`` in the store (recorded in the key index when only the object
    was there, as a plan does), or ``None`` when the store does not hold it intact."""
    entry = store.lookup(record.key)
    if entry is not None and entry.digest == record.output:
        return entry
    found = store.locate(
        record.key, record.output, seconds=float(record.duration), shot=record.shot,
        take=record.take or 1, provenance=record.provenance,
    )  # fmt: skip
    if found is not None:
        store.link(found)
    return found


# -- every lock: the working tree's, and every branch's ----------------------------------------


def read_locks(locks: Iterable[Path]) -> list[tuple[Path, Mapping[str, Any]]]:
    """The storyboard locks among ``locks`` as ``(path, data)``.

    A ``*.lock`` beside a ``.yaml``/``.yml`` of the same stem must read (else
    :class:`LockUnreadable`: it may name anything); any other ``*.lock`` counts only when it
    reads as a storyboard lock (``poetry.lock`` and friends are not ours).

    Raises:
        LockUnreadable: a lock beside a storyboard cannot be read.
        UnsafePath: a lock beside a storyboard is a link leading out of its folder.
    """
    from storyboard.lockfile import read_lock

    found: list[tuple[Path, Mapping[str, Any]]] = []
    for lock in locks:
        beside = any(lock.with_suffix(s).is_file() for s in (".yaml", ".yml"))
        try:
            data = read_lock(lock.with_suffix(".yaml"))
        except (LockUnreadable, UnsafePath):
            if beside:
                raise
            continue
        if data is not None:
            found.append((lock, data))
    return found


def lock_takes(data: Mapping[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """``(key, output digest, upstream key)`` of every take of a lock's data."""
    for shot in data.get("shots", {}).values():
        for take in shot.get("takes", []):
            upstream = take.get("upstream")
            up = upstream.get("key") if isinstance(upstream, Mapping) else None
            yield str(take["key"]), str(take["output"]), up if isinstance(up, str) else None


@dataclass(frozen=True)
class Listed:
    """A file of the remote store: its size, and when it was written (``None``: not known)."""

    size: int
    modified: float | None


def remote_listing(remote: Remote, folder: str, suffix: str) -> dict[str, Listed]:
    """Name (digest or key) -> size and time of every file of ``folder`` in the remote."""
    from storyboard.remote import RemoteError

    path = f"{remote.root}/{folder}"
    try:
        found = remote.fs.find(path, detail=True)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise RemoteError(
            f"remote {remote.url}: cannot list {folder}/: {type(exc).__name__}",
            url=remote.url,
            operation="list",
            path=folder,
            hint="check the network and the [remote] table of storyboard.toml, then run again",
        ) from None
    out: dict[str, Listed] = {}
    for name, info in found.items():
        base = str(name).rpartition("/")[2]
        if info.get("type", "file") != "file" or not base.endswith(suffix):
            continue
        if base.startswith("."):
            continue  # a write in progress on a shared folder
        stem = base.removesuffix(suffix)
        out[stem] = Listed(int(info.get("size") or 0), _modified(info))
    return out


def _modified(info: Mapping[str, Any]) -> float | None:
    """When a listed file was written, from whichever field its backend uses."""
    from datetime import datetime

    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def named_digests(remote: Remote, keys: Sequence[str]) -> set[str]:
    """The digests the remote's key records of ``keys`` name (unreadable ones name nothing)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(key: str) -> str | None:
        try:
            entry = remote.read_record(key)
        except StoryboardError:
            return None
        return entry.digest if entry is not None else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {d for d in pool.map(one, keys) if d}


def git_locks(root: Path) -> Iterator[tuple[str, str]]:
    """``(key, digest)`` of every take a storyboard lock names in any branch or tag of the git
    repository ``root`` is in (nothing when it is in none, or git is not installed)."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        return

    def run(*args: str, data: bytes | None = None) -> bytes | None:
        try:
            done = subprocess.run(
                [git, "-C", str(root), *args], input=data, capture_output=True,
                timeout=_GIT_DEADLINE, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    refs = run("for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags", "refs/remotes")
    if not refs:
        return
    blobs: set[str] = set()
    for tip in sorted(set(refs.decode().split())):
        tree = run("ls-tree", "-r", "-z", tip)
        for item in (tree or b"").split(b"\0"):
            meta, _, name = item.partition(b"\t")
            parts = meta.split()
            if name.endswith(b".lock") and len(parts) == 3 and parts[1] == b"blob":
                blobs.add(parts[2].decode())
    if not blobs:
        return
    out = run("cat-file", "--batch", data="".join(f"{b}\n" for b in sorted(blobs)).encode())
    at = 0
    while out and at < len(out):
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:
            continue  # "<name> missing"
        size = int(header[2])
        body = out[at : at + size]
        at += size + 1
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("lock") == 1 and isinstance(data.get("shots"), dict):
            with contextlib.suppress(AttributeError, KeyError, TypeError):
                for key, digest, _up in lock_takes(data):
                    yield key, digest


# -- push and pull ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A clip a transfer could not move: its key, where a lock names it, and why."""

    key: str
    storyboard: Path
    shot: str
    take: int | None
    reason: str

    def __str__(self) -> str:
        take = f" take {self.take}" if self.take and self.take > 1 else ""
        return f"{self.storyboard.name}: {self.shot}{take} ({self.key[:12]}): {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "storyboard": str(self.storyboard),
            "shot": self.shot,
            "take": self.take,
            "error": self.reason,
        }


@dataclass(frozen=True)
class Transfer:
    """What :func:`push` or :func:`pull` did.

    Attributes:
        direction: ``push`` or ``pull``.
        url: the remote, as ``storyboard.toml`` names it (never a credential).
        storyboards: the storyboards whose locks were read.
        clips: how many clips the locks name (one per generation key).
        moved: clips this run sent (push) or fetched (pull).
        skipped: clips already there (nothing moved for them).
        bytes: bytes of objects this run moved.
        failed: each clip that could not be moved, and why.
    """

    direction: Literal["push", "pull"]
    url: str
    storyboards: tuple[Path, ...]
    clips: int
    moved: int
    skipped: int
    bytes: int
    failed: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        """The ``push --json`` / ``pull --json`` document."""
        return {
            "direction": self.direction,
            "remote": self.url,
            "storyboards": [str(p) for p in self.storyboards],
            "clips": self.clips,
            "sent" if self.direction == "push" else "fetched": self.moved,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "failed": [f.to_json() for f in self.failed],
        }


#: Called once per clip moved, skipped or failed: ``(done, total)``.
Progress = Callable[[int, int], None]


def _open(selection: Selection, command: str) -> Remote:
    from storyboard.remote import Remote

    config = selection.project.remote
    if config is None:
        raise NoRemote(selection.project.root, selection.project.config, command)
    return Remote.open(config)


def _store(selection: Selection) -> Store:
    """The project's store, with the store an earlier version kept beside each storyboard
    adopted into it first (its clips need no transfer)."""
    stores = [Store.for_storyboard(board) for board in selection.storyboards]
    return stores[0]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _PullStore(Store):
    """The project's store as a pull writes into it: downloads go to ``tmp/pull-<pid>/``.

    A pull killed mid-transfer leaves its part files there, never in ``objects/`` (a clip
    enters the store only once its sha256 is checked); the next pull removes the folders of
    processes that are gone, and its own when it ends.
    """

    def tmp_dir(self) -> Path:
        path = super().tmp_dir() / f"pull-{os.getpid()}"
        path.mkdir(exist_ok=True)
        return path

    def finish(self) -> None:
        """Remove this pull's download folder and those of pulls that were killed."""
        self.save()
        tmp = self.root / "tmp"
        try:
            folders = sorted(tmp.iterdir())
        except OSError:
            return
        for folder in folders:
            match = _PULL_FOLDER.match(folder.name)
            if match is None or not folder.is_dir():
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)


def _events(on_progress: Progress | None) -> Callable[[TransferEvent], None] | None:
    if on_progress is None:
        return None

    def forward(event: TransferEvent) -> None:
        on_progress(event.done, event.total)

    return forward


def push(
    paths: Sequence[str | Path] = (),
    *,
    jobs: int = 8,
    cwd: Path | None = None,
    on_progress: Progress | None = None,
) -> Transfer:
    """Send the clips the storyboards' locks name, with their key records, to the remote.

    What the remote already holds (the object at its size, the same key record) is skipped.
    A clip the local store does not hold is fine when the remote has it already, and a
    failure otherwise (nobody can pull it: the lock names a clip no one has).

    Args:
        paths: storyboard files or folders; none: every storyboard of the project of ``cwd``.
        jobs: transfers at a time.
        cwd: the folder relative paths start from (default: the current folder).
        on_progress: called as each clip is done.

    Raises:
        NoRemote: the project has no ``[remote]``.
        UsageError: see :func:`find_storyboards`.
        LockUnreadable: a lock cannot be read.
        RemoteUnavailable: the remote's backend is not installed or refuses its options.
    """
    selection = find_storyboards(paths, cwd=cwd, what="push")
    remote = _open(selection, "push")
    clips = locked_clips(selection.storyboards)
    store = _store(selection)
    entries: list[ClipEntry] = []
    absent: list[str] = []
    for key, (_board, record) in clips.items():
        entry = _stored(store, record)
        if entry is None:
            absent.append(key)
        else:
            entries.append(entry)
    report = remote.push_many(store, entries, jobs=jobs, on_progress=_events(on_progress))
    store.save()
    failed = dict(report.failed)
    for key in report.corrupt:
        failed[key] = (
            "the stored clip is not what its digest says; it was dropped from the store "
            "and not pushed (render it again, or pull it)"
        )
    skipped = report.skipped
    for key in absent:
        if _on_remote(remote, key):
            skipped += 1  # a teammate pushed it: nothing to send
        else:
            failed[key] = "neither the local store nor the remote has this clip"
    return Transfer(
        "push", remote.url, selection.storyboards, len(clips), report.sent, skipped,
        report.bytes, _failures(failed, clips),
    )  # fmt: skip


def _on_remote(remote: Remote, key: str) -> bool:
    try:
        return remote.has_key(key)
    except StoryboardError:
        return False


def pull(
    paths: Sequence[str | Path] = (),
    *,
    jobs: int = 8,
    cwd: Path | None = None,
    on_progress: Progress | None = None,
) -> Transfer:
    """Fetch the clips the storyboards' locks name from the remote into the local store.

    A clip the store already holds is skipped (and recorded in the store's key index if only
    its object was there). Each fetched object is downloaded into the store's ``tmp/`` and
    verified by its sha256 before it enters the store: an interrupted pull leaves no half
    clip, and running it again fetches only what is still missing. A pulled clip is recorded
    in the key index, so ``plan --live`` shows its take fresh.

    Raises:
        NoRemote: the project has no ``[remote]``.
        UsageError: see :func:`find_storyboards`.
        LockUnreadable: a lock cannot be read.
        RemoteUnavailable: the remote's backend is not installed or refuses its options.
    """
    selection = find_storyboards(paths, cwd=cwd, what="pull")
    remote = _open(selection, "pull")
    clips = locked_clips(selection.storyboards)
    store = _store(selection)
    wanted = [key for key, (_board, record) in clips.items() if _stored(store, record) is None]
    store.save()
    into = _PullStore(store.root, selection.storyboards[0])
    try:
        report = remote.pull_many(into, wanted, jobs=jobs, on_progress=_events(on_progress))
    finally:
        into.finish()
    failed = dict(report.failed)
    for key in report.missing:
        failed[key] = "the remote does not have this clip (push it from a machine that has it)"
    for key in report.corrupt:
        failed[key] = (
            "the remote's copy is not what its name says: refused and removed from the "
            "remote (push it again from a machine that has it)"
        )
    skipped = len(clips) - len(wanted) + report.skipped
    return Transfer(
        "pull", remote.url, selection.storyboards, len(clips), report.fetched, skipped,
        report.bytes, _failures(failed, clips),
    )  # fmt: skip


def _failures(
    failed: Mapping[str, str], clips: Mapping[str, tuple[Path, LockRecord]]
) -> tuple[Failure, ...]:
    out = []
    for key, reason in sorted(failed.items()):
        board, record = clips[key]
        out.append(Failure(key, board, record.shot, record.take, reason))
    return tuple(out)
