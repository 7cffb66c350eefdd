"""Issue 7, items 6 and 8c, and the issue's "done when": the lock and the run agree on money.

* every take in the lock costs its list price in USD (never null, WaveSpeed included), what
  the provider reported is kept beside it in its own unit, and for a fresh run the lock's
  costs add up to the ``plan --live`` estimate to the cent;
* a fresh ``render --live`` ends with ``spent $X.XX on N takes (list price)``, counting only
  the takes that run submitted;
* a lock the tool cannot read is an error naming the file and line before anything is spent.

Live runs go through ``cli.main`` against the provider emulator served on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, Project, Result, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.cache import Store
from storyboard.lockfile import lock_path, write_lock
from storyboard.plan import make_plan
from storyboard.testing.emulator import QUOTA_PER_USD, Emulator, EmulatorServer, Fault
from storyboard.validate import load_storyboard

WS_KEY = "ws-money-key-Pz61Hh8cVn"
QB_KEY = "qb-money-key-Ee03Gg5yWs"
SPENT = re.compile(r"^spent \$(\d+\.\d\d) on (\d+) takes? \(list price\)$")


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """Serve an emulator (options as for :class:`Emulator`) on loopback; export its address."""
    servers: list[EmulatorServer] = []
    emulators: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        options.setdefault("scale", 1 / 16)
        options.setdefault("max_seconds", 1.0)  # every served clip is 1 s: fast to encode
        if options["max_seconds"] is not None:  # accept the capped clips (see test_integrity)
            monkeypatch.setenv("STORYBOARD_MIN_OUTPUT_SHARE", "0")
        emu = Emulator(wavespeed_keys=(WS_KEY,), qingbo_keys=(QB_KEY,), **options)
        servers.append(EmulatorServer(emu))
        emulators.append(emu)
        monkeypatch.setenv("WAVESPEED_API_KEY", WS_KEY)
        monkeypatch.setenv("QINGBO_API_KEY", QB_KEY)
        monkeypatch.setenv("WAVESPEED_BASE_URL", servers[-1].url)
        monkeypatch.setenv("QINGBO_BASE_URL", servers[-1].url)
        monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.02")
        return emu

    yield start
    for server in servers:
        server.close()
    for emu in emulators:
        assert emu.internal_errors == []


def render(file: Path, *extra: str) -> Result:
    return run_cli("render", "--live", *extra, str(file))


def plan_estimate(file: Path) -> float:
    result = run_cli("plan", "--live", "--json", str(file))
    assert result.code == 0, result.err
    return float(result.json()["cost"])


def cents(usd: float) -> float:
    """A sum of dollar figures as ``plan`` and ``render`` print it (micro-dollars, then cents).

    Float sums drift below a micro-dollar (3 x 1.785 is 5.35499...); the tool rounds every
    sum to 6 places first, so the printed figures agree at half-cent boundaries too.
    """
    return float(f"{round(usd, 6):.2f}")


def spent_line(result: Result) -> tuple[float, int]:
    """The run's last stderr line, ``spent $X.XX on N takes (list price)``, parsed."""
    last = result.err.rstrip("\n").splitlines()[-1]
    match = SPENT.match(last)
    assert match, f"the run does not end with the spent line: {result.err}"
    return float(match.group(1)), int(match.group(2))


def lock_takes(file: Path) -> list[dict[str, Any]]:
    lock = json.loads(lock_path(file).read_text(encoding="utf-8"))
    return [take for shot in lock["shots"].values() for take in shot["takes"]]


def post_count(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST")


# --------------------------------------------------------------------------------------------
# The "done when"
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_done_when_dawn_renders_live_against_the_seed_status_names(
    tmp_path: Path, live: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dawn"
    shutil.copytree(EXAMPLES / "dawn", folder, ignore=shutil.ignore_patterns("renders", ".*"))
    monkeypatch.chdir(folder)
    board = folder / "storyboard.yaml"
    emu = live(qingbo_status_names="events", qingbo_cost_unit="none")
    estimate = plan_estimate(board)
    assert estimate > 0

    first = render(board)
    assert first.code == 0, first.err
    cut = folder / "renders" / "dawn.mp4"
    assert cut.is_file() and f"cut: {cut}" in first.out
    # The stand-in spoke `running`/`succeeded`, never the task pages' names.
    assert {t.status for t in emu.tasks("qingbo")} == {"succeeded"}

    takes = lock_takes(board)
    lock = json.loads(lock_path(board).read_text(encoding="utf-8"))
    assert all(isinstance(t["cost"], float | int) and t["cost"] > 0 for t in takes)
    assert all("reported_cost" not in t for t in takes)  # the stand-in reported none
    assert cents(sum(t["cost"] for t in takes)) == cents(estimate)
    assert lock["cost"] == pytest.approx(estimate, abs=1e-9)
    assert spent_line(first) == (cents(estimate), len(takes))
    assert len(takes) == len(emu.tasks())  # one task per take, each paid once
    # What the emulator would bill for each task is the lock's list price of that take.
    billed = {t.task_id: t.price_usd for t in emu.tasks()}
    assert {t["task_id"]: t["cost"] for t in takes} == pytest.approx(billed)

    posts = post_count(emu)
    again = render(board)
    assert again.code == 0, again.err
    assert post_count(emu) == posts  # a rerun sends no POST
    assert spent_line(again) == (0.0, 0)
    assert lock_takes(board) == takes


# --------------------------------------------------------------------------------------------
# Item 6: list price in the lock, reported cost beside it, one spent line
# --------------------------------------------------------------------------------------------

MIXES = {
    "wavespeed": """\
storyboard: 1
output: {resolution: 480p, fps: 24}
shots:
  - {id: kite, model: skyreels-v1, first_frame: refs/a.png, prompt: a kite, seed: 3}
  - id: pair
    model: skyreels-v3-reference
    refs: [refs/a.png, refs/b.png]
    prompt: the kite and the door
    duration: 5
    takes: 2
  - {id: more, model: skyreels-v3-extend, extends: pair, prompt: it flies on, duration: 6}
""",
    "qingbo": """\
storyboard: 1
output: {resolution: 480p, fps: 24}
shots:
  - {id: sea, model: skyreels-v4-fast, prompt: the sea, resolution: 480p, duration: 3}
  - {id: sky, model: skyreels-v4-std, prompt: the sky, resolution: 1080p, duration: 4, takes: 2}
  - {id: dark, model: skyreels-v4-std, extends: sea, prompt: dark, resolution: 720p, duration: 3}
  - id: mimic
    model: skyreels-v4-fast
    reference_video: media/clip.mp4
    prompt: the same motion
    resolution: 1080p
    duration: 3
""",
    "mixed": """\
storyboard: 1
output: {resolution: 480p, fps: 24}
shots:
  - {id: kite, model: skyreels-v1, first_frame: refs/a.png, prompt: a kite}
  - {id: onward, model: skyreels-v4-fast, continues: kite, prompt: onward, resolution: 720p, duration: 5}
  - {id: cut, model: skyreels-v3-cutshot, extends: kite, prompt: a close-up, duration: 2}
  - {id: end, card: {text: The end, duration: 1.0}}
""",
}


def _clip(root: Path) -> None:
    import subprocess

    import imageio_ffmpeg

    (root / "media").mkdir(exist_ok=True)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=64x36:rate=8", "-t", "2.5", "-pix_fmt", "yuv420p",
         "-c:v", "libx264", "-preset", "ultrafast", str(root / "media" / "clip.mp4")],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_lock_costs_are_list_prices_that_add_up_to_the_plan(
    project: Project, live: Callable[..., Emulator], mix: str
) -> None:
    if "media/clip.mp4" in MIXES[mix]:
        _clip(project.root)
    project.write(MIXES[mix])
    emu = live()  # Qingbo reports its cost in quota, as documented
    estimate = plan_estimate(project.file)
    result = render(project.file)
    assert result.code == 0, result.err

    takes = lock_takes(project.file)
    tasks = {t.task_id: t for t in emu.tasks()}
    assert sorted(t["task_id"] for t in takes) == sorted(tasks)
    for take in takes:
        task = tasks[take["task_id"]]
        # The list price, from our catalogue, is what the provider bills (the emulator's own
        # price table), for WaveSpeed too; never null.
        assert take["cost"] == pytest.approx(task.price_usd, abs=1e-9), take["model"]
        if task.provider == "qingbo":
            quota = round(task.charged_usd * QUOTA_PER_USD)
            assert take["reported_cost"] == {"amount": quota, "unit": "quota"}
        else:
            assert "reported_cost" not in take
    lock = json.loads(lock_path(project.file).read_text(encoding="utf-8"))
    assert lock["cost"] == pytest.approx(sum(t["cost"] for t in takes))
    assert lock["cost"] == pytest.approx(estimate, abs=1e-9)
    assert spent_line(result) == (cents(estimate), len(takes))


@pytest.mark.slow
def test_resumed_takes_are_not_spent_again(project: Project, live: Callable[..., Emulator]) -> None:
    project.write(MIXES["qingbo"].split("  - {id: sky")[0])  # `sea` alone: $0.204
    emu = live()
    emu.script(Fault(on="download", provider="qingbo", status=404))
    first = render(project.file)
    assert first.code == 1
    # The task was created (and billed) by this run, although its clip did not arrive.
    assert "spent $0.20 on 1 take (list price)" in first.err.splitlines()
    second = render(project.file)
    assert second.code == 0, second.err
    assert "rendered 1 clip(s)" in second.err  # resumed and downloaded ...
    assert spent_line(second) == (0.0, 0)  # ... but paid for by the first run
    assert len(emu.tasks()) == 1
    (take,) = lock_takes(project.file)
    assert take["cost"] == pytest.approx(0.204)  # the lock still holds its list price

    quiet = render(project.file, "-q")
    assert quiet.code == 0 and "spent" not in quiet.err  # -q prints nothing but errors


# Hypothesis: any mix of models, resolutions, durations, video references and takes; the lock
# written for a fresh run (every take in the store) holds list prices adding up to the plan.

_SHOT = st.one_of(
    st.builds(lambda: "model: skyreels-v1\n    first_frame: refs/a.png"),
    st.builds(
        lambda d, t: (
            f"model: skyreels-v3-reference\n    refs: [refs/a.png]\n"
            f"    duration: {d}\n    takes: {t}"
        ),
        st.integers(5, 10),
        st.integers(1, 3),
    ),
    st.builds(
        lambda m, r, d, t, video: (
            f"model: skyreels-v4-{m}\n    resolution: {r}\n"
            f"    duration: {d}\n    takes: {t}"
            + ("\n    reference_video: https://example.com/v.mp4" if video else "")
        ),
        st.sampled_from(["fast", "std"]),
        st.sampled_from(["480p", "720p", "1080p"]),
        st.integers(3, 15),
        st.integers(1, 3),
        st.booleans(),
    ),
)
_EXTEND = st.one_of(
    st.none(),
    st.builds(
        lambda m, r, d: f"model: skyreels-v4-{m}\n    resolution: {r}\n    duration: {d}",
        st.sampled_from(["fast", "std"]),
        st.sampled_from(["480p", "720p", "1080p"]),
        st.integers(3, 15),
    ),
    st.builds(lambda d: f"model: skyreels-v3-extend\n    duration: {d}", st.integers(5, 30)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shots=st.lists(st.tuples(_SHOT, _EXTEND), min_size=1, max_size=4))
def test_any_fresh_lock_adds_up_to_the_plan_estimate(
    project: Project, shots: list[tuple[str, str | None]]
) -> None:
    lines = ["storyboard: 1", "shots:"]
    for n, (shot, extension) in enumerate(shots):
        lines.append(f"  - id: s{n}\n    prompt: shot {n}\n    {shot}")
        if extension is not None:
            lines.append(f"  - id: e{n}\n    prompt: more\n    extends: s{n}\n    {extension}")
    text = "\n".join(lines) + "\n"
    project.write(text)
    shutil.rmtree(project.root / ".storyboard", ignore_errors=True)
    lock_path(project.file).unlink(missing_ok=True)
    board = load_storyboard(project.file)
    store = Store.for_storyboard(board.path)
    plan = make_plan(board, store, backend="live")
    estimate = plan.cost
    # Every take arrives in the store, as after a fresh live run (no provider reports a cost).
    for sp in plan.to_render:
        for take in sp.takes:
            clip = store.tmp_dir() / f"{take.key}.mp4"
            clip.write_bytes(take.key.encode())
            store.put(take.key, clip, seconds=1.0, shot=sp.id, take=take.take)
    write_lock(plan, store, None)
    takes = lock_takes(project.file)
    assert len(takes) == sum(len(sp.takes) for sp in plan.to_render)
    assert all(isinstance(t["cost"], float | int) for t in takes)
    assert cents(sum(t["cost"] for t in takes)) == cents(estimate), text
    lock = json.loads(lock_path(project.file).read_text(encoding="utf-8"))
    assert lock["cost"] == pytest.approx(estimate, abs=1e-9)
    # The lock now makes every take fresh: the next plan estimates $0.
    assert make_plan(load_storyboard(project.file), store, backend="live").cost == 0


# --------------------------------------------------------------------------------------------
# Item 8c: a lock the tool cannot read
# --------------------------------------------------------------------------------------------

PAIR = """\
storyboard: 1
shots:
  - {id: sea, model: skyreels-v4-fast, prompt: the sea, resolution: 480p, duration: 3}
"""
GOOD_LOCK = {
    "lock": 1,
    "storyboard": "storyboard.yaml",
    "cost": 0,
    "shots": {
        "sea": {
            "model": "skyreels-v4-fast",
            "select": 1,
            "takes": [{"key": "k" * 64, "output": "0" * 64, "duration": 3.0, "cost": None}],
        }
    },
}


def _conflicted(keep: str) -> tuple[str, int]:
    """A lock as git leaves it after conflicting edits of one take, and its first marker's line.

    ``keep`` names the markers left in (all three, or one of a half-resolved conflict).
    """
    good = json.dumps(GOOD_LOCK, indent=2, sort_keys=True).splitlines()
    at = next(i for i, line in enumerate(good) if '"duration"' in line)
    ours, theirs = good[at], good[at].replace("3.0", "4.0")
    middle = [
        *(["<<<<<<< HEAD"] if "<" in keep else []),
        ours,
        *(["======="] if "=" in keep else []),
        theirs,
        *([">>>>>>> other"] if ">" in keep else []),
    ]
    lines = [*good[:at], *middle, *good[at + 1 :]]
    first = next(n for n, line in enumerate(lines, 1) if line[:1] in "<=>")
    return "\n".join(lines) + "\n", first


@pytest.mark.parametrize("keep", ["<=>", "<", "=", ">"])
def test_merge_conflict_markers_stop_every_live_command(
    project: Project, live: Callable[..., Emulator], keep: str
) -> None:
    project.write(PAIR)
    emu = live()
    text, line = _conflicted(keep)
    lock_path(project.file).write_text(text, encoding="utf-8")
    assert text.splitlines()[line - 1][:7] in ("<<<<<<<", "=======", ">>>>>>>")
    for command in (["plan", "--live"], ["render", "--live"], ["stitch", "--live"]):
        result = run_cli(*command, str(project.file))
        assert result.code == 2, (command, result.err)
        lines = result.err.splitlines()
        assert lines[0].startswith(f"error: {lock_path(project.file)}:{line}: ")
        assert "git merge-conflict marker" in lines[0]
        assert lines[1].startswith(f"hint: resolve the merge conflict in {lock_path(project.file)}")
        assert "delete it" in lines[1] and "pays again" in lines[1]
    assert emu.requests == []
    assert lock_path(project.file).read_text(encoding="utf-8") == text  # left as it was


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{\n  "lock": 1,\n  "shots": {\n    "sea": {"takes": [}\n  }\n}\n', 4, "not valid JSON"),
        ('{\n  "lock": 1,\n  "shots": {}\n', 4, "not valid JSON"),
        ("[1, 2]\n", 1, "expected a JSON object"),
        ('{\n  "lock": 7,\n  "shots": {}\n}\n', 2, "lock format 7"),
        ('{\n  "lock": 1,\n  "shots": []\n}\n', 3, "'shots' is not an object"),
        ('{\n  "lock": 1,\n  "shots": {\n    "sea": {"takes": 3}\n  }\n}\n', 4, "'sea'"),
        (
            '{\n  "lock": 1,\n  "shots": {\n    "sea": {\n      "takes": [\n'
            '        {"key": "abc", "output": 5, "duration": 1}\n      ]\n    }\n  }\n}\n',
            6,
            "a take of shot 'sea'",
        ),
    ],
)
def test_unreadable_lock_names_the_file_and_line(
    project: Project, live: Callable[..., Emulator], text: str, line: int, reason: str
) -> None:
    project.write(PAIR)
    emu = live()
    lock_path(project.file).write_text(text, encoding="utf-8")
    for command in ("plan", "render"):
        result = run_cli(command, "--live", str(project.file))
        assert result.code == 2
        first, hint = result.err.splitlines()[:2]
        assert first.startswith(f"error: {lock_path(project.file)}:{line}: the lock file cannot")
        assert reason in first
        assert hint.startswith(f"hint: repair {lock_path(project.file)}, or delete it")
    assert emu.requests == []


def test_a_missing_lock_is_fine_and_the_preview_never_reads_it(project: Project) -> None:
    project.write(PAIR)
    assert run_cli("plan", "--live", str(project.file)).code == 0
    lock_path(project.file).write_text("<<<<<<< HEAD\n", encoding="utf-8")
    assert run_cli("plan", str(project.file)).code == 0


@pytest.mark.slow
def test_a_conflicted_lock_is_not_paid_for_again(
    project: Project, live: Callable[..., Emulator]
) -> None:
    project.write(PAIR)
    emu = live()
    assert render(project.file).code == 0
    lock = lock_path(project.file)
    good = lock.read_text(encoding="utf-8")
    # Another checkout: only the lock says which clip `sea` is ...
    shutil.rmtree(project.root / ".storyboard" / "keys")
    # ... and a merge left conflict markers in it.
    lines = good.splitlines()
    at = next(i for i, s in enumerate(lines) if '"time"' in s)
    lines[at : at + 1] = ["<<<<<<< HEAD", lines[at], "=======", lines[at], ">>>>>>> theirs"]
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")
    posts = post_count(emu)
    refused = render(project.file)
    assert refused.code == 2
    assert f"{lock}:{at + 1}:" in refused.err
    assert post_count(emu) == posts
    # Resolved, the lock names the clip again and the render costs nothing.
    lock.write_text(good, encoding="utf-8")
    again = render(project.file)
    assert again.code == 0, again.err
    assert post_count(emu) == posts
    assert spent_line(again) == (0.0, 0)


@pytest.mark.slow
def test_a_forced_take_is_spent_as_the_plan_said(
    project: Project, live: Callable[..., Emulator]
) -> None:
    project.write(MIXES["wavespeed"].split("  - id: pair")[0])  # `kite` alone: $0.20 a run
    emu = live()
    assert render(project.file).code == 0
    forced_plan = run_cli("plan", "--live", "--json", "--force", "kite", str(project.file))
    estimate = float(forced_plan.json()["cost"])
    assert estimate > 0
    forced = render(project.file, "--force", "kite")
    assert forced.code == 0, forced.err
    assert spent_line(forced) == (cents(estimate), 1)
    assert len(emu.tasks()) == 2  # bought twice, as asked
    (take,) = lock_takes(project.file)
    assert take["cost"] == pytest.approx(estimate)


@pytest.mark.slow
def test_a_take_reset_to_new_is_estimated_and_bought_again(
    project: Project, live: Callable[..., Emulator]
) -> None:
    from storyboard.journal import Journal

    project.write(MIXES["wavespeed"].split("  - id: pair")[0])  # `kite` alone: $0.20 a run
    emu = live()
    assert render(project.file).code == 0
    (take,) = lock_takes(project.file)
    # A --force run stopped after resetting the key (nothing sent for the new attempt) ...
    journal = Journal(project.root / ".storyboard" / "journal.sqlite")
    try:
        journal.force(take["key"])
    finally:
        journal.close()
    shutil.rmtree(project.root / ".storyboard" / "keys")
    lock_path(project.file).unlink()
    # ... so the next plan prices it as a purchase, and the render buys it and says so.
    estimate = plan_estimate(project.file)
    assert estimate == pytest.approx(take["cost"])
    again = render(project.file)
    assert again.code == 0, again.err
    assert spent_line(again) == (cents(estimate), 1)
    assert len(emu.tasks()) == 2
