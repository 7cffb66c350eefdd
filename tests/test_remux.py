"""The cut copies what already conforms, and composites seams with ffmpeg's own filters.

Clips here are made with the cut's own encoder settings (H.264 High without B-frames,
BT.709 tags, 128x72 at 24 fps, AAC-LC 48 kHz stereo), so that they conform; variants that
differ in one respect (size, rate, colour tags, B-frames, sound) must still be normalised.
Every test reads what the cut really holds: packets (``-c copy -f framemd5``), decoded
frames and decoded samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from storyboard import cutter
from storyboard.cutter import CardSpec, CutSpec, Segment, cut, layout
from storyboard.media import codecs, mp4
from storyboard.media import ffmpeg as media_ffmpeg
from storyboard.media import probe as media_probe
from storyboard.media.encoding import samples

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H, FPS, RATE = 128, 72, 24, 48_000
SPEC = CutSpec(W, H, FPS)
TAGS = "format=yuv420p,setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"
# The cut's own video settings (storyboard.media.encoding), with keyframes every `gop` frames.
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-bf", "0"]  # fmt: skip
AAC = ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]


def ffmpeg(*args: str) -> bytes:
    done = subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def make(
    path: Path,
    picture: str,
    seconds: float,
    *,
    gop: int = 6,
    sound: str | None = "sine=f=440:r=48000",
    size: str = f"{W}x{H}",
    rate: int = FPS,
    video: list[str] | None = None,
    audio: list[str] | None = None,
    tags: bool = True,
) -> Path:
    """A clip: ``picture`` (a lavfi source without size/rate), encoded like the cut's pieces."""
    args = ["-f", "lavfi", "-i", f"{picture}=s={size}:r={rate}:d={seconds}"]
    if sound is not None:
        args += ["-f", "lavfi", "-i", f"{sound}:d={seconds}"]
    args += ["-vf", f"{TAGS},setsar=1" if tags else "format=yuv420p,setsar=1"]
    args += [*(video if video is not None else X264), "-g", str(gop)]
    if sound is not None:
        args += [*(audio if audio is not None else AAC), "-shortest"]
    ffmpeg(*args, str(path))
    return path


def packets(path: Path, stream: str = "v") -> list[str]:
    """The md5 of every packet of the first ``stream`` ("v" or "a") of a file, in order."""
    out = ffmpeg("-i", str(path), "-map", f"0:{stream}:0", "-c", "copy", "-f", "framemd5", "-")
    # stream, dts, pts, duration, size, md5[, side data count, md5 of the side data]
    return [line.split(",")[5].strip() for line in out.decode().splitlines() if line[:1] != "#"]


def raw_packets(path: Path, handler: str) -> list[str]:
    """The md5 of every sample of a track as the file stores it (edit lists ignored)."""
    track = mp4.read(path).first(handler)
    assert track is not None
    with path.open("rb") as f:
        out = []
        for offset, size in zip(track.offsets, track.sizes, strict=True):
            f.seek(offset)
            out.append(hashlib.md5(f.read(size)).hexdigest())
    return out


def frames(path: Path) -> np.ndarray:
    raw = ffmpeg("-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def frames_yuv(path: Path) -> np.ndarray:
    """The pictures as stored: planar 4:2:0, each as one row of bytes (Y, then U, then V)."""
    raw = ffmpeg("-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, W * H * 3 // 2)


def sound(path: Path) -> np.ndarray:
    """The first audio stream, decoded (edit list applied) to 48 kHz stereo floats."""
    raw = ffmpeg("-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2", "-ar", "48000", "-")
    return np.frombuffer(raw, np.float32).reshape(-1, 2)


def clip(path: Path, **kw: Any) -> Segment:
    return Segment(path, None, key=hashlib.sha256(path.read_bytes()).hexdigest(), **kw)


@dataclasses.dataclass(frozen=True)
class Clips:
    bars: Path  # conforming: testsrc2, 2 s, keyframes every 6 frames, 440 Hz
    grid: Path  # conforming: smptebars, 1.5 s, keyframes every 12 frames, 660 Hz
    wide: Path  # 160x90
    fps30: Path  # 30 fps
    untagged: Path  # no colour description
    bframes: Path  # x264 defaults: B-frames
    mono: Path  # conforming picture, AAC 44.1 kHz mono
    silent: Path  # conforming picture, no sound
    other: Path  # conforming, but encoded at crf 30: its PPS differs under the same id


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    d = tmp_path_factory.mktemp("remux")
    bars = make(d / "bars.mp4", "testsrc2", 2)
    return Clips(
        bars=bars,
        grid=make(d / "grid.mp4", "smptebars", 1.5, gop=12, sound="sine=f=660:r=48000"),
        wide=make(d / "wide.mp4", "testsrc2", 1, size="160x90"),
        fps30=make(d / "fps30.mp4", "testsrc2", 1, rate=30),
        untagged=make(d / "untagged.mp4", "testsrc2", 1, tags=False),
        bframes=make(
            d / "bframes.mp4", "testsrc2", 1, video=["-c:v", "libx264", "-pix_fmt", "yuv420p"]
        ),
        mono=make(d / "mono.mp4", "testsrc2", 1, audio=["-c:a", "aac", "-ar", "44100", "-ac", "1"]),
        silent=make(d / "silent.mp4", "testsrc2", 1, sound=None),
        other=make(d / "other.mp4", "smptebars", 1, video=[*X264[:5], "30", *X264[6:]]),
    )


@pytest.fixture
def encoder_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The arguments of every ffmpeg run that encodes something."""
    runs: list[list[str]] = []
    real = media_ffmpeg.run

    def spy(args: list[str], **kw: Any) -> media_ffmpeg.Done:
        if "-c:v" in args or "-c:a" in args:
            runs.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(media_ffmpeg, "run", spy)
    return runs


def video_runs(runs: list[list[str]]) -> list[int]:
    """How many frames each video encoder run made."""
    return [int(r[r.index("-frames:v") + 1]) for r in runs if "libx264" in r]


# --------------------------------------------------------------------------------------------
# what conforms is copied


def test_the_clips_are_what_the_tests_say(clips: Clips) -> None:
    facts = {name: media_probe.streams(getattr(clips, name)) for name in Clips.__annotations__}
    for name in ("bars", "grid", "mono", "silent", "other"):
        found = facts[name]
        assert found is not None and found.video.plain, name
    bars = facts["bars"]
    assert bars is not None and bars.video.keyframes == tuple(range(0, 48, 6))
    assert bars.audio is not None and bars.audio.plain and bars.audio.sample_rate == RATE
    assert bars.audio.channels == 2 and bars.audio.priming == 1024
    for name in ("untagged", "bframes"):
        found = facts[name]
        assert found is not None and not found.video.plain, name
    wide = facts["wide"]
    assert wide is not None and (wide.video.width, wide.video.height) == (160, 90)
    other, grid = facts["other"], facts["grid"]
    assert other is not None and grid is not None
    assert (other.video.sps_id, other.video.pps_id) == (grid.video.sps_id, grid.video.pps_id)
    assert other.video.pps != grid.video.pps


def test_conforming_clips_are_copied_packet_for_packet(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    assert cut([clip(clips.bars), clip(clips.grid)], SPEC, out, tmp_path / "w") == 3.5
    assert encoder_runs == []  # nothing encoded: neither pictures nor sound
    assert packets(out) == packets(clips.bars) + packets(clips.grid)
    copied = set(raw_packets(clips.bars, "soun")) | set(raw_packets(clips.grid, "soun"))
    assert set(packets(out, "a")) <= copied  # all of them the clips' own
    assert len(frames(out)) == 84
    assert len(sound(out)) == samples(84, FPS)  # to the sample: the edit list ends it
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


def test_a_trim_that_starts_on_a_keyframe_is_copied(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    cut([clip(clips.bars, start=0.5, end=1.75)], SPEC, out, tmp_path / "w")  # frames 12..41
    assert video_runs(encoder_runs) == []
    assert packets(out) == packets(clips.bars)[12:42]


@pytest.mark.slow
def test_a_trim_between_keyframes_encodes_only_the_partial_gop(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    cut([clip(clips.bars, start=0.375)], SPEC, out, tmp_path / "w")  # frames 9..47
    assert video_runs(encoder_runs) == [3]  # 9, 10, 11; 12 is an IDR picture
    assert packets(out)[3:] == packets(clips.bars)[12:]
    got, want = frames(out).astype(float), frames(clips.bars).astype(float)
    assert len(got) == 39
    assert np.abs(got[:3] - want[9:12]).mean() < 3  # re-encoded: close, not equal
    assert np.array_equal(got[3:], want[12:])  # copied: the very same pictures
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wide", "fps30", "untagged", "bframes"])
def test_what_does_not_conform_is_normalised(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]], name: str
) -> None:
    out = tmp_path / "cut.mp4"
    other = getattr(clips, name)
    cut([clip(clips.bars), clip(other), clip(clips.grid)], SPEC, out, tmp_path / "w")
    assert video_runs(encoder_runs) == [24]  # the odd one out, and only it
    got = packets(out)
    assert got[:48] == packets(clips.bars) and got[72:] == packets(clips.grid)
    assert len(frames(out)) == 48 + 24 + 36
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


@pytest.mark.slow
def test_clips_whose_parameter_sets_clash_are_not_both_copied(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    cut([clip(clips.other), clip(clips.grid)], SPEC, out, tmp_path / "w")
    # Both use SPS/PPS id 0 but their PPS differ: the longer clip (grid) is copied.
    assert video_runs(encoder_runs) == [24]
    assert packets(out)[24:] == packets(clips.grid)
    record = codecs.parse_avcc(mp4.read(out).tracks[0].config)
    assert sorted(codecs.pps_ids(p)[0] for p in record.pps) == [0, 1]
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


def test_sound_that_does_not_conform_is_encoded_and_the_rest_copied(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    cut([clip(clips.bars), clip(clips.mono), clip(clips.silent)], SPEC, out, tmp_path / "w")
    assert video_runs(encoder_runs) == []  # every picture conforms
    runs = [r for r in encoder_runs if "aac" in r]
    # One run: the mono clip, and a packet either side of it; the silent clip copies
    # packets of encoded silence (made once per work folder).
    assert len(runs) == 2
    bars = sound(clips.bars)
    got = sound(out)
    assert len(got) == samples(96, FPS)
    # The first clip's sound is the clip's own (decoded from the same packets).
    assert np.abs(got[2048:90_000] - bars[2048:90_000]).max() < 1e-6
    assert np.sqrt(np.mean(np.square(got[-20_000:]))) < 1e-4  # the silent clip


# --------------------------------------------------------------------------------------------
# the final cut's length and the sound's sync


CLICK_AT = 23.5 / 24  # the middle of the last frame of a 1 s clip


def click_clip(path: Path, picture: str, audio: list[str] | None = None) -> Path:
    """A 1 s clip that is silent but for a 5 ms burst of 2 kHz in its last frame."""
    burst = f"0.8*sin(2*PI*2000*t)*between(t,{CLICK_AT - 0.0025},{CLICK_AT + 0.0025})"
    return make(path, picture, 1, gop=24, sound=f"aevalsrc='{burst}|{burst}':s=48000", audio=audio)


def clicks(signal: np.ndarray) -> list[float]:
    """The centre (energy-weighted, in samples) of every burst in ``signal``."""
    energy = np.square(signal.astype(np.float64)).sum(axis=1)
    loud = energy > 0.3  # the bursts' peaks reach 1.28; the test tones stay under 0.04
    centres, i = [], 0
    while i < len(loud):
        if not loud[i]:
            i += 1
            continue
        j = i
        while j < len(loud) and loud[j : j + 400].any():
            j += 1
        window = energy[i:j]
        centres.append(float((np.arange(i, j) * window).sum() / window.sum()))
        i = j
    return centres


@pytest.mark.slow
def test_the_cut_is_frame_exact_and_its_sound_in_sync_to_the_end(
    clips: Clips, tmp_path: Path
) -> None:
    copied = click_clip(tmp_path / "copied.mp4", "testsrc2")
    encoded = click_clip(tmp_path / "encoded.mp4", "smptebars", ["-c:a", "aac", "-ar", "44100"])
    card = Segment(None, CardSpec("between", 0.5), key="card")
    segments = [
        clip(clips.bars, transition="crossfade", transition_seconds=0.5),
        clip(copied, start=0.25),  # trimmed on a keyframe? no: GOP 24; partial GOP encoded
        clip(encoded),
        card,
        clip(copied, transition="fade", transition_seconds=0.25),
        clip(clips.grid, transition="wipe-left", transition_seconds=0.5),
        clip(copied),
        clip(encoded),  # the last frames of the cut
    ]
    out = tmp_path / "cut.mp4"
    seconds = cut(segments, SPEC, out, tmp_path / "w")
    lay = layout(segments, SPEC, tmp_path / "w")
    visible = sum(lay.frames) - sum(lay.joins)
    assert lay.frames == (48, 18, 24, 12, 24, 36, 24, 24) and lay.joins[::4] == (12, 6)
    assert visible == 48 + 18 + 24 + 12 + 24 + 36 + 24 + 24 - 12 - 6 - 12
    assert seconds == visible / FPS
    assert len(frames(out)) == visible
    got = sound(out)
    assert len(got) == samples(visible, FPS)
    # Where each click must land: the cut sample of its clip's instant.
    expected = []
    for i in (1, 2, 6, 7):
        start = samples(lay.offsets[i], FPS)
        expected.append(start + round((CLICK_AT - lay.starts[i]) * RATE))
    found = clicks(got)
    assert len(found) == len(expected), (found, expected)
    for where, want in zip(found, expected, strict=True):
        # Copied packets land within half a packet; encoded sound to a few samples.
        assert abs(where - want) <= 512 + 48, (found, expected)
    assert abs(found[-1] - expected[-1]) <= 48  # the last one was encoded: exact
    assert expected[-1] > len(got) - RATE // 24  # ... and it is in the cut's last frame


# --------------------------------------------------------------------------------------------
# seams: ffmpeg's filters, the old look


def composite(name: str, a: np.ndarray, b: np.ndarray, i: int, nudge: int = 0) -> np.ndarray:
    """Frame ``i`` of what the old seams (moviepy, in RGB) drew for transition ``name`` from
    windows ``a`` to ``b``; wipes and slides with their edge ``nudge`` pixels further."""
    k = len(a)
    p = i / k
    x, y = a[i].astype(np.float64), b[i].astype(np.float64)
    if name == "crossfade":
        return x * (1 - p) + y * p
    if name == "fade":
        half = k // 2
        return x * (half - i) / half if i < half else y * (i - half) / (k - half)
    kind, direction = name.split("-")
    horizontal = direction in ("left", "right")
    extent = W if horizontal else H
    edge = min(max(round(extent * p) + nudge, 0), extent)
    axis = 1 if horizontal else 0
    index = np.arange(extent)
    if kind == "wipe":
        b_side = index >= extent - edge if direction in ("left", "up") else index < edge
        mask = b_side[None, :, None] if horizontal else b_side[:, None, None]
        return np.where(mask, y, x)
    sign = -1 if direction in ("left", "up") else 1
    shifted_a = np.roll(x, sign * edge, axis=axis)
    shifted_b = np.roll(y, sign * (edge - extent), axis=axis)
    a_side = index < extent - edge if sign < 0 else index >= edge
    mask = a_side[None, :, None] if horizontal else a_side[:, None, None]
    return np.where(mask, shifted_a, shifted_b)


SEAMS = sorted(cutter.seams.TRANSITIONS)


@pytest.mark.slow
@pytest.mark.parametrize("transition", SEAMS)
def test_every_seam_is_drawn_by_ffmpeg_as_it_used_to_look(
    clips: Clips, tmp_path: Path, transition: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    real = media_ffmpeg.run

    def spy(args: list[str], **kw: Any) -> media_ffmpeg.Done:
        ran.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(media_ffmpeg, "run", spy)
    out = tmp_path / "cut.mp4"
    k = 12
    a, b = clip(clips.bars, transition=transition, transition_seconds=k / FPS), clip(clips.grid)
    cut([a, b], SPEC, out, tmp_path / "w")
    seams_run = [r for r in ran if "libx264" in r]
    assert len(seams_run) == 1  # one process draws the seam; no per-frame Python
    graph = seams_run[0][seams_run[0].index("-filter_complex") + 1]
    assert ("xfade" in graph) == transition.startswith(("wipe-", "slide-"))
    # A crossfade mixes the pictures as they are stored (YUV), the other transitions in RGB
    # (what xfade converts to): the same look, but where a saturated colour's RGB clips.
    decode = frames_yuv if transition == "crossfade" else frames
    got = decode(out).astype(np.float64)
    assert len(got) == 48 + 36 - k
    a_window, b_window = decode(clips.bars)[48 - k :], decode(clips.grid)[:k]
    # What re-encoding alone costs these tiny, busy pictures: every seam's first frame is
    # A's last window's first frame, encoded again.
    floor = np.abs(got[48 - k] - a_window[0]).mean()
    difference = [
        # xfade places an edge by truncating a float: a pixel either way is the same look.
        min(np.abs(got[48 - k + i] - composite(transition, a_window, b_window, i, d)).mean()
            for d in (-1, 0, 1))
        for i in range(k)
    ]  # fmt: skip
    # A picture moved by an odd number of rows or columns has its 4:2:0 colour sampled
    # between the source's samples: saturated test patterns smear a little there.
    assert max(difference) < floor + 8, (floor, difference)
    assert np.mean(difference) < floor + 2, (floor, difference)


@pytest.mark.parametrize("k", [12, 10])  # A's window starts on an IDR picture (36), or not (38)
def test_a_seam_shows_the_frames_of_its_windows_exactly(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]], k: int
) -> None:
    out = tmp_path / "cut.mp4"
    a = clip(clips.bars, transition="wipe-left", transition_seconds=k / FPS)
    cut([a, clip(clips.grid)], SPEC, out, tmp_path / "w")
    (run,) = [r for r in encoder_runs if "libx264" in r]
    first = 48 - k
    # A window that starts on an IDR picture is decoded from it, not from the one before.
    assert ("-noaccurate_seek" in run) == (first % 6 == 0)
    got, bars = frames(out).astype(float), frames(clips.bars).astype(float)
    # The wipe's first frame is all A: the very frame the window starts at, not a neighbour.
    # (Re-encoding alone costs these tiny, busy pictures some 3-5 levels on average; a
    # neighbouring frame differs by 9 or more.)
    near = [np.abs(got[first] - bars[first + d]).mean() for d in (-1, 0, 1)]
    assert near[1] < 6 and near[1] < 0.7 * min(near[0], near[2]), near


def test_seams_carry_parameter_sets_of_their_own(
    clips: Clips, tmp_path: Path, encoder_runs: list[list[str]]
) -> None:
    out = tmp_path / "cut.mp4"
    card = Segment(None, CardSpec("Title", 0.5), key="card")
    a = clip(clips.bars, transition="crossfade", transition_seconds=0.5)
    cut([card, a, clip(clips.grid)], SPEC, out, tmp_path / "w")
    pictures = [r for r in encoder_runs if "libx264" in r]
    seam, piece = sorted(pictures, key=lambda r: -r.count("-i"))  # two windows; a card
    assert "-noaccurate_seek" in seam and "ultrafast" in seam and "veryfast" in piece
    record = codecs.parse_avcc(mp4.read(out).tracks[0].config)
    # the clips' own (0), the pieces' (1) and the seams' (2): each picture decodes with its own
    assert sorted(codecs.parse_sps(s).sps_id for s in record.sps) == [0, 1, 2]
    assert sorted(codecs.pps_ids(p)[0] for p in record.pps) == [0, 1, 2]
    assert len(frames(out)) == 12 + 48 + 36 - 12
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


@pytest.mark.parametrize("ids", ["sps-id=1", "sps-id=2"])
def test_a_clip_that_uses_the_cuts_own_parameter_set_ids_is_normalised(
    tmp_path: Path, encoder_runs: list[list[str]], ids: str
) -> None:
    odd = make(tmp_path / "odd.mp4", "testsrc2", 1, video=[*X264, "-x264-params", ids])
    out = tmp_path / "cut.mp4"
    cut([clip(odd)], SPEC, out, tmp_path / "w")
    assert video_runs(encoder_runs) == [24]
    ffmpeg("-xerror", "-i", str(out), "-f", "null", "-")


@pytest.mark.slow
def test_a_seam_sounds_as_it_used_to(clips: Clips, tmp_path: Path) -> None:
    # bars sounds 440 Hz and grid 660 Hz: in a crossfade bars fades out while grid fades in;
    # in a fade both are silent in the middle.
    for transition, middle in (("crossfade", (0.3, 0.8)), ("fade", (0.0, 0.05))):
        out = tmp_path / f"{transition}.mp4"
        a = clip(clips.bars, transition=transition, transition_seconds=0.5)
        cut([a, clip(clips.grid)], SPEC, out, tmp_path / "w")
        got = sound(out)
        level = float(np.sqrt(np.mean(np.square(got[: RATE // 2]))))
        centre = samples(42, FPS)  # the middle of the seam (frames 36..47)
        at = float(np.sqrt(np.mean(np.square(got[centre - 600 : centre + 600]))))
        assert middle[0] * level <= at <= middle[1] * level, (transition, at, level)


# --------------------------------------------------------------------------------------------
# the reader and the writer of the container


def test_the_mp4_reader_agrees_with_ffmpeg(clips: Clips) -> None:
    movie = mp4.read(clips.bars)
    video, audio = movie.first("vide"), movie.first("soun")
    assert video is not None and audio is not None
    assert (video.codec, video.count, video.width, video.height) == ("avc1", 48, W, H)
    assert audio.codec == "mp4a" and codecs.parse_asc(audio.config).sample_rate == RATE
    with clips.bars.open("rb") as f:
        f.seek(video.offsets[5])
        sample = f.read(video.sizes[5])
    assert hashlib.md5(sample).hexdigest() == packets(clips.bars)[5]


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[:100], lambda data: b"\x00\x00\x00\x08free" + data[8:200]],
    ids=["truncated", "no moov"],
)
def test_the_reader_refuses_what_it_cannot_read(
    clips: Clips, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(damage(clips.bars.read_bytes()))
    with pytest.raises(media_probe.MediaError):
        mp4.read(broken)
    assert media_probe.streams(broken) is None  # the cutter then asks ffmpeg
