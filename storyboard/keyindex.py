"""The key index of one storyboard: the key records its last plan read, in one file, so a
no-op plan reads one file instead of one per take (the store trio; used by
:class:`storyboard.cache.Store`).

The per-key files ``keys/ab/<key>.json`` stay the truth, for every reader and writer, of
this version and others. ``keyindex/<namespace>.json`` in the store remembers, for each
two-letter folder of ``keys/`` that the storyboard's keys live in, the folder's mtime and
what this storyboard read there (a record, a missing file, an unreadable one). Every writer
puts a key record in place by renaming a temporary file (as
:func:`storyboard.hashing.atomic_write` does) and gc removes records by unlinking them, so
any change in a folder changes its mtime:

* a folder whose mtime is the one remembered answers from the index (one ``stat``);
* another mtime: the record is read from its file, and the folder's other answers are
  forgotten (read again when asked for);
* a folder changed within :data:`RACY_NS` of its ``stat`` is never trusted by its mtime (a
  change in the same clock tick would not show).

The index holds only what one storyboard looks up, so it grows with the storyboard, not
with the store (a project's store is shared by every storyboard in it). It is written
atomically by :meth:`KeyIndex.save` when it learned something; a missing, damaged or foreign
index is an empty one: the worst it costs is reading the records once more.

It also remembers, per backend, the generation keys the last plan made
(:meth:`KeyIndex.generation_keys`), valid for the checked board they were made from (the
identity of its :mod:`storyboard.boardcache` entry, which changes with the code that makes
keys) and the digests of its input files; the plan uses them only for takes it finds in the
store, and makes the key of every take it would render from its material.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from storyboard.hashing import atomic_write, canonical_json

__all__ = ["INDEX_FOLDER", "RACY_NS", "KeyIndex"]

#: The folder of the index files, in the store.
INDEX_FOLDER = "keyindex"
#: A folder changed this close before it was looked at is looked at again next time.
RACY_NS = 2_000_000_000
_FORMAT = 1

# What a key's file held: its record, or that it was missing or unreadable (as JSON: the
# record, null, false).
_MISSING = None
_UNREADABLE = False
_Answer = dict[str, Any] | None | bool
# A folder as indexed: its mtime when trusted (None: not trusted) and the answers read then.
_Folder = tuple[int | None, dict[str, _Answer]]


class KeyIndex:
    """The key records one storyboard reads from a store, through its index (thread-safe).

    Args:
        root: the store's folder.
        namespace: the storyboard's namespace in the store (the index's file name).
    """

    def __init__(self, root: Path, namespace: str) -> None:
        self.root = root
        self._keys = f"{root}/keys"
        self._path = root / INDEX_FOLDER / f"{namespace}.json"
        self._folders: dict[str, _Folder] | None = None  # loaded on first use
        self._plans: dict[str, dict[str, Any]] = {}  # backend -> generation keys (loaded too)
        self._dirty = False
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def record(self, key: str) -> dict[str, Any] | None:
        """The parsed record of ``key`` (``None``: no record, or an unreadable one)."""
        answer = self._answer(key)
        return answer if isinstance(answer, dict) else None

    def knows(self, key: str) -> bool:
        """Whether a record file of ``key`` exists (it may be unreadable)."""
        return self._answer(key) is not _MISSING

    def _answer(self, key: str) -> _Answer:
        prefix = key[:2]
        folder = f"{self._keys}/{prefix}"
        with self._lock:
            folders = self._load()
            known = folders.get(prefix)
            try:
                mtime: int | None = os.stat(folder).st_mtime_ns
            except OSError:
                mtime = None
            if known is not None and known[0] is not None and known[0] == mtime:
                if key in known[1]:
                    return known[1][key]
                answers = known[1]  # the folder is as indexed: only this key is new
            else:
                answers = {}  # changed (or never trusted): what was read there is forgotten
            # The folder's mtime was taken before the file is read: a change after it shows.
            answer = _read(f"{folder}/{key}.json")
            answers[key] = answer
            trusted = mtime if mtime is not None and mtime < time.time_ns() - RACY_NS else None
            folders[prefix] = (trusted, answers)
            self._dirty = True
            return answer

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
                plans = data.get("plans")
                if isinstance(plans, dict):
                    self._plans = {b: p for b, p in plans.items() if _is_plan(p)}
        return self._folders

    # -- the generation keys of the last plan ---------------------------------------------

    def generation_keys(
        self, board: str, backend: str, inputs: Mapping[str, str]
    ) -> Mapping[str, Sequence[str]] | None:
        """``shot id -> the key of each take`` as the last plan of ``backend`` made them, if
        it planned the same checked ``board`` with the same input ``digests`` (path ->
        sha256); else ``None``."""
        with self._lock:
            self._load()
            plan = self._plans.get(backend)
            if plan is None or plan["board"] != board or plan["inputs"] != inputs:
                return None
            takes: Mapping[str, Sequence[str]] = plan["takes"]
            return takes

    def remember_keys(
        self,
        board: str,
        backend: str,
        inputs: Mapping[str, str],
        takes: Mapping[str, Sequence[str]],
    ) -> None:
        """Remember the generation keys a plan of ``board`` made (see :meth:`generation_keys`)."""
        with self._lock:
            self._load()
            self._plans[backend] = {
                "board": board,
                "inputs": dict(inputs),
                "takes": {shot: list(keys) for shot, keys in takes.items()},
            }
            self._dirty = True

    def forget_keys(self, backend: str) -> None:
        """Forget the generation keys remembered for ``backend``."""
        with self._lock:
            self._load()
            if self._plans.pop(backend, None) is not None:
                self._dirty = True

    # -- writing (the per-key files are written by the store) ------------------------------

    def wrote(self, key: str, record: dict[str, Any]) -> None:
        """The store just wrote ``record`` as the record of ``key``."""
        self._changed(key, record)

    def removed(self, key: str) -> None:
        """The store removed the record of ``key``."""
        self._changed(key, _MISSING)

    def _changed(self, key: str, answer: _Answer) -> None:
        # The write changed the folder's mtime, and another process may have written in it
        # since it was looked at: not trusted until it is looked at again.
        with self._lock:
            self._load()[key[:2]] = (None, {key: answer})
            self._dirty = True

    def save(self) -> None:
        """Write the index if it learned something (best effort: it is only a memo)."""
        with self._lock:
            if not self._dirty or self._folders is None or not self.root.is_dir():
                return
            trusted = {p: [m, a] for p, (m, a) in sorted(self._folders.items()) if m is not None}
            data = {"format": _FORMAT, "folders": trusted, "plans": self._plans}
            try:
                atomic_write(self._path, canonical_json(data))
            except (OSError, ValueError):
                return
            self._dirty = False


def _read(path: str) -> _Answer:
    """What the record file at ``path`` holds: its record, missing, or unreadable."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return _MISSING
    except (OSError, ValueError):
        return _UNREADABLE
    return data if isinstance(data, dict) else _UNREADABLE


def _is_plan(value: Any) -> bool:
    """Whether ``value`` is the generation keys of a plan as the index holds them."""
    if not isinstance(value, dict) or not isinstance(value.get("board"), str):
        return False
    inputs, takes = value.get("inputs"), value.get("takes")
    return (
        isinstance(inputs, dict)
        and all(isinstance(d, str) for d in inputs.values())
        and isinstance(takes, dict)
        and all(
            isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            for keys in takes.values()
        )
    )


def _folder_from_json(value: Any) -> _Folder | None:
    """A folder as the index holds it, or ``None`` when it is not one (then it is read)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    mtime, answers = value
    if not isinstance(mtime, int) or isinstance(mtime, bool) or not isinstance(answers, dict):
        return None
    for answer in answers.values():
        if not (answer is _MISSING or answer is _UNREADABLE or isinstance(answer, dict)):
            return None
    return (mtime, answers)
