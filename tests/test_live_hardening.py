# ruff: noqa: F811 - test parameters named ``live`` receive the imported fixture
"""Issue 7, the live runner and the scheduler: bounded waits, attempts, lost replies, Ctrl-C.

End to end through the provider emulator served on 127.0.0.1 (the ``live`` fixture of
``test_live``): unknown statuses are bounded, ``--force`` buys a new generation, an old
journal migrates in place, nothing inside a take becomes a traceback, every wait has a
deadline, a task created behind a lost reply is found instead of bought again, a Ctrl-C lets a
submit in flight reach the journal, and a rerun resumes what was paid for before it reports
what needs ``--force``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from conftest import Project, write_image
from test_live import (
    PAIR_BOARD,
    UNKNOWN_KITE,
    V1,
    Live,
    _spawn,
    keys_of,
    live,  # noqa: F401 - the ``live`` fixture, shared
    render,
)

from storyboard.render import MAX_UNRECOGNISED_POLLS
from storyboard.testing.emulator import Fault, QuotaWindow

pytestmark = pytest.mark.slow


def journal_rows(project: Project) -> dict[str, dict[str, object]]:
    """Generation key -> the journal's row, read straight from the SQLite file."""
    db = sqlite3.connect(project.root / ".storyboard" / "journal.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {row["key"]: dict(row) for row in db.execute("SELECT * FROM tasks")}
    finally:
        db.close()


def submits_since(live: Live, mark: int) -> list[str]:
    """Paths of the submit requests received since ``mark`` (task list lookups excluded)."""
    return [r.path for r in live.requests_since(mark) if r.kind == "submit"]


# --------------------------------------------------------------------------------------------
# 1. Unknown statuses are bounded; the task stays journalled and a rerun resumes it
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", ["task", "events"])
def test_unrecognised_status_fails_the_take_and_a_rerun_resumes_it(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch, names: str
) -> None:
    monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.01")
    project.write(PAIR_BOARD)
    emu = live(qingbo_status_names=names, qingbo_cost_unit="none")
    emu.emu.script(
        Fault(on="poll", provider="qingbo", task_status="paused", times=MAX_UNRECOGNISED_POLLS)
    )
    first = render(project, "--keep-going")
    assert first.code == 1, first.err
    (task,) = emu.emu.tasks("qingbo")
    assert "error: sea: " in first.err
    assert "'paused'" in first.err and task.task_id in first.err and "qingbo" in first.err
    assert "the journal keeps the task, so a rerun resumes it" in first.err
    assert "Traceback" not in first.err
    sea = keys_of(project)["sea"]
    row = journal_rows(project)[sea]
    assert (row["state"], row["task_id"]) == ("submitted", task.task_id)  # not "failed"

    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert submits_since(emu, mark) == []  # resumed by its task id, not bought again
    assert len(emu.emu.tasks("qingbo")) == 1
    assert journal_rows(project)[sea]["state"] == "done"


# --------------------------------------------------------------------------------------------
# 2. --force buys a new generation; a resent submit of the same attempt keeps its key
# --------------------------------------------------------------------------------------------


def test_force_buys_a_new_qingbo_generation_and_a_resend_keeps_its_attempt(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    assert render(project).code == 0
    sea = keys_of(project)["sea"]
    first_task = emu.emu.tasks("qingbo")[0].task_id
    assert journal_rows(project)[sea]["attempt"] == 0

    forced = render(project, "--force", "sea")
    assert forced.code == 0, forced.err
    tasks = emu.emu.tasks("qingbo")
    assert len(tasks) == 2 and tasks[1].task_id != first_task  # really a new purchase
    assert tasks[1].idempotency_key == f"storyboard-{sea}-a1"
    row = journal_rows(project)[sea]
    assert (row["attempt"], row["task_id"], row["state"]) == (1, tasks[1].task_id, "done")

    # A second --force whose reply is lost: the resend carries the same attempt (a2 twice),
    # and Qingbo answers it with the task the lost request created.
    emu.emu.script(Fault(on="submit", provider="qingbo", drop=True))
    again = render(project, "--force", "sea")
    assert again.code == 0, again.err
    assert emu.emu.submits_per_idempotency_key[f"storyboard-{sea}-a2"] == 2
    assert len(emu.emu.tasks("qingbo")) == 3
    assert journal_rows(project)[sea]["attempt"] == 2
    assert len(emu.submissions("wavespeed")) == 1  # kite was never forced


def test_journal_of_the_previous_version_opens_and_resumes(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.01")
    project.write(PAIR_BOARD)
    emu = live()
    # The first run leaves `sea` submitted (its task reports a status nobody knows).
    emu.emu.script(
        Fault(on="poll", provider="qingbo", task_status="paused", times=MAX_UNRECOGNISED_POLLS)
    )
    assert render(project, "--keep-going").code == 1
    path = project.root / ".storyboard" / "journal.sqlite"
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE tasks DROP COLUMN attempt")  # the previous version's table
    db.execute("ALTER TABLE tasks DROP COLUMN intent_at")
    db.commit()
    db.close()

    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert submits_since(emu, mark) == []
    rows = journal_rows(project)
    assert {row["attempt"] for row in rows.values()} == {0}
    assert all(isinstance(row["intent_at"], float) for row in rows.values())

    forced = render(project, "--force", "sea")  # and --force works on a migrated journal
    assert forced.code == 0, forced.err
    sea = keys_of(project)["sea"]
    assert emu.emu.tasks("qingbo")[-1].idempotency_key == f"storyboard-{sea}-a1"


# --------------------------------------------------------------------------------------------
# 3. No traceback, no unbounded wait
# --------------------------------------------------------------------------------------------

TWO_KITES = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
  - id: kite2
    model: skyreels-v1
    first_frame: refs/b.png
    prompt: a blue kite over a field
    seed: 8
"""


def test_an_input_deleted_mid_run_fails_its_take_by_shot(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(TWO_KITES)
    emu = live()
    # --jobs 1: kite2 starts only when kite is done; b.png goes while kite is polled.
    polled = threading.Event()

    def delete_when_polled() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(r.kind == "poll" for r in emu.emu.requests):
                (project.root / "refs" / "b.png").unlink()
                polled.set()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=delete_when_polled, daemon=True)
    thread.start()
    result = render(project, "--jobs", "1", "--keep-going")
    thread.join()
    assert polled.is_set()
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "error: kite2: shot kite2 take 1 stopped: No such file or directory" in result.err
    assert "b.png" in result.err
    assert "hint: fix the cause and run the same command again" in result.err
    assert [s.endpoint for s in emu.submissions()] == [V1]  # only kite was bought
    write_image(project.root / "refs" / "b.png", (40, 90, 200))  # the user puts it back
    statuses = {s["id"]: s["status"] for s in project.plan("--live")["shots"]}
    assert statuses == {"kite": "fresh", "kite2": "stale"}  # kite's clip is kept


def test_a_quota_window_past_the_deadline_is_not_waited_for(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    # Qingbo's 5 h window resets long after the take's deadline: fail now, not in 5 h.
    emu.emu.script(Fault(on="submit", provider="qingbo", quota=QuotaWindow(reset_in=5 * 3600)))
    proc = _spawn(project, emu, "--keep-going")
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the render waited for the quota window instead of failing the take")
    text = err.decode()
    assert proc.returncode == 1, text
    assert "error: sea: " in text and "nothing was submitted" in text
    assert "past this take's deadline" in text
    assert "Traceback" not in text
    assert emu.emu.tasks("qingbo") == []
    assert len(emu.emu.tasks("wavespeed")) == 1  # the other take went on


# --------------------------------------------------------------------------------------------
# 4. A task created behind a lost reply is found in the task list, not bought again
# --------------------------------------------------------------------------------------------


def test_task_created_behind_a_5xx_is_found_and_resumed(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(Fault(on="submit", provider="wavespeed", status=503, apply=True))
    result = render(project)
    assert result.code == 0, result.err
    assert len(emu.submissions("wavespeed")) == 1  # one purchase, found after the 503
    assert len(emu.emu.tasks("wavespeed")) == 1
    assert any(r.kind == "list" for r in emu.emu.requests)
    kite = keys_of(project)["kite"]
    row = journal_rows(project)[kite]
    assert (row["state"], row["task_id"]) == ("done", emu.emu.tasks("wavespeed")[0].task_id)
    assert isinstance(row["intent_at"], float)  # the look-up started from the intent time


# --------------------------------------------------------------------------------------------
# 5. Ctrl-C lets a submit in flight reach the journal; a second one leaves at once
# --------------------------------------------------------------------------------------------


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the render ended (exit {proc.returncode}) too soon:\n{err.decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("the render never got there")
        time.sleep(0.005)


def test_ctrl_c_during_a_submit_journals_its_task(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(TWO_KITES)
    emu = live()
    # kite's submit is applied (the task exists, it is billed) and its reply held for 3 s.
    emu.emu.script(Fault(on="submit", provider="wavespeed", delay=3))
    proc = _spawn(project, emu, "--jobs", "1")
    _wait_for(lambda: bool(emu.submissions()), proc)
    os.kill(proc.pid, signal.SIGINT)
    interrupted_at = len(emu.emu.requests)
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "interrupted" in text and "Traceback" not in text
    (task,) = emu.emu.tasks("wavespeed")
    kite = keys_of(project)["kite"]
    row = journal_rows(project)[kite]
    assert (row["state"], row["task_id"]) == ("submitted", task.task_id)
    # No new submit started after the Ctrl-C (kite2 waited behind --jobs 1).
    assert submits_since(emu, interrupted_at) == []

    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert submits_since(emu, mark) == [f"/api/v3/{V1}"]  # kite2 only: kite was resumed
    assert Counter(s.endpoint for s in emu.submissions()) == Counter({V1: 2})
    assert {s["status"] for s in project.plan("--live")["shots"]} == {"fresh"}


def test_a_second_ctrl_c_leaves_at_once(project: Project, live: Callable[..., Live]) -> None:
    project.write(TWO_KITES)
    emu = live()
    # The reply is held until the client gives up (60 s for a submit): only a second Ctrl-C
    # ends the wait early.
    emu.emu.script(Fault(on="submit", provider="wavespeed", hold=True, delay=30))
    proc = _spawn(project, emu, "--jobs", "1")
    _wait_for(lambda: bool(emu.submissions()), proc)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the first Ctrl-C waits for the submit in flight
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130, err.decode()

    # The journal kept the intent: the rerun finds the task in the list instead of paying.
    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert submits_since(emu, mark) == [f"/api/v3/{V1}"]  # kite2 only
    assert len(emu.emu.tasks("wavespeed")) == 2


# --------------------------------------------------------------------------------------------
# 6. A rerun resumes every task paid for, then reports what needs --force
# --------------------------------------------------------------------------------------------


def test_a_rerun_resumes_paid_takes_before_reporting_unknown_ones(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.01")
    project.write(TWO_KITES)
    emu = live()
    emu.emu.script(
        Fault(on="submit", provider="wavespeed", status=503),  # kite: outcome unknown
        Fault(on="poll", provider="wavespeed", task_status="paused", times=MAX_UNRECOGNISED_POLLS),
    )
    first = render(project, "--keep-going", "--jobs", "1")
    assert first.code == 1
    keys = keys_of(project)
    rows = journal_rows(project)
    assert rows[keys["kite"]]["state"] == "unknown"
    assert rows[keys["kite2"]]["state"] == "submitted"  # paid for, not downloaded yet

    # Fail-fast, one take at a time, kite first: its unknown outcome must not strand kite2.
    mark = len(emu.emu.requests)
    again = render(project, "--jobs", "1")
    assert again.code == 1
    assert UNKNOWN_KITE in again.err
    assert "error: kite2" not in again.err
    assert submits_since(emu, mark) == []
    assert journal_rows(project)[keys["kite2"]]["state"] == "done"
    statuses = {s["id"]: s["status"] for s in project.plan("--live")["shots"]}
    assert statuses == {"kite": "stale", "kite2": "fresh"}
    assert "needs --force ID" in again.err


def test_journal_writes_and_hashing_run_off_the_event_loop(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every journal write of a live take happens in a worker thread, not the loop's."""
    from storyboard.journal import Journal

    project.write(PAIR_BOARD)
    live()
    main = threading.get_ident()
    seen: list[tuple[str, bool]] = []
    for name in ("claim", "submitted", "done", "record_upload", "record_output"):
        original = getattr(Journal, name)

        def spy(self: Journal, *args: object, _f: object = original, _n: str = name,
                **kwargs: object) -> object:  # fmt: skip
            seen.append((_n, threading.get_ident() == main))
            return _f(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(Journal, name, spy)
    assert render(project).code == 0
    assert {n for n, _ in seen} == {"claim", "submitted", "done", "record_upload", "record_output"}
    assert [n for n, on_main in seen if on_main] == []
