"""The task journal's attempt numbers and intent times (issue 7 item 3), on real SQLite files.

Whatever sequence of claims, submits, lost replies, refusals and ``--force`` a key goes
through, its attempt number only grows, grows by exactly one per ``--force`` of a key
something was sent for, and a resend of the same attempt keeps it.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from storyboard.journal import Journal, read_states

KEY = "k" * 64
OPS = st.lists(
    st.sampled_from(["claim", "submitted", "unknown", "release", "force", "done", "failed"]),
    max_size=25,
)


def _claim(journal: Journal) -> bool:
    _, created = journal.claim(KEY, shot="s", take=1, provider="qingbo", model="m", seed=None)
    return created


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_attempts_only_grow_and_only_through_force(ops: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite")
        try:
            expected = 0
            for op in ops:
                before = journal.get(KEY)
                if op == "claim":
                    created = _claim(journal)
                    assert created == (before is None or before.state == "new")
                elif before is None:
                    continue  # nothing else applies to a key the journal does not know
                elif op == "submitted":
                    journal.submitted(KEY, "task-1")
                elif op == "unknown":
                    journal.unknown(KEY, "reply lost")
                elif op == "release":
                    journal.release(KEY)
                elif op == "done":
                    journal.done(KEY, "d" * 64, None)
                elif op == "failed":
                    journal.failed(KEY, "boom")
                else:
                    number = journal.force(KEY)
                    if before.state != "new":
                        expected += 1
                    assert number == expected
                after = journal.get(KEY)
                assert after is not None and after.attempt == expected
                if after.state == "new":
                    assert after.task_id is None and after.intent_at is None
                    assert KEY not in read_states(journal.path)  # plan: a new purchase
                if op == "claim" and after.state == "intent":
                    assert after.intent_at is not None
        finally:
            journal.close()


def test_force_of_an_unknown_key_is_a_first_purchase(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.force(KEY) is None
    assert journal.get(KEY) is None
    assert _claim(journal)
    entry = journal.get(KEY)
    assert entry is not None and (entry.state, entry.attempt) == ("intent", 0)
    journal.close()


def test_force_forgets_the_output_url_of_the_old_generation(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    _claim(journal)
    journal.submitted(KEY, "t1")
    journal.record_output(KEY, "https://cdn.example/old.mp4", 2e9)
    assert journal.output_url(KEY) == "https://cdn.example/old.mp4"
    assert journal.force(KEY) == 1
    assert journal.output_url(KEY) is None
    assert journal.task_ids("qingbo") == frozenset()
    journal.close()


def test_an_old_journal_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE tasks (key TEXT PRIMARY KEY, shot TEXT NOT NULL, take INTEGER NOT NULL,
            provider TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT,
            seed INTEGER, digest TEXT, cost REAL, error TEXT, owner TEXT,
            created REAL NOT NULL, updated REAL NOT NULL);
        """
    )
    db.execute(
        "INSERT INTO tasks VALUES (?, 's', 1, 'wavespeed', 'm', 'unknown', NULL, 7, NULL,"
        " NULL, 'reply lost', 'gone:1', 1700000000.5, 1700000001.0)",
        (KEY,),
    )
    db.commit()
    db.close()
    journal = Journal(path)
    entry = journal.get(KEY)
    assert entry is not None
    assert (entry.state, entry.attempt, entry.intent_at, entry.seed) == (
        "unknown",
        0,
        1700000000.5,
        7,
    )
    assert journal.force(KEY) == 1
    journal.close()
    assert Journal(path).get(KEY) is not None  # opens again, nothing to migrate


def test_the_journal_serves_worker_threads(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            key = f"{n:064d}"
            journal.claim(key, shot="s", take=n, provider="wavespeed", model="m", seed=None)
            journal.submitted(key, f"task-{n}")
            journal.get(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(journal.task_ids("wavespeed")) == 16
    journal.close()
