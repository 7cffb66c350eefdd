"""Emulator tests, the core: task progression by clock and polls, checked options.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import pytest

from emulator.emulator_support import (
    V1,
    WALL,
    WS_CASES,
    FakeClock,
    _harness,
    make_emulator,
    qb_body,
    qb_submit,
    ws_poll,
    ws_submit,
)
from storyboard.testing.emulator import (
    Emulator,
)


def test_progression_by_clock_time(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(
        clock,
        wall,
        polls_to_start=None,
        polls_to_finish=None,
        seconds_to_start=2.0,
        seconds_to_finish=10.0,
    )
    for h in _harness("mock", emulator):
        qb_id = qb_submit(h.qb(), qb_body()).json()["task_id"]
        ws_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
        seen = []
        for step in (0.0, 2.0, 3.0, 4.0, 1.0, 100.0):
            clock.advance(step)
            qb = h.qb().get(f"/v1/tasks/{qb_id}").json()
            seen.append((qb["status"], qb["progress"], ws_poll(h.ws(), ws_id)["status"]))
        assert seen == [
            ("queued", 0, "created"),
            ("processing", 20, "processing"),
            ("processing", 50, "processing"),
            ("processing", 90, "processing"),
            ("completed", 100, "completed"),
            ("completed", 100, "completed"),
        ]
        assert ws_poll(h.ws(), ws_id)["executionTime"] == 10_000

        # Queued tasks start on their own with time, freeing the 5-queued cap.
        for _ in range(5):
            qb_submit(h.qb(), qb_body())
        assert qb_submit(h.qb(), qb_body()).status_code == 429
        clock.advance(2.0)
        assert qb_submit(h.qb(), qb_body()).status_code == 200


def test_progression_by_polls_is_deterministic(clock: FakeClock, wall: FakeClock) -> None:
    statuses = []
    for _ in range(2):
        emulator = make_emulator(
            FakeClock(0.0), FakeClock(WALL), polls_to_start=2, polls_to_finish=4
        )
        for h in _harness("mock", emulator):
            task_id = qb_submit(h.qb(), qb_body()).json()["task_id"]
            run = [task_id]
            run += [h.qb().get(f"/v1/tasks/{task_id}").json()["status"] for _ in range(5)]
            statuses.append(run)
    assert statuses[0] == statuses[1]  # same seed, same clocks: same ids and same story
    assert statuses[0][1:] == ["queued", "processing", "processing", "completed", "completed"]


def test_status_options_are_checked() -> None:
    with pytest.raises(ValueError, match="qingbo_status_names"):
        Emulator(qingbo_status_names="verbs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="qingbo_cost_unit"):
        Emulator(qingbo_cost_unit="eur")  # type: ignore[arg-type]
