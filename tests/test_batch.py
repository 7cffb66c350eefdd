"""Many storyboards in one run (issue 12 item 2): ``plan|render|stitch FILE...``.

The live runs go through the CLI in-process against the provider emulator served on
127.0.0.1 (ephemeral port), with fake keys; what counts is what the emulator received: a
generation key two storyboards share is submitted once, the per-provider caps hold across
storyboards (seen in the times of the submits, with every task taking a known time), the
budget covers the whole run, and a failure stops new work unless ``--keep-going``. Preview
runs (free, offline) cover folders, output and the JSON shape.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import s3server
from conftest import Emulators, Result, git_tree, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.batch import (
    board_labels,
    build_many,
    find_storyboards,
    is_storyboard,
    plan_many,
    run_concurrency,
)
from storyboard.errors import UsageError
from storyboard.testing.emulator import Emulator, EmulatorServer, Fault

WS_KEY = "ws-batch-test-key-R2d93Lq7Xk"
QB_KEY = "qb-batch-test-key-Hn58Zt0pWe"

# -- storyboards -------------------------------------------------------------------------------


def board(*shots: tuple[str, str], extra: str = "", duration: int = 3) -> str:
    """A storyboard of V4 text-to-video shots ``(id, prompt)``: no inputs, so a shot with the
    same prompt in two storyboards has the same generation key."""
    lines = ["storyboard: 1", "output:", "  resolution: 480p", "  fps: 24"]
    if extra:
        lines.append(extra.rstrip("\n"))
    lines.append("shots:")
    for shot_id, prompt in shots:
        lines += [
            f"  - id: {shot_id}",
            "    model: skyreels-v4-fast",
            f"    prompt: {prompt}",
            "    resolution: 480p",
            f"    duration: {duration}",
        ]
    return "\n".join(lines) + "\n"


SEA = ("sea", "a lighthouse at dusk")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git working tree (one project: one store for every storyboard in it), as the cwd."""
    root = git_tree(tmp_path / "films")
    monkeypatch.chdir(root)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- the emulator --------------------------------------------------------------------------------


@dataclass
class Live:
    emu: Emulator
    server: EmulatorServer

    def submits(self) -> int:
        return sum(1 for r in self.emu.requests if r.kind == "submit")

    def posts(self) -> int:
        return sum(1 for r in self.emu.requests if r.method == "POST")

    def bodies(self) -> list[str]:
        """The prompt of every submit received, in order."""
        return [str(s.body.get("prompt")) for s in self.emu.submissions]


@pytest.fixture
def live(emulators: Emulators) -> Callable[..., Live]:
    def start(**options: Any) -> Live:
        options.setdefault("polls_to_start", 1)
        options.setdefault("polls_to_finish", 2)
        return Live(*emulators(keys=(WS_KEY, QB_KEY), **options))

    return start


def lock_keys(path: Path) -> dict[str, str]:
    """Shot -> generation key of take 1, from the lock beside ``path``."""
    data = json.loads(path.with_suffix(".lock").read_text(encoding="utf-8"))
    return {shot: takes[0]["key"] for shot, takes in _shots(data).items()}


def _shots(data: Any) -> dict[str, list[dict[str, Any]]]:
    shots = data["shots"]
    if isinstance(shots, dict):
        return {k: v["takes"] if isinstance(v, dict) else v for k, v in shots.items()}
    return {s["id"]: s["takes"] for s in shots}


def price_of_one_take() -> float:
    """The list price of one take of :func:`board`'s shots, as the plan says."""
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "one.yaml", board(SEA))
        result = run_cli("plan", "--live", "--json", str(path))
        assert result.code == 0, result.err
        return float(result.json()["cost"])


# -- which files ---------------------------------------------------------------------------------


def test_folders_name_every_storyboard_below_them(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", board(SEA))
    write(tmp_path / "nested" / "deeper" / "storyboard.yml", "# a comment\n" + board(SEA))
    write(tmp_path / "nested" / "notes.yaml", "title: not a storyboard\nstoryboards: 2\n")
    write(tmp_path / "nested" / "list.yaml", "- storyboard: 1\n")  # not a top-level key
    write(tmp_path / "quoted.yml", '"storyboard": 1\nshots: []\n')
    write(tmp_path / ".hidden" / "c.yaml", board(SEA))
    write(tmp_path / ".storyboard" / "d.yaml", board(SEA))
    write(tmp_path / "renders" / "e.yaml", board(SEA))
    write(tmp_path / "b.txt", board(SEA))
    found = find_storyboards([tmp_path])
    nested = tmp_path / "nested" / "deeper" / "storyboard.yml"
    # A folder's own files first, then its folders, each in name order.
    assert found == (tmp_path / "a.yaml", tmp_path / "quoted.yml", nested)
    assert is_storyboard(tmp_path / "a.yaml") and not is_storyboard(tmp_path / "b.txt")
    # A file is taken as named (even one that is no storyboard: loading says what is wrong),
    # and a file a folder also finds is there once, where it was first named.
    mixed = find_storyboards([tmp_path / "b.txt", tmp_path / "a.yaml", tmp_path])
    assert mixed == (tmp_path / "b.txt", tmp_path / "a.yaml", tmp_path / "quoted.yml", nested)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ([], "no storyboard given"),
        (["missing.yaml"], "missing.yaml does not exist"),
        (["a.yaml", "./a.yaml"], "is named twice"),
        (["empty"], "no storyboard in empty"),
    ],
)
def test_what_names_no_storyboard_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", board(SEA))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=words):
        find_storyboards(arguments)


def test_labels_are_short_and_tell_storyboards_apart(tmp_path: Path) -> None:
    a, b = tmp_path / "dawn.yaml", tmp_path / "dusk" / "storyboard.yaml"
    assert board_labels([a, b]) == ("dawn", "dusk")
    one, two = tmp_path / "x" / "film.yaml", tmp_path / "y" / "film.yaml"
    assert board_labels([one, two]) == ("x/film", "y/film")
    yaml, yml = tmp_path / "x" / "film.yaml", tmp_path / "x" / "film.yml"
    assert board_labels([yaml, yml]) == ("film.yaml", "film.yml")


def test_the_run_takes_the_smallest_cap_per_provider() -> None:
    caps = run_concurrency([{"qingbo": 3, "wavespeed": 2}, {"qingbo": 1}, {}], None)
    assert caps == {"qingbo": 1, "wavespeed": 2}
    assert set(run_concurrency([{"qingbo": 3}], 4).values()) == {4}
    with pytest.raises(UsageError, match="--jobs"):
        run_concurrency([], 0)


# -- planning ------------------------------------------------------------------------------------

PROMPTS = ("a lighthouse at dusk", "a gull over waves", "rain on a window", "a red kite")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(PROMPTS), st.sampled_from((3, 4))), min_size=1, max_size=3
        ),
        min_size=1,
        max_size=3,
    )
)
def test_plan_many_counts_a_key_several_storyboards_share_once(
    boards: list[list[tuple[str, int]]],
) -> None:
    """Over generated sets of storyboards sharing shots: the run's estimate is the price of
    each distinct take once; each storyboard's own plan still counts all of its takes."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for n, shots in enumerate(boards):
            text = ["storyboard: 1", "shots:"]
            for m, (prompt, seconds) in enumerate(shots):
                text += [
                    f"  - id: s{m}",
                    "    model: skyreels-v4-fast",
                    f"    prompt: {prompt}",
                    "    resolution: 480p",
                    f"    duration: {seconds}",
                ]
            paths.append(write(Path(folder) / f"b{n}.yaml", "\n".join(text) + "\n"))
        batch = plan_many(paths, live=True)
        assert not batch.failed
        price: dict[tuple[str, int], float] = {}
        for plan, shots in zip(batch.plans, boards, strict=True):
            assert plan.cost == pytest.approx(sum(sp.cost for sp in plan.shots))
            for sp, spec in zip(plan.shots, shots, strict=True):
                price[spec] = sp.cost  # one take each: the shot's cost is its take's price
        assert batch.cost == pytest.approx(sum(price.values()))
        shared = sum(len(s) for s in boards) > len({spec for s in boards for spec in s})
        total_alone = sum(p.cost for p in batch.plans)
        assert (batch.cost < total_alone - 1e-9) == shared
        keys = {t.key for p in batch.plans for sp in p.shots for t in sp.takes}
        assert len(keys) == len(price)  # a shared shot really is one generation key


def test_plan_of_several_prints_a_table_each_and_the_total(repo: Path) -> None:
    price = price_of_one_take()
    write(repo / "a.yaml", board(SEA, ("gull", "a gull over waves")))
    write(repo / "b.yaml", board(SEA, ("rain", "rain on a window")))
    result = run_cli("plan", "--live", "a.yaml", "b.yaml")
    assert result.code == 0, result.err
    assert "== a: " in result.out and "== b: " in result.out
    assert result.out.count("shot  model") == 2
    assert f"this run costs ${3 * price:.2f}" in result.out.splitlines()[-1]
    as_json = run_cli("plan", "--live", "--json", "--budget", f"{3 * price - 0.01}", str(repo))
    assert as_json.code == 3, as_json.err  # render would refuse it: over by one take
    data = as_json.json()
    assert set(data) == {"storyboards", "cost", "budget", "fits", "failed"}
    assert data["cost"] == pytest.approx(3 * price) and data["fits"] is False
    alone = run_cli("plan", "--live", "--json", "a.yaml").json()
    assert set(data["storyboards"][0]) == set(alone)
    assert [Path(s["storyboard"]).name for s in data["storyboards"]] == ["a.yaml", "b.yaml"]


# -- rendering: preview --------------------------------------------------------------------------


@pytest.mark.slow
def test_preview_batch_renders_a_shared_shot_once_and_each_cut(repo: Path) -> None:
    write(repo / "a.yaml", board(SEA, ("gull", "a gull over waves")))
    write(repo / "more" / "b.yaml", board(SEA))
    write(repo / "notes.yaml", "title: meeting notes\n")
    result = run_cli("render", "--json", ".")
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) == {"storyboards", "spent", "failed", "skipped"}
    assert data["failed"] == [] and data["skipped"] == []
    first, second = data["storyboards"]
    alone_keys = set(run_cli("stitch", "--json", "a.yaml").json())
    assert set(first) == alone_keys and set(second) == alone_keys
    assert {r["shot"] for r in first["rendered"]} == {"sea", "gull"}
    assert [r["shot"] for r in second["rendered"]] == ["sea"]
    assert (repo / "renders" / "a.preview.mp4").is_file()
    assert (repo / "more" / "renders" / "b.preview.mp4").is_file()
    # The shared take ran once: the second storyboard waited for it and took its clip.
    assert "b/sea: waiting: for a/sea (the same generation key)" in result.err
    assert "b/sea: stored: shared with a/sea" in result.err
    assert result.err.count(": running") == 2
    # A second run of the batch renders nothing; stitch FILE... re-stitches nothing.
    again = run_cli("render", "a.yaml", "more/b.yaml")
    assert again.code == 0 and "rendered 0 clip(s)" in again.err
    assert "a: rendered 0 clip(s), 2 up to date" in again.err
    stitched = run_cli("stitch", ".")
    assert stitched.code == 0 and stitched.out.count("up to date") == 2


@pytest.mark.slow
def test_keep_going_renders_the_valid_storyboard_and_exits_with_the_worst_code(
    repo: Path,
) -> None:
    write(repo / "good.yaml", board(SEA))
    write(repo / "bad.yaml", board(SEA, duration=2))  # V4 takes 3-15 s
    stopped = run_cli("render", "good.yaml", "bad.yaml")
    assert stopped.code == 2
    assert "bad.yaml:" in stopped.err and "duration" in stopped.err
    assert "good: not rendered: another storyboard failed first" in stopped.err
    assert not (repo / "renders").exists()  # nothing rendered without --keep-going
    going = run_cli("render", "--keep-going", "--json", "good.yaml", "bad.yaml")
    assert going.code == 2, going.err
    data = going.json()
    assert [Path(s["storyboard"]).name for s in data["storyboards"]] == ["good.yaml"]
    assert [(Path(f["storyboard"]).name, f["exit_code"]) for f in data["failed"]] == [
        ("bad.yaml", 2)
    ]
    assert (repo / "renders" / "good.preview.mp4").is_file()


def test_several_storyboards_refuse_one_output_path(repo: Path) -> None:
    write(repo / "a.yaml", board(SEA))
    write(repo / "b.yaml", board(SEA))
    for command in ("plan", "render", "stitch"):
        result = run_cli(command, "-o", "cut.mp4", "a.yaml", "b.yaml")
        assert result.code == 2 and "names one cut" in result.err, (command, result.err)


# -- rendering: live, against the emulator -------------------------------------------------------


def render(*argv: str) -> Result:
    return run_cli("render", "--live", *argv)


@pytest.mark.slow
def test_a_shot_two_storyboards_share_is_submitted_once(
    repo: Path, live: Callable[..., Live]
) -> None:
    handle = live()
    price = price_of_one_take()
    a = write(repo / "a.yaml", board(SEA, ("gull", "a gull over waves")))
    b = write(repo / "b.yaml", board(("intro", SEA[1]), ("rain", "rain on a window")))
    result = render("--json", "a.yaml", "b.yaml")
    assert result.code == 0, result.err
    assert handle.submits() == 3  # sea/intro once, gull, rain
    assert sorted(handle.bodies()).count(SEA[1]) == 1
    data = result.json()
    assert data["spent"] == {"usd": pytest.approx(3 * price), "takes": 3}
    spent = [s["spent"]["takes"] for s in data["storyboards"]]
    assert sorted(spent) == [1, 2]  # the shared take is paid by the storyboard that ran it
    # Each storyboard has its own lock and its own cut; both locks name the one key.
    assert lock_keys(a)["sea"] == lock_keys(b)["intro"]
    assert (repo / "renders" / "a.mp4").is_file() and (repo / "renders" / "b.mp4").is_file()
    assert "spent $" in result.err and "on 3 takes" in result.err
    # Rendered again, one at a time or together: nothing is bought.
    assert render("a.yaml").code == 0 and render(".").code == 0
    assert handle.submits() == 3


@pytest.mark.slow
def test_two_shots_of_one_storyboard_with_one_key_are_submitted_once(
    repo: Path, live: Callable[..., Live]
) -> None:
    handle = live()
    path = write(repo / "twice.yaml", board(SEA, ("again", SEA[1])))
    result = render(str(path))
    assert result.code == 0, result.err
    assert handle.submits() == 1
    keys = lock_keys(path)
    assert keys["sea"] == keys["again"]
    assert "again: stored: shared with sea" in result.err


@pytest.mark.slow
def test_a_key_shared_across_two_stores_is_copied_and_verified(
    tmp_path: Path, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two projects (two stores): the second store gets the first's clip, byte for byte."""
    handle = live()
    monkeypatch.chdir(tmp_path)
    for name in ("one", "two"):
        git_tree(tmp_path / name)
    a = write(tmp_path / "one" / "a.yaml", board(SEA))
    b = write(tmp_path / "two" / "b.yaml", board(SEA))
    report = build_many([a, b], live=True)
    assert report.exit_code == 0, report.failed
    assert handle.submits() == 1
    clips = [r.final.shot("sea").output for r in report.reports]
    assert clips[0] is not None and clips[1] is not None and clips[0] != clips[1]
    assert clips[0].read_bytes() == clips[1].read_bytes()
    assert report.spent.takes == 1


@pytest.mark.slow
def test_provider_caps_hold_across_storyboards(repo: Path, live: Callable[..., Live]) -> None:
    """Each task takes 0.4 s at the emulator; the submits' times show how many ran at once."""
    task = 0.4
    handle = live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=task)
    write(repo / "a.yaml", board(("a1", "one"), ("a2", "two"), extra=_caps(3)))
    write(repo / "b.yaml", board(("b1", "three"), ("b2", "four"), extra=_caps(1)))
    events: list[Any] = []
    report = build_many(["a.yaml", "b.yaml"], live=True, on_event=events.append)
    assert report.exit_code == 0, report.failed
    times = sorted(s.at for s in handle.emu.submissions)
    assert len(times) == 4
    # b caps qingbo at 1 for the whole run: every task waits for the one before.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= task * 0.95, gaps
    assert _most_in_flight(events) == 1
    # --jobs 2: two at a time (so the gaps above are the cap, not the emulator).
    handle.emu.submissions.clear()
    forced = build_many(["a.yaml", "b.yaml"], live=True, jobs=2, force_all=True)
    assert forced.exit_code == 0, forced.failed
    times = sorted(s.at for s in handle.emu.submissions)
    assert min(b - a for a, b in itertools.pairwise(times)) < task * 0.5
    assert min(b - a for a, b in zip(times, times[2:], strict=False)) >= task * 0.95


def _caps(qingbo: int) -> str:
    return f"render:\n  concurrency: {{qingbo: {qingbo}}}"


def _most_in_flight(events: list[Any]) -> int:
    """The most takes between ``submitted`` and ``stored`` at once, as the client saw it."""
    from storyboard.batch import BoardEvent
    from storyboard.events import Event

    marks: list[tuple[float, int]] = []
    for item in events:
        event = item.event if isinstance(item, BoardEvent) else None
        if isinstance(event, Event) and event.phase == "submitted":
            marks.append((event.time, 1))
        elif isinstance(event, Event) and event.phase == "stored":
            marks.append((event.time, -1))
    most = now = 0
    for _time, step in sorted(marks):
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_the_budget_covers_the_whole_run(repo: Path, live: Callable[..., Live]) -> None:
    handle = live()
    price = price_of_one_take()
    write(repo / "a.yaml", board(SEA, ("gull", "a gull over waves")))
    write(repo / "b.yaml", board(SEA, ("rain", "rain on a window")))
    # Each storyboard alone fits, the run does not: refused before any request.
    over = render("--budget", f"{3 * price - 0.01:.4f}", "a.yaml", "b.yaml")
    assert over.code == 3, over.err
    assert "nothing was submitted" in over.err and "b/rain" in over.err
    assert handle.posts() == 0
    # The shared shot counts once: three takes fit where four would not.
    fits = render("--keep-going", "--budget", f"{3 * price + 0.001:.4f}", "a.yaml", "b.yaml")
    assert fits.code == 0, fits.err
    assert handle.submits() == 3


@pytest.mark.slow
def test_a_storyboard_over_its_own_budget(repo: Path, live: Callable[..., Live]) -> None:
    handle = live()
    write(repo / "cheap.yaml", board(("rain", "rain on a window")))
    write(repo / "dear.yaml", board(SEA, ("gull", "a gull"), extra="render:\n  budget: 0.01"))
    refused = render("cheap.yaml", "dear.yaml")
    assert refused.code == 3, refused.err
    assert "error: dear: estimated cost" in refused.err
    assert handle.posts() == 0
    going = render("--keep-going", "--json", "cheap.yaml", "dear.yaml")
    assert going.code == 3, going.err
    assert handle.submits() == 1
    assert [f["exit_code"] for f in going.json()["failed"]] == [3]


@pytest.mark.slow
def test_without_keep_going_nothing_new_starts_after_a_failure(
    repo: Path, live: Callable[..., Live]
) -> None:
    handle = live()
    handle.emu.script(Fault(on="submit", provider="qingbo", status=400, message="bad prompt"))
    write(repo / "a.yaml", board(("a1", "one"), ("a2", "two")))
    write(repo / "b.yaml", board(("b1", "three"), ("b2", "four")))
    stopped = render("--jobs", "1", "--json", "a.yaml", "b.yaml")
    assert stopped.code == 1, stopped.err
    assert handle.submits() == 1  # the refused one; nothing after it
    assert stopped.err.count("skipped: stopped after a failure") == 3
    data = stopped.json()
    assert [Path(f["storyboard"]).name for f in data["failed"]] == ["a.yaml"]
    assert all(s["cut"] is None for s in data["storyboards"])
    # --keep-going: the failure stays a1's; everything else is rendered and stitched.
    handle.emu.script(Fault(on="submit", provider="qingbo", status=400, message="bad prompt"))
    going = render("--jobs", "1", "--keep-going", "a.yaml", "b.yaml")
    assert going.code == 1, going.err
    assert handle.submits() == 1 + 4
    assert (repo / "renders" / "b.mp4").is_file() and not (repo / "renders" / "a.mp4").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_batch_keeps_every_task_and_a_rerun_pays_nothing_more(
    repo: Path, live: Callable[..., Live]
) -> None:
    """Ctrl-C while the batch's three tasks run: exit 130; the rerun resumes them all."""
    handle = live(polls_to_start=None, polls_to_finish=None, seconds_to_finish=60.0)
    a = write(repo / "a.yaml", board(SEA, ("gull", "a gull over waves")))
    b = write(repo / "b.yaml", board(SEA, ("rain", "rain on a window")))
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", "--live", "a.yaml", "b.yaml"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while handle.submits() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.submits() == 3, proc.communicate(timeout=30)[1].decode()
    time.sleep(0.3)  # every task id is journalled right after its submit's reply
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    handle.emu.seconds_to_finish = 0.0  # the tasks are done now
    again = render("--json", "a.yaml", "b.yaml")
    assert again.code == 0, again.err
    assert handle.submits() == 3  # resumed, not bought again
    assert again.err.count("resumed") >= 3
    assert again.json()["spent"]["takes"] == 0  # paid for by the interrupted run
    assert lock_keys(a)["sea"] == lock_keys(b)["sea"]


# -- with the project's remote -------------------------------------------------------------------

folder_remote = s3server.folder_remote


@pytest.mark.slow
def test_a_batch_pays_only_for_what_the_teams_remote_lacks(
    tmp_path: Path,
    live: Callable[..., Live],
    folder_remote: s3server.RemoteSpot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Machine A renders one storyboard; machine B's batch of it and another sharing a shot
    buys only the other's own shot; --no-remote works alone and buys everything again."""
    handle = live()
    machines = []
    for name in ("a", "b", "c"):
        root = git_tree(tmp_path / f"machine-{name}")
        write(root / "storyboard.toml", folder_remote.toml())
        write(root / "dawn.yaml", board(SEA, ("gull", "a gull over waves")))
        write(root / "dusk.yaml", board(("intro", SEA[1]), ("rain", "rain on a window")))
        machines.append(root)
    monkeypatch.chdir(machines[0])
    assert render("dawn.yaml").code == 0
    assert handle.submits() == 2
    monkeypatch.chdir(machines[1])
    team = render("--json", ".")
    assert team.code == 0, team.err
    assert handle.bodies()[2:] == ["rain on a window"]  # sea and gull came from the remote
    data = team.json()
    assert data["spent"]["takes"] == 1
    assert {(p["shot"], p["take"]) for p in data["storyboards"][0]["pulled"]} == {
        ("sea", 1),
        ("gull", 1),
    }
    assert (machines[1] / "renders" / "dusk.mp4").is_file()
    monkeypatch.chdir(machines[2])
    alone = render("--no-remote", ".")
    assert alone.code == 0, alone.err
    assert handle.submits() == 3 + 3  # three distinct keys, the shared one once


@pytest.mark.slow
def test_gc_keeps_out_of_a_store_a_batch_is_rendering(repo: Path) -> None:
    write(repo / "a.yaml", board(SEA))
    write(repo / "b.yaml", board(("rain", "rain on a window")))
    assert run_cli("render", ".").code == 0  # the store exists now
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", "--force-all", "."],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    tmp = repo / ".storyboard" / "tmp"
    while not list(tmp.glob("run-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = run_cli("gc")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert busy.code == 1, busy.err
    assert "in use by another storyboard process" in busy.err
    assert run_cli("gc").code == 0  # once the render is done
