"""Polling that fits the task (issue 13 item 2), and the status requests ``--json`` reports.

The plan (:class:`storyboard.polling.PollPlan`) is checked as a function: every wait within
the floor and the cap, a resumed task asked at once, progress readings aimed at, a queue
position and the prior respected. End to end, ``render --live`` runs against the provider
emulator served on 127.0.0.1, whose tasks finish after a set time and which counts every
status request it receives: the count ``render --json`` reports per take is the emulator's,
a long task is not asked about much more often than a short one, a finish is noticed within
one interval, and a model's later tasks are polled for the length its first one took.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Emulators, git_tree, run_cli, write_image
from hypothesis import given
from hypothesis import strategies as st

import storyboard
from storyboard.events import Event
from storyboard.polling import NEAR_SHARE, PollPlan, RenderTimes, typical_render_seconds
from storyboard.providers.base import Queued, Running, TaskStatus, Unrecognised
from storyboard.testing.emulator import Emulator, EmulatorServer

WS_KEY = "ws-poll-test-key-Jd83Lx0qWe"
QB_KEY = "qb-poll-test-key-Rt61Nv4mKa"
FLOOR = 0.02  # STORYBOARD_POLL_INTERVAL in the end-to-end runs


# -- the plan, as a function -------------------------------------------------------------------

statuses = st.one_of(
    st.builds(Queued, st.one_of(st.none(), st.integers(0, 50))),
    st.builds(Running, st.one_of(st.none(), st.floats(0.0, 1.0))),
    st.builds(Unrecognised, st.just("paused")),
)


@given(
    st.floats(0.0, 10.0),
    st.floats(0.0, 120.0),
    st.floats(0.0, 3600.0),
    st.booleans(),
    st.lists(st.tuples(statuses, st.floats(0.0, 600.0)), max_size=30),
)
def test_every_wait_is_within_the_floor_and_the_cap(
    floor: float,
    extra: float,
    expected: float,
    measured: bool,
    polls: list[tuple[TaskStatus, float]],
) -> None:
    cap = floor + extra
    plan = PollPlan(floor=floor, cap=cap, expected=expected, measured=measured)
    assert floor <= plan.first() <= cap
    age = 0.0
    for status, step in polls:
        age += step
        assert floor <= plan.after(status, age) <= cap


def test_a_task_an_earlier_run_submitted_is_asked_at_once() -> None:
    plan = PollPlan(floor=5.0, cap=30.0, expected=300.0, measured=True)
    assert plan.first(age=3600.0) == 0.0
    # Just submitted: 3/4 of 300 s, but without a measured rate of progress half the cap.
    assert plan.first(age=0.0) == pytest.approx(15.0)


def test_with_only_the_prior_no_wait_is_longer_than_half_the_tasks_age() -> None:
    """The prior may be far off (an emulator finishes in a second): the first poll comes at
    the floor, and waits grow with the task's age, as the first release's 1.5x growth did."""
    plan = PollPlan(floor=0.1, cap=30.0, expected=120.0, measured=False)
    assert plan.first() == pytest.approx(0.1)
    for age in (0.1, 1.0, 4.0, 10.0):
        assert plan.after(Running(), age) == pytest.approx(max(0.1, 0.5 * age))
    # The same task with a length this run measured: first at 3/4 of it, then at all of it.
    sure = PollPlan(floor=0.1, cap=300.0, expected=120.0, measured=True)
    assert sure.after(Running(), 20.0) == pytest.approx(0.75 * 120.0 - 20.0)
    assert sure.after(Running(), 95.0) == pytest.approx(120.0 - 95.0)


def test_two_progress_readings_aim_just_before_the_finish() -> None:
    plan = PollPlan(floor=0.5, cap=100.0, expected=1000.0, measured=False)
    plan.after(Running(progress=0.10), 10.0)  # one reading: guarded by the age
    wait = plan.after(Running(progress=0.30), 30.0)  # 0.01/s: done at 100 s
    assert wait == pytest.approx(0.9 * 100.0 - 30.0)
    # A reading only a whole percent later is measured from one far enough behind.
    assert plan.after(Running(progress=0.905), 90.5) == pytest.approx(100.0 - 90.5)
    # Near the finish: every NEAR_SHARE of the task's length, widening once it is past.
    near = plan.after(Running(progress=0.98), 98.0)
    assert near == pytest.approx(max(0.5, NEAR_SHARE * 100.0))
    later = plan.after(Running(progress=0.99), 99.5)
    assert later > near


def test_a_whole_percent_after_a_coarse_first_reading_is_not_taken_for_a_rate() -> None:
    """1% then 2% a moment later says little (whole percents): no wait longer than the task's
    age on it (it would be 7.8 s: 98% at 1% in 0.08 s)."""
    plan = PollPlan(floor=0.02, cap=30.0, expected=100.0, measured=False)
    plan.after(Running(progress=0.01), 0.02)
    assert plan.after(Running(progress=0.02), 0.1) == pytest.approx(0.1)


def test_a_queue_position_puts_the_finish_further_off() -> None:
    front = PollPlan(floor=0.1, cap=1000.0, expected=100.0, measured=True)
    back = PollPlan(floor=0.1, cap=1000.0, expected=100.0, measured=True)
    assert back.after(Queued(position=40), 90.0) > front.after(Queued(position=0), 90.0)


def test_render_times_learn_from_the_tasks_of_the_run() -> None:
    times = RenderTimes()
    prior = typical_render_seconds("skyreels-v1", 4.0)
    assert times.expected("skyreels-v1", 4.0) == (prior, False)
    times.observe("skyreels-v1", 4.0, prior / 10)
    assert times.expected("skyreels-v1", 4.0) == (pytest.approx(prior / 10), True)
    # A model with no finished task yet takes the run's other models' measure.
    v4 = typical_render_seconds("skyreels-v4-fast", 5.0)
    assert times.expected("skyreels-v4-fast", 5.0) == (pytest.approx(v4 / 10), True)
    times.observe("skyreels-v4-fast", 5.0, v4 * 2)
    assert times.expected("skyreels-v4-fast", 5.0) == (pytest.approx(v4 * 2), True)


# -- end to end, against the emulator ----------------------------------------------------------


@dataclass
class Live:
    emu: Emulator
    server: EmulatorServer

    def prompt_of(self, task_id: str) -> str:
        (found,) = [s for s in self.emu.submissions if s.created and s.task_id == task_id]
        return str(found.body.get("prompt"))


@pytest.fixture
def live(emulators: Emulators) -> Callable[..., Live]:
    def start(**options: Any) -> Live:
        return Live(*emulators(keys=(WS_KEY, QB_KEY), poll=str(FLOOR), **options))

    return start


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = git_tree(tmp_path / "film")
    write_image(root / "refs" / "a.png", (200, 60, 40))
    monkeypatch.chdir(root)
    return root


def v4_board(*shots: str, cap: int = 5) -> str:
    lines = ["storyboard: 1", "output:", "  resolution: 480p", "  fps: 24"]
    lines += [f"render:\n  concurrency: {{qingbo: {cap}, wavespeed: {cap}}}", "shots:"]
    for shot in shots:
        lines += [f"  - id: {shot}", "    model: skyreels-v4-fast", f"    prompt: shot {shot}"]
        lines += ["    resolution: 480p", "    duration: 3"]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_render_json_reports_the_status_requests_each_take_made(
    folder: Path, live: Callable[..., Live]
) -> None:
    """The emulator finishes a task on its third status request: each take says 3."""
    handle = live(polls_to_start=1, polls_to_finish=3)
    path = folder / "storyboard.yaml"
    path.write_text(v4_board("one", "two", "three"), encoding="utf-8")
    result = run_cli("render", "--live", "--json", str(path))
    assert result.code == 0, result.err
    rendered = json.loads(result.out)["rendered"]
    by_prompt = {handle.prompt_of(t.task_id): t.polls for t in handle.emu.tasks()}
    assert {r["shot"]: r["polls"] for r in rendered} == {"one": 3, "two": 3, "three": 3}
    assert by_prompt == {"shot one": 3, "shot two": 3, "shot three": 3}
    again = run_cli("render", "--live", "--json", str(path))
    assert json.loads(again.out)["rendered"] == []  # nothing polled, nothing to report


def _times(events: list[Event], shot: str, phase: str) -> list[float]:
    return [e.time for e in events if e.shot == shot and e.phase == phase]


@pytest.mark.slow
def test_a_long_task_is_polled_little_more_than_a_short_one_and_noticed_in_one_interval(
    folder: Path, live: Callable[..., Live]
) -> None:
    """Qingbo reports progress: two readings give the finish, and the polls aim at it."""
    results: dict[float, tuple[int, float]] = {}
    for seconds in (0.6, 3.0):
        handle = live(
            polls_to_start=None, polls_to_finish=None, seconds_to_start=0.01,
            seconds_to_finish=seconds,
        )  # fmt: skip
        path = folder / f"{seconds}.yaml"
        path.write_text(v4_board(f"t{int(seconds * 10)}"), encoding="utf-8")
        events: list[Event] = []

        def note(event: object, events: list[Event] = events) -> None:
            if isinstance(event, Event):
                events.append(event)

        report = storyboard.build(path, live=True, on_event=note)
        (take,) = report.rendered
        (task,) = handle.emu.tasks()
        (submission,) = [s for s in handle.emu.submissions if s.created]
        finished = submission.at + seconds  # the emulator's clock is time.monotonic
        (noticed,) = _times(events, take[0], "downloading")
        assert getattr(take, "polls", None) == task.polls
        results[seconds] = (task.polls, noticed - finished)
    (short_polls, short_late), (long_polls, long_late) = results[0.6], results[3.0]
    # Five times as long, a few more polls (polling every FLOOR would take 150).
    assert long_polls <= short_polls + 4 and long_polls <= 12, results
    # Noticed within one interval near the finish (NEAR_SHARE of the task, at least the
    # floor), plus what a loaded machine adds to a loopback request.
    slack = 0.3
    assert 0 <= short_late <= max(FLOOR, NEAR_SHARE * 0.6) + slack, results
    assert 0 <= long_late <= max(FLOOR, NEAR_SHARE * 3.0) + slack, results


@pytest.mark.slow
def test_a_models_later_tasks_are_polled_for_the_length_of_its_first(
    folder: Path, live: Callable[..., Live]
) -> None:
    """WaveSpeed reports no progress. The first V1 task has only the prior (minutes: far
    off), so its waits grow from the floor; one slot makes the others follow it, and they
    are asked about near the length the first one took: far fewer times."""
    handle = live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=2.0)
    lines = ["storyboard: 1", "output:", "  resolution: 480p", "  fps: 24"]
    lines += ["render:\n  concurrency: {wavespeed: 1}", "shots:"]
    for i in range(1, 4):
        lines += [f"  - id: k{i}", "    model: skyreels-v1", "    first_frame: refs/a.png"]
        lines += [f"    prompt: kite {i}", f"    seed: {i}"]
    path = folder / "storyboard.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("render", "--live", "--json", str(path))
    assert result.code == 0, result.err
    polls = {r["shot"]: r["polls"] for r in json.loads(result.out)["rendered"]}
    assert sorted(polls.values()) == sorted(t.polls for t in handle.emu.tasks())
    first = polls["k1"]
    assert first >= 8, polls  # from 0.02 s, growing with its age: a 2 s task takes several
    assert polls["k2"] <= first - 3 and polls["k3"] <= first - 3, polls
