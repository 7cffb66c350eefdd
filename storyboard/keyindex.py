"""The store's key index: every key record in one file, so a plan reads one file, not one
per take (the store trio; used by :class:`storyboard.cache.Store`).

The per-key files ``keys/ab/<key>.json`` stay the truth, for every reader and writer, of
this version and others; ``keyindex.json`` at the store's root is a copy that knows when it
is out of date. For each two-letter folder of ``keys/`` it holds the folder's mtime when it
was last listed, and the records listed then, each with its file's ``(size, mtime_ns,
inode)``. Every writer puts a key record in place by renaming a temporary file (as
:func:`storyboard.hashing.atomic_write` does) and gc removes records by unlinking them, so
any change to a folder changes its mtime:

* a folder whose mtime is the one recorded is taken from the index (no file read);
* another mtime: the folder is listed again, and only records whose stamp changed are read;
* a folder changed within :data:`RACY_NS` of its listing is never trusted by its mtime
  (a change in the same clock tick would not show): it is listed again next time.

The index is written (atomically) by :meth:`KeyIndex.save` when anything in it changed; a
missing, damaged or foreign index is an empty one, so the worst it costs is reading the
records once more.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from storyboard.hashing import atomic_write, canonical_json

__all__ = ["INDEX_FILE", "RACY_NS", "KeyIndex"]

#: The index's file name, at the store's root.
INDEX_FILE = "keyindex.json"
#: A folder changed this close before it was listed is listed again next time.
RACY_NS = 2_000_000_000
_FORMAT = 1

# A folder as indexed: its mtime when listed (None: list it again) and its records by key,
# each ``[size, mtime_ns, inode, record]`` (record None: the file is there but unreadable).
_Folder = tuple[int | None, dict[str, list[Any]]]


class KeyIndex:
    """The key records of one store, read through its index (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._keys = f"{root}/keys"
        self._path = root / INDEX_FILE
        self._folders: dict[str, _Folder] | None = None  # as loaded (or listed) so far
        self._dirty = False
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def record(self, key: str) -> dict[str, Any] | None:
        """The parsed record of ``key`` (``None``: no record, or an unreadable one)."""
        with self._lock:
            entry = self._folder(key[:2])[1].get(key)
        return entry[3] if entry is not None else None

    def knows(self, key: str) -> bool:
        """Whether a record file of ``key`` exists (it may be unreadable)."""
        with self._lock:
            return key in self._folder(key[:2])[1]

    def _load(self) -> dict[str, _Folder]:
        if self._folders is None:
            self._folders = {}
            try:
                data = json.loads(self._path.read_bytes())
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and data.get("format") == _FORMAT:
                folders = data.get("folders")
                if isinstance(folders, dict):
                    for name, value in folders.items():
                        folder = _folder_from_json(value)
                        if folder is not None:
                            self._folders[name] = folder
        return self._folders

    def _folder(self, prefix: str) -> _Folder:
        """The folder ``keys/<prefix>`` as it is now: one ``stat`` when its mtime is the one
        indexed, else listed again."""
        folders = self._load()
        known = folders.get(prefix)
        path = f"{self._keys}/{prefix}"
        try:
            mtime: int | None = os.stat(path).st_mtime_ns
        except OSError:
            mtime = None
        if known is not None and mtime is not None and known[0] == mtime:
            return known
        listed = self._list(path, mtime, known[1] if known is not None else {})
        if listed != known:
            folders[prefix] = listed
            self._dirty = True
        return listed

    def _list(self, path: str, mtime: int | None, before: dict[str, list[Any]]) -> _Folder:
        """List a folder again (``mtime``: stat'ed before listing), reading only the records
        whose file changed."""
        files: dict[str, list[Any]] = {}
        try:
            entries = list(os.scandir(path))
        except OSError:
            return (None, files)  # no folder: no keys (and nothing to trust next time)
        for entry in entries:
            name = entry.name
            if not name.endswith(".json") or name.startswith("."):
                continue  # another file, or a write in progress
            try:
                st = entry.stat()
            except OSError:
                continue
            key = name[: -len(".json")]
            stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
            old = before.get(key)
            if old is not None and old[:3] == stamp:
                files[key] = old
                continue
            files[key] = [*stamp, _read(entry.path)]
        trusted = mtime is not None and mtime < time.time_ns() - RACY_NS
        return (mtime if trusted else None, files)

    # -- writing (the per-key files are written by the store) ------------------------------

    def wrote(self, key: str, record: dict[str, Any], file: Path) -> None:
        """The store just wrote ``record`` to ``file`` (the record of ``key``)."""
        with self._lock:
            files = dict(self._folder(key[:2])[1])
            try:
                st = file.stat()
            except OSError:
                files.pop(key, None)
            else:
                files[key] = [st.st_size, st.st_mtime_ns, st.st_ino, record]
            # The write changed the folder's mtime, and another process may have written in
            # it since it was listed: it is listed again when next read (records reused).
            self._untrust(key[:2], files)

    def removed(self, key: str) -> None:
        """The store removed the record of ``key``."""
        with self._lock:
            files = dict(self._folder(key[:2])[1])
            files.pop(key, None)
            self._untrust(key[:2], files)

    def _untrust(self, prefix: str, files: dict[str, list[Any]]) -> None:
        self._load()[prefix] = (None, files)
        self._dirty = True

    def save(self) -> None:
        """Write the index if it changed (best effort: it is only a copy)."""
        with self._lock:
            if not self._dirty or self._folders is None or not self.root.is_dir():
                return
            folders = sorted(self._folders.items())
            data = {"format": _FORMAT, "folders": {name: [m, f] for name, (m, f) in folders}}
            try:
                atomic_write(self._path, canonical_json(data))
            except (OSError, ValueError):
                return
            self._dirty = False


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - a str path from scandir
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _folder_from_json(value: Any) -> _Folder | None:
    """A folder as the index holds it, or ``None`` when it is not one (then it is listed)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    mtime, files = value
    if not (mtime is None or isinstance(mtime, int)) or not isinstance(files, dict):
        return None
    for entry in files.values():
        if not (
            isinstance(entry, list)
            and len(entry) == 4
            and all(isinstance(n, int) for n in entry[:3])
            and (entry[3] is None or isinstance(entry[3], dict))
        ):
            return None
    return (mtime, files)
