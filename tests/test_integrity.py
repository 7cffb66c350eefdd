"""Nothing unverified enters a cut (issue 8 item 5).

The corpus: a stored clip corrupted in place with its size and mtime restored (``os.utime``)
must never be stitched or uploaded; it is a cache miss that the next render repairs for free
where it can (the preview renders it again, a journalled live task is downloaded again). A
provider output much shorter than asked fails the take with the provider, the task id and
both lengths, and the journal keeps the task as failed (only ``--force`` buys it again).
Live cases run the provider emulator on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Project, run_cli
from hypothesis import given
from hypothesis import strategies as st

from storyboard import cache as cache_module
from storyboard.cache import Store
from storyboard.errors import ClipCorrupt, UsageError
from storyboard.journal import Journal
from storyboard.plan import make_plan
from storyboard.providers.base import Job
from storyboard.render import MIN_OUTPUT_SHARE, min_output_share, short_output
from storyboard.testing.emulator import Emulator, EmulatorServer
from storyboard.validate import load_storyboard

WS_KEY = "ws-integrity-key-Hd82Kq0Lzx"
QB_KEY = "qb-integrity-key-Pw47Nb3Ycm"


def corrupt_in_place(path: Path) -> None:
    """Flip bytes in the middle of ``path``, keeping its size and mtime (racy-git style)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_of(project: Project) -> Store:
    return Store.for_storyboard(project.file)


# --------------------------------------------------------------------------------------------
# The store: stat-only lookups, full-read verification, a mismatch is a cache miss
# --------------------------------------------------------------------------------------------


def _put(store: Store, tmp: Path, key: str, data: bytes) -> Path:
    clip = tmp / f"{key}.mp4"
    clip.write_bytes(data)
    return store.put(key, clip, seconds=1.0, shot="a", take=1).path


def test_verify_drops_a_clip_changed_in_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    key = "ab" * 32
    obj = _put(store, tmp_path, key, b"clip bytes " * 1000)
    assert store.verify(key) is not None
    store.save()  # the digest memo, as every command saves it
    fresh = Store(tmp_path / "store", tmp_path / "storyboard.yaml")  # a later process
    corrupt_in_place(obj)
    # The stat-only lookup cannot see it (that is what keeps a no-op plan fast) ...
    entry = fresh.lookup(key)
    assert entry is not None
    # ... the full read does, and the clip becomes a cache miss.
    assert not fresh.verified(entry)
    assert not obj.exists()
    assert fresh.lookup(key) is None
    assert fresh.verify(key) is None


def test_verify_reads_each_object_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    key = "cd" * 32
    _put(store, tmp_path, key, b"x" * 5000)
    reads: list[Path] = []
    real = cache_module.sha256_file

    def counting(path: Path) -> str:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(cache_module, "sha256_file", counting)
    later = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    assert later.verify(key) is not None
    assert later.verify(key) is not None
    assert len(reads) == 1
    # A clip this process just stored counts as read.
    store.verify(key)
    assert len(reads) == 1


def test_put_replaces_a_corrupt_object_with_the_bytes_it_hashed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    data = b"the real clip " * 500
    obj = _put(store, tmp_path, "ef" * 32, data)
    corrupt_in_place(obj)
    later = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    again = _put(later, tmp_path, "01" * 32, data)  # the same bytes, from another key
    assert again == obj
    assert obj.read_bytes() == data


# --------------------------------------------------------------------------------------------
# Preview: a corrupt clip is rendered again for free, never stitched
# --------------------------------------------------------------------------------------------

PREVIEW_BOARD = """\
storyboard: 1
title: integrity
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 12
shots:
  - id: a
    first_frame: refs/a.png
    prompt: a red kite
  - id: b
    first_frame: refs/b.png
    prompt: a blue door
"""


def _clip_of(project: Project, shot: str, *extra: str) -> Path:
    for s in project.plan(*extra)["shots"]:
        if s["id"] == shot:
            assert s["output"], s
            return Path(s["output"])
    raise KeyError(shot)


@pytest.mark.slow
def test_preview_stitch_refuses_a_corrupt_clip_and_render_repairs_it(project: Project) -> None:
    project.write(PREVIEW_BOARD)
    first = run_cli("render", str(project.file))
    assert first.code == 0, first.err
    clip = _clip_of(project, "a")
    digest = clip.stem
    corrupt_in_place(clip)

    # An edit-only change makes the cut stale: `stitch` verifies, finds it, stitches nothing.
    project.edit("prompt: a red kite", "prompt: a red kite\n    trim: {start: 0.5}")
    cut = project.root / "renders" / "storyboard.preview.mp4"
    cut_before = cut.read_bytes()
    result = run_cli("stitch", str(project.file))
    assert result.code == 1
    assert "the stored clip of a no longer matches its digest" in result.err
    assert "storyboard render storyboard.yaml" in result.err  # the hint: the one next command
    assert cut.read_bytes() == cut_before
    assert not clip.exists()

    # The plan sees a cache miss (free in preview) ...
    shots = {s["id"]: s for s in project.plan()["shots"]}
    assert shots["a"]["status"] == "stale"
    assert shots["a"]["cost"] == 0.0
    assert shots["b"]["status"] == "fresh"
    # ... and the render renders it again and stitches the good clip.
    again = run_cli("render", str(project.file))
    assert again.code == 0, again.err
    assert "rendered 1 clip(s)" in again.err
    assert sha256(clip) == digest


@pytest.mark.slow
def test_render_with_a_stale_cut_repairs_a_corrupt_clip_in_the_same_run(project: Project) -> None:
    project.write(PREVIEW_BOARD)
    assert run_cli("render", str(project.file)).code == 0
    clip = _clip_of(project, "b")
    corrupt_in_place(clip)
    project.edit("prompt: a blue door", "prompt: a blue door\n    trim: {end: 2.0}")
    result = run_cli("render", str(project.file))
    assert result.code == 0, result.err
    assert "rendered 1 clip(s), 1 up to date" in result.err
    assert sha256(clip) == clip.stem


@pytest.mark.slow
def test_noop_render_reads_no_clip(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write(PREVIEW_BOARD)
    assert run_cli("render", str(project.file)).code == 0
    reads: list[Path] = []
    real = cache_module.sha256_file

    def counting(path: Path) -> str:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(cache_module, "sha256_file", counting)
    noop = run_cli("render", str(project.file))
    assert noop.code == 0, noop.err
    assert reads == []
    # A stale cut reads each clip once, though render and stitch both verify.
    project.edit("prompt: a red kite", "prompt: a red kite\n    trim: {start: 0.25}")
    assert run_cli("render", str(project.file)).code == 0
    clips = {_clip_of(project, "a"), _clip_of(project, "b")}
    assert sorted(map(str, reads)) == sorted(map(str, clips))


# --------------------------------------------------------------------------------------------
# Short outputs: the pure rule (Hypothesis) and the take through the emulator
# --------------------------------------------------------------------------------------------

seconds = st.floats(min_value=1.0, max_value=30.0, allow_nan=False)


@given(actual=st.floats(min_value=0.0, max_value=60.0, allow_nan=False), asked=seconds)
def test_short_output_of_a_plain_take_is_its_share_of_the_asked_length(
    actual: float, asked: float
) -> None:
    short = short_output(actual, asked, None, "new")
    assert (short is not None) == (actual < MIN_OUTPUT_SHARE * asked - 1e-6)
    if short is not None:
        assert short == actual


@given(
    asked=seconds,
    upstream=st.one_of(st.none(), st.floats(min_value=2.0, max_value=30.0)),
    extra=st.floats(min_value=0.0, max_value=1 / 24),  # V3 writes one frame more
    with_source=st.booleans(),
    registry=st.sampled_from(["new", "source+new"]),
)
def test_a_full_length_output_is_never_short(
    asked: float, upstream: float | None, extra: float, with_source: bool, registry: str
) -> None:
    actual = asked + extra + (upstream if with_source and upstream is not None else 0.0)
    assert short_output(actual, asked, upstream, registry) is None


@given(
    asked=st.floats(min_value=2.0, max_value=15.0),
    margin=st.floats(min_value=0.4, max_value=15.0),
    share=st.floats(min_value=0.0, max_value=0.7),
)
def test_an_extension_with_little_new_footage_after_its_source_is_short(
    asked: float, margin: float, share: float
) -> None:
    upstream = asked + margin  # long enough that the registry's "source+new" is unambiguous
    actual = upstream + share * asked
    short = short_output(actual, asked, upstream, "source+new")
    assert short is not None
    assert short == pytest.approx(share * asked, abs=1e-6)


def test_min_output_share_comes_from_the_environment() -> None:
    assert min_output_share({}) == MIN_OUTPUT_SHARE
    assert min_output_share({"STORYBOARD_MIN_OUTPUT_SHARE": "0"}) == 0.0
    for bad in ("-0.1", "1.5", "lots", "nan"):
        with pytest.raises(UsageError, match="STORYBOARD_MIN_OUTPUT_SHARE"):
            min_output_share({"STORYBOARD_MIN_OUTPUT_SHARE": bad})


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """Serve an emulator (options as for :class:`Emulator`) on loopback; export its address."""
    servers: list[EmulatorServer] = []
    emulators: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        options.setdefault("scale", 1 / 16)
        options.setdefault("polls_to_start", 1)
        options.setdefault("polls_to_finish", 1)
        emu = Emulator(wavespeed_keys=(WS_KEY,), qingbo_keys=(QB_KEY,), **options)
        servers.append(EmulatorServer(emu))
        emulators.append(emu)
        monkeypatch.setenv("WAVESPEED_API_KEY", WS_KEY)
        monkeypatch.setenv("QINGBO_API_KEY", QB_KEY)
        monkeypatch.setenv("WAVESPEED_BASE_URL", servers[-1].url)
        monkeypatch.setenv("QINGBO_BASE_URL", servers[-1].url)
        monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.02")
        monkeypatch.delenv("STORYBOARD_MIN_OUTPUT_SHARE", raising=False)
        return emu

    yield start
    for server in servers:
        server.close()
    for emu in emulators:
        assert emu.internal_errors == []


V1_BOARD = """\
storyboard: 1
title: short output
output: {resolution: 480p, fps: 12}
shots:
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
"""


def _submits(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.kind == "submit")


@pytest.mark.slow
def test_a_short_live_output_fails_the_take_and_is_not_bought_again(
    project: Project, live: Callable[..., Emulator]
) -> None:
    emu = live(max_seconds=1.0)  # the provider serves 1.0 s where V1 makes ~4.04 s
    project.write(V1_BOARD)
    first = run_cli("render", "--live", str(project.file))
    assert first.code == 1
    task_id = emu.submissions[0].task_id
    assert task_id
    line = next(x for x in first.err.splitlines() if "too short" in x)
    assert f"wavespeed task {task_id}" in line
    assert "1.00 s" in line and "4.04 s was asked" in line
    assert "hint:" in first.err and "--force kite" in first.err
    assert not (project.root / "renders" / "storyboard.mp4").exists()

    key = project.plan("--live")["shots"][0]["keys"][0]
    journal = Journal(store_of(project).root / "journal.sqlite")
    try:
        entry = journal.get(key)
    finally:
        journal.close()
    assert entry is not None and entry.state == "failed" and entry.task_id == task_id
    assert entry.error is not None and "too short" in entry.error
    assert store_of(project).lookup(key) is None  # nothing short was stored

    # The plan and a rerun buy nothing: the task is failed, --force is the way.
    shot = project.plan("--live")["shots"][0]
    assert shot["cost"] == 0.0 and "--force kite" in shot["reason"]
    rerun = run_cli("render", "--live", str(project.file))
    assert rerun.code == 1
    assert _submits(emu) == 1
    assert "--force kite" in rerun.err
    forced = run_cli("render", "--live", "--force", "kite", str(project.file))
    assert forced.code == 1  # still short from this emulator, but bought once more
    assert _submits(emu) == 2


V4_BOARD = """\
storyboard: 1
title: re-download
output: {resolution: 480p, fps: 12}
shots:
  - id: sea
    model: skyreels-v4-fast
    prompt: the sea at dawn
    resolution: 480p
    duration: 3
"""


@pytest.mark.slow
def test_a_corrupt_live_clip_is_downloaded_again_not_bought_again(
    project: Project, live: Callable[..., Emulator]
) -> None:
    emu = live()  # real lengths: a 3 s V4 output passes the short-output check
    project.write(V4_BOARD)
    first = run_cli("render", "--live", str(project.file))
    assert first.code == 0, first.err
    clip = _clip_of(project, "sea", "--live")
    digest = clip.stem
    downloads = sum(1 for r in emu.requests if r.kind == "download")

    corrupt_in_place(clip)
    project.edit("duration: 3", "duration: 3\n    trim: {start: 0.5}")
    stitched = run_cli("stitch", "--live", str(project.file))
    assert stitched.code == 1
    assert "the stored clip of sea no longer matches its digest" in stitched.err
    assert "storyboard plan storyboard.yaml --live" in stitched.err

    shot = project.plan("--live")["shots"][0]
    assert shot["status"] == "stale" and shot["cost"] == 0.0  # the journal still has the task
    again = run_cli("render", "--live", str(project.file))
    assert again.code == 0, again.err
    assert _submits(emu) == 1  # downloaded again, never bought again
    assert sum(1 for r in emu.requests if r.kind == "download") == downloads + 1
    assert sha256(clip) == digest
    assert "spent $0.00 on 0 takes" in again.err

    # With no journal (say, the clip came from a lock made elsewhere) nothing is free: the
    # plan says what rendering it again costs, before anything is spent.
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (store_of(project).root / name).unlink(missing_ok=True)
    corrupt_in_place(clip)
    project.edit("trim: {start: 0.5}", "trim: {start: 0.25}")
    assert run_cli("stitch", "--live", str(project.file)).code == 1
    shot = project.plan("--live")["shots"][0]
    assert shot["status"] == "stale" and shot["cost"] == pytest.approx(0.204)


EXTEND_BOARD = """\
storyboard: 1
title: upload
output: {resolution: 480p, fps: 12}
shots:
  - id: gen
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
  - id: ext
    model: skyreels-v4-fast
    extends: gen
    prompt: the lighthouse goes dark
    resolution: 480p
    duration: 3
"""


@pytest.mark.slow
def test_a_corrupt_upstream_clip_is_never_uploaded(
    project: Project, live: Callable[..., Emulator]
) -> None:
    emu = live()
    project.write(EXTEND_BOARD)
    assert run_cli("render", "--live", "--only", "gen", str(project.file)).code == 0
    store = store_of(project)
    board = load_storyboard(project.file)
    plan = make_plan(board, store, backend="live")
    gen, ext = plan.shot("gen"), plan.shot("ext")
    assert gen.selected is not None and gen.selected.clip is not None
    assert ext.selected is not None and ext.shot.spec is not None
    clip = gen.selected.clip.path
    # The provider's link of `gen` has expired, so `ext` must upload the stored clip.
    with sqlite3.connect(store.root / "journal.sqlite") as db:
        db.execute("DELETE FROM outputs")
    corrupt_in_place(clip)

    spec = ext.shot.spec
    width, height = spec.size(ext.shot.resolution, ext.shot.aspect_ratio)
    job = Job(
        shot=ext.shot,
        spec=spec,
        take=1,
        key=ext.selected.key,
        seed=None,
        seconds=ext.seconds,
        width=width,
        height=height,
        fps=spec.fps,
        upstream=clip,
        upstream_mode="extends",
    )
    from storyboard.live import LiveSession

    journal = Journal(store.root / "journal.sqlite")
    session = LiveSession(store, journal, board_file=project.file)
    mark = len(emu.requests)

    async def prepare() -> None:
        try:
            await session.prepare(job, gen.selected.key if gen.selected else None, project.root)
        finally:
            await session.aclose()

    try:
        with pytest.raises(ClipCorrupt, match="the stored clip of gen no longer matches"):
            anyio.run(prepare)
    finally:
        journal.close()
    assert not [r for r in emu.requests[mark:] if r.kind in ("upload", "submit")]
    assert store.lookup(gen.selected.key) is None  # a cache miss now

    # The CLI brings `gen` back (downloaded again, not bought) and renders `ext`; whatever
    # it uploads is the good clip.
    result = run_cli("render", "--live", str(project.file))
    assert result.code == 0, result.err
    assert _submits(emu) == 2  # gen once, ext once
    assert sha256(clip) == clip.stem
    for put in [r for r in emu.requests if r.kind == "upload" and r.method == "PUT"]:
        token, name = put.path.split("?", 1)[0].split("/")[2:4]
        uploaded = emu.file_bytes(f"/files/wavespeed/media/{token}/{name}")
        assert hashlib.sha256(uploaded).hexdigest() == clip.stem
