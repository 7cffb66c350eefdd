"""Stage 5, render: what the renders of one run share, so many storyboards run as one.

``storyboard render a.yaml b.yaml`` renders both storyboards in one task group
(:mod:`storyboard.batch`); their takes meet in one :class:`Scheduler`:

* one set of :class:`Slots` per provider caps the tasks in flight across every storyboard of
  the run (``render.concurrency`` is a promise to the provider's account, not to a file);
  a freed slot goes to the waiting take that comes first by :class:`Priority`: the longest
  chain of expected render time it starts (itself and the shots that extend or continue it,
  transitively), then a take whose upstream just finished, then the longest render, then
  file order (critical path first, issue 13 item 1);
* a shot's last take to finish keeps its slot until the shots that build on it have asked
  for theirs (:class:`Board`), so a chain's next shot is never beaten to the slot by shots
  that were merely waiting longer; and no slot is handed out before every take ready from
  the start has asked, so the longest chain is not beaten by the first shots of the file;
* a registry of the generation keys this run renders: a key two takes share (two
  storyboards with the same shot, or two shots of one storyboard) is rendered once; the
  other take waits for it and takes its clip from the store (:func:`adopt_clip`: found there
  when the store is shared, else copied in and verified by its sha256) instead of
  submitting it again;
* without ``keep_going``, the first failure anywhere stops new work everywhere (a take that
  resumes a task already paid for still runs: its output would be stranded);
* one watcher of Ctrl-C, however many storyboards render.

:func:`storyboard.render.render_plan` makes a scheduler of its own when given none, so one
storyboard behaves exactly as before. ``STORYBOARD_SCHEDULE=fifo`` hands slots out first come,
first served, as before issue 13 (for ``benchmarks/bench_makespan.py``, which measures the
difference).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Literal

import anyio

from storyboard.cache import ClipEntry, Store
from storyboard.errors import ClipCorrupt
from storyboard.hashing import sha256_file
from storyboard.providers import default_concurrency

__all__ = [
    "Board",
    "Flight",
    "Node",
    "Priority",
    "Scheduler",
    "Slots",
    "Ticket",
    "adopt_clip",
    "chain_seconds",
]


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


Order = Literal["critical-path", "fifo"]


@dataclass(frozen=True)
class Node:
    """A shot of a storyboard, as the scheduler weighs it.

    Attributes:
        shot: its id.
        upstream: the shot it extends or continues, if any.
        seconds: the expected render time of one of its takes.
        takes: the takes of it this run renders (0: none; fresh, out of scope, or a card).
    """

    shot: str
    upstream: str | None = None
    seconds: float = 0.0
    takes: int = 0


def chain_seconds(nodes: Sequence[Node]) -> dict[str, float]:
    """Each shot's longest chain: the expected render of its own take (when this run renders
    any) plus the longest chain among the shots that extend or continue it, transitively."""
    by_id = {n.shot: n for n in nodes}
    depth: dict[str, int] = {}  # links up to the chain's first shot (iterative: chains are long)
    for node in nodes:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = node.shot
        while current is not None and current in by_id and current not in depth:
            if current in on_path:  # a cycle (validate refuses them): cut it here
                break
            path.append(current)
            on_path.add(current)
            current = by_id[current].upstream
        level = depth.get(current, -1) if current is not None else -1
        for shot in reversed(path):
            level += 1
            depth[shot] = level
    below: dict[str, float] = {}  # the longest chain among a shot's dependants
    chain: dict[str, float] = {}
    for node in sorted(nodes, key=lambda n: -depth.get(n.shot, 0)):
        own = node.seconds if node.takes > 0 else 0.0
        chain[node.shot] = own + below.get(node.shot, 0.0)
        if node.upstream in by_id:
            below[node.upstream] = max(below.get(node.upstream, 0.0), chain[node.shot])
    return chain


@dataclass(frozen=True)
class Priority:
    """Where a take stands among the takes waiting for a slot of its provider.

    Attributes:
        chain: seconds of expected render along the longest chain the take starts (itself
            and the shots that extend or continue it, transitively): longer first.
        successor: its upstream shot was rendered by this run, so a chain is under way:
            first among equal chains.
        seconds: its own expected render: longer first.
        order: ``(storyboard, shot, take)`` in the order of the run's files: earlier first.
    """

    chain: float = 0.0
    successor: bool = False
    seconds: float = 0.0
    order: tuple[int, int, int] = (0, 0, 0)

    def key(self) -> tuple[float, bool, float, tuple[int, int, int]]:
        """Sorts first the take that goes first."""
        return (-self.chain, not self.successor, -self.seconds, self.order)


class Ticket:
    """A take's place in its provider's queue, and then its slot."""

    def __init__(self, slots: Slots, priority: Priority) -> None:
        self.priority = priority
        self.state: Literal["waiting", "granted", "released"] = "waiting"
        self._slots = slots
        self._event = anyio.Event()

    def _grant(self) -> None:
        self.state = "granted"
        self._event.set()

    async def wait(self) -> None:
        """Until the slot is this take's; cancelled, the place (or the slot) is given up."""
        try:
            await self._event.wait()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the slot (or the place in the queue) up; the next waiting take gets it."""
        was, self.state = self.state, "released"
        if was == "granted":
            self._slots.held -= 1
            self._slots.hand_out()


class Slots:
    """The slots of one provider: ``cap`` tasks in flight at most. A freed slot goes to the
    waiting take whose :meth:`Priority.key` comes first (``fifo``: the one that asked first,
    as before issue 13)."""

    def __init__(
        self, cap: int, *, fifo: bool = False, gathering: Callable[[], bool] = lambda: False
    ) -> None:
        self.cap = max(cap, 1)
        self.fifo = fifo
        self.held = 0
        self._gathering = gathering
        self._queue: list[tuple[tuple[float, bool, float, tuple[int, int, int]], int, Ticket]] = []
        self._arrivals = itertools.count()

    def ask(self, priority: Priority) -> Ticket:
        """A place in the queue (granted at once when a slot is free and nobody waits)."""
        ticket = Ticket(self, priority)
        key = Priority().key() if self.fifo else priority.key()
        heapq.heappush(self._queue, (key, next(self._arrivals), ticket))
        self.hand_out()
        return ticket

    def hand_out(self) -> None:
        """Give free slots to the waiting takes that come first (none while the run is still
        gathering the takes that are ready from its start: see :class:`Board`)."""
        if self._gathering():
            return
        while self.held < self.cap and self._queue:
            ticket = heapq.heappop(self._queue)[2]
            if ticket.state == "waiting":  # else it gave its place up while waiting
                self.held += 1
                ticket._grant()


class Board:
    """One storyboard of the run, as the scheduler sees it: its takes' priorities, and the
    hand-over of a finished shot's slot to the shots that build on it.

    At the start no slot is handed out until every take that is ready at once (its shot
    builds on nothing this run renders) has asked for one: else the takes first in the file
    would take the slots before the longest chain had asked.

    A shot's dependants ask for their slots only once the whole shot has ended (its clip is
    stored and looked up); a slot freed before that would go to a take that was merely
    waiting. So the shot's last take to finish keeps its slot until every take of its
    dependants that this run renders has asked for one (or will not: shared, skipped,
    failed), then gives it up, and the queue hands it to the take that comes first.
    """

    def __init__(self, scheduler: Scheduler, rank: int, nodes: Sequence[Node]) -> None:
        self._scheduler = scheduler
        self._rank = rank
        self._nodes = {n.shot: n for n in nodes}
        self._index = {n.shot: i for i, n in enumerate(nodes)}
        self._chain = chain_seconds(nodes)
        self._dependants: dict[str, list[str]] = {}
        for node in nodes:
            if node.upstream in self._nodes:
                self._dependants.setdefault(node.upstream, []).append(node.shot)
        self._to_ask = {n.shot: n.takes for n in nodes}  # takes that have yet to ask
        self._open: dict[str, int] = {}  # takes of a shot waiting for or holding a slot
        self._kept: dict[str, list[Ticket]] = {}
        # Takes ready from the start that have yet to ask (the scheduler waits for them).
        self._first = {n.shot: n.takes for n in nodes if n.takes > 0 and self._ready(n)}
        scheduler.gather(sum(self._first.values()))

    def _ready(self, node: Node) -> bool:
        """Whether nothing ``node`` builds on (transitively) is rendered by this run."""
        seen: set[str] = set()
        while node.upstream in self._nodes and node.upstream not in seen:
            seen.add(node.upstream)
            node = self._nodes[node.upstream]
            if node.takes:
                return False
        return True

    def priority(self, shot: str, take: int) -> Priority:
        """The priority of ``shot``'s take ``take``."""
        node = self._nodes.get(shot, Node(shot))
        upstream = self._nodes.get(node.upstream) if node.upstream else None
        return Priority(
            chain=self._chain.get(shot, node.seconds),
            successor=upstream is not None and upstream.takes > 0,
            seconds=node.seconds,
            order=(self._rank, self._index.get(shot, len(self._index)), take),
        )

    def ask(self, shot: str, take: int, provider: str) -> Ticket:
        """A take of ``shot`` asks for a slot of ``provider``; it waits on the ticket."""
        ticket = self._scheduler.slots(provider).ask(self.priority(shot, take))
        self._open[shot] = self._open.get(shot, 0) + 1
        self._asked(shot)
        return ticket

    def skip(self, shot: str) -> None:
        """A take of ``shot`` will not ask for a slot (another take renders its key)."""
        self._asked(shot)

    def settle(self, shot: str) -> None:
        """``shot`` has ended: no more of its takes will ask for a slot."""
        if self._first.get(shot):
            self._scheduler.gathered(self._first.pop(shot))
        if self._to_ask.get(shot):
            self._to_ask[shot] = 0
            self._hand_over(self._nodes[shot].upstream)

    def finished(self, shot: str, ticket: Ticket, *, rendered: bool) -> None:
        """A take of ``shot`` is done with its slot (``rendered``: its clip is stored)."""
        self._open[shot] = self._open.get(shot, 1) - 1
        if rendered and self._open[shot] == 0 and self._awaited(shot):
            self._kept.setdefault(shot, []).append(ticket)
        else:
            ticket.release()

    def close(self) -> None:
        """The render has ended: every kept slot is given up, and no take is waited for."""
        if self._first:
            self._scheduler.gathered(sum(self._first.values()))
            self._first.clear()
        for tickets in self._kept.values():
            for ticket in tickets:
                ticket.release()
        self._kept.clear()

    def _awaited(self, shot: str) -> bool:
        """Whether a dependant of ``shot`` has takes that have yet to ask for a slot."""
        return any(self._to_ask.get(d, 0) > 0 for d in self._dependants.get(shot, ()))

    def _asked(self, shot: str) -> None:
        if self._first.get(shot, 0) > 0:
            self._first[shot] -= 1
            self._scheduler.gathered(1)
        if self._to_ask.get(shot, 0) > 0:
            self._to_ask[shot] -= 1
            if self._to_ask[shot] == 0:
                self._hand_over(self._nodes[shot].upstream)

    def _hand_over(self, upstream: str | None) -> None:
        if upstream in self._kept and not self._awaited(upstream):
            for ticket in self._kept.pop(upstream):
                ticket.release()


def _order(environ: Mapping[str, str]) -> Order:
    """``STORYBOARD_SCHEDULE=fifo`` hands slots out first come, first served, as before
    issue 13; only ``benchmarks/bench_makespan.py`` sets it, to measure against it."""
    return "fifo" if environ.get("STORYBOARD_SCHEDULE", "").strip() == "fifo" else "critical-path"


class Scheduler:
    """The limits, keys in flight and stop flag that the renders of one run share.

    Args:
        concurrency: tasks in flight per provider name (default: the provider table's).
        keep_going: render everything possible despite failures; without it the first
            failure stops new work in every storyboard of the run.
        order: how a freed slot is handed out: ``critical-path`` (see :class:`Priority`) or
            ``fifo`` (first come, first served); default: ``$STORYBOARD_SCHEDULE``, else
            ``critical-path``.
    """

    def __init__(
        self,
        concurrency: Mapping[str, int] | None = None,
        *,
        keep_going: bool = False,
        order: Order | None = None,
    ) -> None:
        self.concurrency = dict(concurrency or {})
        self.keep_going = keep_going
        self.order: Order = order or _order(os.environ)
        self.stopping = False
        self._slots: dict[str, Slots] = {}
        self._boards = 0
        self._gathering = 0  # takes ready from the start that have yet to ask for a slot
        self._flights: dict[str, Flight] = {}
        self._ctrl_c = _CtrlC()
        self._watching = 0

    def cap(self, provider: str) -> int:
        """Tasks of ``provider`` this run keeps in flight at most."""
        return self.concurrency.get(provider) or default_concurrency(provider)

    def slots(self, provider: str) -> Slots:
        """The one set of slots of ``provider`` for the whole run (made inside the event loop)."""
        if provider not in self._slots:
            self._slots[provider] = Slots(
                self.cap(provider), fifo=self.order == "fifo", gathering=lambda: self._gathering > 0
            )
        return self._slots[provider]

    def gather(self, takes: int) -> None:
        """``takes`` more takes are ready from the start: no slot is handed out until they
        have asked (or will not: their shot ended)."""
        self._gathering += takes

    def gathered(self, takes: int) -> None:
        """``takes`` of the takes ready from the start have asked; the last hands slots out."""
        self._gathering -= takes
        if self._gathering <= 0:
            for slots in self._slots.values():
                slots.hand_out()

    def board(self, nodes: Sequence[Node]) -> Board:
        """A storyboard of the run joins: its shots (in file order) and what each renders."""
        self._boards += 1
        return Board(self, self._boards - 1, nodes)

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
