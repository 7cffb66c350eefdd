"""Every wait for a lock ends: a render waits while ``storyboard gc`` holds the store, says
so, and gives up with the holder's name and what to do past its deadline (real ``flock``
locks, held by another process)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_cli

from storyboard.errors import StoreError
from storyboard.locks import STORE_LOCK, LockTimeout, flock, hold_store
from storyboard.workfolder import work_lock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


Holder = Callable[[Path, float], "subprocess.Popen[str]"]


@pytest.fixture
def holder() -> Iterator[Holder]:
    """Start a process that holds ``path`` exclusively for ``seconds``."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, seconds: float) -> subprocess.Popen[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()  # reaps it and closes its pipe


def test_a_shared_lock_waits_for_the_holder_then_goes_on(tmp_path: Path, holder: Holder) -> None:
    holder(tmp_path / STORE_LOCK, 0.6)
    waits: list[float] = []
    start = time.monotonic()
    with hold_store(tmp_path, on_wait=lambda: waits.append(time.monotonic())) as taken:
        took = time.monotonic() - start
    assert taken and len(waits) == 1  # told once, however many times it looked
    assert 0.4 < took < 5


def test_a_shared_lock_gives_up_at_its_deadline_naming_the_holder(
    tmp_path: Path, holder: Holder
) -> None:
    holder(tmp_path / STORE_LOCK, 30)
    start = time.monotonic()
    with pytest.raises(LockTimeout) as caught, hold_store(tmp_path, deadline=0.5):
        pytest.fail("the lock was taken")  # pragma: no cover
    assert 0.5 <= time.monotonic() - start < 3
    error = caught.value
    assert isinstance(error, StoreError) and error.exit_code == 1
    assert "`storyboard gc`" in str(error) and str(tmp_path) in str(error)
    assert "storyboard gc" in (error.hint() or "")


def test_an_exclusive_lock_never_waits(tmp_path: Path, holder: Holder) -> None:
    holder(tmp_path / ".lock", 30)
    start = time.monotonic()
    with work_lock(tmp_path, exclusive=True) as taken:
        assert not taken
    with flock(tmp_path / ".lock", exclusive=True, deadline=60) as taken:
        assert not taken
    assert time.monotonic() - start < 1


def test_a_cut_waits_for_a_prune_at_most_its_deadline(tmp_path: Path, holder: Holder) -> None:
    holder(tmp_path / ".lock", 30)
    lock = flock(tmp_path / ".lock", holder="a prune of the work folder", deadline=0.2)
    with pytest.raises(LockTimeout, match="a prune of the work folder"), lock:
        pass  # pragma: no cover


BOARD = """\
storyboard: 1
shots:
  - id: end
    card: {text: "The end", duration: 1}
"""


def test_render_says_it_waits_for_gc_and_goes_on_when_it_ends(
    tmp_path: Path, holder: Holder
) -> None:
    board = tmp_path / "storyboard.yaml"
    board.write_text(BOARD, encoding="utf-8")
    (tmp_path / "storyboard.toml").write_text("", encoding="utf-8")
    store = tmp_path / ".storyboard"
    gc = holder(store / STORE_LOCK, 1.0)
    result = run_cli("render", str(board))
    assert result.code == 0, result.err
    assert f"waiting for `storyboard gc` to finish with the store {store}" in result.err
    assert gc.poll() is not None  # it rendered only after the gc had let go
