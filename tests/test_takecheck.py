"""Automatic checks on each take (issue 11 item 3): black, frozen, silent, no audio, length.

The log parser and the rules are tested on captured ffmpeg text and on typed records; the
detectors on tiny real clips made with ffmpeg's lavfi sources (128x72, 24 fps, 1-4 s); the
cache, the parallel decode and the failures through :func:`check_plan` over real plans whose
store holds those clips; and the whole path over a storyboard rendered with the preview
backend.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from storyboard import hashing
from storyboard.cache import Store
from storyboard.catalog import MODELS
from storyboard.errors import MediaError
from storyboard.keys import GenerationMaterial, UpstreamLink
from storyboard.media import ffmpeg
from storyboard.model import Media, Ref, Shot
from storyboard.pipeline import build, plan_build
from storyboard.plan import Plan, ShotPlan, TakePlan
from storyboard.takecheck import (
    DETECTOR,
    ClipUnreadable,
    Detections,
    Finding,
    TakeCheck,
    check_plan,
    detect,
    expects_audio,
    judge,
    length_tolerance,
    parse_log,
)

FRAME = 1 / 24

# -- captured ffmpeg logs (ffmpeg n9.0.2 of imageio-ffmpeg, decode_args, -loglevel info) -----

# 1 s of black, then 2 s of still SMPTE bars, with a silent mono AAC track.
BLACK_LOG = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'black.mp4':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Duration: 00:00:03.00, start: 0.000000, bitrate: 16 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), \
128x72 [SAR 1:1 DAR 16:9], 5 kb/s, 24 fps, 24 tbr, 12288 tbn (default)
    Metadata:
      handler_name    : VideoHandler
      encoder         : Lavc63.1.102 libx264
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, \
1 kb/s (default)
    Metadata:
      handler_name    : SoundHandler
Stream mapping:
  Stream #0:0 -> #0:0 (h264 (native) -> wrapped_avframe (native))
  Stream #0:1 -> #0:1 (aac (native) -> pcm_s16le (native))
Output #0, null, to 'pipe:':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Stream #0:0(und): Video: wrapped_avframe, yuv420p(progressive), 128x72 [SAR 1:1 DAR 16:9], \
q=2-31, 200 kb/s, 24 fps, 24 tbn (default)
    Metadata:
      encoder         : Lavc63.1.102 wrapped_avframe
      handler_name    : VideoHandler
  Stream #0:1(und): Audio: pcm_s16le, 48000 Hz, mono, s16, 768 kb/s (default)
    Metadata:
      encoder         : Lavc63.1.102 pcm_s16le
      handler_name    : SoundHandler
[Parsed_silencedetect_0 @ 0x7f6d00001c00] silence_start: 0
[Parsed_blackdetect_1 @ 0x7f6d0400fa00] black_start:0 black_end:1 black_duration:1
[Parsed_freezedetect_2 @ 0x7f6d0400fe40] lavfi.freezedetect.freeze_start: 0
[Parsed_freezedetect_2 @ 0x7f6d0400fe40] lavfi.freezedetect.freeze_duration: 1
[Parsed_freezedetect_2 @ 0x7f6d0400fe40] lavfi.freezedetect.freeze_end: 1
[Parsed_freezedetect_2 @ 0x7f6d0400fe40] lavfi.freezedetect.freeze_start: 1
[Parsed_silencedetect_0 @ 0x7f6d00001c00] silence_end: 3 | silence_duration: 3
[out#0/null @ 0x564c2286cbc0] video:30KiB audio:281KiB subtitle:0KiB other streams:0KiB \
global headers:0KiB muxing overhead: unknown
frame=   72 fps=0.0 q=-0.0 Lsize=N/A time=00:00:03.00 bitrate=N/A speed= 137x \
elapsed=0:00:00.02
"""

# A 3 s preview animatic at 32 fps (854x480, no sound) whose picture never moves enough.
ANIMATIC_LOG = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '335fc1c0.mp4':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
  Duration: 00:00:03.00, start: 0.000000, bitrate: 72 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, \
progressive), 854x480 [SAR 1:1 DAR 427:240], 67 kb/s, 32 fps, 32 tbr, 16384 tbn (default)
    Metadata:
      handler_name    : VideoHandler
      encoder         : Lavc libx264
Stream mapping:
  Stream #0:0 -> #0:0 (h264 (native) -> wrapped_avframe (native))
Output #0, null, to 'pipe:':
  Stream #0:0(und): Video: wrapped_avframe, yuv420p(tv, bt709, progressive), 320x180 \
[SAR 1281:1280 DAR 427:240], q=2-31, 200 kb/s, 32 fps, 32 tbn (default)
[Parsed_freezedetect_2 @ 0x7fcdec00fe40] lavfi.freezedetect.freeze_start: 0
[out#0/null @ 0x55bb95115640] video:40KiB audio:0KiB subtitle:0KiB other streams:0KiB \
global headers:0KiB muxing overhead: unknown
frame=   96 fps=0.0 q=-0.0 Lsize=N/A time=00:00:03.00 bitrate=N/A speed=19.6x \
elapsed=0:00:00.15
"""

# 5 s of picture whose sound (44.1 kHz) stops after 2 s: astats counts the samples.
SHORT_SOUND_LOG = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'shortaudio.mp4':
  Duration: 00:00:05.00, start: 0.000000, bitrate: 276 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), \
yuv420p(progressive), 128x72 [SAR 1:1 DAR 16:9], 243 kb/s, 24 fps, 24 tbr, 12288 tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s \
(default)
Stream mapping:
  Stream #0:0 -> #0:0 (h264 (native) -> wrapped_avframe (native))
  Stream #0:1 -> #0:1 (aac (native) -> pcm_s16le (native))
Output #0, null, to 'pipe:':
  Stream #0:0(und): Video: wrapped_avframe, yuv420p(progressive), 128x72 [SAR 1:1 DAR 16:9], \
q=2-31, 200 kb/s, 24 fps, 24 tbn (default)
  Stream #0:1(und): Audio: pcm_s16le, 44100 Hz, mono, s16, 705 kb/s (default)
[Parsed_astats_1 @ 0x7fe3a0002340] Overall
[Parsed_astats_1 @ 0x7fe3a0002340] Number of samples: 88200
[out#0/null @ 0x55c2f8ea4900] video:50KiB audio:172KiB subtitle:0KiB other streams:0KiB \
global headers:0KiB muxing overhead: unknown
frame=  120 fps=0.0 q=-0.0 Lsize=N/A time=00:00:05.00 bitrate=N/A speed=86.3x \
elapsed=0:00:00.05
"""


def _header(seconds: float = 5.0, *, audio: bool = True, fps: str = "24 fps") -> str:
    """The input header and mapping of a decode, as ffmpeg prints them."""
    whole = int(seconds)
    stamp = f"00:00:{whole:02d}.{round((seconds - whole) * 100):02d}"
    lines = [
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':",
        f"  Duration: {stamp}, start: 0.000000, bitrate: 99 kb/s",
        "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), "
        f"128x72 [SAR 1:1 DAR 16:9], 5 kb/s, {fps}, 24 tbr, 12288 tbn (default)",
    ]
    if audio:
        lines.append(
            "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp"
        )
    lines += ["Stream mapping:", "  Stream #0:0 -> #0:0 (h264 (native) -> wrapped_avframe)"]
    return "\n".join(lines) + "\n"


def _stats(frames: int) -> str:
    return f"frame={frames:5d} fps=0.0 q=-0.0 Lsize=N/A time=00:00:05.00 bitrate=N/A speed=20x\n"


# -- the parser ---------------------------------------------------------------------------


def test_parse_log_reads_every_detector_of_a_captured_decode() -> None:
    raw = parse_log(BLACK_LOG)
    assert (raw.seconds, raw.fps, raw.frames, raw.audio) == (3.0, 24.0, 72, True)
    assert raw.black == ((0.0, 1.0),)
    # The bars never move: a freeze that lasts to the end has no end line; it ends with the clip.
    assert raw.frozen == ((0.0, 1.0), (1.0, 3.0))
    assert raw.silent == ((0.0, 3.0),)


def test_parse_log_closes_a_freeze_still_open_at_the_end() -> None:
    raw = parse_log(ANIMATIC_LOG)
    assert (raw.seconds, raw.fps, raw.frames, raw.audio) == (3.0, 32.0, 96, False)
    assert raw.frozen == ((0.0, 3.0),)
    assert raw.black == raw.silent == ()


def test_parse_log_counts_the_picture_after_the_sound_stopped_as_silence() -> None:
    raw = parse_log(SHORT_SOUND_LOG)
    assert (raw.seconds, raw.audio, raw.audio_seconds) == (5.0, True, 2.0)
    assert raw.silent == ((2.0, 5.0),)
    # A silence that runs into the end of the sound is one stretch with the rest.
    astats = "[Parsed_astats_1 @ 0x9] Number of samples: 96000\n"  # 2 s at 48 kHz
    quiet = "[Parsed_silencedetect_0 @ 0x8] silence_start: 0.75\n"
    raw = parse_log(_header(5.0) + quiet + astats + _stats(120))
    assert raw.silent == ((0.75, 5.0),)
    # Sound that stops less than a second early is only a short track, not a silence.
    raw = parse_log(_header(5.0) + "[Parsed_astats_1 @ 0x9] Number of samples: 200000\n")
    assert raw.audio_seconds == pytest.approx(200000 / 48000) and raw.silent == ()
    # Without a sound track there is nothing to count.
    raw = parse_log(_header(5.0, audio=False) + astats)
    assert raw.audio_seconds is None and raw.silent == ()


def test_parse_log_is_robust_to_what_logs_do() -> None:
    text = _header(5.0).replace(
        "  Duration:",
        # Metadata is printed in the header: it can never pose as a detection or a count.
        "  Metadata:\n    comment         : black_start:0 black_end:5 frame=1\n  Duration:",
    )
    text += "\n".join(
        [
            # An orphaned end whose start line was lost: its duration places it.
            "[Parsed_silencedetect_0 @ 0x1] silence_end: 2.5 | silence_duration: 1.5",
            # silencedetect rounds a start at the very beginning below zero.
            "[Parsed_silencedetect_0 @ 0x1] silence_start: -0.00133",
            # A start followed by another start: the first one's end was lost; it is dropped.
            "[Parsed_freezedetect_2 @ 0x2] lavfi.freezedetect.freeze_start: 0.5",
            "[Parsed_freezedetect_2 @ 0x2] lavfi.freezedetect.freeze_start: 3",
            "[Parsed_freezedetect_2 @ 0x2] lavfi.freezedetect.freeze_duration: 1.25",
            # A progress update shares its line with a detector's line through a carriage return.
            "frame=   40 fps=0.0 q=-0.0 size=N/A time=00:00:01.66 speed=20x\r"
            "[Parsed_freezedetect_2 @ 0x2] lavfi.freezedetect.freeze_end: 4.25",
            "[Parsed_silencedetect_0 @ 0x1] silence_end: 0.6 | silence_duration: 0.60133",
            # Someone else's line with the same words is not a detection.
            "[mov,mp4 @ 0x3] black_start:1 black_end:2",
            "[Parsed_blackdetect_1 @ 0x4] black_start:4.5 black_end:9e9 black_duration:inf",
        ]
    )
    text += "\n" + _stats(120)
    raw = parse_log(text)
    assert raw.frames == 120
    assert raw.silent == ((0.0, 0.6), (1.0, 2.5))
    assert raw.frozen == ((3.0, 4.25),)
    assert raw.black == ((4.5, 5.0),)  # clipped to the clip


def test_parse_log_judges_the_picture_not_a_longer_container() -> None:
    # The sound runs 2 s past the picture: 72 frames at 24 fps is 3 s of picture.
    raw = parse_log(_header(5.0) + _stats(72))
    assert raw.seconds == 3.0
    # Within two frames the container's duration stands (its rounding is finer).
    assert parse_log(_header(3.02) + _stats(72)).seconds == pytest.approx(3.02)
    # No count (an older ffmpeg's summary): the container's duration.
    assert parse_log(_header(4.5)).seconds == 4.5


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("clip.mp4: Invalid data found when processing input\n", "did not open"),
        (_header(3.0).replace("Video: h264", "Data: bin_data"), "no video stream"),
        (_header(3.0) + _stats(0), "no frame"),
        (_header(0.0), "no length"),
    ],
)
def test_parse_log_refuses_a_clip_nothing_was_decoded_of(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_log(text)


Spans = list[tuple[float, float]]


@st.composite
def _spans(draw: st.DrawFn, seconds: float) -> Spans:
    """Disjoint, ordered stretches inside (0, seconds), on a 1/24 s grid."""
    cuts = draw(st.lists(st.integers(1, round(seconds * 24) - 1), unique=True, max_size=6))
    cuts.sort()
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    return [(a / 24, b / 24) for a, b in pairs]


def _fmt(value: float) -> str:
    return f"{value:.6g}"


@settings(max_examples=150, deadline=None)
@given(data=st.data(), seconds=st.sampled_from([1.0, 3.0, 6.04]), open_end=st.booleans())
def test_parse_log_recovers_any_interleaving_of_detections(
    data: st.DataObject, seconds: float, open_end: bool
) -> None:
    """Whatever stretches each detector prints, in whatever interleaving of the three
    detectors' lines, the parser gives them back; a freeze still open at the end ends there."""
    black, frozen, silent = (data.draw(_spans(seconds)) for _ in range(3))
    streams: list[list[str]] = [
        [
            f"[Parsed_blackdetect_1 @ 0x5] black_start:{_fmt(a)} black_end:{_fmt(b)} "
            f"black_duration:{_fmt(b - a)}"
            for a, b in black
        ],
        [],
        [],
    ]
    for a, b in frozen:
        tag = "[Parsed_freezedetect_2 @ 0x6] lavfi.freezedetect.freeze_"
        streams[1] += [f"{tag}start: {_fmt(a)}", f"{tag}duration: {_fmt(b - a)}"]
        streams[1] += [f"{tag}end: {_fmt(b)}"]
    tail_start = None
    if open_end and (not frozen or frozen[-1][1] < seconds - FRAME):
        tail_start = frozen[-1][1] + FRAME if frozen else 0.0
        streams[1].append(
            f"[Parsed_freezedetect_2 @ 0x6] lavfi.freezedetect.freeze_start: {_fmt(tail_start)}"
        )
    for a, b in silent:
        tag = "[Parsed_silencedetect_0 @ 0x7] silence_"
        streams[2] += [
            f"{tag}start: {_fmt(a)}",
            f"{tag}end: {_fmt(b)} | silence_duration: {_fmt(b - a)}",
        ]
    lines: list[str] = []
    while any(streams):
        pick = data.draw(st.sampled_from([s for s in streams if s]))
        lines.append(pick.pop(0))
    text = _header(seconds) + "\n".join(lines) + "\n" + _stats(round(seconds * 24))
    raw = parse_log(text)

    def close(got: tuple[tuple[float, float], ...], want: Spans) -> None:
        assert len(got) == len(want)
        for (ga, gb), (wa, wb) in zip(got, want, strict=True):
            assert ga == pytest.approx(wa, abs=1e-5) and gb == pytest.approx(wb, abs=1e-5)

    close(raw.black, black)
    close(raw.silent, silent)
    close(raw.frozen, frozen + ([(tail_start, raw.seconds)] if tail_start is not None else []))


# -- the cached record ----------------------------------------------------------------------


def test_a_record_survives_its_round_trip_and_a_damaged_one_is_not_one() -> None:
    raw = Detections(
        3.0, 24.0, 72, True, black=((0.0, 1.0),), silent=((1.0, 3.0),), audio_seconds=3.0
    )
    data = raw.to_json()
    assert data["detector"] == DETECTOR
    assert Detections.from_json(json.loads(json.dumps(data))) == raw
    damaged: list[Any] = [
        None,
        [],
        {**data, "detector": "takecheck/0 w=160"},  # another detector's thresholds
        {k: v for k, v in data.items() if k != "frozen"},
        {**data, "frames": "72"},
        {**data, "audio": 1},
        {**data, "seconds": -1.0},
        {**data, "black": [[1.0, 0.5]]},
        {**data, "black": [[0.0]]},
        {**data, "silent": "0-3"},
        {**data, "fps": True},
        {**data, "audio_seconds": "2.0"},
        {k: v for k, v in data.items() if k != "audio_seconds"},
    ]
    for one in damaged:
        assert Detections.from_json(one) is None, one


# -- the rules ------------------------------------------------------------------------------


def _take(
    model: str = "skyreels-v4-fast",
    *,
    asked: float | None = None,
    backend: str = "live",
    extends: str | None = None,
    **fields: Any,
) -> tuple[ShotPlan, TakePlan]:
    """A shot plan and its take as the planner makes them (typed records, no store)."""
    spec = MODELS[model]
    shot = Shot(id="s", index=0, line=1, model=model, extends=extends, **fields)
    material = GenerationMaterial(
        backend=backend,  # type: ignore[arg-type]
        provider="preview" if backend == "preview" else spec.provider,
        model=model,
        endpoint=spec.endpoint,
        prompt="p",
        params={},
        seed=None,
        take=1,
        inputs={},
        upstream=UpstreamLink("extends", "k0") if extends else None,
    )
    take = TakePlan(1, "k1", None, material, None)
    seconds = spec.clip_seconds(shot.duration) if asked is None else asked
    return ShotPlan(shot, "model", "fresh", "", 0.0, 0.0, (take,), seconds), take


def _raw(seconds: float, fps: float = 24.0, **spans: Any) -> Detections:
    return Detections(seconds, fps, round(seconds * fps), spans.pop("audio", True), **spans)


def _texts(found: tuple[Finding, ...]) -> list[str]:
    return [f.text for f in found]


@pytest.mark.parametrize(
    ("model", "duration", "actual", "expected"),
    [
        ("skyreels-v4-fast", 5, 3.0, "short: 3.0 s of 5.0 s asked"),
        ("skyreels-v4-fast", 5, 7.0, "long: 7.0 s of 5.0 s asked"),
        ("skyreels-v4-fast", 5, 5.25, None),  # 5 % of 5 s
        ("skyreels-v4-fast", 5, 4.74, "short: 4.7 s of 5.0 s asked"),
        ("skyreels-v4-fast", 15, 14.3, None),  # 5 % of 15 s is 0.75 s
        ("skyreels-v4-fast", 15, 14.2, "short: 14.2 s of 15.0 s asked"),
        # V3 writes duration x 24 + 1 frames: the catalogue asks for that, and so do we.
        ("skyreels-v3-reference", 5, 121 / 24, None),
        ("skyreels-v3-reference", 5, 5.0, None),
        # V1: 97 frames at 24 fps; a provider writing 96 or 98 is within a frame and a half.
        ("skyreels-v1", None, 96 / 24, None),
        ("skyreels-v1", None, 2.0, "short: 2.0 s of 4.0 s asked"),
    ],
)
def test_length_against_what_was_asked(
    model: str, duration: int | None, actual: float, expected: str | None
) -> None:
    sp, take = _take(model, duration=duration)
    found = judge(_raw(actual), sp, take)
    assert _texts(found) == ([expected] if expected else [])
    if expected:
        assert found[0].kind == expected.split(":")[0]
        assert found[0].start is None and found[0].seconds == pytest.approx(actual, abs=1e-3)


def test_an_extension_is_judged_on_its_new_footage() -> None:
    # V4 returns the source followed by the new footage (the registry says so).
    sp, take = _take("skyreels-v4-fast", duration=4, extends="a")
    assert judge(_raw(10.0, 32), sp, take, upstream=6.0) == ()
    assert _texts(judge(_raw(8.0, 32), sp, take, upstream=6.0)) == [
        "short: 2.0 s of 4.0 s asked (+6.0 s of its source)"
    ]
    # A provider that returned only the new part is told apart by the length.
    assert judge(_raw(4.0, 32), sp, take, upstream=6.0) == ()
    # V3 single-shot extension returns the new footage only.
    sp3, take3 = _take("skyreels-v3-extend", duration=5, extends="a")
    assert judge(_raw(5.0), sp3, take3, upstream=6.0) == ()
    assert _texts(judge(_raw(2.0), sp3, take3, upstream=6.0)) == ["short: 2.0 s of 5.0 s asked"]
    # The source's clip is gone from the store: a long clip may hold it, a short one is short.
    assert judge(_raw(10.0, 32), sp, take, upstream=None) == ()
    assert _texts(judge(_raw(2.0, 32), sp, take, upstream=None)) == ["short: 2.0 s of 4.0 s asked"]


@settings(max_examples=300, deadline=None)
@given(
    asked=st.floats(1.0, 15.0),
    fps=st.sampled_from([24.0, 25.0, 30.0, 32.0]),
    delta=st.floats(-3.0, 3.0),
)
def test_the_length_rule_is_the_tolerance(asked: float, fps: float, delta: float) -> None:
    """Short exactly when the clip is further under than the tolerance, long when over;
    the tolerance is never under half a frame, 0.25 s or 5 %."""
    tol = length_tolerance(asked, fps)
    assert tol >= max(0.5 / fps, 0.25, 0.05 * asked)
    actual = asked + delta
    if actual <= 0 or abs(abs(delta) - tol) < 1e-9:
        return
    sp, take = _take(asked=asked)
    kinds = [f.kind for f in judge(_raw(actual, fps), sp, take)]
    assert kinds == (["short"] if delta < -tol else ["long"] if delta > tol else [])


def test_sound_is_expected_only_where_the_shot_asks_for_it(tmp_path: Path) -> None:
    wav = Media("media/a.wav", "audio", tmp_path / "a.wav")
    image = Media("refs/a.png", "image", tmp_path / "a.png")
    assert not expects_audio(Shot(id="s", index=0, line=1, model="skyreels-v4-fast"))
    assert expects_audio(Shot(id="s", index=0, line=1, audio=(wav,)))
    assert expects_audio(Shot(id="s", index=0, line=1, refs=(Ref((image,), "c", audio=wav),)))
    assert not expects_audio(Shot(id="s", index=0, line=1, refs=(Ref((image,), "c"),)))
    assert expects_audio(Shot(id="s", index=0, line=1, action="reference_audio"))
    assert expects_audio(Shot(id="s", index=0, line=1, params={"sound": True}))
    assert not expects_audio(Shot(id="s", index=0, line=1, params={"sound": "yes"}))


def test_findings_of_stretches_and_sound() -> None:
    wav = Media("https://example.com/a.wav", "audio")
    raw = _raw(
        6.0,
        black=((0.0, 1.0),),
        frozen=((0.0, 1.0), (3.0, 5.125)),  # the first is the black stretch: said once
        silent=((0.0, 6.0),),
    )
    quiet_sp, quiet = _take(duration=6)
    assert _texts(judge(raw, quiet_sp, quiet)) == ["black 1.0 s at 0.0 s", "frozen 2.1 s at 3.0 s"]
    loud_sp, loud = _take(duration=6, audio=(wav,))
    found = judge(raw, loud_sp, loud)
    # Whole-take findings first, then the stretches in the order they play.
    assert _texts(found) == [
        "black 1.0 s at 0.0 s",
        "silent 6.0 s at 0.0 s (the whole clip)",
        "frozen 2.1 s at 3.0 s",
    ]
    assert [f.to_json() for f in found][2] == {
        "kind": "frozen",
        "start": 3.0,
        "seconds": 2.125,
        "text": "frozen 2.1 s at 3.0 s",
    }
    mute = replace(raw, audio=False, silent=())
    assert _texts(judge(mute, loud_sp, loud))[0] == "no audio: sound was asked"
    check = TakeCheck("d" * 64, found)
    assert not check.ok and TakeCheck("d" * 64, ()).ok
    assert check.to_json() == {
        "digest": "d" * 64,
        "ok": False,
        "findings": [f.to_json() for f in found],
    }


def test_the_preview_animatic_is_judged_as_a_stand_in() -> None:
    """The animatic eases its camera (its ends read as frozen) and never makes sound: on the
    preview backend neither is a finding; black and length still are."""
    wav = Media("https://example.com/a.wav", "audio")
    sp, take = _take(duration=3, backend="preview", audio=(wav,))
    raw = _raw(3.0, 32, audio=False, frozen=((0.0, 3.0),))
    assert judge(raw, sp, take) == ()
    broken = replace(raw, seconds=1.0, black=((0.0, 1.0),))
    assert _texts(judge(broken, sp, take)) == [
        "short: 1.0 s of 3.0 s asked",
        "black 1.0 s at 0.0 s (the whole clip)",
    ]


# -- tiny real clips ------------------------------------------------------------------------

SIZE = "128x72"
MOTION = f"testsrc2=s={SIZE}:r=24"


def _encode(out: Path, graph: str, seconds: float, *, audio: str | None = None) -> Path:
    """Encode a lavfi ``graph`` (its picture labelled [v]) and an optional audio graph [a]."""
    full = graph if audio is None else f"{graph};{audio}"
    args = ["-filter_complex", full, "-map", "[v]"]
    if audio is not None:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "48k"]
    # Lossless: a still is the same picture in every frame (a lossy encoder goes on refining
    # it for a few frames, which moves where a freeze begins; see the module's docstring).
    args += ["-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"]
    args += ["-pix_fmt", "yuv420p"]
    ffmpeg.run([*args, str(out)], what=f"test clip {out.name}", timeout=60)
    return out


CLIPS: dict[str, Callable[[Path], Path]] = {
    "black-then-motion": lambda p: _encode(
        p, f"color=c=black:s={SIZE}:r=24:d=1[b];{MOTION}:d=2[m];[b][m]concat=n=2:v=1:a=0[v]", 3
    ),
    "still-then-motion": lambda p: _encode(
        p,
        f"testsrc=s={SIZE}:r=24:d=1,trim=end_frame=1,loop=loop=47:size=1:start=0,"
        "setpts=N/24/TB[s];"
        f"{MOTION}:d=1[m];[s][m]concat=n=2:v=1:a=0[v]",
        3,
    ),
    "black-then-still-bars": lambda p: _encode(
        p,
        f"color=c=black:s={SIZE}:r=24:d=1[b];smptebars=s={SIZE}:r=24:d=2[m];"
        "[b][m]concat=n=2:v=1:a=0[v]",
        3,
    ),
    "motion-3s": lambda p: _encode(p, f"{MOTION}:d=3[v]", 3),
    "motion-4s": lambda p: _encode(p, f"{MOTION}:d=4[v]", 4),
    "motion-2s": lambda p: _encode(p, f"{MOTION}:d=2[v]", 2),
    "tone-with-gap": lambda p: _encode(
        p,
        f"{MOTION}:d=3[v]",
        3,
        audio="sine=f=440:r=48000:d=3,volume=volume=0:enable='between(t,0.5,2)'[a]",
    ),
    "tone-stops-early": lambda p: _encode(
        p, f"{MOTION}:d=3[v]", 3, audio="sine=f=440:r=48000:d=1.5[a]"
    ),
    "silent-audio": lambda p: _encode(
        p, f"{MOTION}:d=2[v]", 2, audio="anullsrc=r=48000:cl=mono,atrim=0:2[a]"
    ),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {name: make(folder / f"{name}.mp4") for name, make in CLIPS.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "black", "frozen", "silent", "audio", "seconds"),
    [
        # Black frames are frozen frames too (the rules say it once, as black).
        ("black-then-motion", [(0.0, 1.0)], [(0.0, 1.0)], [], False, 3.0),
        ("still-then-motion", [], [(0.0, 2.0)], [], False, 3.0),
        # The bars never move.
        ("black-then-still-bars", [(0.0, 1.0)], [(0.0, 1.0), (1.0, 3.0)], [], False, 3.0),
        ("motion-3s", [], [], [], False, 3.0),
        ("tone-with-gap", [], [], [(0.5, 2.0)], True, 3.0),
        ("silent-audio", [], [], [(0.0, 2.0)], True, 2.0),
        ("tone-stops-early", [], [], [(1.5, 3.0)], True, 3.0),
    ],
)
def test_detect_finds_what_the_clip_holds(
    clips: dict[str, Path],
    name: str,
    black: Spans,
    frozen: Spans,
    silent: Spans,
    audio: bool,
    seconds: float,
) -> None:
    raw = detect(clips[name])
    assert raw.audio is audio
    assert raw.seconds == pytest.approx(seconds, abs=FRAME)
    for got, want in ((raw.black, black), (raw.frozen, frozen), (raw.silent, silent)):
        assert len(got) == len(want), (name, got, want)
        for (ga, gb), (wa, wb) in zip(got, want, strict=True):
            assert ga == pytest.approx(wa, abs=FRAME) and gb == pytest.approx(wb, abs=FRAME)


@pytest.mark.slow
def test_detect_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(MediaError, match="cannot check"):
        detect(junk)


# -- check_plan over a real plan whose store holds the clips ---------------------------------

LIVE_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
shots:
  - id: sea
    prompt: a lighthouse at dusk
    takes: 4
  - id: song
    prompt: a bird sings on a branch
    audio: media/tone.wav
    takes: 3
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
"""

# What each take of LIVE_BOARD holds, and what a reviewer reads about it.
LIVE_TAKES: dict[tuple[str, int], tuple[str, list[str]]] = {
    ("sea", 1): ("black-then-motion", ["black 1.0 s at 0.0 s"]),
    ("sea", 2): ("still-then-motion", ["frozen 2.0 s at 0.0 s"]),
    ("sea", 3): ("motion-4s", ["long: 4.0 s of 3.0 s asked"]),
    ("sea", 4): ("motion-3s", []),
    ("song", 1): ("tone-with-gap", ["silent 1.5 s at 0.5 s"]),
    ("song", 2): ("motion-3s", ["no audio: sound was asked"]),
    ("song", 3): ("tone-stops-early", ["silent 1.5 s at 1.5 s"]),
    ("kite", 1): ("motion-2s", ["short: 2.0 s of 4.0 s asked"]),
}


def _tone(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg.run(
        ["-f", "lavfi", "-i", "sine=f=440:d=4", "-ac", "1", "-ar", "8000", str(path)],
        what="test tone",
        timeout=30,
    )


def _stock(project: Project, board: str, takes: dict[tuple[str, int], Path]) -> Plan:
    """Put ``takes`` in the store as the live takes of ``board``; the plan that sees them."""
    project.write(board)
    plan = plan_build(project.file, live=True)
    store = Store.for_storyboard(plan.board.path)
    for (shot, n), clip in takes.items():
        copy = project.root / f"in-{shot}-{n}.mp4"
        shutil.copyfile(clip, copy)
        key = plan.shot(shot).takes[n - 1].key
        store.put(key, copy, seconds=3.0, shot=shot, take=n)
    store.save()
    return plan_build(project.file, live=True)


def _records(plan: Plan) -> dict[str, Path]:
    root = Store.for_storyboard(plan.board.path).root / "checks"
    return {p.stem: p for p in root.glob("*/*.json")}


@pytest.mark.slow
def test_check_plan_reports_each_take_and_decodes_a_clip_once(
    project: Project, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _tone(project.root / "media" / "tone.wav")
    plan = _stock(project, LIVE_BOARD, {k: clips[v[0]] for k, v in LIVE_TAKES.items()})
    store = Store.for_storyboard(plan.board.path)
    hashed: list[Path] = []
    real_sha256 = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: hashed.append(p) or real_sha256(p))
    checks = check_plan(plan, store)  # eight takes, seven clips, decoded in parallel
    assert hashed == []  # trusted as the plan found them (the memo), not read to be hashed
    assert set(checks) == set(LIVE_TAKES)
    for key, (name, texts) in LIVE_TAKES.items():
        check = checks[key]
        assert [f.text for f in check.findings] == texts, (key, name)
        assert check.digest == plan.shot(key[0]).takes[key[1] - 1].clip.digest  # type: ignore[union-attr]
        assert check.ok is (not texts)
    # The parallel decode found what a decode of each clip on its own finds.
    records = _records(plan)
    assert len(records) == len({c.digest for c in checks.values()})
    for key, (name, _texts) in LIVE_TAKES.items():
        cached = Detections.from_json(json.loads(records[checks[key].digest].read_text()))
        assert cached == detect(clips[name]), name

    # A damaged record, another detector's and another clip's are misses, recomputed.
    sea1, sea2, song1 = (checks[k].digest for k in (("sea", 1), ("sea", 2), ("song", 1)))
    records[sea1].write_text('{"detector": ', encoding="utf-8")
    old = json.loads(records[sea2].read_text())
    records[sea2].write_text(json.dumps({**old, "detector": "takecheck/0"}), encoding="utf-8")
    records[song1].write_text(json.dumps(old), encoding="utf-8")  # names sea take 2's clip
    assert check_plan(plan, store) == checks
    assert Detections.from_json(json.loads(records[sea1].read_text())) is not None
    assert json.loads(records[sea2].read_text())["detector"] == DETECTOR
    assert json.loads(records[song1].read_text())["digest"] == song1

    # From now on no clip can be decoded: the answers come from the cache alone, in a fresh
    # Store as in a fresh process.
    for sp in plan.shots:
        for take in sp.takes:
            assert take.clip is not None
            take.clip.path.write_bytes(b"not a video any more")
    assert check_plan(plan, Store.for_storyboard(plan.board.path)) == checks


@pytest.mark.slow
def test_a_clip_that_cannot_be_decoded_names_its_take_after_the_others_are_checked(
    project: Project, clips: dict[str, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)
    board = LIVE_BOARD.replace("takes: 4", "takes: 2").split("  - id: song")[0]
    plan = _stock(project, board, {("sea", 1): clips["motion-3s"], ("sea", 2): junk})
    with pytest.raises(ClipUnreadable) as caught:
        check_plan(plan, Store.for_storyboard(plan.board.path))
    error = caught.value
    assert (error.shot, error.take) == ("sea", 2)
    assert str(error).startswith("shot sea take 2: cannot check ")
    assert error.exit_code == 1
    assert f"storyboard render {plan.board.path} --live --force sea" in (error.hint() or "")
    # The take that decodes was checked and cached all the same, and comes with the error.
    good = plan.shot("sea").takes[0].clip
    assert good is not None and good.digest in _records(plan)
    assert error.takes == (("sea", 2),)
    assert set(error.checks) == {("sea", 1)} and error.checks[("sea", 1)].ok


@pytest.mark.slow
def test_a_clip_changed_since_the_plan_is_left_out_and_not_cached(
    project: Project, clips: dict[str, Path]
) -> None:
    board = LIVE_BOARD.replace("takes: 4", "takes: 2").split("  - id: song")[0]
    plan = _stock(project, board, {("sea", 1): clips["motion-3s"], ("sea", 2): clips["motion-2s"]})
    changed = plan.shot("sea").takes[1].clip
    assert changed is not None
    shutil.copyfile(clips["still-then-motion"], changed.path)  # a valid video, other bytes
    checks = check_plan(plan, Store.for_storyboard(plan.board.path))
    assert set(checks) == {("sea", 1)}
    assert changed.digest not in _records(plan)  # never a record of other bytes
    assert changed.path.exists()  # checking changes nothing in the store
    assert plan_build(project.file, live=True).shot("sea").takes[1].clip is None


# -- end to end over the preview backend -------------------------------------------------

PREVIEW_BOARD = """\
storyboard: 1
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 24
shots:
  - id: a
    first_frame: refs/a.png
    prompt: a red kite over a field, push-in
    takes: 2
  - id: b
    extends: a
    prompt: the kite climbs higher
  - id: end
    card: {text: "The end", duration: 1.0}
"""


@pytest.mark.slow
def test_check_plan_over_a_rendered_preview_storyboard(project: Project) -> None:
    write_image(project.root / "refs" / "a.png", (200, 60, 40))
    project.write(PREVIEW_BOARD)
    build(project.file)
    plan = plan_build(project.file)
    store = Store.for_storyboard(plan.board.path)
    checks = check_plan(plan, store)
    # Every rendered take of every model shot; the card has none.
    assert set(checks) == {("a", 1), ("a", 2), ("b", 1)}
    # The animatic is what it should be: the lengths asked (b holds its 3 s source and 3 s of
    # new footage), no black; its eased camera is not reported as frozen.
    assert all(c.ok for c in checks.values()), {k: c.to_json() for k, c in checks.items()}
    records = _records(plan)
    assert set(records) == {c.digest for c in checks.values()}
    b = Detections.from_json(json.loads(records[checks[("b", 1)].digest].read_text()))
    assert b is not None and b.seconds == pytest.approx(6.0, abs=FRAME)
    assert not b.audio and b.black == ()
    # A later run's plan finds every clip cached: nothing new is recorded.
    again = plan_build(project.file)
    assert check_plan(again, Store.for_storyboard(again.board.path)) == checks
    assert set(_records(again)) == set(records)


# -- end to end over a live render (the provider emulator on loopback) ------------------------

EMULATED_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
  - id: song
    model: skyreels-v4-fast
    prompt: a bird sings on a branch
    audio: media/tone.wav
    resolution: 480p
    duration: 3
  - id: away
    extends: song
    model: skyreels-v4-fast
    prompt: the bird flies away
    resolution: 480p
    duration: 3
"""


@pytest.mark.slow
def test_check_plan_over_a_live_render(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes rendered by the (emulated) providers are judged as live takes: the emulator
    serves every clip cut to 1 s, so each is short of what its shot asked; V4 serves a tone,
    so the shot driven by audio is neither silent nor mute."""
    from storyboard.testing.emulator import Emulator, EmulatorServer

    _tone(project.root / "media" / "tone.wav")
    project.write(EMULATED_BOARD)
    emu = Emulator(
        wavespeed_keys=("ws-takecheck-key",),
        qingbo_keys=("qb-takecheck-key",),
        scale=1 / 16,
        max_seconds=1.0,
        polls_to_start=1,
        polls_to_finish=1,
    )
    server = EmulatorServer(emu)
    try:
        for name, value in {
            "WAVESPEED_API_KEY": "ws-takecheck-key",
            "QINGBO_API_KEY": "qb-takecheck-key",
            "WAVESPEED_BASE_URL": server.url,
            "QINGBO_BASE_URL": server.url,
            "STORYBOARD_POLL_INTERVAL": "0.05",
            "STORYBOARD_MIN_OUTPUT_SHARE": "0",  # the served clips are 1 s on purpose
        }.items():
            monkeypatch.setenv(name, value)
        build(project.file, live=True)
    finally:
        server.close()
    assert emu.internal_errors == []
    plan = plan_build(project.file, live=True)
    checks = check_plan(plan, Store.for_storyboard(plan.board.path))
    texts = {key: [f.text for f in c.findings] for key, c in checks.items()}
    assert texts == {
        ("kite", 1): ["short: 1.0 s of 4.0 s asked"],
        ("song", 1): ["short: 1.0 s of 3.0 s asked"],
        # V4 is said to return the source and the new footage; a 1 s clip cannot hold its
        # 1 s source and more, so the length says it is all new footage (1 s, not 0).
        ("away", 1): ["short: 1.0 s of 3.0 s asked"],
    }
    song = Detections.from_json(json.loads(_records(plan)[checks[("song", 1)].digest].read_text()))
    assert song is not None and song.audio and song.silent == ()
