"""Issue 7, item 5: everything that makes a live take impossible is found before any submit.

The CLI cases run ``render --live`` against the provider emulator served on 127.0.0.1 and
check that it saw no request at all: nothing uploaded, nothing submitted, nothing paid. The
unit cases call :func:`storyboard.preflight.preflight` on real plans of real files, with the
environment passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Project, run_cli

from storyboard.cache import Store
from storyboard.errors import CannotStart
from storyboard.journal import Journal
from storyboard.plan import Plan, make_plan
from storyboard.preflight import preflight
from storyboard.testing.emulator import Emulator, EmulatorServer
from storyboard.validate import load_storyboard

WS_KEY = "ws-preflight-key-Jq47Lx0pRz"
QB_KEY = "qb-preflight-key-Uu29Mm3kTd"
BOTH = {"WAVESPEED_API_KEY": WS_KEY, "QINGBO_API_KEY": QB_KEY}
QINGBO_ONLY = {"QINGBO_API_KEY": QB_KEY}
WAVESPEED_ONLY = {"WAVESPEED_API_KEY": WS_KEY}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], Emulator]]:
    """Serve an emulator on loopback and export its address plus the given keys."""
    servers: list[EmulatorServer] = []

    def start(keys: dict[str, str]) -> Emulator:
        emu = Emulator(wavespeed_keys=(WS_KEY,), qingbo_keys=(QB_KEY,))
        server = EmulatorServer(emu)
        servers.append(server)
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.url)
        monkeypatch.setenv("QINGBO_BASE_URL", server.url)
        monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.02")
        return emu

    yield start
    for server in servers:
        server.close()


def make_media(root: Path) -> None:
    """A 3.5 s wav and a 2.5 s mp4: within the seeds' limits (audio 3-30 s, video 2-30 s)."""
    import subprocess
    import wave

    import imageio_ffmpeg

    (root / "media").mkdir(exist_ok=True)
    with wave.open(str(root / "media" / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 28000)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=64x36:rate=8", "-t", "2.5", "-pix_fmt", "yuv420p",
         "-c:v", "libx264", "-preset", "ultrafast", str(root / "media" / "clip.mp4")],
        check=True, capture_output=True,
    )  # fmt: skip


def live_plan(project: Project) -> Plan:
    board = load_storyboard(project.file)
    return make_plan(board, Store.for_storyboard(board.path), backend="live")


def obstacles(plan: Plan, environ: dict[str, str], journal: Journal | None = None) -> list[str]:
    """Every obstacle as ``shot: message`` (empty when the run may start)."""
    try:
        preflight(plan, journal=journal, environ=environ)
    except CannotStart as exc:
        return [str(o) for o in exc.obstacles]
    return []


# An upstream Qingbo shot that needs nothing local, then everything that needs hosting.
HOSTING_BOARD = """\
storyboard: 1
shots:
  - id: sea
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
  - id: spin
    model: skyreels-v4-fast
    first_frame: refs/a.png
    refs: [https://example.com/door.png]
    prompt: the kite spins
    duration: 3
  - id: next
    model: skyreels-v4-std
    continues: sea
    prompt: the light sweeps the sea
    duration: 3
  - id: grid
    model: skyreels-v4-fast
    action: reference
    refs:
      - {tag: hero, image: refs/a.png}
      - {tag: style, images: [refs/b.png, https://example.com/c.png]}
    prompt: "@hero in the @style style"
    duration: 3
"""


def test_every_local_input_for_qingbo_is_refused_before_the_first_submit(
    project: Project, emulator: Callable[[dict[str, str]], Emulator]
) -> None:
    project.write(HOSTING_BOARD)
    emu = emulator(QINGBO_ONLY)
    result = run_cli("render", "--live", str(project.file))
    assert result.code == 2, result.err
    lines = result.err.splitlines()
    assert lines[0] == "error: 4 problems stop this live render; nothing was submitted"
    assert lines[1:5] == [
        "  spin: first_frame refs/a.png is a local file; Qingbo takes only URLs and "
        "WAVESPEED_API_KEY is not set to host it",
        "  next: continues sea: its last frame is a local file; Qingbo takes only URLs and "
        "WAVESPEED_API_KEY is not set to host it",
        "  grid: ref refs/a.png is a local file; Qingbo takes only URLs and "
        "WAVESPEED_API_KEY is not set to host it",
        "  grid: ref refs/b.png is a local file; Qingbo takes only URLs and "
        "WAVESPEED_API_KEY is not set to host it",
    ]
    assert lines[5:] == [
        "hint: export WAVESPEED_API_KEY=... (or write https:// URLs for the local inputs "
        "named above)"
    ]
    # `sea` needs nothing local and would have been paid for first: nothing went out.
    assert emu.requests == []
    assert not (project.root / "storyboard.lock").exists()


def test_the_same_run_starts_when_wavespeed_can_host_the_files(
    project: Project, emulator: Callable[[dict[str, str]], Emulator]
) -> None:
    project.write(HOSTING_BOARD)
    assert obstacles(live_plan(project), BOTH) == []
    assert obstacles(live_plan(project), {**QINGBO_ONLY, "WAVESPEED_API_KEY": "  "}) != []


def test_missing_keys_are_all_named_with_their_shots(
    project: Project, emulator: Callable[[dict[str, str]], Emulator]
) -> None:
    project.write(
        "storyboard: 1\nshots:\n"
        "  - {id: kite, model: skyreels-v1, first_frame: refs/a.png, prompt: a kite}\n"
        "  - {id: sea, model: skyreels-v4-fast, prompt: the sea, duration: 3}\n"
        "  - {id: end, card: {text: The end}}\n"
    )
    emu = emulator({})
    result = run_cli("render", "--live", str(project.file))
    assert result.code == 2
    assert result.err.splitlines() == [
        "error: 2 problems stop this live render; nothing was submitted",
        "  kite: WAVESPEED_API_KEY is not set; skyreels-v1 runs on WaveSpeed",
        "  sea: QINGBO_API_KEY is not set; skyreels-v4-fast runs on Qingbo",
        "hint: export QINGBO_API_KEY=... WAVESPEED_API_KEY=...",
    ]
    assert emu.requests == []
    # With only the Qingbo key, only the WaveSpeed shot is in the way, and no key value is
    # ever shown.
    emulator(QINGBO_ONLY)
    again = run_cli("render", "--live", str(project.file))
    assert again.code == 2
    assert "  kite: WAVESPEED_API_KEY is not set" in again.err and "sea:" not in again.err
    assert QB_KEY not in again.err + again.out


def test_a_wavespeed_shot_hosts_its_own_files(project: Project) -> None:
    project.write(
        "storyboard: 1\nshots:\n"
        "  - {id: kite, model: skyreels-v1, first_frame: refs/a.png, prompt: a kite}\n"
        "  - {id: more, model: skyreels-v3-extend, extends: kite, prompt: it flies on, duration: 5}\n"
    )
    assert obstacles(live_plan(project), WAVESPEED_ONLY) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_frame", "refs/a.png"),
        ("last_frame", "refs/a.png"),
        ("keyframes", "[{at: 1.0, image: refs/a.png}]"),
        ("refs", "[{tag: hero, image: refs/a.png, audio: media/tone.wav}]"),
        ("audio", "media/tone.wav"),
        ("reference_video", "media/clip.mp4"),
    ],
)
def test_each_kind_of_local_input_needs_hosting(project: Project, field: str, value: str) -> None:
    make_media(project.root)
    extra = "    first_frame: refs/b.png\n" if field == "last_frame" else ""
    project.write(
        "storyboard: 1\nshots:\n  - id: one\n    model: skyreels-v4-fast\n"
        f"    prompt: a shot\n    duration: 3\n{extra}    {field}: {value}\n"
    )
    plan = live_plan(project)
    found = obstacles(plan, QINGBO_ONLY)
    expected = {
        "keyframes": ["keyframe refs/a.png"],
        "refs": ["ref refs/a.png", "ref audio media/tone.wav"],
        "audio": ["audio media/tone.wav"],
        "reference_video": ["reference_video media/clip.mp4"],
        "last_frame": ["first_frame refs/b.png", "last_frame refs/a.png"],
    }.get(field, [f"{field} {value}"])
    assert [f.split(" is a local file")[0] for f in found] == [f"one: {e}" for e in expected]
    assert obstacles(plan, BOTH) == []


EXTEND_BOARD = """\
storyboard: 1
shots:
  - id: sea
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    duration: 3
  - id: dark
    model: skyreels-v4-fast
    extends: sea
    prompt: the lighthouse goes dark
    duration: 3
"""


def test_extends_needs_hosting_only_without_a_provider_url(project: Project) -> None:
    project.write(EXTEND_BOARD)
    plan = live_plan(project)
    # `sea` is rendered by this run: its output URL (valid 24 h) is what `dark` extends.
    assert obstacles(plan, QINGBO_ONLY) == []
    # Only `dark` is rendered now (--only cannot exclude an upstream, so pretend `sea` is
    # done): its upstream clip is a local file in the store with no provider URL.
    sea, dark = plan.shots
    sea_done = Plan(
        plan.board, plan.backend, plan.shots, plan.cut, None, "stale", frozenset({"dark"})
    )
    assert [sp.id for sp in sea_done.to_render] == ["dark"]
    store = Store.for_storyboard(plan.board.path)
    journal = Journal(store.root / "journal.sqlite")
    try:
        assert obstacles(sea_done, QINGBO_ONLY, journal) == [
            "dark: extends sea: its clip is a local file with no valid provider URL; "
            "Qingbo takes only URLs and WAVESPEED_API_KEY is not set to host it"
        ]
        # The journal still holds the provider's URL of the upstream's output: no upload.
        import time

        journal.record_output(sea.takes[0].key, "https://cdn.example/sea.mp4", time.time() + 9e4)
        assert obstacles(sea_done, QINGBO_ONLY, journal) == []
        assert dark.id == "dark"
    finally:
        journal.close()


def test_resumed_takes_upload_nothing_so_need_no_hosting(project: Project) -> None:
    project.write(
        "storyboard: 1\nshots:\n  - id: spin\n    model: skyreels-v4-fast\n"
        "    first_frame: refs/a.png\n    prompt: the kite spins\n    duration: 3\n"
    )
    plan = live_plan(project)
    store = Store.for_storyboard(plan.board.path)
    journal = Journal(store.root / "journal.sqlite")
    try:
        (take,) = plan.shots[0].takes
        journal.claim(take.key, shot="spin", take=1, provider="qingbo", model="m", seed=None)
        # An intent (reply lost): Qingbo resends it with the same key, so it uploads again.
        assert len(obstacles(plan, QINGBO_ONLY, journal)) == 1
        journal.submitted(take.key, "task_1")
        assert obstacles(plan, QINGBO_ONLY, journal) == []  # resumed: polled, not uploaded
        # ... unless it is forced, which submits it again.
        with pytest.raises(CannotStart):
            preflight(plan, journal=journal, forced={"spin"}, environ=QINGBO_ONLY)
        # A missing key is an obstacle even for a resumed take (it has to be polled).
        assert obstacles(plan, {}, journal) == [
            "spin: QINGBO_API_KEY is not set; skyreels-v4-fast runs on Qingbo"
        ]
    finally:
        journal.close()


def test_validate_does_not_import_the_provider_clients() -> None:
    import subprocess
    import sys

    code = (
        "import sys, storyboard.preflight, storyboard.validate;"
        "print(any(m.startswith(('httpx', 'storyboard.providers.qingbo')) for m in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"
