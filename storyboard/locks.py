"""Advisory file locks (``flock``) whose waits end.

Two locks keep removals away from work in progress: the store's (:data:`STORE_LOCK`, held
shared by every render and stitch, exclusively by ``storyboard gc``) and each cut work
folder's (held shared by every cut, exclusively by a prune). The exclusive side never waits:
it gives up at once when anyone holds the lock. The shared side waits while an exclusive
holder works, but not for ever: past its deadline it raises :class:`LockTimeout`, which
names what held the lock and what to do. ``flock`` locks die with their process, so a wait
only ever outlasts a holder that is still running.

This module imports nothing heavy: every render goes through it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from storyboard.errors import StoreError

__all__ = ["LOCK_DEADLINE", "STORE_LOCK", "LockTimeout", "flock", "hold_store"]

#: The lock file in a store's folder.
STORE_LOCK = ".lock"
#: How long a shared lock waits for an exclusive holder, in seconds.
LOCK_DEADLINE = 600.0
_POLL_FIRST, _POLL_MAX = 0.02, 0.5


class LockTimeout(StoreError):
    """A lock stayed held by someone else past the deadline (exit 1).

    Attributes:
        path: the lock file.
        holder: who holds it, in words ("`storyboard gc`").
        seconds: how long this process waited.
    """

    def __init__(self, path: Path, holder: str, seconds: float, hint: str) -> None:
        super().__init__(
            f"{path.parent} stayed locked by {holder} for {seconds:.0f} s ({path}); "
            "nothing was done"
        )
        self.path = path
        self.holder = holder
        self.seconds = seconds
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


@contextlib.contextmanager
def flock(
    path: Path,
    *,
    exclusive: bool = False,
    holder: str = "another process",
    hint: str = "let it finish, then run the command again",
    deadline: float = LOCK_DEADLINE,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[bool]:
    """Hold the lock at ``path`` (created, with its folder, when missing); yields whether
    it was taken.

    Exclusive does not wait: ``False`` at once when anyone holds the lock. Shared waits
    while an exclusive holder has it, calling ``on_wait`` once when it starts to wait, and
    raises :class:`LockTimeout` (``holder``, ``hint``) after ``deadline`` seconds. Where
    there is no ``flock`` (not POSIX) or the file system refuses it, shared yields ``False``
    and the caller goes on; exclusive is never taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        start, pause, taken = time.monotonic(), _POLL_FIRST, False
        while True:
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                if exclusive:
                    break
                waited = time.monotonic() - start
                if waited >= deadline:
                    raise LockTimeout(path, holder, waited, hint) from None
                if on_wait is not None and pause == _POLL_FIRST:
                    on_wait()
                time.sleep(min(pause, max(deadline - waited, 0.0)))
                pause = min(pause * 2, _POLL_MAX)
            except OSError:  # no locks on this file system
                break
            else:
                taken = True
                break
        yield taken
    finally:
        os.close(fd)  # closing releases the lock


def hold_store(
    root: Path,
    *,
    exclusive: bool = False,
    deadline: float = LOCK_DEADLINE,
    on_wait: Callable[[], None] | None = None,
) -> contextlib.AbstractContextManager[bool]:
    """Hold the store's lock (:data:`STORE_LOCK`); yields whether it was taken.

    Shared (renders, stitches) runs side by side and waits only while a gc runs, at most
    ``deadline`` seconds (then :class:`LockTimeout`). Exclusive (gc) does not wait.
    """
    return flock(
        root / STORE_LOCK,
        exclusive=exclusive,
        holder="`storyboard gc`",
        hint="wait for `storyboard gc` to finish (or stop it), then run the command again",
        deadline=deadline,
        on_wait=on_wait,
    )
