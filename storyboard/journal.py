"""The task journal (SQLite under the store): paid work is never lost and never paid twice.

Before a paid submit the *intent* (shot, take, generation key) is committed; right after
the submit the task id; after download and verification the clip digest. A rerun resumes
every known task id and never submits a generation key that already has a task. SQLite's
``BEGIN IMMEDIATE`` makes claiming a key atomic across processes, so two ``render`` processes
never submit the same key twice. The upload cache (content digest -> URL while valid) and
the provider URLs of outputs (for ``extends``) live here too.

States of a key::

    intent ──submit──▶ submitted ──download+verify──▶ done
       │                   └────────task failed─────▶ failed
       └──reply lost──▶ unknown      (WaveSpeed: needs --force; Qingbo: same key resent)
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storyboard.errors import StoreError

__all__ = ["Journal", "JournalEntry", "read_states"]

_OPEN_DEADLINE = 30.0
JournalState = Literal["intent", "submitted", "unknown", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,
    shot TEXT NOT NULL,
    take INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    seed INTEGER,
    digest TEXT,
    cost REAL,
    error TEXT,
    owner TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    digest TEXT NOT NULL,
    provider TEXT NOT NULL,
    url TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (digest, provider)
);
CREATE TABLE IF NOT EXISTS outputs (
    key TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    expires REAL NOT NULL
);
"""


@dataclass(frozen=True)
class JournalEntry:
    key: str
    shot: str
    take: int
    provider: str
    model: str
    state: JournalState
    task_id: str | None
    seed: int | None
    digest: str | None
    cost: float | None
    error: str | None
    owner: str | None


def _owner() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether the process that wrote ``owner`` still runs (same machine only)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The journal of one store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.owner = _owner()
        # Switching to WAL and creating the tables take locks that SQLite's busy timeout
        # does not always wait for; two renders starting together retry until a deadline.
        deadline = time.monotonic() + _OPEN_DEADLINE
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit mode: every transaction below is explicit.
                self._db = sqlite3.connect(path, timeout=_OPEN_DEADLINE, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "PRAGMA synchronous=FULL"
                )  # a committed intent survives power loss
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot open the task journal {path}: {exc}") from exc
                time.sleep(0.05 + random.random() * 0.1)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open the task journal {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"the task journal {self.path} is busy or broken: {exc}") from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- tasks -----------------------------------------------------------------------------

    def get(self, key: str) -> JournalEntry | None:
        row = self._db.execute(
            "SELECT key, shot, take, provider, model, state, task_id, seed, digest, cost, error,"
            " owner FROM tasks WHERE key = ?",
            (key,),
        ).fetchone()
        return JournalEntry(*row) if row else None

    def claim(
        self, key: str, *, shot: str, take: int, provider: str, model: str, seed: int | None
    ) -> tuple[JournalEntry, bool]:
        """Atomically record the intent to submit ``key``, unless it is already known.

        Returns the entry and whether this call created it (``True``: the caller may submit).
        An existing entry is returned as it is, for the caller to resume or report.
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT key FROM tasks WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO tasks (key, shot, take, provider, model, state, seed, owner,"
                    " created, updated) VALUES (?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?)",
                    (key, shot, take, provider, model, seed, self.owner, now, now),
                )
                created = True
            else:
                created = False
        entry = self.get(key)
        if entry is None:  # pragma: no cover - the row was just written
            raise StoreError(f"the task journal lost key {key}")
        return entry, created

    def take_over(self, key: str) -> bool:
        """Become the owner of an unfinished entry whose owner is gone; ``False`` if alive."""
        with self._tx() as db:
            row = db.execute("SELECT owner FROM tasks WHERE key = ?", (key,)).fetchone()
            if row is None or (_alive(row[0]) and row[0] != self.owner):
                return False
            db.execute(
                "UPDATE tasks SET owner = ?, updated = ? WHERE key = ?",
                (self.owner, time.time(), key),
            )
        return True

    def _set(self, key: str, **fields: object) -> None:
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(
                f"UPDATE tasks SET {names}, updated = ? WHERE key = ?",
                (*fields.values(), time.time(), key),
            )

    def submitted(self, key: str, task_id: str) -> None:
        self._set(key, state="submitted", task_id=task_id)

    def unknown(self, key: str, message: str) -> None:
        self._set(key, state="unknown", error=message)

    def failed(self, key: str, message: str) -> None:
        self._set(key, state="failed", error=message)

    def done(self, key: str, digest: str, cost: float | None) -> None:
        self._set(key, state="done", digest=digest, cost=cost, error=None)

    def forget(self, key: str) -> None:
        """Drop a key (``--force``, or a submit that certainly created nothing)."""
        with self._tx() as db:
            db.execute("DELETE FROM tasks WHERE key = ?", (key,))

    # -- uploads and outputs ----------------------------------------------------------------

    def upload_url(self, digest: str, provider: str, *, margin: float = 3600.0) -> str | None:
        row = self._db.execute(
            "SELECT url, expires FROM uploads WHERE digest = ? AND provider = ?",
            (digest, provider),
        ).fetchone()
        if row is None or row[1] < time.time() + margin:
            return None
        return str(row[0])

    def record_upload(self, digest: str, provider: str, url: str, expires: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (digest, provider, url, expires) VALUES (?, ?, ?, ?)",
                (digest, provider, url, expires),
            )

    def output_url(self, key: str, *, margin: float = 3600.0) -> str | None:
        row = self._db.execute("SELECT url, expires FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] < time.time() + margin:
            return None
        return str(row[0])

    def record_output(self, key: str, url: str, expires: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO outputs (key, url, expires) VALUES (?, ?, ?)",
                (key, url, expires),
            )


def read_states(path: Path) -> dict[str, JournalState]:
    """Generation key -> journal state, read without creating or locking anything.

    For ``plan``: a missing or unreadable journal simply knows nothing.
    """
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT key, state FROM tasks").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {str(key): state for key, state in rows}
