"""The task journal (SQLite under the store): paid work is never lost and never paid twice.

Before a paid submit the *intent* (shot, take, generation key) is committed; right after
the submit the task id; after download and verification the clip digest. A rerun resumes
every known task id and never submits a generation key that already has a task. SQLite's
``BEGIN IMMEDIATE`` makes claiming a key atomic across processes, so two ``render`` processes
never submit the same key twice. The upload cache (content digest -> URL while valid) and
the provider URLs of outputs (for ``extends``) live here too.

States of a key::

    new ──claim──▶ intent ──submit──▶ submitted ──download+verify──▶ done
                     │                   └────────task failed─────▶ failed
                     └──reply lost──▶ unknown  (Qingbo: same key resent; WaveSpeed: the
                                                task list is searched, else --force)

Each key carries an *attempt* number: 0 for its first purchase, one more for each ``--force``
(:meth:`Journal.force` resets the key to ``new`` with the next number). A provider with
idempotent submits keys them on (generation key, attempt), so a forced take buys a new
generation while a resent submit of the same attempt cannot pay twice. ``intent_at`` is when
the current attempt's intent was committed: a lost reply is looked for in the provider's task
list from that moment on. A journal written before these columns existed is migrated in place
(every old key is attempt 0, its intent time its creation time).

Each unsettled key (``intent``/``unknown``) also records its *next step*, what the next run
does about it: ``resend`` (the provider de-duplicates the resend), ``look`` (the provider's
task list is searched first) or ``force`` (the list shows no task: only ``--force`` buys it
again). The provider URL of a finished output is kept with its expiry, and a link the
provider stopped serving is recorded as gone (expiry 0), so ``plan`` can say whether the next
render downloads a lost clip again or only ``--force`` can buy it.

One connection serves every thread (writes run off the event loop): a lock serialises it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from storyboard.errors import NextStep, StoreError

__all__ = [
    "JOURNAL_FILE",
    "Journal",
    "JournalEntry",
    "JournalFacts",
    "journal_path",
    "merge_journal",
    "read_facts",
    "read_states",
]

#: The journal's file name inside a store.
JOURNAL_FILE = "journal.sqlite"

_OPEN_DEADLINE = 30.0
JournalState = Literal["new", "intent", "submitted", "unknown", "done", "failed"]

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
    updated REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    intent_at REAL,
    next_step TEXT
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
    attempt: int = 0  # which purchase of the key this is (0, then one more per --force)
    intent_at: float | None = None  # Unix time the current attempt's intent was committed
    next_step: NextStep | None = None  # what the next run does about an unsettled submit


# Columns added after the first release, with how an older journal gets them.
_MIGRATIONS = (
    ("attempt", "ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0", None),
    (
        "intent_at",
        "ALTER TABLE tasks ADD COLUMN intent_at REAL",
        "UPDATE tasks SET intent_at = created WHERE state != 'new' AND intent_at IS NULL",
    ),
    ("next_step", "ALTER TABLE tasks ADD COLUMN next_step TEXT", None),
)
_COLUMNS = (
    "key, shot, take, provider, model, state, task_id, seed, digest, cost, error, owner,"
    " attempt, intent_at, next_step"
)
_NEXT_STEPS = frozenset(get_args(NextStep))


def _entry(row: tuple[object, ...]) -> JournalEntry:
    values = list(row)
    if values[-1] not in _NEXT_STEPS:
        values[-1] = None
    return JournalEntry(*values)  # type: ignore[arg-type]


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
        self._lock = threading.RLock()
        # Switching to WAL and creating the tables take locks that SQLite's busy timeout
        # does not always wait for; two renders starting together retry until a deadline.
        deadline = time.monotonic() + _OPEN_DEADLINE
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit mode: every transaction below is explicit.
                self._db = sqlite3.connect(
                    path, timeout=_OPEN_DEADLINE, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "PRAGMA synchronous=FULL"
                )  # a committed intent survives power loss
                self._db.executescript(_SCHEMA)
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot open the task journal {path}: {exc}") from exc
                time.sleep(0.05 + random.random() * 0.1)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open the task journal {path}: {exc}") from exc

    def _migrate(self) -> None:
        """Add the columns a journal of an earlier version lacks (in one transaction)."""
        have = {str(row[1]) for row in self._db.execute("PRAGMA table_info(tasks)")}
        missing = [m for m in _MIGRATIONS if m[0] not in have]
        if not missing:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated it between the look and the lock.
            have = {str(row[1]) for row in self._db.execute("PRAGMA table_info(tasks)")}
            for name, add, fill in missing:
                if name not in have:
                    self._db.execute(add)
                    if fill:
                        self._db.execute(fill)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
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
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def task_ids(self, provider: str) -> frozenset[str]:
        """Every task id journalled for ``provider`` (tasks some key already holds)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id FROM tasks WHERE provider = ? AND task_id IS NOT NULL",
                (provider,),
            ).fetchall()
        return frozenset(str(row[0]) for row in rows)

    def claim(
        self,
        key: str,
        *,
        shot: str,
        take: int,
        provider: str,
        model: str,
        seed: int | None,
        next_step: NextStep | None = None,
    ) -> tuple[JournalEntry, bool]:
        """Atomically record the intent to submit ``key``, unless it is already known.

        Returns the entry and whether this call created it (``True``: the caller may submit).
        A key in state ``new`` (forced, or refused before anything was created) is claimed
        too, keeping its attempt number. Any other existing entry is returned as it is, for
        the caller to resume or report. ``next_step`` is what a later run does if this run
        stops before the submit's reply is journalled (``resend`` or ``look``).
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state FROM tasks WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO tasks (key, shot, take, provider, model, state, seed, owner,"
                    " created, updated, attempt, intent_at, next_step)"
                    " VALUES (?, ?, ?, ?, ?, 'intent', ?, ?, ?, ?, 0, ?, ?)",
                    (key, shot, take, provider, model, seed, self.owner, now, now, now, next_step),
                )
                created = True
            elif row[0] == "new":
                db.execute(
                    "UPDATE tasks SET state = 'intent', shot = ?, take = ?, provider = ?,"
                    " model = ?, seed = ?, owner = ?, intent_at = ?, next_step = ?, updated = ?"
                    " WHERE key = ?",
                    (shot, take, provider, model, seed, self.owner, now, next_step, now, key),
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
        self._set(key, state="submitted", task_id=task_id, next_step=None)

    def unknown(self, key: str, message: str, *, next_step: NextStep | None = None) -> None:
        """The submit's reply was lost; ``next_step`` (if given) is what the next run does."""
        if next_step is None:
            self._set(key, state="unknown", error=message)
        else:
            self._set(key, state="unknown", error=message, next_step=next_step)

    def failed(self, key: str, message: str) -> None:
        self._set(key, state="failed", error=message)

    def done(self, key: str, digest: str, cost: float | None) -> None:
        self._set(key, state="done", digest=digest, cost=cost, error=None)

    def forget(self, key: str) -> None:
        """Drop a key and everything known about it (attempt number included)."""
        with self._tx() as db:
            db.execute("DELETE FROM tasks WHERE key = ?", (key,))

    def force(self, key: str) -> int | None:
        """``--force``: the next submit of ``key`` is a new purchase (attempt + 1).

        The key goes back to ``new`` with the next attempt number; its task id, clip, cost and
        output URL are forgotten. A key already ``new`` keeps its number (nothing was sent for
        it), and a key the journal does not know stays unknown (its first submit is attempt 0).

        Returns the attempt number the next submit carries, or ``None`` for an unknown key.
        """
        with self._tx() as db:
            row = db.execute("SELECT state, attempt FROM tasks WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            state, attempt = str(row[0]), int(row[1])
            if state != "new":
                attempt += 1
                db.execute(
                    "UPDATE tasks SET state = 'new', attempt = ?, task_id = NULL, digest = NULL,"
                    " cost = NULL, error = NULL, intent_at = NULL, next_step = NULL, owner = ?,"
                    " updated = ? WHERE key = ?",
                    (attempt, self.owner, time.time(), key),
                )
                db.execute("DELETE FROM outputs WHERE key = ?", (key,))
        return attempt

    def release(self, key: str) -> None:
        """A submit that certainly created nothing: the key is free again, same attempt."""
        self._set(key, state="new", task_id=None, intent_at=None, next_step=None)

    # -- uploads and outputs ----------------------------------------------------------------

    def upload_url(self, digest: str, provider: str, *, margin: float = 3600.0) -> str | None:
        with self._lock:
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
        with self._lock:
            row = self._db.execute(
                "SELECT url, expires FROM outputs WHERE key = ?", (key,)
            ).fetchone()
        if row is None or row[1] < time.time() + margin:
            return None
        return str(row[0])

    def record_output(self, key: str, url: str, expires: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO outputs (key, url, expires) VALUES (?, ?, ?)",
                (key, url, expires),
            )

    def output_gone(self, key: str) -> None:
        """The provider no longer serves the output of ``key`` (its link answered 403/404/410).

        Recorded as an expiry of 0, so :meth:`output_url` never offers the link again and
        ``plan`` says that only ``--force`` can buy the take again.
        """
        with self._tx() as db:
            row = db.execute("SELECT url FROM outputs WHERE key = ?", (key,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO outputs (key, url, expires) VALUES (?, ?, 0)",
                (key, str(row[0]) if row else ""),
            )

    def output_expires(self, key: str) -> float | None:
        """When the provider's link to the output of ``key`` expires (0: gone), if known."""
        with self._lock:
            row = self._db.execute("SELECT expires FROM outputs WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else None


def merge_journal(target: Path, source: Path) -> int:
    """Copy into the journal at ``target`` what the journal at ``source`` knows and it lacks.

    For adopting a store made by an earlier version (one store beside each storyboard) into
    the project's store: every task of ``source`` whose key ``target`` does not hold is
    inserted as it is (state, task id, attempt, intent time, next step, owner), so a task
    submitted but not downloaded stays resumable by its task id and a key with a task is
    never submitted again. A key both journals hold keeps ``target``'s row (the project's
    own purchase). Upload URLs and output URLs ``target`` lacks are copied too. ``source``
    is migrated in place first (an older schema), then read; it is not changed otherwise.
    Running it again adds nothing: a merge cut short is simply run again.

    Returns:
        How many tasks were added.

    Raises:
        StoreError: either journal cannot be opened or written.
    """
    Journal(source).close()  # the source gets the columns of this version (and stays WAL)
    journal = Journal(target)
    try:
        with journal._lock:
            db = journal._db
            try:
                db.execute("ATTACH DATABASE ? AS legacy", (str(source),))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the task journal {source}: {exc}") from exc
            try:
                with journal._tx():
                    before = db.total_changes
                    db.execute(
                        f"INSERT OR IGNORE INTO main.tasks ({_COLUMNS}, created, updated)"
                        f" SELECT {_COLUMNS}, created, updated FROM legacy.tasks"
                    )
                    added = db.total_changes - before
                    db.execute(
                        "INSERT OR IGNORE INTO main.uploads (digest, provider, url, expires)"
                        " SELECT digest, provider, url, expires FROM legacy.uploads"
                    )
                    db.execute(
                        "INSERT OR IGNORE INTO main.outputs (key, url, expires)"
                        " SELECT key, url, expires FROM legacy.outputs"
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot merge the task journal {source}: {exc}") from exc
            finally:
                db.execute("DETACH DATABASE legacy")
    finally:
        journal.close()
    return added


def journal_path(store_root: Path) -> Path:
    """Where the journal of the store at ``store_root`` is."""
    return store_root / JOURNAL_FILE


@dataclass(frozen=True)
class JournalFacts:
    """What ``plan`` needs to know about a key the journal holds."""

    state: JournalState
    provider: str
    next_step: NextStep | None = None
    output_expires: float | None = None  # Unix time; 0 when the provider no longer has it


def read_facts(path: Path) -> dict[str, JournalFacts]:
    """Generation key -> :class:`JournalFacts`, read without creating or locking anything.

    Like :func:`read_states`: a missing or unreadable journal knows nothing, and keys in
    state ``new`` are left out. A journal of an earlier version (no ``next_step`` column)
    reads with no next steps.
    """
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            columns = {str(row[1]) for row in db.execute("PRAGMA table_info(tasks)")}
            step = "t.next_step" if "next_step" in columns else "NULL"
            rows = db.execute(
                f"SELECT t.key, t.state, t.provider, {step}, o.expires FROM tasks t"
                " LEFT JOIN outputs o ON o.key = t.key WHERE t.state != 'new'"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {
        str(key): JournalFacts(
            state=state,
            provider=str(provider),
            next_step=step_value if step_value in _NEXT_STEPS else None,
            output_expires=None if expires is None else float(expires),
        )
        for key, state, provider, step_value, expires in rows
    }


def read_states(path: Path) -> dict[str, JournalState]:
    """Generation key -> journal state, read without creating or locking anything.

    For ``plan``: a missing or unreadable journal simply knows nothing, and a key in state
    ``new`` (forced, nothing sent since) is left out: its next submit is a new purchase.
    """
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT key, state FROM tasks WHERE state != 'new'").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {str(key): state for key, state in rows}
