"""End-to-end ``render --live`` against the provider emulator over real loopback HTTP (issue 4).

Every test serves an :class:`Emulator` on 127.0.0.1 (ephemeral port) in this process and
points ``WAVESPEED_BASE_URL``/``QINGBO_BASE_URL`` at it. Most runs go through the CLI
in-process (``run_cli``); the crash tests run ``python -m storyboard render --live`` as a
subprocess and SIGKILL it while a chosen request is in flight (a scripted slow reply holds
the request open, so the kill point is deterministic), then rerun to completion and count
what the emulator received: money is spent once per generation key.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PAIR_BOARD, ROOT, Project, Result, run_cli, write_image

from storyboard.media.probe import probe
from storyboard.testing.emulator import (
    Emulator,
    EmulatorServer,
    Fault,
    QuotaWindow,
    RequestRecord,
    Submission,
)

pytestmark = pytest.mark.slow

# Distinctive keys, so that a grep for them finds nothing else by accident.
WS_KEY = "ws-live-test-key-7Qx93ZkLm2"
QB_KEY = "qb-live-test-key-Vt58Rw0pHn"
V1 = "wavespeed-ai/SkyReels-V1"
V3_REF = "skywork-ai/skyreels-v3/reference-to-video"
V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"
V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"
# A scripted slow reply that holds a request open while the test kills the client.
HOLD = 8.0


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass
class Live:
    """One emulator served on loopback, with the environment pointing at it."""

    emu: Emulator
    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    def posts(self) -> int:
        """POST requests received so far (submits, upload tickets, cancels)."""
        return sum(1 for r in self.emu.requests if r.method == "POST")

    def submits(self) -> int:
        """Submit requests received so far (a task list lookup is a POST, but not a submit)."""
        return sum(1 for r in self.emu.requests if r.kind == "submit")

    def requests_since(self, mark: int) -> list[RequestRecord]:
        return list(self.emu.requests[mark:])

    def submissions(self, provider: str | None = None) -> list[Submission]:
        return [s for s in self.emu.submissions if provider in (None, s.provider)]

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Live]]:
    """Start an emulator (options as for :class:`Emulator`) and export its address and keys."""
    servers: list[Live] = []

    def start(**options: Any) -> Live:
        options.setdefault("scale", 1 / 16)
        options.setdefault("max_seconds", 1.0)  # every served clip is 1 s: fast to encode
        options.setdefault("polls_to_start", 1)
        options.setdefault("polls_to_finish", 2)
        emu = Emulator(wavespeed_keys=(WS_KEY,), qingbo_keys=(QB_KEY,), **options)
        server = EmulatorServer(emu)
        monkeypatch.setenv("WAVESPEED_API_KEY", WS_KEY)
        monkeypatch.setenv("QINGBO_API_KEY", QB_KEY)
        monkeypatch.setenv("WAVESPEED_BASE_URL", server.url)
        monkeypatch.setenv("QINGBO_BASE_URL", server.url)
        monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.05")
        # Served clips are cut to max_seconds: not the "much shorter than asked" of a broken
        # provider output (issue 8 item 5), so that check is relaxed for these runs.
        if options["max_seconds"] is not None:
            monkeypatch.setenv("STORYBOARD_MIN_OUTPUT_SHARE", "0")
        handle = Live(emu, server)
        servers.append(handle)
        return handle

    yield start
    for handle in servers:
        handle.server.close()
        assert handle.emu.internal_errors == []


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_media(root: Path) -> None:
    """A third image, a 2.5 s reference video (V4 takes 2-30 s) and a 3 s wav (3-30 s)."""
    write_image(root / "refs" / "c.png", (40, 200, 90))
    (root / "media").mkdir(exist_ok=True)
    quiet = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    video = ["-f", "lavfi", "-i", "testsrc2=size=64x36:rate=8", "-t", "2.5", "-pix_fmt", "yuv420p"]
    video += ["-c:v", "libx264", "-preset", "ultrafast", str(root / "media" / "clip.mp4")]
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-ac", "1", "-ar", "8000"]
    audio += [str(root / "media" / "tone.wav")]
    for args in (video, audio):
        subprocess.run([*quiet, *args], check=True, capture_output=True)


def render(project: Project, *extra: str) -> Result:
    return run_cli("render", "--live", *extra, str(project.file))


def keys_of(project: Project) -> dict[str, str]:
    """Shot id -> generation key of its (only) take, from ``plan --live --json``."""
    return {s["id"]: s["keys"][0] for s in project.plan("--live")["shots"] if s["keys"]}


def cut_seconds(project: Project) -> float:
    return probe(project.root / "renders" / "storyboard.mp4").duration


# --------------------------------------------------------------------------------------------
# 1. Every model and every V4 action, exact request bodies, uploads, rerun
# --------------------------------------------------------------------------------------------

FULL_BOARD = """\
storyboard: 1
title: live test
output:
  resolution: 480p
  fps: 24
shots:
  - id: v1
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
  - id: v3ref
    model: skyreels-v3-reference
    refs: [refs/a.png, refs/b.png]
    prompt: the kite and the blue door
    aspect_ratio: "16:9"
    duration: 5
  - id: v3ext
    model: skyreels-v3-extend
    extends: v3ref
    prompt: the kite flies on
    duration: 5
  - id: v3cut
    model: skyreels-v3-cutshot
    extends: v3ext
    prompt: a close-up of the kite
    cut_type: Cut-In
    duration: 2
  - id: gen
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
  - id: i2v
    model: skyreels-v4-std
    first_frame: refs/a.png
    prompt: the kite spins
    resolution: 480p
    duration: 3
  - id: cont
    model: skyreels-v4-fast
    continues: gen
    prompt: the light sweeps the sea
    resolution: 480p
    duration: 3
  - id: flf
    model: skyreels-v4-fast
    first_frame: refs/b.png
    last_frame: refs/a.png
    keyframes: [{at: 1.5, image: refs/c.png}]
    prompt: the door opens
    resolution: 480p
    duration: 3
  - id: refgrid
    model: skyreels-v4-fast
    action: reference
    refs:
      - {tag: hero, image: refs/a.png}
      - {tag: style, images: [refs/b.png, refs/c.png]}
    prompt: "@hero in the @style style"
    resolution: 480p
    duration: 3
  - id: refvid
    model: skyreels-v4-fast
    reference_video: media/clip.mp4
    prompt: the same motion, in a forest
    resolution: 480p
    duration: 3
  - id: refaud
    model: skyreels-v4-fast
    audio: media/tone.wav
    prompt: a singer on a stage
    resolution: 480p
    duration: 3
  - id: ext
    model: skyreels-v4-std
    extends: gen
    prompt: the lighthouse goes dark
    resolution: 480p
    duration: 3
"""


def _uploaded_urls(live: Live) -> dict[str, str]:
    """File name -> the download URL the emulator issued for it (from the PUTs it received)."""
    urls: dict[str, str] = {}
    for record in live.emu.requests:
        if record.kind == "upload" and record.method == "PUT" and record.status == 200:
            token, name = record.path.split("?", 1)[0].split("/")[2:4]
            assert name not in urls, f"{name} was uploaded twice"
            urls[name] = f"{live.url}/files/wavespeed/media/{token}/{name}"
    return urls


def test_every_model_and_v4_action_sends_the_documented_json(
    project: Project, live: Callable[..., Live]
) -> None:
    emu = live()
    make_media(project.root)
    project.write(FULL_BOARD)
    result = render(project)
    assert result.code == 0, result.err
    assert "rendered 12 clip(s)" in result.err
    # Twelve 1 s clips (the emulator caps served files at 1 s), all hard cuts.
    assert cut_seconds(project) == pytest.approx(12.0, abs=0.2)

    # Local files: one upload (ticket + PUT) per content digest, however many shots use it.
    up = _uploaded_urls(emu)
    frames = [n for n in up if n.endswith(".last.png")]
    assert len(frames) == 1  # the last frame of `gen`, for `cont`
    assert sorted(set(up) - set(frames)) == ["a.png", "b.png", "c.png", "clip.mp4", "tone.wav"]
    assert sum(1 for r in emu.emu.requests if r.kind == "media") == len(up) == 6
    for name, folder in [("a.png", "refs"), ("c.png", "refs"), ("clip.mp4", "media")]:
        assert emu.emu.file_bytes(up[name]) == (project.root / folder / name).read_bytes()
    # The last frame was extracted in the run's work folder, not beside the clips.
    objects = project.root / ".storyboard" / "objects"
    assert {p.suffix for p in objects.rglob("*") if p.is_file()} == {".mp4"}
    a, b, c = up["a.png"], up["b.png"], up["c.png"]
    frame = up[frames[0]]

    # Outputs of upstream shots, as the emulator published them.
    out = {t.body["prompt"]: t.output_url for t in emu.emu.tasks()}
    sent = {s.body["prompt"]: s for s in emu.submissions()}
    assert len(sent) == len(emu.submissions()) == 12  # one submit per shot, nothing repeated
    assert all(s.created and s.http_status == 200 for s in sent.values())

    v4 = {"aspect_ratio": "16:9", "duration": 3, "prompt_optimizer": True, "resolution": "480p"}
    expected: dict[str, tuple[str, dict[str, Any]]] = {
        "a red kite over a field": (
            V1,
            {"prompt": "a red kite over a field", "image": a, "seed": 7},
        ),
        "the kite and the blue door": (
            V3_REF,
            {
                "prompt": "the kite and the blue door",
                "images": [a, b],
                "aspect_ratio": "16:9",
                "duration": 5,
            },
        ),
        "the kite flies on": (
            V3_EXTEND,
            {
                "prompt": "the kite flies on",
                "video": out["the kite and the blue door"],
                "duration": 5,
            },
        ),
        "a close-up of the kite": (
            V3_CUTSHOT,
            {
                "prompt": "a close-up of the kite",
                "video": out["the kite flies on"],
                "cut_type": "Cut-In",
                "duration": 2,
            },
        ),
        "a lighthouse at dusk": (
            "/v1/tasks",
            {"model": "skyreels-v4-fast", "prompt": "a lighthouse at dusk", **v4},
        ),
        "the kite spins": (
            "/v1/tasks",
            {"model": "skyreels-v4-std", "prompt": "the kite spins", "first_frame_image": a, **v4},
        ),
        "the light sweeps the sea": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-fast",
                "prompt": "the light sweeps the sea",
                "first_frame_image": frame,
                **v4,
            },
        ),
        "the door opens": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-fast",
                "prompt": "the door opens",
                "first_frame_image": b,
                "last_frame_image": a,
                "mid_frame_images": [{"tag": "kf1", "image_url": c, "time_stamp": 1.5}],
                **v4,
            },
        ),
        "@hero in the @style style": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-fast",
                "prompt": "@hero in the @style style",
                "action": "reference",
                "ref_images": [
                    {"tag": "hero", "type": "image", "image_urls": [a]},
                    {"tag": "style", "type": "grid", "image_urls": [b, c]},
                ],
                **v4,
            },
        ),
        "the same motion, in a forest": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-fast",
                "prompt": "the same motion, in a forest",
                "ref_videos": [{"tag": "ref", "type": "reference", "video_url": up["clip.mp4"]}],
                **v4,
            },
        ),
        "a singer on a stage": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-fast",
                "prompt": "a singer on a stage",
                "audio_urls": [up["tone.wav"]],
                **v4,
            },
        ),
        "the lighthouse goes dark": (
            "/v1/tasks",
            {
                "model": "skyreels-v4-std",
                "prompt": "the lighthouse goes dark",
                # The upstream's own provider URL while it is valid: no re-upload.
                "ref_videos": [
                    {"tag": "src", "type": "extend", "video_url": out["a lighthouse at dusk"]}
                ],
                **v4,
            },
        ),
    }
    assert set(sent) == set(expected)
    for prompt, (endpoint, body) in expected.items():
        assert sent[prompt].endpoint == endpoint, prompt
        assert dict(sent[prompt].body) == body, prompt

    # The V4 routing the emulator inferred: every action once (refgrid sets it explicitly).
    actions = Counter(t.action for t in emu.emu.tasks("qingbo"))
    assert actions == Counter(
        {
            "generate": 1,
            "image2video": 2,  # first_frame, and continues
            "first_last_frame": 1,
            "reference": 1,
            "reference_video": 1,
            "reference_audio": 1,
            "extend": 1,
        }
    )
    # Qingbo submits carry the Idempotency-Key derived from the generation key.
    keys = keys_of(project)
    by_prompt = {s.body["prompt"]: s for s in emu.submissions("qingbo")}
    assert by_prompt["the door opens"].idempotency_key == f"storyboard-{keys['flf']}"
    assert all(s.idempotency_key for s in by_prompt.values())
    assert emu.emu.auth_leaks == []

    # A rerun sends nothing at all: every clip is in the store.
    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert "rendered 0 clip(s)" in again.err
    assert emu.requests_since(mark) == []


# --------------------------------------------------------------------------------------------
# 2. SIGKILL at several points, then rerun: same cut, no generation key paid twice
# --------------------------------------------------------------------------------------------

# A chain, so exactly one take is in flight at any time and each kill point is exact:
# WaveSpeed V1 -> V4 continues (last frame) -> V4 extends -> V3 extends.
CHAIN_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: a
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
  - id: b
    model: skyreels-v4-fast
    continues: a
    prompt: the kite climbs
    resolution: 480p
    duration: 3
  - id: c
    model: skyreels-v4-fast
    extends: b
    prompt: the kite dives
    resolution: 480p
    duration: 3
  - id: d
    model: skyreels-v3-extend
    extends: c
    prompt: the kite lands
    duration: 5
"""
CHAIN_SECONDS = 4.0  # four 1 s clips, hard cuts


def _spawn(project: Project, live: Live, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", "--live", *extra, str(project.file)],
        cwd=project.root,
        env=live.subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_when(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 60.0
) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (fails if it ends or times out first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the render ended (exit {proc.returncode}) before the kill point:\n"
                        + err.decode(errors="replace"))  # fmt: skip
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("the kill point was never reached")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)  # reap it: a zombie would still look alive to the journal
    assert proc.returncode == -signal.SIGKILL


def _assert_paid_once(live: Live, project: Project) -> None:
    """One created task per shot; WaveSpeed got one POST per key, Qingbo one task per key."""
    keys = keys_of(project)
    emu = live.emu
    tasks = emu.tasks()
    assert len(tasks) == len(keys) == 4
    assert set(emu.tasks_per_body_hash.values()) == {1}
    ws = live.submissions("wavespeed")
    assert Counter(s.endpoint for s in ws) == Counter({V1: 1, V3_EXTEND: 1})
    created = Counter(s.idempotency_key for s in live.submissions("qingbo") if s.created)
    assert created == Counter({f"storyboard-{keys['b']}": 1, f"storyboard-{keys['c']}": 1})
    assert emu.auth_leaks == []


def _assert_finished(project: Project) -> None:
    plan = project.plan("--live")
    assert {s["status"] for s in plan["shots"]} == {"fresh"}
    assert cut_seconds(project) == pytest.approx(CHAIN_SECONDS, abs=0.15)
    assert not list((project.root / ".storyboard" / "tmp").rglob("*.mp4"))


def _fault_fired(live: Live) -> Callable[[], bool]:
    return lambda: bool(live.emu.fault_hits)


@pytest.mark.parametrize(
    "point", ["before-submit", "qingbo-submit-in-flight", "mid-poll", "mid-download"]
)
def test_sigkill_then_rerun_pays_each_key_once(
    project: Project, live: Callable[..., Live], point: str
) -> None:
    project.write(CHAIN_BOARD)
    options: dict[str, Any] = {}
    if point == "mid-poll":
        options["polls_to_finish"] = 10_000  # the first task runs until the test says so
    emu = live(**options)
    ready = _fault_fired(emu)
    if point == "before-submit":
        emu.emu.script(Fault(on="media", delay=HOLD))  # the upload of a.png, for shot a
    elif point == "qingbo-submit-in-flight":
        # Shot b's submit is applied (the task exists), its reply held back: killed unanswered.
        emu.emu.script(Fault(on="submit", provider="qingbo", delay=HOLD))
    elif point == "mid-poll":
        ready = lambda: sum(1 for r in emu.emu.requests if r.kind == "poll") >= 3  # noqa: E731
    else:
        emu.emu.script(Fault(on="download", provider="qingbo", delay=HOLD))  # shot b's clip

    proc = _spawn(project, emu)
    _kill_when(proc, ready)
    tasks_at_kill = emu.emu.tasks()
    if point == "before-submit":
        assert emu.submissions() == []
    elif point == "qingbo-submit-in-flight":
        assert [s.model for s in emu.submissions()] == [V1, "skyreels-v4-fast"]
    elif point == "mid-poll":
        assert [t.status for t in tasks_at_kill] == ["processing"]
        emu.emu.polls_to_finish = 2  # the provider finishes it now
    else:
        assert [t.status for t in tasks_at_kill] == ["completed", "completed"]

    mark = len(emu.emu.requests)
    result = render(project)
    assert result.code == 0, result.err
    # Work the killed run paid for is resumed by task id, never submitted again.
    resent = [r for r in emu.requests_since(mark) if r.kind == "submit"]
    if point == "qingbo-submit-in-flight":
        # Qingbo: the unanswered submit is sent again with the same Idempotency-Key and
        # answered with the original task.
        keys = keys_of(project)
        again = [s for s in emu.submissions("qingbo") if not s.created]
        assert [s.idempotency_key for s in again] == [f"storyboard-{keys['b']}"]
        assert again[0].task_id == tasks_at_kill[1].task_id
    assert len(resent) == 4 - len(tasks_at_kill) + (point == "qingbo-submit-in-flight")
    _assert_paid_once(emu, project)
    _assert_finished(project)


def test_two_processes_never_submit_the_same_key_twice(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    # Both processes get as far as uploading a.png (held open), then both reach the claim.
    emu.emu.script(Fault(on="media", delay=5.0, times=2))
    procs = [_spawn(project, emu) for _ in range(2)]
    outcomes = [(p.wait(timeout=60), p.communicate()[1].decode()) for p in procs]
    # Usually both hit the held upload; on a loaded machine the second may start after the
    # first upload finished and reuse its URL. Either way the claim race below is real.
    assert emu.emu.fault_count(0) >= 1
    assert Counter(s.endpoint for s in emu.submissions()) == Counter({V1: 1, "/v1/tasks": 1})
    assert set(emu.emu.tasks_per_body_hash.values()) == {1}
    # Each process renders what it claimed first; a shot claimed by the other one fails here.
    assert 1 in [code for code, _ in outcomes], outcomes
    for code, err in outcomes:
        assert code in (0, 1), err
        if code == 1:
            assert "being rendered by another storyboard process" in err, err
    # Once both are done, a rerun finds everything rendered: nothing is submitted again.
    mark = len(emu.emu.requests)
    result = render(project)
    assert result.code == 0, result.err
    assert [r for r in emu.requests_since(mark) if r.kind == "submit"] == []
    assert len(emu.emu.tasks()) == 2


def test_sigkill_during_a_wavespeed_submit_is_found_in_the_task_list(
    project: Project, live: Callable[..., Live]
) -> None:
    """Issue 7 (8a): a task created behind a lost reply is found and resumed, not bought again."""
    project.write(CHAIN_BOARD)
    emu = live()
    emu.emu.script(Fault(on="submit", provider="wavespeed", delay=HOLD))
    proc = _spawn(project, emu)
    _kill_when(proc, lambda: bool(emu.submissions()))
    assert [t.model for t in emu.emu.tasks()] == [V1]  # created and billed, reply never seen

    # WaveSpeed has no idempotency key: the rerun must not guess; it asks the task list.
    mark = len(emu.emu.requests)
    rerun = render(project)
    assert rerun.code == 0, rerun.err
    since = emu.requests_since(mark)
    assert any(r.kind == "list" and r.provider == "wavespeed" for r in since)
    assert [r.path for r in since if r.kind == "submit" and V1 in r.path] == []
    assert Counter(s.endpoint for s in emu.submissions("wavespeed")) == Counter(
        {V1: 1, V3_EXTEND: 1}
    )
    _assert_paid_once(emu, project)
    _assert_finished(project)


# --------------------------------------------------------------------------------------------
# 3. Fault scripts at the CLI level
# --------------------------------------------------------------------------------------------


def _one_task_each(live: Live) -> None:
    assert sorted(t.provider for t in live.emu.tasks()) == ["qingbo", "wavespeed"]
    assert set(live.emu.tasks_per_body_hash.values()) == {1}
    assert len(live.submissions("wavespeed")) == 1


def test_poll_429_with_retry_after_is_waited_out(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(Fault(on="poll", provider="qingbo", status=429, retry_after=1))
    started = time.monotonic()
    result = render(project)
    assert result.code == 0, result.err
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert emu.emu.fault_count(0) == 1
    polls = [r for r in emu.emu.requests if r.kind == "poll" and r.provider == "qingbo"]
    assert polls[0].status == 429 and polls[-1].status == 200
    _one_task_each(emu)


def test_poll_and_download_5xx_are_retried(project: Project, live: Callable[..., Live]) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(
        Fault(on="poll", provider="wavespeed", status=503, times=2),
        Fault(on="poll", provider="qingbo", status=500),
        Fault(on="download", status=502),
    )
    result = render(project)
    assert result.code == 0, result.err
    assert [emu.emu.fault_count(i) for i in range(3)] == [2, 1, 1]
    _one_task_each(emu)


def test_slow_replies_are_waited_for(project: Project, live: Callable[..., Live]) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(
        Fault(on="submit", provider="qingbo", delay=0.6),
        Fault(on="poll", provider="wavespeed", delay=0.6),
        Fault(on="download", provider="qingbo", delay=0.6),
        Fault(on="upload", delay=0.6),
    )
    result = render(project)
    assert result.code == 0, result.err
    assert emu.emu.pending_faults == []
    _one_task_each(emu)
    assert len(emu.submissions("qingbo")) == 1


# The one message of an unknown outcome the task list cannot settle, and its one instruction,
# on every run.
UNKNOWN_KITE = (
    "error: kite: outcome unknown: provider wavespeed, shot kite take 1: the submit got no "
    "usable reply; the provider's task list shows no such task\n"
    "    hint: `storyboard render storyboard.yaml --live --force kite` submits it again "
    "(and pays again)\n"
)


def test_wavespeed_submit_reply_lost_is_outcome_unknown(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    # A 5xx: the outcome is unknown; the task list then shows nothing was created.
    emu.emu.script(Fault(on="submit", provider="wavespeed", status=503))
    first = render(project, "--keep-going")
    assert first.code == 1
    assert UNKNOWN_KITE in first.err
    assert "--force kite" in first.err
    assert emu.emu.tasks("wavespeed") == []  # the 503 created nothing, and the list says so
    assert [r.kind for r in emu.emu.requests if r.provider == "wavespeed"].count("list") >= 1
    kite = next(s for s in project.plan("--live")["shots"] if s["id"] == "kite")
    assert kite["status"] == "stale" and kite["cost"] == 0  # no new money until --force
    assert "outcome unknown" in kite["reason"] and "--force kite" in kite["reason"]
    forced_plan = project.plan("--live", "--force", "kite")
    assert next(s for s in forced_plan["shots"] if s["id"] == "kite")["cost"] > 0

    mark = emu.submits()
    again = render(project)
    assert again.code == 1
    assert UNKNOWN_KITE in again.err  # the same words on the rerun
    assert emu.submits() == mark  # not submitted again (and `sea` is done)

    forced = render(project, "--force", "kite")
    assert forced.code == 0, forced.err
    assert len(emu.submissions("wavespeed")) == 2
    assert len(emu.submissions("qingbo")) == 1


def test_force_refused_by_the_budget_keeps_the_unknown_outcome(
    project: Project, live: Callable[..., Live]
) -> None:
    """A --force run that the budget refuses must not forget what the journal knew."""
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(Fault(on="submit", provider="wavespeed", status=503))
    assert render(project, "--keep-going").code == 1
    refused = render(project, "--force", "kite", "--budget", "0.01")
    assert refused.code == 3
    mark = emu.submits()
    again = render(project)
    assert again.code == 1 and "outcome unknown" in again.err
    assert emu.submits() == mark  # still not resubmitted without --force
    assert "--force ID" in again.err  # the closing hint says the way out


def test_qingbo_submit_reply_lost_is_resent_with_the_same_key(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(Fault(on="submit", provider="qingbo", drop=True))
    result = render(project)
    assert result.code == 0, result.err
    key = f"storyboard-{keys_of(project)['sea']}"
    assert emu.emu.submits_per_idempotency_key == Counter({key: 2})
    assert [s.created for s in emu.submissions("qingbo")] == [True, False]
    assert len(emu.emu.tasks("qingbo")) == 1
    _one_task_each(emu)


def test_wavespeed_task_failure_is_reported_and_not_resubmitted(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(
        Fault(
            on="submit",
            provider="wavespeed",
            fail_task_code=1401,
            fail_message="invalid parameter: image must be at least 256 px wide",
        )
    )
    first = render(project, "--keep-going")
    assert first.code == 1
    assert "error: kite: " in first.err
    assert "image must be at least 256 px wide" in first.err  # the provider's own words
    assert "hint: change the storyboard as the message says" in first.err

    mark = emu.posts()
    again = render(project)
    assert again.code == 1
    assert "image must be at least 256 px wide" in again.err
    assert "--force kite" in again.err
    assert emu.posts() == mark

    forced = render(project, "--force", "kite")
    assert forced.code == 0, forced.err
    assert len(emu.submissions("wavespeed")) == 2


def test_qingbo_quota_window_is_waited_out(project: Project, live: Callable[..., Live]) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(Fault(on="submit", provider="qingbo", quota=QuotaWindow(reset_in=1.0)))
    started = time.monotonic()
    result = render(project)
    assert result.code == 0, result.err
    assert time.monotonic() - started >= 0.9
    qb = emu.submissions("qingbo")
    assert [(s.http_status, s.created) for s in qb] == [(429, False), (200, True)]
    assert qb[0].idempotency_key == qb[1].idempotency_key
    _one_task_each(emu)


# --------------------------------------------------------------------------------------------
# 4. Budget
# --------------------------------------------------------------------------------------------


def test_budget_refuses_before_any_request(project: Project, live: Callable[..., Live]) -> None:
    # kite $0.20 a run + sea 3 s x $0.068 = $0.404.
    project.write(PAIR_BOARD.replace("shots:\n", "render:\n  budget: 0.30\nshots:\n", 1))
    emu = live()
    refused = render(project)
    assert refused.code == 3
    assert "  kite: $0.20\n" in refused.err and "  sea: $0.20\n" in refused.err
    assert "over the budget of $0.30" in refused.err
    assert emu.emu.requests == []  # nothing uploaded, nothing submitted

    lower = render(project, "--budget", "0.25")  # the flag wins over render.budget
    assert lower.code == 3
    assert emu.emu.requests == []

    allowed = render(project, "--budget", "0.50")
    assert allowed.code == 0, allowed.err
    assert len(emu.emu.tasks()) == 2

    # What is rendered costs nothing more: a tiny budget lets the no-op rerun through.
    assert render(project, "--budget", "0").code == 0


# --------------------------------------------------------------------------------------------
# 5. Secrets
# --------------------------------------------------------------------------------------------


def test_no_api_key_in_any_file_or_output(project: Project, live: Callable[..., Live]) -> None:
    emu = live()
    make_media(project.root)
    project.write(FULL_BOARD)
    runs = [render(project, "-v"), render(project, "-v", "--json")]
    assert [r.code for r in runs] == [0, 0], runs[0].err
    plan = run_cli("plan", "--live", str(project.file))
    runs.append(plan)
    files = [p for p in project.root.rglob("*") if p.is_file()]
    assert project.root / "storyboard.lock" in files
    assert any(p.name.startswith("journal.sqlite") for p in files)
    for key in (WS_KEY, QB_KEY):
        for path in files:
            assert key.encode() not in path.read_bytes(), path
        for run in runs:
            assert key not in run.out and key not in run.err
    assert emu.emu.auth_leaks == []
    # Keys went only to the API paths, never to the bucket or the CDN.
    for record in emu.emu.requests:
        assert record.has_authorization == (record.kind not in ("upload", "download")), record


# --------------------------------------------------------------------------------------------
# 6. The errors users see
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["WAVESPEED_API_KEY", "QINGBO_API_KEY"])
def test_missing_key_names_the_variable(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    monkeypatch.delenv(var)
    result = render(project)
    assert result.code == 2  # issue 7: found before the first submit, with every other problem
    assert f"{var} is not set" in result.err
    assert emu.emu.requests == []
    assert "Traceback" not in result.err


def test_local_file_for_qingbo_needs_a_url_or_the_wavespeed_key(
    project: Project, live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        "storyboard: 1\nshots:\n  - id: spin\n    model: skyreels-v4-fast\n"
        "    first_frame: refs/a.png\n    prompt: the kite spins\n    duration: 3\n"
    )
    emu = live()
    monkeypatch.delenv("WAVESPEED_API_KEY")
    result = render(project)
    assert result.code == 2  # issue 7: found before the first submit
    assert "spin" in result.err and "refs/a.png" in result.err
    assert "https://" in result.err and "WAVESPEED_API_KEY" in result.err
    assert [r for r in emu.emu.requests if r.method == "POST"] == []


@pytest.mark.parametrize(
    ("var", "label"), [("WAVESPEED_API_KEY", "WaveSpeed"), ("QINGBO_API_KEY", "Qingbo")]
)
def test_wrong_key_names_the_variable_not_the_key(
    project: Project,
    live: Callable[..., Live],
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    label: str,
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    wrong = "sk-wrong-key-Zz81Qq"
    monkeypatch.setenv(var, wrong)
    result = render(project, "--keep-going")
    assert result.code == 1
    assert f"{label} rejected the API key in {var} (HTTP 401" in result.err
    assert f"set {var} to a valid {label} API key" in result.err
    assert wrong not in result.err and wrong not in result.out
    assert emu.emu.tasks("wavespeed" if label == "WaveSpeed" else "qingbo") == []
    for path in project.root.rglob("*"):
        assert not path.is_file() or wrong.encode() not in path.read_bytes(), path


def test_failed_qingbo_task_shows_the_provider_message(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(PAIR_BOARD)
    emu = live()
    emu.emu.script(
        Fault(
            on="poll",
            provider="qingbo",
            fail_task_code="upstream_bad_request",
            fail_message="the prompt was refused by the content filter",
        )
    )
    result = render(project, "--keep-going")
    assert result.code == 1
    assert "error: sea: qingbo task task_" in result.err
    assert "the prompt was refused by the content filter" in result.err
    assert "upstream_bad_request" in result.err
    assert "hint: " in result.err
    assert "Traceback" not in result.err
    assert "1 shot(s) did not render: sea" in result.err


# --------------------------------------------------------------------------------------------
# 7. The lock file
# --------------------------------------------------------------------------------------------

LOCK_BOARD = (
    PAIR_BOARD
    + """\
  - id: dark
    model: skyreels-v4-fast
    extends: sea
    prompt: the lighthouse goes dark
    resolution: 480p
    duration: 3
  - id: end
    card: {text: "The end", duration: 1.0}
"""
)


def test_lock_is_sorted_and_rebuilds_an_old_checkout_for_free(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(LOCK_BOARD)
    emu = live()
    result = render(project)
    assert result.code == 0, result.err

    lock_file = project.root / "storyboard.lock"
    text = lock_file.read_text(encoding="utf-8")
    lock = json.loads(text)
    assert text == json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert lock["lock"] == 1 and lock["storyboard"] == "storyboard.yaml"
    assert sorted(lock["shots"]) == ["dark", "kite", "sea"]  # cards are not locked
    keys = keys_of(project)
    tasks = {t.body["prompt"]: t for t in emu.emu.tasks()}
    for shot_id, prompt in [
        ("kite", "a red kite over a field"),
        ("sea", "a lighthouse at dusk"),
        ("dark", "the lighthouse goes dark"),
    ]:
        (take,) = lock["shots"][shot_id]["takes"]
        assert take["key"] == keys[shot_id]
        assert take["prompt"] == prompt
        assert take["task_id"] == tasks[prompt].task_id
        assert take["provider"] == tasks[prompt].provider
        assert len(take["output"]) == 64 and take["duration"] == pytest.approx(1.0, abs=0.05)
    assert lock["shots"]["kite"]["takes"][0]["seed"] == 7
    # Qingbo reports what it charged: $0.068/s x 3 s, and $0.1275/s x 3 s with a video.
    assert lock["shots"]["sea"]["takes"][0]["cost"] == pytest.approx(0.204)
    assert lock["shots"]["dark"]["takes"][0]["cost"] == pytest.approx(0.3825)

    # Another checkout: the store's key index is gone, the objects and the lock remain.
    shutil.rmtree(project.root / ".storyboard" / "keys")
    shutil.rmtree(project.root / "renders")
    plan = project.plan("--live")
    assert {s["id"]: s["status"] for s in plan["shots"]} == dict.fromkeys(
        ["kite", "sea", "dark", "end"], "fresh"
    )
    assert plan["cost"] == 0
    mark = len(emu.emu.requests)
    again = render(project)
    assert again.code == 0, again.err
    assert "rendered 0 clip(s)" in again.err
    assert emu.requests_since(mark) == []
    assert cut_seconds(project) == pytest.approx(4.0, abs=0.15)
    assert lock_file.read_text(encoding="utf-8") == text
