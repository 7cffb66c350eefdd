"""The content-addressed clip store under ``.storyboard/`` (or ``$STORYBOARD_CACHE``).

Layout::

    objects/ab/<sha256>.mp4         every clip once, named by its content
    keys/ab/<generation key>.json   which clip a generation key produced
    shots/<ns>/<backend>/<id>.json  what each shot was last rendered from (for "why stale")
    cuts/<ns>/<cut>.json            a cut's edit key, its path and the work files it uses
    cuts/<ns>/shots/<cut>.json      what each shot's clip in that cut was generated from
    cuts/<ns>/work/                 the stitcher's work files (pieces, seams, audio tracks)
    digests.json                    memo of input-file digests by (path, size, mtime)
    tmp/                            renders in progress
    .gitignore                      ``*``: the store ignores itself in git

Every write goes to a temporary file and is renamed into place. A missing or corrupt object
or entry is a cache miss, never a crash. ``<ns>`` separates storyboards sharing one
``$STORYBOARD_CACHE``.

Hygiene: a store this process creates (and the default ``.storyboard/`` folder, whenever
storyboard writes to it) holds a ``.gitignore`` of ``*``, as virtual environments do, so a
store beside a storyboard in a git repository never shows up in ``git status``. The cut
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
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyboard.errors import StoreError
from storyboard.hashing import DigestMemo, atomic_write, canonical_json, sha256_bytes, sha256_file
from storyboard.paths import DEFAULT_STORE, store_root  # where the store is (kernel)

__all__ = ["DEFAULT_STORE", "GITIGNORE", "ClipEntry", "Store", "store_root"]

#: What the store's own ``.gitignore`` says: everything in it, itself included.
GITIGNORE = "# created by storyboard: the store is a cache, never committed\n*\n"


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
    info: dict[str, Any]


class Store:
    """The clip store of one storyboard."""

    def __init__(self, root: Path, storyboard_path: Path) -> None:
        self.root = root
        self.namespace = sha256_bytes(str(storyboard_path).encode())[:16]
        self.memo = DigestMemo(root / "digests.json")
        # Objects this process read in full and found intact: path -> (size, mtime_ns).
        self._verified: dict[str, tuple[int, int]] = {}
        self._verify_lock = threading.Lock()
        # Whether this process may mark the store ignored: it creates the store, or the store
        # is the default one beside the storyboard (ours alone); checked once, on first write.
        self._ignore_pending = True

    @classmethod
    def for_storyboard(cls, storyboard_path: Path) -> Store:
        return cls(store_root(storyboard_path), storyboard_path)

    # -- hygiene ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store's folder if needed, with a ``.gitignore`` that ignores all of it.

        Written when this call creates the folder, and for the default ``.storyboard/``
        folder when it lacks one (stores made by older versions); a ``$STORYBOARD_CACHE``
        folder that already existed is left as its owner made it. Best effort: a store that
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
        return self.root / "objects" / digest[:2] / f"{digest}.mp4"

    def _entry_path(self, key: str) -> Path:
        return self.root / "keys" / key[:2] / f"{key}.json"

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
        try:
            raw = json.loads(self._entry_path(key).read_text(encoding="utf-8"))
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
                info={**dict(raw.get("info") or {}), "time": raw.get("time")},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def knows(self, key: str) -> bool:
        """Whether ``key`` ever produced a clip here (its entry exists, the clip may not)."""
        return self._entry_path(key).is_file()

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

    def link(
        self, key: str, digest: str, *, seconds: float, shot: str, take: int, info: dict[str, Any]
    ) -> ClipEntry | None:
        """Record that ``key`` produced the stored object ``digest`` (from a lock file).

        Returns ``None`` when the object is not in the store or is corrupt.
        """
        path = self.object_path(digest)
        try:
            if self.memo.digest(path) != digest:
                return None
            self.ensure()
            record = {
                "key": key,
                "digest": digest,
                "seconds": round(seconds, 6),
                "size": path.stat().st_size,
                "shot": shot,
                "take": take,
                "info": info,
                "time": info.get("time"),
            }
            atomic_write(self._entry_path(key), canonical_json(record))
        except OSError:
            return None
        return self.lookup(key)

    def put(
        self, key: str, clip: Path, *, seconds: float, shot: str, take: int, info: dict[str, Any]
    ) -> ClipEntry:
        """Move a finished clip into the store and record which key produced it."""
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
                "info": info,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            atomic_write(self._entry_path(key), canonical_json(record))
        except OSError as exc:
            raise StoreError(f"cannot write to the store at {self.root}: {exc.strerror}") from exc
        return ClipEntry(key, digest, target, seconds, size, shot, take, info)

    # -- what each shot was rendered from ---------------------------------------------------

    def _material_path(self, backend: str, shot: str) -> Path:
        return self.root / "shots" / self.namespace / backend / f"{shot}.json"

    def last_material(self, backend: str, shot: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._material_path(backend, shot).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def record_material(self, backend: str, shot: str, material: dict[str, Any]) -> None:
        self.ensure()
        try:
            atomic_write(self._material_path(backend, shot), canonical_json(material))
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
        if self._ignore_pending and self.root.is_dir():
            self._mark(created=not existed)  # the memo may have made the store (a plan's)
