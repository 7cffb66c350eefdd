"""Tests of the cutter: the engine that joins rendered clips into the final cut.

Source media are tiny (160x90 and 72x128, 12-24 fps, 1-2 s) and made once per session with
the ffmpeg binary of imageio-ffmpeg; every cut is 128x72 at 24 fps. None of them has the
cut's size, so everything here is normalised; clips that are copied as they are, and the
seams' pictures, are tested in tests/test_remux.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from storyboard import cutter, seams
from storyboard.cutter import CardSpec, CutSpec, Segment, cut
from storyboard.errors import MediaError, StitchError
from storyboard.media import ffmpeg as media_ffmpeg
from storyboard.media import probe as media_probe
from storyboard.media.probe import probe

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H, FPS = 128, 72, 24
SPEC = CutSpec(W, H, FPS)
RATE = 48_000


def ffmpeg(*args: str) -> bytes:
    done = subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def frames(path: Path, width: int = W, height: int = H) -> np.ndarray:
    """Every decoded frame of ``path`` as an (n, height, width, 3) uint8 array."""
    raw = ffmpeg(
        "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    )  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def audio(path: Path) -> np.ndarray:
    """The first audio stream of ``path`` decoded to 48 kHz stereo float samples."""
    raw = ffmpeg("-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2", "-ar", "48000", "-")
    return np.frombuffer(raw, np.float32).reshape(-1, 2)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


@dataclasses.dataclass(frozen=True)
class Media:
    bars: Path  # testsrc2 160x90, 24 fps, 2 s, 440 Hz audio
    ramp: Path  # grey ramp 160x90, 24 fps, 2 s: frame n has luma 16 + 4n; no audio
    red: Path  # solid red 160x90, 12 fps, 1.5 s, no audio
    blue: Path  # solid blue 160x90, 24 fps, 1 s, 660 Hz audio
    tall: Path  # solid green 72x128 (9:16), 24 fps, 1 s, no audio
    grey: Path  # solid dark grey 160x90, 24 fps, 1 s, tagged BT.709, no audio
    music: Path  # 0.5 s of 330 Hz (m4a), shorter than any cut
    long_music: Path  # 5 s of 330 Hz (m4a)
    broken: Path  # not a video


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p"]
    aac = ["-c:a", "aac", "-shortest"]
    names = ["bars.mp4", "ramp.mp4", "red.mp4", "blue.mp4", "tall.mp4", "grey.mp4"]
    m = Media(*(d / n for n in [*names, "music.m4a", "long.m4a", "broken.mp4"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=24:d=2",
           "-f", "lavfi", "-i", "sine=f=440:r=48000:d=2", *enc, *aac, str(m.bars))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "nullsrc=s=160x90:r=24:d=2,geq=lum='16+4*N':cb=128:cr=128",
           *enc, str(m.ramp))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x90:r=12:d=1.5", *enc, str(m.red))
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=160x90:r=24:d=1",
           "-f", "lavfi", "-i", "sine=f=660:r=44100:d=1", *enc, *aac, str(m.blue))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=c=0x00ff00:s=72x128:r=24:d=1", *enc, str(m.tall))
    ffmpeg("-f", "lavfi", "-i", "color=c=0x505050:s=160x90:r=24:d=1", *enc,
           "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
           str(m.grey))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "sine=f=330:r=48000:d=0.5", "-c:a", "aac", str(m.music))
    ffmpeg("-f", "lavfi", "-i", "sine=f=330:r=48000:d=5", "-c:a", "aac", str(m.long_music))
    m.broken.write_bytes(b"\x00not a video at all\x00" * 64)
    return m


@pytest.fixture(scope="session")
def shared_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by tests that reuse the same pieces (saves re-encoding)."""
    return tmp_path_factory.mktemp("work")


def clip(path: Path, **kw: Any) -> Segment:
    return Segment(path, None, key=f"digest-of-{path.name}", **kw)


@pytest.fixture
def ffmpeg_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records the arguments of every ffmpeg run the cutter makes (probes excepted)."""
    calls: list[list[str]] = []
    real = media_ffmpeg.run

    def spy(args: list[str], **kw: Any) -> media_ffmpeg.Done:
        if kw.get("loglevel", "error") is not None:  # a probe reads ffmpeg's full report
            calls.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(media_ffmpeg, "run", spy)
    return calls


# What the cutter calls, by the name a test forbids: encoding a piece, rendering a seam,
# probing a clip (its MP4 tables, or ffmpeg's report when it is no MP4).
_CALLEES = {
    "_normalise": [(seams, "encode")],
    "_render_seam": [(seams, "render_seam")],
    "_probe": [(media_probe, "probe_colour"), (media_probe, "streams")],
}


def forbid(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def fail(*args: object, **kw: object) -> None:
        raise AssertionError(f"{name} was called")

    for module, attribute in _CALLEES[name]:
        monkeypatch.setattr(module, attribute, fail)


# --------------------------------------------------------------------------------------------
# probe


def test_probe_reads_geometry_and_audio(media: Media) -> None:
    info = probe(media.bars)
    assert (info.width, info.height, info.fps, info.has_audio) == (160, 90, 24.0, True)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    red = probe(media.red)
    assert (red.fps, red.has_audio) == (12.0, False)
    assert (probe(media.tall).width, probe(media.tall).height) == (72, 128)


@pytest.mark.parametrize("name", ["broken", "missing", "music"])
def test_probe_rejects_what_is_not_a_video(media: Media, tmp_path: Path, name: str) -> None:
    path = {"broken": media.broken, "missing": tmp_path / "nope.mp4", "music": media.music}[name]
    with pytest.raises(MediaError):
        probe(path)


# --------------------------------------------------------------------------------------------
# hard cuts


def test_hard_cuts_join_by_stream_copy(
    media: Media, tmp_path: Path, ffmpeg_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid(monkeypatch, "_render_seam")
    out = tmp_path / "cut.mp4"
    segments = [clip(media.bars), clip(media.red), clip(media.blue)]
    progress: list[float] = []
    duration = cut(segments, SPEC, out, tmp_path / "work", progress=progress.append)

    assert duration == pytest.approx(4.5)
    info = probe(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (W, H, FPS, True)
    assert info.duration == pytest.approx(4.5, abs=0.03)
    assert len(frames(out)) == 108
    assert len(audio(out)) == 4.5 * RATE  # the edit list ends the sound with the picture
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    # None of these clips has the cut's size: each is normalised once, by one encoder run;
    # the sound of bars and blue is encoded (other rates, seams of silence at the joins).
    encodes = [c for c in ffmpeg_calls if "libx264" in c]
    assert len(encodes) == 3
    # (the pieces are encoded side by side: in any order)
    assert sorted(int(c[c.index("-frames:v") + 1]) for c in encodes) == [24, 36, 48]

    # Warm: pieces and sound are cached; the cut is written by copying samples, no ffmpeg.
    ffmpeg_calls.clear()
    forbid(monkeypatch, "_probe")
    again = tmp_path / "again.mp4"
    assert cut(segments, SPEC, again, tmp_path / "work") == pytest.approx(4.5)
    assert ffmpeg_calls == []
    assert again.read_bytes() == out.read_bytes()


def test_trim_window_is_frame_accurate(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "trim.mp4"
    duration = cut([clip(media.ramp, start=0.5, end=1.25)], SPEC, out, tmp_path / "w")
    assert duration == pytest.approx(0.75)
    got = frames(out)
    assert len(got) == 18
    source = frames(media.ramp, 160, 90)
    # Grey levels step by ~4.7 per frame, so a 2-level tolerance pins the exact frame.
    assert got[0].mean() == pytest.approx(source[12].mean(), abs=2)
    assert got[-1].mean() == pytest.approx(source[29].mean(), abs=2)


def test_trim_past_the_end_is_clamped_and_bad_starts_raise(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "t.mp4"
    assert cut([clip(media.blue, start=0.5, end=9.0)], SPEC, out, tmp_path / "w") == 0.5
    with pytest.raises(StitchError, match="past the end"):
        cut([clip(media.blue, start=3.0)], SPEC, out, tmp_path / "w")


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_crop_or_pad_a_portrait_clip(media: Media, tmp_path: Path, fit: str) -> None:
    out = tmp_path / f"{fit}.mp4"
    cut([clip(media.tall)], dataclasses.replace(SPEC, fit=fit), out, tmp_path / "w")
    frame = frames(out)[12].astype(int)
    green = np.array([0, 255, 0])
    assert np.abs(frame[H // 2, W // 2] - green).max() < 30  # centre: the clip
    edge = frame[H // 2, 4]
    if fit == "crop":
        assert np.abs(edge - green).max() < 30  # cropped: green fills the frame
    else:
        assert edge.max() < 30  # padded: black bars beside the picture
        # 72x128 scaled to 40x72: the bars are (128 - 40) / 2 = 44 px wide.
        row = frame[H // 2, :, 1]
        assert 38 <= int(np.argmax(row > 128)) <= 48


# --------------------------------------------------------------------------------------------
# transitions

# What the frame half-way through a red -> blue transition looks like, as
# (region of the frame, expected mean colour) pairs.
RED, BLUE, PURPLE, BLACK = (255, 0, 0), (0, 0, 255), (128, 0, 128), (0, 0, 0)
LEFT, RIGHT = (slice(None), slice(4, 24)), (slice(None), slice(W - 24, W - 4))
TOP, BOTTOM = (slice(4, 14), slice(None)), (slice(H - 14, H - 4), slice(None))
MIDDLE = {
    "crossfade": [((slice(None), slice(None)), PURPLE)],
    "fade": [((slice(None), slice(None)), BLACK)],
    "wipe-left": [(LEFT, RED), (RIGHT, BLUE)],
    "wipe-right": [(LEFT, BLUE), (RIGHT, RED)],
    "wipe-up": [(TOP, RED), (BOTTOM, BLUE)],
    "wipe-down": [(TOP, BLUE), (BOTTOM, RED)],
    "slide-left": [(LEFT, RED), (RIGHT, BLUE)],
    "slide-right": [(LEFT, BLUE), (RIGHT, RED)],
    "slide-up": [(TOP, RED), (BOTTOM, BLUE)],
    "slide-down": [(TOP, BLUE), (BOTTOM, RED)],
}


@pytest.mark.parametrize("transition", sorted(MIDDLE))
def test_transition_overlaps_and_mixes(
    media: Media, tmp_path: Path, shared_work: Path, transition: str
) -> None:
    out = tmp_path / "t.mp4"
    segments = [
        clip(media.red, transition=transition, transition_seconds=0.5),
        clip(media.blue),
    ]
    duration = cut(segments, SPEC, out, shared_work)
    assert duration == pytest.approx(1.5 + 1.0 - 0.5)
    got = frames(out)
    assert len(got) == 48
    assert len(audio(out)) == pytest.approx(2.0 * RATE, abs=1100)
    # The seam covers frames 24..35; frame 24 + 6 is half-way.
    middle = got[30].astype(float)
    for region, colour in MIDDLE[transition]:
        mean = middle[region].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colour).max() < 30, (transition, region, mean)
    # Outside the seam the pictures are untouched.
    assert np.abs(got[20].astype(float).mean(axis=(0, 1)) - RED).max() < 10
    assert np.abs(got[40].astype(float).mean(axis=(0, 1)) - BLUE).max() < 10
    # The whole file decodes without a single error (pieces and seams share their SPS).
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


def test_crossfade_mixes_the_audio(media: Media, tmp_path: Path, shared_work: Path) -> None:
    out = tmp_path / "x.mp4"
    segments = [
        clip(media.blue, transition="crossfade", transition_seconds=0.5),
        clip(media.red),
    ]
    cut(segments, SPEC, out, shared_work)
    samples = audio(out)
    # blue has a tone, red is silent: full level before the seam, fading inside it (the
    # window is where A's gain falls from 3/4 to 1/2), silent after it.
    before = rms(samples[: RATE // 4])
    assert before > 0.05
    assert 0.5 * before < rms(samples[RATE * 5 // 8 : RATE * 6 // 8]) < 0.8 * before
    assert rms(samples[RATE * 9 // 8 :]) < 0.01 * before


def test_seams_keep_the_brightness_of_the_bodies(media: Media, tmp_path: Path) -> None:
    # A grey clip crossfaded into itself: every seam frame must match the bodies around it
    # (a colour round trip that is off by one level shows as a flicker at each seam).
    out = tmp_path / "grey.mp4"
    grey = clip(media.grey, transition="crossfade", transition_seconds=0.5)
    cut([grey, grey, clip(media.grey)], SPEC, out, tmp_path / "w")
    means = frames(out).reshape(-1, W * H * 3).mean(axis=1)
    assert len(means) == 48
    assert np.ptp(means) < 0.6, means


def test_a_transition_longer_than_a_neighbour_is_clamped(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "c.mp4"
    segments = [clip(media.bars, transition="crossfade", transition_seconds=5), clip(media.blue)]
    # blue lasts 1 s, so the crossfade is clamped to 1 s and swallows it whole.
    assert cut(segments, SPEC, out, tmp_path / "w") == pytest.approx(2.0)
    assert len(frames(out)) == 48


def test_clamping_is_left_to_right() -> None:
    # 10, 4 and 10 frames long; 6 and 6 frames wanted: the first gets 4 (all of B), the
    # second gets what is left of B (nothing) and becomes a cut.
    assert cutter._clamp([6, 6], [10, 4, 10]) == [4, 0]
    assert cutter._clamp([2, 3], [10, 6, 10]) == [2, 3]
    assert cutter._clamp([3, 5], [10, 6, 10]) == [3, 3]
    assert cutter._clamp([0, 9], [1, 1, 1]) == [0, 1]


# --------------------------------------------------------------------------------------------
# cards and soundtrack


def test_card_is_drawn_with_its_colours(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "card.mp4"
    card = CardSpec("Chapter one: the long night", 1.0, background="#203080", color="yellow")
    segments = [Segment(None, card, key="card-1"), clip(media.blue)]
    assert cut(segments, SPEC, out, tmp_path / "w") == pytest.approx(2.0)
    got = frames(out)
    assert len(got) == 48
    frame = got[12].astype(int)
    assert np.abs(frame[2, 2] - (0x20, 0x30, 0x80)).max() < 12  # the background
    text = np.abs(frame - (0x20, 0x30, 0x80)).max(axis=-1) > 80
    assert text.sum() > 10  # the text is drawn ...
    red, green, blue = frame[text].mean(axis=0)
    # ... in yellow (at 8 px, 4:2:0 chroma smears it into the blue: compare with the ground)
    assert red > 0x20 + 60 and green > 0x30 + 60 and blue < 0x80 + 20
    assert rms(audio(out)[: RATE // 2]) < 1e-3  # cards are silent


def test_soundtrack_is_looped_faded_and_cut_to_the_picture(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "music.mp4"
    spec = dataclasses.replace(SPEC, soundtrack=media.music, volume=0.5, fade_out=0.5)
    duration = cut([clip(media.red), clip(media.ramp)], spec, out, tmp_path / "w")
    assert duration == pytest.approx(3.5)
    samples = audio(out)
    assert len(samples) == pytest.approx(3.5 * RATE, abs=1100)
    # The 0.5 s soundtrack plays throughout (looped), at half volume, and fades out over the
    # last 0.5 s (the clips are silent, so all that is heard is the soundtrack).
    full = rms(audio(media.music))
    level = rms(samples[int(2.0 * RATE) : int(2.4 * RATE)])
    assert level == pytest.approx(0.5 * full, rel=0.1)
    assert rms(samples[int(0.1 * RATE) : int(0.3 * RATE)]) == pytest.approx(level, rel=0.1)
    assert rms(samples[int(3.2 * RATE) : int(3.3 * RATE)]) < 0.7 * level
    assert rms(samples[-RATE // 40 :]) < 0.15 * level


def test_long_soundtrack_is_cut_to_the_picture(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "music.mp4"
    spec = dataclasses.replace(SPEC, soundtrack=media.long_music)
    assert cut([clip(media.blue, end=0.75)], spec, out, tmp_path / "w") == pytest.approx(0.75)
    assert len(audio(out)) == pytest.approx(0.75 * RATE, abs=1100)
    assert probe(out).duration == pytest.approx(0.75, abs=0.03)


# --------------------------------------------------------------------------------------------
# cache, atomicity, errors


def test_cache_is_reused_and_follows_the_edit(
    media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, out = tmp_path / "work", tmp_path / "out.mp4"
    segments = [
        clip(media.bars, transition="wipe-up", transition_seconds=0.25),
        clip(media.blue),
    ]
    cut(segments, SPEC, out, work)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert before and not list((work / "tmp").iterdir())

    with monkeypatch.context() as patch:
        forbid(patch, "_normalise")
        forbid(patch, "_render_seam")
        forbid(patch, "_probe")
        cut(segments, SPEC, tmp_path / "again.mp4", work)
    after = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert after == before
    assert (tmp_path / "again.mp4").read_bytes() == out.read_bytes()

    # Changing only the transition type keeps every piece and renders one new seam.
    with monkeypatch.context() as patch:
        forbid(patch, "_normalise")
        changed = [dataclasses.replace(segments[0], transition="slide-down"), segments[1]]
        cut(changed, SPEC, out, work)
    assert len(list((work / "seams").iterdir())) == 2


def test_output_is_replaced_atomically(media: Media, tmp_path: Path) -> None:
    folder = tmp_path / "final"
    folder.mkdir()
    out = folder / "film.mp4"
    out.write_bytes(b"old cut")
    with pytest.raises(StitchError):
        cut([clip(media.blue), Segment(media.broken, None)], SPEC, out, tmp_path / "w")
    assert out.read_bytes() == b"old cut"  # a failed cut leaves the old file alone
    cut([clip(media.blue)], SPEC, out, tmp_path / "w")
    assert [p.name for p in folder.iterdir()] == ["film.mp4"]  # no temp file left behind
    assert probe(out).duration == pytest.approx(1.0, abs=0.03)


def test_broken_input_raises_stitch_error_with_ffmpeg_output(media: Media, tmp_path: Path) -> None:
    with pytest.raises(StitchError) as caught:
        cut([Segment(media.broken, None)], SPEC, tmp_path / "o.mp4", tmp_path / "w")
    assert "broken.mp4" in str(caught.value)
    assert "Invalid data" in str(caught.value)  # the tail of ffmpeg's stderr


def test_output_is_deterministic(media: Media, tmp_path: Path) -> None:
    segments = [clip(media.red, transition="crossfade", transition_seconds=0.25), clip(media.bars)]
    cut(segments, SPEC, tmp_path / "a.mp4", tmp_path / "w1")
    cut(segments, SPEC, tmp_path / "b.mp4", tmp_path / "w2")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: dataclasses.replace(s, transition="spin"), "unknown transition"),
        (lambda s: dataclasses.replace(s, card=CardSpec("x", 1)), "exactly one"),
        (lambda s: dataclasses.replace(s, start=1.0, end=0.5), "not after start"),
    ],
)
def test_invalid_segments_raise(
    media: Media, tmp_path: Path, change: Callable[[Segment], Segment], message: str
) -> None:
    with pytest.raises(StitchError, match=message):
        cut([change(clip(media.blue))], SPEC, tmp_path / "o.mp4", tmp_path / "w")


def test_invalid_spec_raises(media: Media, tmp_path: Path) -> None:
    with pytest.raises(StitchError, match="even"):
        cut([clip(media.blue)], CutSpec(127, 72, 24), tmp_path / "o.mp4", tmp_path / "w")
    with pytest.raises(StitchError, match="no segments"):
        cut([], SPEC, tmp_path / "o.mp4", tmp_path / "w")


def test_jobs_run_within_the_cores_and_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from storyboard.workfolder import run_jobs

    monkeypatch.setattr("os.cpu_count", lambda: 3)
    lock = threading.Lock()
    now = {"jobs": 0, "memory": 0}
    seen = {"jobs": 0, "memory": 0, "alone": True}
    finished: list[int] = []

    def job(memory: int) -> Callable[[], None]:
        def work() -> None:
            with lock:
                now["jobs"] += 1
                now["memory"] += min(memory, 100)
                seen["jobs"] = max(seen["jobs"], now["jobs"])
                seen["memory"] = max(seen["memory"], now["memory"])
                if memory > 100 and now["jobs"] > 1:
                    seen["alone"] = False
            time.sleep(0.02)
            with lock:
                now["jobs"] -= 1
                now["memory"] -= min(memory, 100)
                finished.append(memory)

        return work

    memories = [60, 60, 10, 10, 10, 10, 500, 10, 10]
    run_jobs([(m, job(m)) for m in memories], lambda: None, 100)
    assert sorted(finished) == sorted(memories)
    assert seen["jobs"] == 3  # three cores: three at once, small jobs beside a large one
    assert seen["memory"] <= 100  # but never more than the budget
    assert seen["alone"]  # a job larger than the budget runs alone

    def broken() -> None:
        raise StitchError("ffmpeg failed")

    with pytest.raises(StitchError, match="ffmpeg failed"):
        run_jobs([(10, job(10)), (10, broken)], lambda: None, 100)
