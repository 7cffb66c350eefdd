"""Critical-path-first scheduling (issue 13 item 1).

A freed provider slot goes to the waiting take with the longest chain of expected render time
ahead of it, then to a take whose upstream just finished, then to the longest render, then
in file order; a finished shot hands its slot to the shots that build on it. Tested on the
scheduler itself (its order, its tie-breaks, random DAGs under Hypothesis: caps and upstreams
always hold) and end to end through ``render --live`` against the provider emulator, where
what counts is the order and the times of the submits it received.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Emulators, git_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storyboard
from storyboard.events import Event
from storyboard.scheduler import Node, Priority, Scheduler, Slots, chain_seconds
from storyboard.testing.emulator import Emulator, EmulatorServer

WS_KEY = "ws-sched-test-key-N4v81Qe2Zr"
QB_KEY = "qb-sched-test-key-Lp27Xc9mTs"


# -- the chain of a shot ---------------------------------------------------------------------


def test_a_shots_chain_is_its_render_plus_its_longest_line_of_dependants() -> None:
    nodes = [
        Node("a", None, 10.0, 1),
        Node("b", "a", 20.0, 1),
        Node("c", "b", 5.0, 2),  # two takes: still one take's time along the chain
        Node("d", "a", 30.0, 1),
        Node("lone", None, 40.0, 1),
        Node("fresh", None, 50.0, 0),  # nothing to render: only its dependants count
        Node("after", "fresh", 7.0, 1),
        Node("card", None, 0.0, 0),
    ]
    chain = chain_seconds(nodes)
    assert chain == {
        "a": 10.0 + max(20.0 + 5.0, 30.0),
        "b": 25.0,
        "c": 5.0,
        "d": 30.0,
        "lone": 40.0,
        "fresh": 7.0,
        "after": 7.0,
        "card": 0.0,
    }


def test_a_long_chain_is_weighed_without_recursion() -> None:
    nodes = [Node("s0", None, 1.0, 1)] + [
        Node(f"s{i}", f"s{i - 1}", 1.0, 1) for i in range(1, 5000)
    ]
    random.Random(3).shuffle(nodes)
    chain = chain_seconds(nodes)
    assert chain["s0"] == 5000.0 and chain["s4999"] == 1.0


# -- the order of the queue ------------------------------------------------------------------


def _grant_order(slots: Slots, priorities: list[Priority]) -> list[int]:
    """Indices of ``priorities`` in the order a 1-slot queue hands them the slot."""
    order: list[int] = []

    async def main() -> None:
        blocker = slots.ask(Priority())
        await blocker.wait()
        tickets = [slots.ask(p) for p in priorities]
        blocker.release()
        for _ in priorities:
            granted = [i for i, t in enumerate(tickets) if t.state == "granted"]
            assert len(granted) == 1, "one slot, one take holding it"
            order.append(granted[0])
            tickets[granted[0]].release()

    anyio.run(main)
    return order


def test_a_freed_slot_goes_to_the_longest_chain_then_a_successor_then_the_longest_render() -> None:
    priorities = [
        Priority(chain=10, successor=False, seconds=10, order=(0, 0, 1)),  # 0
        Priority(chain=10, successor=False, seconds=10, order=(0, 1, 1)),  # 1 file order
        Priority(chain=30, successor=False, seconds=5, order=(0, 2, 1)),  # 2 longest chain
        Priority(chain=10, successor=True, seconds=5, order=(0, 3, 1)),  # 3 a chain under way
        Priority(chain=10, successor=False, seconds=8, order=(0, 0, 2)),  # 4 render 8 < 10
        Priority(chain=10, successor=False, seconds=10, order=(1, 0, 1)),  # 5 second file
        Priority(chain=10, successor=False, seconds=10, order=(0, 0, 2)),  # 6 take 2 of 0
    ]
    assert _grant_order(Slots(1), priorities) == [2, 3, 0, 6, 1, 5, 4]


def test_fifo_hands_slots_out_in_the_order_asked() -> None:
    priorities = [Priority(chain=float(c), order=(0, i, 1)) for i, c in enumerate([1, 9, 5, 7])]
    assert _grant_order(Slots(1, fifo=True), priorities) == [0, 1, 2, 3]
    assert _grant_order(Slots(1), priorities) == [1, 3, 2, 0]


def test_a_take_cancelled_while_waiting_gives_its_place_up() -> None:
    async def main() -> None:
        slots = Slots(1)
        first = slots.ask(Priority())
        await first.wait()
        gone = slots.ask(Priority(chain=99))
        kept = slots.ask(Priority(chain=1))
        with anyio.move_on_after(0.01):
            await gone.wait()
        assert gone.state == "released" and kept.state == "waiting"
        first.release()
        assert kept.state == "granted" and slots.held == 1
        kept.release()
        assert slots.held == 0

    anyio.run(main)


def test_no_slot_is_handed_out_until_every_take_ready_at_the_start_has_asked() -> None:
    """Else the first shots of the file would take the slots before the longest chain asks."""

    async def main() -> None:
        scheduler = Scheduler({"p": 2})
        nodes = [
            Node("x1", None, 1.0, 1),
            Node("x2", None, 1.0, 1),
            Node("head", None, 1.0, 1),
            Node("tail", "head", 5.0, 1),  # not ready at the start: not waited for
        ]
        board = scheduler.board(nodes)
        x1, x2 = board.ask("x1", 1, "p"), board.ask("x2", 1, "p")
        assert x1.state == x2.state == "waiting"
        head = board.ask("head", 1, "p")
        assert (head.state, x1.state, x2.state) == ("granted", "granted", "waiting")
        # A storyboard of the run whose ready shot ends without asking (its render stopped)
        # does not hold the others' slots.
        late = scheduler.board([Node("y", None, 9.0, 1)])
        board.finished("x1", x1, rendered=True)
        assert x2.state == "waiting"
        late.settle("y")
        assert x2.state == "granted"
        again = scheduler.board([Node("z", None, 9.0, 1)])
        board.finished("x2", x2, rendered=True)
        again.close()
        assert scheduler.slots("p").held == 1  # head's

    anyio.run(main)


def test_a_finished_shot_keeps_its_slot_until_its_successor_has_asked() -> None:
    """Cap 1: ``head`` finishes while ``x`` (earlier in the file, same chain length as the
    successor) waits; the slot is kept until ``next`` has asked, and ``next`` gets it."""

    async def main() -> None:
        scheduler = Scheduler({"p": 1})
        nodes = [
            Node("x", None, 10.0, 1),
            Node("head", None, 10.0, 1),
            Node("next", "head", 10.0, 1),
        ]
        board = scheduler.board(nodes)
        head = board.ask("head", 1, "p")
        assert head.state == "waiting", "no slot is handed out before x, ready too, has asked"
        x = board.ask("x", 1, "p")
        await head.wait()  # chain 20 against 10: first, though later in the file
        assert x.state == "waiting"
        board.finished("head", head, rendered=True)
        assert x.state == "waiting", "the slot is kept for the shot that builds on head"
        successor = board.ask("next", 1, "p")
        assert successor.state == "granted" and x.state == "waiting"
        board.finished("next", successor, rendered=True)
        assert x.state == "granted"
        board.finished("x", x, rendered=True)
        board.close()
        assert scheduler.slots("p").held == 0

    anyio.run(main)


def test_a_failed_or_unrendered_shot_hands_nothing_over() -> None:
    async def main() -> None:
        scheduler = Scheduler({"p": 1})
        board = scheduler.board([Node("head", None, 10.0, 1), Node("next", "head", 10.0, 1)])
        other = scheduler.board([Node("x", None, 1.0, 1)])
        head = board.ask("head", 1, "p")
        x = other.ask("x", 1, "p")
        await head.wait()
        board.finished("head", head, rendered=False)  # failed: next will not ask
        assert x.state == "granted"
        other.finished("x", x, rendered=True)
        board.settle("next")
        board.close()
        assert scheduler.slots("p").held == 0

    anyio.run(main)


# -- random DAGs -------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[Node], dict[str, str], dict[str, int], set[str]]:
    """Shots (each upstream earlier, as validate requires none to form a cycle), the provider
    of each, the caps, and the shots whose takes fail."""
    count = draw(st.integers(1, 14))
    nodes: list[Node] = []
    providers: dict[str, str] = {}
    for i in range(count):
        upstream = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        takes = draw(st.integers(0, 3))
        seconds = float(draw(st.integers(0, 4)))
        shot = f"s{i}"
        nodes.append(Node(shot, f"s{upstream}" if upstream is not None else None, seconds, takes))
        providers[shot] = draw(st.sampled_from(["p", "q"]))
    caps = {"p": draw(st.integers(1, 3)), "q": draw(st.integers(1, 3))}
    failing = set(draw(st.lists(st.sampled_from([n.shot for n in nodes]), max_size=2)))
    return nodes, providers, caps, failing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.integers(0, 2**16), st.sampled_from(["critical-path", "fifo"]))
def test_random_dags_never_exceed_a_cap_nor_start_a_take_before_its_upstream(
    dag: tuple[list[Node], dict[str, str], dict[str, int], set[str]],
    seed: int,
    order: Any,
) -> None:
    """Each shot runs as render.py runs it: wait for the upstream shot; if it failed, settle;
    else each take asks for a slot, works for a random number of event-loop turns, finishes
    (failed takes fail their shot). Every slot is back at the end, nothing deadlocks."""
    nodes, providers, caps, failing = dag
    rng = random.Random(seed)
    by_id = {n.shot: n for n in nodes}
    ok: dict[str, bool] = {}
    in_flight = {"p": 0, "q": 0}
    started: dict[tuple[str, int], int] = {}
    ended: dict[str, int] = {}
    clock = iter(range(10**9))
    scheduler = Scheduler(caps, order=order)

    async def main() -> None:
        board = scheduler.board(nodes)
        done = {n.shot: anyio.Event() for n in nodes}

        async def take(node: Node, number: int, results: list[bool]) -> None:
            provider = providers[node.shot]
            ticket = board.ask(node.shot, number, provider)
            rendered = False
            try:
                await ticket.wait()
                in_flight[provider] += 1
                assert in_flight[provider] <= caps[provider]
                started[(node.shot, number)] = next(clock)
                for _ in range(rng.randrange(4)):
                    await anyio.sleep(0)
                in_flight[provider] -= 1
                rendered = node.shot not in failing
                results.append(rendered)
            finally:
                board.finished(node.shot, ticket, rendered=rendered)

        async def run_shot(node: Node) -> None:
            try:
                if node.upstream in by_id:
                    await done[node.upstream].wait()
                    if not ok[node.upstream]:
                        ok[node.shot] = False
                        return
                for _ in range(rng.randrange(3)):  # the upstream's clip is looked up
                    await anyio.sleep(0)
                results: list[bool] = []
                async with anyio.create_task_group() as tg:
                    for number in range(1, node.takes + 1):
                        tg.start_soon(take, node, number, results)
                ok[node.shot] = all(results)
            finally:
                ended[node.shot] = next(clock)
                done[node.shot].set()
                board.settle(node.shot)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for node in nodes:
                    tg.start_soon(run_shot, node)
        board.close()
        assert all(scheduler.slots(p).held == 0 for p in ("p", "q"))

    anyio.run(main)
    for (shot, _take), when in started.items():
        upstream = by_id[shot].upstream
        if upstream in by_id:
            assert ended[upstream] < when, f"{shot} started before {upstream} ended"
    expected = {
        (n.shot, t)
        for n in nodes
        for t in range(1, n.takes + 1)
        if all(ok.get(u, True) for u in _upstreams(n, by_id))
    }
    assert set(started) == expected


def _upstreams(node: Node, by_id: dict[str, Node]) -> list[str]:
    found = []
    while node.upstream in by_id:
        found.append(node.upstream)
        node = by_id[node.upstream]
    return found


# -- end to end: render --live against the emulator -------------------------------------------


@dataclass
class Live:
    emu: Emulator
    server: EmulatorServer


@pytest.fixture
def live(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Live]:
    def start(**options: Any) -> Live:
        handle = Live(*emulators(keys=(WS_KEY, QB_KEY), **options))
        monkeypatch.delenv("STORYBOARD_SCHEDULE", raising=False)
        return handle

    return start


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = git_tree(tmp_path / "film")
    monkeypatch.chdir(root)
    return root


def chain_board(qingbo: int, independent: int = 5) -> str:
    """V4 shots: ``x1..xN`` that nothing depends on come first in the file, then the chain
    ``head -> mid -> tail`` (each extends the one before)."""
    lines = [
        "storyboard: 1",
        "output:",
        "  resolution: 480p",
        "  fps: 24",
        f"render:\n  concurrency: {{qingbo: {qingbo}}}",
        "shots:",
    ]
    shots = [(f"x{i}", None) for i in range(1, independent + 1)]
    shots += [("head", None), ("mid", "head"), ("tail", "mid")]
    for shot, upstream in shots:
        lines += [f"  - id: {shot}", "    model: skyreels-v4-fast", f"    prompt: shot {shot}"]
        lines += [f"    extends: {upstream}"] if upstream else []
        lines += ["    resolution: 480p", "    duration: 3"]
    return "\n".join(lines) + "\n"


def _submitted(live: Live) -> list[str]:
    """The shot of every task the emulator created, in the order of its submits."""
    return [str(s.body["prompt"]).removeprefix("shot ") for s in live.emu.submissions if s.created]


@pytest.mark.slow
def test_with_one_slot_the_chain_goes_first_and_each_successor_right_after(
    folder: Path, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=0.15)
    path = folder / "storyboard.yaml"
    path.write_text(chain_board(qingbo=1), encoding="utf-8")
    report = storyboard.build(path, live=True)
    assert len(report.rendered) == 8
    assert _submitted(handle) == ["head", "mid", "tail", "x1", "x2", "x3", "x4", "x5"]

    # The order before issue 13, first come first served: the chain waits behind every x.
    fifo = live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=0.15)
    monkeypatch.setenv("STORYBOARD_SCHEDULE", "fifo")
    storyboard.build(path, live=True, force_all=True)
    assert _submitted(fifo) == ["x1", "x2", "x3", "x4", "x5", "head", "mid", "tail"]


@pytest.mark.slow
def test_a_successor_starts_as_soon_as_its_upstream_ends_while_others_wait(
    folder: Path, live: Callable[..., Live]
) -> None:
    """Two slots, seven independent shots waiting: when ``head`` and then ``mid`` end, their
    successor starts next; at most the take given the other slot, freed at about the same
    time, may start between (first come, first served would start every waiting x first)."""
    live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=0.3)
    path = folder / "storyboard.yaml"
    path.write_text(chain_board(qingbo=2, independent=7), encoding="utf-8")
    events: list[Event] = []

    def note(event: object) -> None:
        if isinstance(event, Event):
            events.append(event)

    report = storyboard.build(path, live=True, on_event=note)
    assert len(report.rendered) == 10
    timeline = sorted(
        [(e.time, "start", e.shot) for e in events if e.phase == "submitting"]
        + [(e.time, "end", e.shot) for e in events if e.state == "done"]
    )
    # The longest chain first, whatever the file: head takes one of the first two slots.
    assert "head" in [t[2] for t in timeline[:2]], timeline
    for upstream, successor in (("head", "mid"), ("mid", "tail")):
        end = timeline.index(next(t for t in timeline if t[1:] == ("end", upstream)))
        begin = timeline.index(next(t for t in timeline if t[1:] == ("start", successor)))
        between = [t[2] for t in timeline[end:begin] if t[1] == "start"]
        assert len(between) <= 1, timeline
