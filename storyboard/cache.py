"""The content-addressed clip store of a project (see :mod:`storyboard.project`): by default
``.storyboard/`` at the project root, shared by every storyboard in it.

Layout::

    objects/ab/<sha256>.mp4         every clip once, named by its content
    keys/ab/<generation key>.json   which clip a generation key produced
    shots/<ns>/<backend>/<id>.json  what each shot was last rendered from (for "why stale")
    cuts/<ns>/<cut>.json            a cut's edit key, its path and the work files it uses
    cuts/<ns>/shots/<cut>.json      what each shot's clip in that cut was generated from
    cuts/<ns>/work/                 the stitcher's work files (pieces, seams, audio tracks)
    checks/ab/<sha256>.json         what was checked of a take (storyboard.takecheck)
    journal.sqlite                  the task journal (storyboard.journal)
    digests.json                    memo of input-file digests by (path, size, mtime)
    keyindex/<ns>.json              the key records a storyboard reads (storyboard.keyindex)
    boards/<ns>.json                the storyboard as last checked (storyboard.boardcache)
    tmp/                            renders in progress
    adopt.lock                      held while an older store is moved in (see Adoption)
    .gitignore                      ``*``: the store ignores itself in git

Every write goes to a temporary file and is renamed into place. A missing or corrupt object
or entry is a cache miss, never a crash. ``<ns>`` separates the storyboards sharing the
store (every storyboard of a project, or of one ``$STORYBOARD_CACHE``).

Adoption: an earlier version kept a store beside each storyboard. The first time the
project's store is opened for a storyboard that still has one (:meth:`Store.for_storyboard`),
it is moved in under a lock (``adopt.lock``, fcntl): its objects (renamed, or copied across
file systems and verified by sha256 before the old copy is removed), the key records and
take checks the project store lacks, the materials and cut records of every namespace, and
the journal's tasks (merged, so a submitted task is resumed, not bought again). A ``MOVED``
note left in the old folder names the new store; a run cut short leaves what it did not move
where it was, and the next run goes on.

Hygiene: a store this process creates (and any ``.storyboard/`` folder, whenever storyboard
writes to it) holds a ``.gitignore`` of ``*``, as virtual environments do, so a store at the
root of a git repository never shows up in ``git status``. The cut
records name the work files each cut uses (:meth:`Store.cut_files_in_use`): after a stitch,
work files no current cut of any storyboard sharing the store uses are pruned.

Two levels of trust. :meth:`Store.lookup` is stat-only (the digest memo by path, size and
mtime), so a no-op plan reads no media. Before a clip's bytes are used where a wrong byte
would do harm (a cut being rebuilt, an upload, an export), :meth:`Store.verify` /
:meth:`Store.verified` read the whole object and compare its sha256 with its name; an object
that fails is deleted and its key's entry dropped, so the plan sees the take as not rendered
(a cache miss). A process verifies an object once per (size, mtime): the stitcher and the
uploader of one run share the work, and a clip just hashed by :meth:`Store.put` counts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from storyboard.errors import StoreError
from storyboard.hashing import DigestMemo, atomic_write, canonical_json, sha256_bytes, sha256_file
from storyboard.keyindex import KeyIndex
from storyboard.paths import DEFAULT_STORE, store_root  # where the store is (kernel)
from storyboard.project import MOVED_NOTE, AdoptionError, legacy_store, moved_note

__all__ = [
    "ADOPT_LOCK",
    "DEFAULT_STORE",
    "GITIGNORE",
    "Adoption",
    "Charge",
    "ClipEntry",
    "Provenance",
    "Store",
    "store_root",
]

#: What the store's own ``.gitignore`` says: everything in it, itself included.
GITIGNORE = "# created by storyboard: the store is a cache, never committed\n*\n"


@dataclass(frozen=True)
class Charge:
    """What a provider said it charged, in its own unit (Qingbo quota, ...); never dollars."""

    amount: float
    unit: str

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "unit": self.unit}

    @classmethod
    def from_json(cls, value: object) -> Charge | None:
        """The charge as stored (``{amount, unit}``), or ``None`` when it is not one."""
        if not isinstance(value, Mapping):
            return None
        amount, unit = value.get("amount"), value.get("unit")
        if (
            isinstance(amount, int | float)
            and not isinstance(amount, bool)
            and isinstance(unit, str)
        ):
            return cls(amount, unit)
        return None


@dataclass(frozen=True)
class Provenance:
    """Where a stored clip came from; every field is ``None`` when not known.

    Attributes:
        provider: the provider that rendered it (``preview`` for the animatic).
        model: the model id.
        task_id: the provider's task.
        seed: the seed it was rendered with (a random seed as resolved at submit).
        reported_cost: what the provider reported it charged.
        cost: its list price in USD (as the lock keeps it).
        time: when it entered the store (UTC, ``YYYY-MM-DDTHH:MM:SSZ``).
    """

    provider: str | None = None
    model: str | None = None
    task_id: str | None = None
    seed: int | None = None
    reported_cost: Charge | None = None
    cost: float | None = None
    time: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are known, as stored in the store's key entries."""
        data: dict[str, Any] = {}
        for name in ("provider", "model", "task_id", "seed", "cost", "time"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.reported_cost is not None:
            data["reported_cost"] = self.reported_cost.to_json()
        return data

    @classmethod
    def from_json(cls, data: object) -> Provenance:
        """A provenance from stored data; a field of the wrong type is not known."""
        if not isinstance(data, dict | Mapping):  # dict first: the usual case, and quick
            return cls()

        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) else None

        seed, cost = data.get("seed"), data.get("cost")
        return cls(
            provider=text("provider"),
            model=text("model"),
            task_id=text("task_id"),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            reported_cost=Charge.from_json(data.get("reported_cost")),
            cost=cost if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            time=text("time"),
        )


@dataclass(frozen=True)
class ClipEntry:
    """A clip in the store and what is known about it."""

    key: str
    digest: str
    path: Path
    seconds: float
    size: int
    shot: str
    take: int
    provenance: Provenance


@dataclass(frozen=True)
class Adoption:
    """What adopting a store of an earlier version (beside a storyboard) moved.

    Attributes:
        legacy: the old store's folder (it now holds a ``MOVED`` note).
        store: the store it was adopted into.
        objects: clips moved in (``bytes`` of them).
        keys: key records copied in (the old store keeps its copies).
        tasks: journalled tasks merged into this store's journal.
        files: other records moved or copied (materials, cut records, work files, checks).
        left: files left in the old store: one this store already had in its own version,
            or an object whose bytes are not what its name says.
        done_before: another run had adopted it already (nothing was done now).
    """

    legacy: Path
    store: Path
    objects: int = 0
    bytes: int = 0
    keys: int = 0
    tasks: int = 0
    files: int = 0
    left: int = 0
    done_before: bool = False


class _Material(Protocol):
    """A generation material (:class:`storyboard.keys.GenerationMaterial`)."""

    def to_json(self) -> dict[str, Any]: ...


def _provenance(raw: Mapping[str, Any]) -> Provenance:
    """The provenance of a key entry: its ``info`` with the entry's own ``time``."""
    info = raw.get("info")
    data = {**(info if isinstance(info, dict | Mapping) else {}), "time": raw.get("time")}
    return Provenance.from_json(data)


class Store:
    """The clip store of one storyboard (its project's store, seen from that storyboard)."""

    def __init__(self, root: Path, storyboard_path: Path) -> None:
        self.root = root
        self.namespace = sha256_bytes(str(storyboard_path).encode())[:16]
        self.memo = DigestMemo(root / "digests.json")
        # The key records this storyboard reads, and its last plan's keys, in one file (keys/
        # stays the truth).
        self.index = KeyIndex(root, self.namespace)
        self._object_dirs: dict[str, Path] = {}
        # Objects this process read in full and found intact: path -> (size, mtime_ns).
        self._verified: dict[str, tuple[int, int]] = {}
        self._verify_lock = threading.Lock()
        # Whether this process may mark the store ignored: it creates the store, or the store
        # is a default one (``.storyboard``, ours alone); checked once, on first write.
        self._ignore_pending = True
        # What :meth:`for_storyboard` adopted from an older store beside the storyboard.
        self.adopted: Adoption | None = None

    @classmethod
    def for_storyboard(cls, storyboard_path: Path) -> Store:
        """The store of the storyboard's project (:func:`storyboard.paths.store_root`).

        The first time it is opened for a storyboard that still has a store of an earlier
        version beside it (``.storyboard/`` in its folder), that store is adopted into this
        one (:meth:`adopt`): nothing it holds is paid for again.

        Raises:
            ProjectConfigError: the project's ``storyboard.toml`` cannot be used.
            StoreError: the old store could not be adopted (what was not moved stays there).
        """
        store = cls(store_root(storyboard_path), storyboard_path)
        legacy = legacy_store(storyboard_path, store.root)
        if legacy is not None:
            store.adopted = store.adopt(legacy)
        return store

    # -- hygiene ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store's folder if needed, with a ``.gitignore`` that ignores all of it.

        Written when this call creates the folder, and for a ``.storyboard/`` folder (the
        project's default) when it lacks one (stores made by older versions); a folder the
        user named (``$STORYBOARD_CACHE``, ``[store] path``) that already existed is left as
        its owner made it. Best effort: a store that
        cannot hold the file still works.

        Raises:
            StoreError: the store's folder cannot be created.
        """
        if not self._ignore_pending:
            return
        created = not self.root.is_dir()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from exc
        self._mark(created)

    def _mark(self, created: bool) -> None:
        self._ignore_pending = False
        if created or self.root.name == DEFAULT_STORE:
            self._write_gitignore()

    def _write_gitignore(self) -> None:
        path = self.root / ".gitignore"
        if path.is_file():
            return
        with contextlib.suppress(OSError):
            atomic_write(path, GITIGNORE.encode())

    # -- paths -----------------------------------------------------------------------------

    def object_path(self, digest: str) -> Path:
        folder = self._object_dirs.get(digest[:2])
        if folder is None:  # one Path per two-letter folder: a plan makes thousands of these
            folder = self._object_dirs[digest[:2]] = self.root / "objects" / digest[:2]
        return folder / f"{digest}.mp4"

    def _entry_path(self, key: str) -> Path:
        return Path(f"{self.root}/keys/{key[:2]}/{key}.json")

    def tmp_dir(self) -> Path:
        self.ensure()
        path = self.root / "tmp"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}") from exc
        return path

    def cuts_dir(self) -> Path:
        return self.root / "cuts" / self.namespace

    # -- clips -----------------------------------------------------------------------------

    def lookup(self, key: str) -> ClipEntry | None:
        """The clip a generation key produced, if it is in the store and intact."""
        raw = self.index.record(key)
        if raw is None:
            return None
        try:
            digest = str(raw["digest"])
            path = self.object_path(digest)
            # Stat-only unless the object changed since it was last verified.
            if self.memo.digest(path) != digest:
                return None
            return ClipEntry(
                key=key,
                digest=digest,
                path=path,
                seconds=float(raw["seconds"]),
                size=int(raw["size"]),
                shot=str(raw["shot"]),
                take=int(raw["take"]),
                provenance=_provenance(raw),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def knows(self, key: str) -> bool:
        """Whether ``key`` ever produced a clip here (its entry exists, the clip may not)."""
        return self.index.knows(key)

    def verified(self, entry: ClipEntry) -> bool:
        """Whether ``entry``'s object really holds the bytes its digest names (a full read).

        A mismatch (or an unreadable object) is a cache miss: the object is deleted and the
        key's entry dropped, so every later :meth:`lookup` of a key naming it misses and the
        plan renders (or downloads) the take again. Blocking: call it off the event loop.
        """
        path = entry.path
        try:
            st = path.stat()
        except OSError:
            self._discard(entry)
            return False
        stamp = (st.st_size, st.st_mtime_ns)
        name = str(path)
        with self._verify_lock:
            if self._verified.get(name) == stamp:
                return True
        try:
            actual: str | None = sha256_file(path)
        except OSError:
            actual = None
        if actual == entry.digest:
            with self._verify_lock:
                self._verified[name] = stamp
            return True
        self._discard(entry)
        return False

    def verify(self, key: str) -> ClipEntry | None:
        """The clip ``key`` produced, only if a full read proves its bytes (see :meth:`verified`)."""
        entry = self.lookup(key)
        if entry is None or not self.verified(entry):
            return None
        return entry

    def _discard(self, entry: ClipEntry) -> None:
        """Drop a clip that is not what its digest says: the object and the key's entry."""
        with self._verify_lock:
            self._verified.pop(str(entry.path), None)
        for path in (entry.path, self._entry_path(entry.key)):
            # Best effort: an object that cannot be deleted fails every later verify too.
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self.index.removed(entry.key)

    def locate(
        self,
        key: str,
        digest: str,
        *,
        seconds: float,
        shot: str,
        take: int,
        provenance: Provenance,
    ) -> ClipEntry | None:
        """The stored object ``digest`` as the clip of ``key`` (a lock names it), read-only.

        Returns ``None`` when the object is not in the store or is corrupt. Nothing is
        recorded: :meth:`link` makes the store's index know it.
        """
        path = self.object_path(digest)
        try:
            if self.memo.digest(path) != digest:
                return None
            size = path.stat().st_size
        except OSError:
            return None
        return ClipEntry(key, digest, path, round(seconds, 6), size, shot, take, provenance)

    def link(self, entry: ClipEntry) -> bool:
        """Record that ``entry.key`` produced the stored object ``entry.digest`` (from a lock).

        Returns whether it was recorded (a store that cannot be written is only a slower
        next plan).

        Raises:
            StoreError: the store's folder cannot be created.
        """
        self.ensure()
        record = {
            "key": entry.key,
            "digest": entry.digest,
            "seconds": round(entry.seconds, 6),
            "size": entry.size,
            "shot": entry.shot,
            "take": entry.take,
            "info": entry.provenance.to_json(),
            "time": entry.provenance.time,
        }
        try:
            atomic_write(self._entry_path(entry.key), canonical_json(record))
        except OSError:
            return False
        self.index.wrote(entry.key, record)
        return True

    def put(
        self,
        key: str,
        clip: Path,
        *,
        seconds: float,
        shot: str,
        take: int,
        provenance: Provenance | None = None,
    ) -> ClipEntry:
        """Move a finished clip into the store and record which key produced it."""
        known = provenance if provenance is not None else Provenance()
        self.ensure()
        digest = sha256_file(clip)
        target = self.object_path(digest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Always the bytes just hashed: an object already there may have changed on disk
            # with its size and mtime kept, which the digest memo cannot see.
            os.replace(clip, target)
            st = target.stat()
            self.memo.digest(target)  # remember it verified (a new mtime: hashed once more)
            with self._verify_lock:
                self._verified[str(target)] = (st.st_size, st.st_mtime_ns)
            size = st.st_size
            record = {
                "key": key,
                "digest": digest,
                "seconds": round(seconds, 6),
                "size": size,
                "shot": shot,
                "take": take,
                "info": known.to_json(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            atomic_write(self._entry_path(key), canonical_json(record))
        except OSError as exc:
            raise StoreError(f"cannot write to the store at {self.root}: {exc.strerror}") from exc
        self.index.wrote(key, record)
        return ClipEntry(key, digest, target, seconds, size, shot, take, known)

    # -- what each shot was rendered from ---------------------------------------------------

    def _material_path(self, backend: str, shot: str) -> Path:
        return self.root / "shots" / self.namespace / backend / f"{shot}.json"

    def last_material(self, backend: str, shot: str) -> dict[str, Any] | None:
        """The material (as recorded, plain data) the shot was last rendered from."""
        try:
            data = json.loads(self._material_path(backend, shot).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def record_material(self, backend: str, shot: str, material: _Material) -> None:
        """Record what the shot was rendered from (for "why stale" in a later plan)."""
        self.ensure()
        try:
            atomic_write(self._material_path(backend, shot), canonical_json(material.to_json()))
        except OSError as exc:
            raise StoreError(f"cannot write to the store at {self.root}: {exc.strerror}") from exc

    # -- the cut ---------------------------------------------------------------------------

    def cut_record(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.cuts_dir() / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save_cut_record(
        self, name: str, record: dict[str, Any], *, files: Iterable[Path] = ()
    ) -> None:
        """Save a cut's record; ``files`` are the work files the cut uses (kept by pruning)."""
        self.ensure()
        files = list(files)
        names = sorted({name for name in map(self._relative, files) if name is not None})
        data = {**record, "files": names} if files else record
        atomic_write(self.cuts_dir() / f"{name}.json", canonical_json(data))

    def _relative(self, path: Path) -> str | None:
        try:
            return path.absolute().relative_to(self.root.absolute()).as_posix()
        except ValueError:
            return None  # not in the store: nothing pruning could remove anyway

    def cut_shots(self, name: str) -> dict[str, Any] | None:
        """What each shot's clip in the cut ``name`` was generated from (see stitch)."""
        try:
            path = self.cuts_dir() / "shots" / f"{name}.json"
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save_cut_shots(self, name: str, shots: dict[str, Any]) -> None:
        self.ensure()
        atomic_write(self.cuts_dir() / "shots" / f"{name}.json", canonical_json(shots))

    def cut_files_in_use(self) -> set[Path]:
        """Every work file a current cut uses, for every storyboard sharing this store.

        A cut is current while the file its record names exists; a record that names no
        files (made by an older version) keeps nothing. Reading is best effort: a record
        that cannot be read keeps nothing either.
        """
        keep: set[Path] = set()
        cuts = self.root / "cuts"
        try:
            records = sorted(cuts.glob("*/*.json"))
        except OSError:
            return keep
        for record in records:
            try:
                data = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            path, files = data.get("path"), data.get("files")
            if not isinstance(path, str) or not isinstance(files, list):
                continue
            if not Path(path).exists():
                continue  # the cut is gone: nothing is using its pieces
            keep.update(self.root / name for name in files if isinstance(name, str))
        return keep

    # -- adopting the store of an earlier version ------------------------------------------

    def adopt(self, legacy: Path) -> Adoption:
        """Move the store at ``legacy`` (made beside a storyboard by an earlier version) into
        this one, once; see :mod:`storyboard.cache` ("Adoption").

        Returns what was moved. A ``MOVED`` note in ``legacy`` says it is done (then nothing
        happens); a run cut short leaves what it did not move in ``legacy``, and the next
        run goes on from there.

        Raises:
            StoreError: this store cannot be written, the adoption lock was not had within
                its deadline, or the old journal cannot be merged.
        """
        self.ensure()
        with _adoption_lock(self.root / ADOPT_LOCK):
            note = legacy / MOVED_NOTE
            if note.exists():
                return Adoption(legacy, self.root, done_before=True)
            counts = {"objects": 0, "keys": 0, "files": 0, "left": 0, "bytes": 0}
            try:
                self._adopt_objects(legacy, counts)
                for folder in ("keys", "checks"):  # records by name: copied, the old kept
                    counts["keys" if folder == "keys" else "files"] += _copy_missing(
                        legacy, folder, self.root
                    )
                for folder in ("shots", "cuts"):  # per-storyboard namespaces: moved
                    moved, left = self._move_tree(legacy, folder)
                    counts["files"] += moved
                    counts["left"] += left
                tasks = self._merge_journal(legacy)
                atomic_write(note, moved_note(self.root).encode())
            except OSError as exc:
                raise AdoptionError(legacy, self.root, exc.strerror or str(exc)) from exc
        return Adoption(
            legacy,
            self.root,
            objects=counts["objects"],
            bytes=counts["bytes"],
            keys=counts["keys"],
            tasks=tasks,
            files=counts["files"],
            left=counts["left"],
        )

    def _merge_journal(self, legacy: Path) -> int:
        """Merge the old journal's tasks into this store's (see :func:`merge_journal`)."""
        from storyboard.journal import JOURNAL_FILE, merge_journal

        old = legacy / JOURNAL_FILE
        if not old.is_file():
            return 0
        try:
            return merge_journal(self.root / JOURNAL_FILE, old)
        except StoreError as exc:
            # Never adopted without it: its tasks in flight would be bought again.
            aside = old.with_name(f"{JOURNAL_FILE}.damaged")
            raise AdoptionError(
                legacy,
                self.root,
                str(exc),
                hint=f"if it is damaged beyond repair, mv {old} {aside} and run again"
                " (the tasks it names are then not resumed)",
            ) from exc

    def _adopt_objects(self, legacy: Path, counts: dict[str, int]) -> None:
        """Move every object of ``legacy`` in (an object already here is kept if intact)."""
        for source in _files(legacy, "objects", "*/*.mp4"):
            digest = source.stem
            if not _is_digest(digest):
                continue
            target = self.object_path(digest)
            size = source.stat().st_size
            if target.is_file() and self._digest_or_none(target) == digest:
                source.unlink()  # the same bytes are here already (named by their content)
                continue
            if _move(source, target, self.tmp_dir(), digest=digest):
                counts["objects"] += 1
                counts["bytes"] += size
            else:
                counts["left"] += 1  # its bytes are not what its name says: worthless here

    def _move_tree(self, legacy: Path, folder: str) -> tuple[int, int]:
        """Move every file under ``legacy/folder`` this store lacks; (moved, left) counts."""
        moved = left = 0
        for path in _files(legacy, folder, "**/*"):
            destination = self.root / path.relative_to(legacy)
            if destination.exists():
                left += 1  # the project's own record is newer: the old one stays where it is
                continue
            if _move(path, destination, self.tmp_dir()):
                moved += 1
            else:
                left += 1
        return moved, left

    def _digest_or_none(self, path: Path) -> str | None:
        try:
            return self.memo.digest(path)
        except OSError:
            return None

    # -- housekeeping ----------------------------------------------------------------------

    def clean_tmp(self, older_than: float = 0.0) -> None:
        """Remove leftovers of interrupted renders (they were never in the store)."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return
        now = time.time()
        for item in tmp.iterdir():
            try:
                if now - item.stat().st_mtime >= older_than:
                    if item.is_dir():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)
            except OSError:
                continue

    def save(self) -> None:
        existed = not self._ignore_pending or self.root.is_dir()
        self.memo.save()
        self.index.save()
        if self._ignore_pending and self.root.is_dir():
            self._mark(created=not existed)  # the memo may have made the store (a plan's)


# -- adopting the store of an earlier version ------------------------------------------------

#: The lock file (in the project store) that one adoption at a time holds.
ADOPT_LOCK = "adopt.lock"
# How long a run waits for another one's adoption of the same store to finish.
_ADOPT_DEADLINE = 600.0


@contextlib.contextmanager
def _adoption_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock at ``path`` (fcntl.flock), waiting at most the deadline."""
    import fcntl

    try:
        handle = path.open("a+b")
    except OSError as exc:
        raise StoreError(f"cannot lock the store at {path.parent}: {exc.strerror}") from exc
    with handle:
        deadline = time.monotonic() + _ADOPT_DEADLINE
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AdoptionError(
                        None,
                        path.parent,
                        f"another process held {path} for {_ADOPT_DEADLINE:.0f} s",
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _files(legacy: Path, folder: str, pattern: str) -> list[Path]:
    """The regular files matching ``pattern`` under ``legacy/folder``, none through a link
    (a linked folder or file inside an old store is never followed out of it)."""
    real = Path(os.path.realpath(legacy))
    base = legacy / folder
    if base.is_symlink() or not base.is_dir():
        return []
    return [
        path
        for path in sorted(base.glob(pattern))
        if path.is_file() and Path(os.path.realpath(path)) == real / path.relative_to(legacy)
    ]


def _move(source: Path, target: Path, tmp: Path, *, digest: str | None = None) -> bool:
    """Move ``source`` to ``target``: a rename on one file system, else a verified copy.

    Across file systems the bytes are copied into ``tmp`` (the target store's, so the final
    rename is atomic), their sha256 compared with ``digest`` (or with the source's), renamed
    into place, and only then is the source removed. Returns ``False`` (the source kept)
    when the copy is not what it must be.

    Raises:
        OSError: a file cannot be read or written (the source is kept).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
        return True
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    expected = digest if digest is not None else sha256_file(source)
    copy = tmp / f"adopt-{os.getpid()}-{target.name}"
    try:
        shutil.copy2(source, copy)
        if sha256_file(copy) != expected:
            return False
        os.replace(copy, target)
    finally:
        copy.unlink(missing_ok=True)
    source.unlink()
    return True


def _copy_missing(legacy: Path, folder: str, store: Path) -> int:
    """Copy every record under ``legacy/folder`` that ``store`` lacks (atomically); how many."""
    copied = 0
    for path in _files(legacy, folder, "*/*.json"):
        destination = store / path.relative_to(legacy)
        if destination.exists():
            continue
        atomic_write(destination, path.read_bytes())
        copied += 1
    return copied
