"""Canonical JSON, sha256 and memoised file digests (shared kernel).

Keys are the sha256 of canonical JSON (sorted keys, no whitespace, UTF-8), so the same
material always gives the same key whatever order a mapping was written in. File digests are
memoised by (path, size, mtime), as git's index and ninja do, so a no-op plan reads no media.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DigestMemo", "atomic_write", "canonical_json", "sha256_bytes", "sha256_file"]

_CHUNK = 1 << 20


# One encoder for every call (json.dumps would build one per call); it keeps no state.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact separators, UTF-8."""
    return _CANONICAL.encode(value).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class DigestMemo:
    """sha256 of files, remembered by (size, mtime_ns) in a small JSON file.

    A file whose size and mtime are unchanged is not read again. Racy-git caveat: a file
    rewritten within the same mtime tick with the same size would be missed; storyboard's
    inputs are edited by people, and the store's own objects are named by their digest.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                self._entries = {}  # missing or corrupt memo: recompute, never fail

    def digest(self, file: Path) -> str:
        """sha256 of ``file``; raises ``OSError`` if it cannot be read."""
        st = file.stat()
        name = str(file)
        entry = self._entries.get(name)
        if entry is not None and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return str(entry[2])
        digest = sha256_file(file)
        self._entries[name] = [st.st_size, st.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def known(self, file: Path, st: os.stat_result | None = None) -> str | None:
        """The digest of ``file`` if it is memoised for its current size and mtime (``st``:
        its stat when the caller has it), else ``None``; never reads the file's bytes.
        Raises ``OSError`` if it cannot be stat'ed."""
        if st is None:
            st = file.stat()
        entry = self._entries.get(str(file))
        if entry is not None and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return str(entry[2])
        return None

    def save(self) -> None:
        """Persist the memo if it changed (best effort: a failure only costs re-reading)."""
        if self.path is None or not self._dirty:
            return
        try:
            atomic_write(self.path, canonical_json(self._entries))
            self._dirty = False
        except OSError:
            pass
