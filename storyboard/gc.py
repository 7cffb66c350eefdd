"""``storyboard gc``: remove from the store what no lock and no current plan names.

What is kept (everything else in ``objects/`` and ``keys/`` goes):

* every take of the current plans of the storyboards (the preview plan and the live plan,
  every take, not only the selected one), with the clip its key record names;
* every take a lock names: the locks of the storyboards, and every other storyboard lock in
  the project's working tree (a ``*.lock`` beside a ``.yaml``/``.yml`` of the same stem, or
  any ``*.lock`` holding a storyboard lock), with the clip it names;
* what a journalled task still needs: a take the journal holds as submitted but not
  settled (``intent``, ``submitted``, ``unknown``) is resumed or resent by the next run,
  which needs the clip it builds on (its ``extends``/``continues`` upstream): that clip
  is kept, wherever the plans, the locks or the store's records of earlier renders say
  it is;
* anything that appeared in the store after gc listed it.

What hangs off a removed clip goes with it: its ``checks/`` record, its digest-memo entries
(every memo entry of a file of the store that no longer exists), and the stitcher's work
files no current cut uses (what :func:`storyboard.workfolder.prune` removes).

A store in use is never collected. gc holds the store's lock (``<store>/.lock``, exclusive,
not waited for) for the whole run, and refuses (:class:`StoreBusy`, exit 1) when another
process holds it, when a cut is being stitched (the cutter's work-folder lock is held), or
when a live render is running (the journal has unsettled takes owned by a live process).
Renders that hold the store's lock shared (see :func:`hold_store`) keep gc out entirely.

A store outside the project root (``$STORYBOARD_CACHE``, or a ``[store] path`` elsewhere)
may serve other projects whose locks gc cannot see: gc refuses it
(:class:`SharedStore`, exit 2) rather than delete a clip another project paid for.

With ``remote=True`` the project's remote store is collected by the same rule, judged by
this working tree's locks and plans, plus every storyboard lock in any branch or tag of the
project's git repository (a teammate's branch keeps its clips). Remote claims (and the
small markers of claims taken over) are never touched, and a remote object newer than :data:`REMOTE_GRACE` seconds is kept (a teammate may
be pushing it with its key record).

``dry_run=True`` removes nothing and reports what would go and the bytes it would free;
otherwise ``removed.bytes`` is measured: the store's size before minus after.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storyboard.errors import LockUnreadable, StoryboardError, UsageError
from storyboard.hashing import atomic_write, canonical_json, sha256_bytes
from storyboard.locks import STORE_LOCK, hold_store
from storyboard.paths import UnsafePath
from storyboard.sharing import (
    Listed,
    NoRemote,
    find_storyboards,
    git_locks,
    lock_takes,
    named_digests,
    read_locks,
    remote_listing,
)

if TYPE_CHECKING:
    from storyboard.plan import Plan
    from storyboard.project import Project
    from storyboard.sharing import Selection

__all__ = [
    "REMOTE_GRACE",
    "STORE_LOCK",
    "Collected",
    "RemoteCollected",
    "Removal",
    "SharedStore",
    "StoreBusy",
    "Tally",
    "collect",
    "hold_store",
]

#: Seconds a remote object stays safe from ``gc --remote`` after it was written.
REMOTE_GRACE = 3600.0

# The folders of a cut's work folder that hold only files a cut makes: what the cutter's
# prune looks at (storyboard.workfolder, _WORK_FOLDERS).
_WORK_FOLDERS = ("lengths", "pieces", "seams", "audio", "tmp")
# Journal states whose key a later run resumes or resends (it may still need its upstream).
_UNSETTLED = ("intent", "submitted", "unknown")
# The journal's SQLite companions, made by any reader of a WAL database.
_TRANSIENT = ("journal.sqlite-wal", "journal.sqlite-shm")


# -- errors ----------------------------------------------------------------------------------


class StoreBusy(StoryboardError):
    """The store is in use (a render, a stitch, another gc): nothing was removed (exit 1).

    Attributes:
        store: the store's folder.
        holder: what holds it, in words ("a live render (pid 123 on host)", ...).
    """

    def __init__(self, store: Path, holder: str) -> None:
        super().__init__(f"the store {store} is in use by {holder}; nothing was removed")
        self.store = store
        self.holder = holder

    def hint(self) -> str | None:
        return "let it finish, then run `storyboard gc` again"


class SharedStore(UsageError):
    """The store is outside the project root, so it may serve projects gc cannot see.

    Attributes:
        store: the store's folder.
        root: the project root.
    """

    def __init__(self, store: Path, root: Path) -> None:
        super().__init__(
            f"the store {store} is outside the project {root}: other projects may use it, "
            "and gc cannot see their locks; nothing was removed"
        )
        self.store = store
        self.root = root

    def hint(self) -> str | None:
        return (
            "run gc without $STORYBOARD_CACHE (or a [store] path outside the project), "
            "or delete that cache folder yourself"
        )


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """Clips (objects), key records, and bytes."""

    objects: int = 0
    keys: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"objects": self.objects, "keys": self.keys, "bytes": self.bytes}


@dataclass(frozen=True)
class Removal:
    """One object or key record gc removed (or, in a dry run, would remove).

    ``shot``/``take`` come from the key record that named the object, when one did.
    """

    kind: Literal["object", "key"]
    name: str  # the object's digest or the record's key
    bytes: int
    shot: str | None = None
    take: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "bytes": self.bytes,
            "shot": self.shot,
            "take": self.take,
        }


@dataclass(frozen=True)
class RemoteCollected:
    """What ``gc --remote`` did on the remote (``bytes``: the removed objects' sizes)."""

    url: str
    removed: Tally
    kept: Tally
    removals: tuple[Removal, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (name, why) of what could not be removed

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "removed": self.removed.to_json(),
            "kept": self.kept.to_json(),
            "failed": [{"name": n, "error": e} for n, e in self.failed],
        }


@dataclass(frozen=True)
class Collected:
    """What :func:`collect` did.

    Attributes:
        store: the store's folder.
        dry_run: nothing was removed; ``removed`` is what would be.
        storyboards: the storyboards whose plans were kept.
        skipped: ``(storyboard, why)`` of storyboards found by searching the project that
            could not be planned (invalid): only their locks protect their clips.
        locks: the lock files whose clips were kept.
        removed: objects and key records removed; ``bytes`` is measured (the store's size
            before minus after, everything gc removed included), or, in a dry run, the sum
            of the sizes of what would be removed.
        kept: objects and key records that stay, and the objects' bytes.
        removals: each object and key record removed (or that would be).
        checks: ``checks/`` records removed with their clips.
        pieces: stitcher work files no current cut uses, removed.
        memo: digest-memo entries dropped.
        remote: what was done on the remote (``None`` without ``remote=True``).
    """

    store: Path
    dry_run: bool
    storyboards: tuple[Path, ...]
    removed: Tally
    kept: Tally
    removals: tuple[Removal, ...] = ()
    skipped: tuple[tuple[Path, str], ...] = ()
    locks: tuple[Path, ...] = ()
    checks: int = 0
    pieces: int = 0
    memo: int = 0
    remote: RemoteCollected | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``gc --json`` document."""
        return {
            "store": str(self.store),
            "dry_run": self.dry_run,
            "storyboards": [str(p) for p in self.storyboards],
            "skipped": [{"storyboard": str(p), "reason": why} for p, why in self.skipped],
            "locks": [str(p) for p in self.locks],
            "removed": {
                **self.removed.to_json(),
                "checks": self.checks,
                "pieces": self.pieces,
                "memo": self.memo,
            },
            "kept": self.kept.to_json(),
            "removals": [r.to_json() for r in self.removals],
            "remote": self.remote.to_json() if self.remote is not None else None,
        }


# -- what is kept ----------------------------------------------------------------------------


@dataclass
class _Keep:
    """The keys and digests gc keeps, and the upstream links it learned on the way."""

    keys: set[str] = field(default_factory=set)
    digests: set[str] = field(default_factory=set)
    upstream: dict[str, str] = field(default_factory=dict)  # take key -> upstream key

    def take(self, key: str, digest: str | None = None, upstream: str | None = None) -> None:
        self.keys.add(key)
        if digest:
            self.digests.add(digest)
        if upstream:
            self.upstream.setdefault(key, upstream)


def _plans(selection: Selection, store_root: Path) -> tuple[list[Plan], list[tuple[Path, str]]]:
    """The preview and live plans of every storyboard (read-only: the store is not written).

    Raises:
        StoryboardError: a storyboard the caller named cannot be planned.
    """
    from storyboard.cache import Store
    from storyboard.pipeline import known_facts
    from storyboard.plan import make_plan
    from storyboard.validate import load_storyboard

    plans: list[Plan] = []
    skipped: list[tuple[Path, str]] = []
    for path in selection.storyboards:
        try:
            board = load_storyboard(path)
            store = Store(store_root, board.path)
            for backend in ("preview", "live"):
                facts = known_facts(board, store, backend)
                plans.append(make_plan(board, store, backend=backend, facts=facts))
        except (LockUnreadable, UnsafePath):
            raise  # a lock gc cannot read may name anything: never guess
        except StoryboardError as exc:
            if selection.named:
                raise
            skipped.append((path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    return plans, skipped


@dataclass(frozen=True)
class _Journal:
    """What gc reads from the journal: unsettled keys, and who runs them."""

    unsettled: frozenset[str]
    running: tuple[str, ...]  # owners (host:pid) of unsettled takes that are alive


def _read_journal(store_root: Path) -> _Journal:
    from storyboard.journal import journal_path

    path = journal_path(store_root)
    if not path.exists():
        return _Journal(frozenset(), ())
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            marks = ",".join("?" * len(_UNSETTLED))
            rows = db.execute(
                f"SELECT key, owner FROM tasks WHERE state IN ({marks})", _UNSETTLED
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        # A journal gc cannot read may hold tasks that need clips: never guess.
        raise StoreBusy(store_root, f"a task journal gc cannot read ({exc})") from exc
    running = sorted({str(owner) for _, owner in rows if owner and _alive(str(owner))})
    return _Journal(frozenset(str(key) for key, _ in rows), tuple(running))


def _alive(owner: str) -> bool:
    """Whether the process ``host:pid`` runs (on this machine; this process does not count)."""
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recorded_upstreams(store_root: Path, keys: set[str]) -> dict[str, str]:
    """Upstream keys of ``keys`` from the store's records of what shots were rendered from."""
    found: dict[str, str] = {}
    if not keys:
        return found
    for record in sorted((store_root / "shots").glob("*/*/*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        key = sha256_bytes(canonical_json(data))
        upstream = data.get("upstream")
        if key in keys and isinstance(upstream, Mapping) and isinstance(upstream.get("key"), str):
            found[key] = upstream["key"]
    return found


# -- what is there ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    key: str
    path: Path
    size: int
    digest: str | None
    shot: str | None
    take: int | None


def _records(store_root: Path) -> list[_Record]:
    out: list[_Record] = []
    for path in sorted((store_root / "keys").glob("*/*.json")):
        if path.name.startswith("."):
            continue  # a write in progress
        try:
            size = path.stat().st_size
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data, size = None, _size(path)
        raw = data if isinstance(data, dict) else {}
        digest, shot, take = raw.get("digest"), raw.get("shot"), raw.get("take")
        out.append(
            _Record(
                key=path.stem,
                path=path,
                size=size,
                digest=digest if isinstance(digest, str) else None,
                shot=shot if isinstance(shot, str) else None,
                take=take if isinstance(take, int) and not isinstance(take, bool) else None,
            )
        )
    return out


def _objects(store_root: Path) -> dict[str, tuple[Path, int]]:
    out: dict[str, tuple[Path, int]] = {}
    for path in sorted((store_root / "objects").glob("*/*.mp4")):
        if not path.name.startswith("."):
            out[path.stem] = (path, _size(path))
    return out


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _usage(root: Path) -> int:
    """Bytes of every regular file under ``root`` but SQLite's transient ``-wal``/``-shm``
    files of the journal (they come and go with whoever reads it, gc included)."""
    total = 0
    for current, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(_TRANSIENT):
                continue
            with contextlib.suppress(OSError):
                total += (Path(current) / name).lstat().st_size
    return total


# -- collect ---------------------------------------------------------------------------------


def collect(
    paths: Sequence[str | Path] = (),
    *,
    remote: bool = False,
    dry_run: bool = False,
    cwd: Path | None = None,
    grace: float = REMOTE_GRACE,
) -> Collected:
    """Remove from the project's store (and with ``remote``, its remote store) every clip and
    key record that nothing keeps (see the module's docstring for what keeps one).

    Args:
        paths: storyboard files or folders; none: every storyboard of the project of ``cwd``.
        remote: also collect the project's remote store.
        dry_run: remove nothing; report what would be removed.
        cwd: the folder relative paths start from (default: the current folder).
        grace: seconds a remote file stays safe after it was written.

    Raises:
        StoreBusy: a render, a stitch or another gc is using the store.
        SharedStore: the store is outside the project root.
        NoRemote: ``remote`` and the project has no remote store.
        LockUnreadable: a storyboard lock in the working tree cannot be read.
        UsageError: the paths name no storyboard, or storyboards of several projects.
        InvalidStoryboard: a storyboard the caller named is invalid.
        RemoteError: (``remote``) the remote cannot be listed.
    """
    selection = find_storyboards(paths, cwd=cwd, what="gc")
    project = selection.project
    root = project.store
    _check_inside(project)
    if remote and project.remote is None:
        raise NoRemote(project.root, project.config, "gc --remote")
    if not root.is_dir():
        empty = Collected(root, dry_run, selection.storyboards, Tally(), Tally())
        if not remote:
            return empty
    with contextlib.ExitStack() as stack:
        if root.is_dir():
            if not stack.enter_context(hold_store(root, exclusive=True)):
                raise StoreBusy(root, "another storyboard process (a render or a gc)")
            _check_cuts(root)
        journal = _read_journal(root)
        if journal.running:
            raise StoreBusy(root, f"a live render ({', '.join(journal.running)})")
        # Listed before planning: anything stored after this moment is not a candidate.
        objects = _objects(root)
        records = _records(root)
        plans, skipped = _plans(selection, root)
        keep, locks = _keep(selection, plans, records, journal, root)
        local = _collect_local(root, objects, records, keep, dry_run=dry_run)
        far = _collect_remote(project, keep, dry_run=dry_run, grace=grace) if remote else None
    return Collected(
        store=root,
        dry_run=dry_run,
        storyboards=selection.storyboards,
        removed=local.removed,
        kept=local.kept,
        removals=local.removals,
        skipped=tuple(skipped),
        locks=tuple(locks),
        checks=local.checks,
        pieces=local.pieces,
        memo=local.memo,
        remote=far,
    )


def _check_inside(project: Project) -> None:
    store = Path(os.path.realpath(project.store))
    root = Path(os.path.realpath(project.root))
    if not store.is_relative_to(root) or store == root:
        raise SharedStore(project.store, project.root)


def _check_cuts(root: Path) -> None:
    """Refuse while a cut is being stitched (it holds its work folder's lock)."""
    from storyboard.workfolder import work_lock

    for work in sorted((root / "cuts").glob("*/work")):
        with work_lock(work, exclusive=True) as taken:
            if not taken:
                raise StoreBusy(root, "a cut being stitched")


def _keep(
    selection: Selection,
    plans: Sequence[Plan],
    records: Sequence[_Record],
    journal: _Journal,
    root: Path,
) -> tuple[_Keep, list[Path]]:
    keep = _Keep()
    for plan in plans:
        for sp in plan.shots:
            for take in sp.takes:
                upstream = take.material.upstream
                keep.take(
                    take.key,
                    take.clip.digest if take.clip is not None else None,
                    upstream.key if upstream is not None else None,
                )
    tree = read_locks(selection.locks)
    locks = [path for path, _data in tree]
    for _path, data in tree:
        for key, digest, builds_on in lock_takes(data):
            keep.take(key, digest, builds_on)
    # The clips unsettled journalled takes build on (their upstream), and those takes' keys.
    needed = set(journal.unsettled)
    links = {k: v for k, v in keep.upstream.items() if k in needed}
    links.update(_recorded_upstreams(root, needed - set(links)))
    for key in needed:
        keep.keys.add(key)
        if key in links:
            keep.keys.add(links[key])
    # A kept key keeps the clip its record names.
    for record in records:
        if record.key in keep.keys and record.digest:
            keep.digests.add(record.digest)
    return keep, locks


@dataclass(frozen=True)
class _Local:
    removed: Tally
    kept: Tally
    removals: tuple[Removal, ...]
    checks: int
    pieces: int
    memo: int


def _collect_local(
    root: Path,
    objects: Mapping[str, tuple[Path, int]],
    records: Sequence[_Record],
    keep: _Keep,
    *,
    dry_run: bool,
) -> _Local:
    from storyboard.workfolder import prune

    names = {r.digest: r for r in records if r.digest}
    removals: list[Removal] = []
    doomed_objects = [d for d in objects if d not in keep.digests]
    doomed_records = [r for r in records if r.key not in keep.keys]
    for digest in doomed_objects:
        named = names.get(digest)
        removals.append(
            Removal(
                "object",
                digest,
                objects[digest][1],
                named.shot if named else None,
                named.take if named else None,
            )
        )
    removals.extend(Removal("key", r.key, r.size, r.shot, r.take) for r in doomed_records)
    kept_objects = [d for d in objects if d in keep.digests]
    kept = Tally(
        objects=len(kept_objects),
        keys=len(records) - len(doomed_records),
        bytes=sum(objects[d][1] for d in kept_objects),
    )
    gone = set(doomed_objects)
    checks = _checks(root, gone)
    pieces = _pieces(root)
    if dry_run:
        would = sum(r.bytes for r in removals)
        would += sum(_size(p) for p in checks) + sum(_size(p) for p in pieces)
        removed = Tally(len(doomed_objects), len(doomed_records), would)
        return _Local(removed, kept, tuple(removals), len(checks), len(pieces), 0)
    before = _usage(root)
    for digest in doomed_objects:
        with contextlib.suppress(OSError):
            objects[digest][0].unlink()
    for record in doomed_records:
        with contextlib.suppress(OSError):
            record.path.unlink()
    for path in checks:
        with contextlib.suppress(OSError):
            path.unlink()
    pruned = 0
    in_use = _cuts_in_use(root)
    for work in sorted((root / "cuts").glob("*/work")):
        pruned += prune(work, in_use).files
    memo = _clean_memo(root)
    _tidy(root)
    removed = Tally(
        objects=sum(1 for d in doomed_objects if not objects[d][0].exists()),
        keys=sum(1 for r in doomed_records if not r.path.exists()),
        bytes=max(0, before - _usage(root)),
    )
    done = [
        r
        for r in removals
        if not (objects[r.name][0] if r.kind == "object" else _key_path(root, r.name)).exists()
    ]
    return _Local(removed, kept, tuple(done), len(checks), pruned, memo)


def _key_path(root: Path, key: str) -> Path:
    return root / "keys" / key[:2] / f"{key}.json"


def _checks(root: Path, gone: set[str]) -> list[Path]:
    """``checks/`` records of objects that are removed or no longer in the store."""
    found: list[Path] = []
    for path in sorted((root / "checks").glob("*/*.json")):
        digest = path.stem
        if digest in gone or not (root / "objects" / digest[:2] / f"{digest}.mp4").exists():
            found.append(path)
    return found


def _cuts_in_use(root: Path) -> set[Path]:
    from storyboard.cache import Store

    return Store(root, root).cut_files_in_use()


def _pieces(root: Path) -> list[Path]:
    """The work files :func:`storyboard.workfolder.prune` would remove (for a dry run)."""
    wanted = {str(p.absolute()) for p in _cuts_in_use(root)}
    found: list[Path] = []
    for work in sorted((root / "cuts").glob("*/work")):
        for name in _WORK_FOLDERS:
            try:
                items = sorted((work / name).iterdir())
            except OSError:
                continue
            found.extend(p for p in items if p.is_file() and str(p.absolute()) not in wanted)
    return found


def _clean_memo(root: Path) -> int:
    """Drop digest-memo entries of the store's files that are gone; how many were dropped."""
    path = root / "digests.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(data, dict):
        return 0
    inside = str(root.absolute()) + os.sep
    stale = [name for name in data if name.startswith(inside) and not Path(name).exists()]
    if not stale:
        return 0
    for name in stale:
        del data[name]
    with contextlib.suppress(OSError):
        atomic_write(path, canonical_json(data))
    return len(stale)


def _tidy(root: Path) -> None:
    """Remove the empty two-letter folders gc left in ``objects/``, ``keys/`` and ``checks/``."""
    for name in ("objects", "keys", "checks"):
        for folder in sorted((root / name).glob("*")):
            with contextlib.suppress(OSError):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()


# -- the remote ------------------------------------------------------------------------------


def _collect_remote(
    project: Project, keep: _Keep, *, dry_run: bool, grace: float
) -> RemoteCollected:
    from storyboard.remote import Remote

    assert project.remote is not None  # checked by collect()
    remote = Remote.open(project.remote)
    keys_kept = set(keep.keys)
    digests_kept = set(keep.digests)
    for key, digest in git_locks(project.root):
        keys_kept.add(key)
        digests_kept.add(digest)
    now = time.time()
    objects = remote_listing(remote, "objects", ".mp4")
    records = remote_listing(remote, "keys", ".json")

    def young(item: Listed) -> bool:
        # A file whose age is not known may be a teammate's push in progress: kept.
        return item.modified is None or now - item.modified < grace

    doomed_keys = sorted(k for k, item in records.items() if k not in keys_kept and not young(item))
    # Every key record that stays keeps the object it names (a record never names nothing).
    staying = [k for k in records if k not in set(doomed_keys)]
    digests_kept.update(named_digests(remote, staying))
    doomed_objects = sorted(
        d for d, item in objects.items() if d not in digests_kept and not young(item)
    )
    removals = [Removal("key", k, records[k].size) for k in doomed_keys]
    removals += [Removal("object", d, objects[d].size) for d in doomed_objects]
    failed: list[tuple[str, str]] = []
    done: list[Removal] = []
    if not dry_run:
        # Key records first: a record never names an object that is gone.
        for removal in removals:
            try:
                if removal.kind == "key":
                    remote.delete_key(removal.name)
                else:
                    remote.delete_object(removal.name)
            except StoryboardError as exc:
                failed.append((removal.name, str(exc)))
            else:
                done.append(removal)
    else:
        done = removals
    gone_objects = [r for r in done if r.kind == "object"]
    gone_keys = [r for r in done if r.kind == "key"]
    kept_objects = [d for d in objects if d not in {r.name for r in gone_objects}]
    return RemoteCollected(
        url=remote.url,
        removed=Tally(len(gone_objects), len(gone_keys), sum(r.bytes for r in gone_objects)),
        kept=Tally(
            len(kept_objects),
            len(records) - len(gone_keys),
            sum(objects[d].size for d in kept_objects),
        ),
        removals=tuple(done),
        failed=tuple(failed),
    )
