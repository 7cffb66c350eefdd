"""Stage 5, render: what the renders of one run share, so many storyboards run as one.

``storyboard render a.yaml b.yaml`` renders both storyboards in one task group
(:mod:`storyboard.batch`); their takes meet in one :class:`Scheduler`:

* one ``CapacityLimiter`` per provider caps the tasks in flight across every storyboard of
  the run (``render.concurrency`` is a promise to the provider's account, not to a file);
* a registry of the generation keys this run renders: a key two takes share (two
  storyboards with the same shot, or two shots of one storyboard) is rendered once; the
  other take waits for it and takes its clip from the store (:func:`adopt_clip`: found there
  when the store is shared, else copied in and verified by its sha256) instead of
  submitting it again;
* without ``keep_going``, the first failure anywhere stops new work everywhere (a take that
  resumes a task already paid for still runs: its output would be stranded);
* one watcher of Ctrl-C, however many storyboards render.

:func:`storyboard.render.render_plan` makes a scheduler of its own when given none, so one
storyboard behaves exactly as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

import anyio

from storyboard.cache import ClipEntry, Store
from storyboard.errors import ClipCorrupt
from storyboard.hashing import sha256_file
from storyboard.providers import default_concurrency

__all__ = ["Flight", "Scheduler", "adopt_clip"]


class Flight:
    """One generation key this run renders: which take renders it, and how it ended.

    Attributes:
        key: the generation key.
        owner: the take rendering it, as progress names it (``dawn/hover``, ``hover take 2``).
        board: the label of the storyboard that renders it (``""`` for a run of one).
        entry: its clip, once stored; ``None`` while rendering, or when it did not render.
        skipped: it was not started (the run stopped after a failure).
    """

    def __init__(self, key: str, owner: str, board: str) -> None:
        self.key = key
        self.owner = owner
        self.board = board
        self.entry: ClipEntry | None = None
        self.skipped = False
        self._done = anyio.Event()

    @property
    def landed(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> ClipEntry | None:
        """Wait until the owner's take ends; its clip, or ``None`` when it did not render."""
        await self._done.wait()
        return self.entry

    def land(self, entry: ClipEntry | None, *, skipped: bool = False) -> None:
        """The owner's take ended (``entry``: its stored clip); wakes every waiting take."""
        self.entry, self.skipped = entry, skipped and entry is None
        self._done.set()


class Scheduler:
    """The limits, keys in flight and stop flag that the renders of one run share.

    Args:
        concurrency: tasks in flight per provider name (default: the provider table's).
        keep_going: render everything possible despite failures; without it the first
            failure stops new work in every storyboard of the run.
    """

    def __init__(
        self, concurrency: Mapping[str, int] | None = None, *, keep_going: bool = False
    ) -> None:
        self.concurrency = dict(concurrency or {})
        self.keep_going = keep_going
        self.stopping = False
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._flights: dict[str, Flight] = {}
        self._ctrl_c = _CtrlC()
        self._watching = 0

    def cap(self, provider: str) -> int:
        """Tasks of ``provider`` this run keeps in flight at most."""
        return self.concurrency.get(provider) or default_concurrency(provider)

    def limiter(self, provider: str) -> anyio.CapacityLimiter:
        """The one limiter of ``provider`` for the whole run (made inside the event loop)."""
        if provider not in self._limiters:
            self._limiters[provider] = anyio.CapacityLimiter(self.cap(provider))
        return self._limiters[provider]

    def failed(self) -> None:
        """A take failed: without ``keep_going`` nothing new starts after it."""
        if not self.keep_going:
            self.stopping = True

    # -- generation keys -------------------------------------------------------------------

    def flight(self, key: str) -> Flight | None:
        """The take of this run that renders ``key`` (or did), if one started it."""
        return self._flights.get(key)

    def take_off(self, key: str, *, owner: str, board: str = "") -> Flight:
        """Register the take about to render ``key``; later takes of the key wait for it.

        Raises:
            ValueError: a take of this run already renders ``key`` (ask :meth:`flight` first).
        """
        if key in self._flights:
            raise ValueError(f"{key} is already rendered by {self._flights[key].owner}")
        flight = self._flights[key] = Flight(key, owner, board)
        return flight

    def rendered_by(self) -> dict[str, str]:
        """Generation key -> the label of the storyboard whose take rendered it (or tried)."""
        return {key: f.board for key, f in self._flights.items() if not f.skipped}

    # -- Ctrl-C ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Note a Ctrl-C while any render of the run is inside (re-entrant)."""
        if self._watching == 0:
            self._ctrl_c.__enter__()
        self._watching += 1
        try:
            yield
        finally:
            self._watching -= 1
            if self._watching == 0:
                self._ctrl_c.__exit__()

    @property
    def interrupted(self) -> bool:
        """Whether a Ctrl-C arrived while watching."""
        return self._ctrl_c.seen


def adopt_clip(store: Store, entry: ClipEntry, *, shot: str, take: int) -> ClipEntry:
    """``entry``, a clip another take of this run just stored, as ``store``'s clip of its key.

    In a store both takes share it is simply there; into another store it is copied and its
    sha256 checked before the store takes it. Blocking: call it off the event loop.

    Raises:
        ClipCorrupt: the copy does not match the clip's digest (nothing was stored).
        StoreError: the store cannot be written.
        OSError: the clip cannot be read.
    """
    found = store.lookup(entry.key)
    if found is not None and found.digest == entry.digest:
        return found
    part = store.tmp_dir() / f"{entry.key}.{os.getpid()}.{time.time_ns()}.shared.mp4"
    try:
        shutil.copyfile(entry.path, part)
        if sha256_file(part) != entry.digest:
            raise ClipCorrupt(
                f"the clip of {shot} take {take}, rendered for another storyboard of this run, "
                f"does not match its digest ({entry.path}); nothing was stored",
                shots=(shot,),
                hint="run the same command again: the clip is brought back first",
            )
        return store.put(
            entry.key, part, seconds=entry.seconds, shot=shot, take=take,
            provenance=entry.provenance,
        )  # fmt: skip
    finally:
        part.unlink(missing_ok=True)


class _CtrlC:
    """Notes a Ctrl-C (SIGINT) the moment it arrives, before the event loop acts on it.

    The preview backend's ffmpeg dies with the terminal's process group on SIGINT, so its
    take fails ("ffmpeg could not write ...") before the cancellation reaches it; a take
    that fails once a Ctrl-C was seen is reported ``interrupted``. Wraps the handler in
    place (asyncio's, which cancels the run) in the main thread only; restores it on exit.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Callable[[int, FrameType | None], object] | None = None
        self._installed: Callable[[int, FrameType | None], None] | None = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):
            return self

        def note(signum: int, frame: FrameType | None) -> None:
            self.seen = True
            previous(signum, frame)

        signal.signal(signal.SIGINT, note)
        self._previous, self._installed = previous, note
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) is self._installed:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = self._installed = None
