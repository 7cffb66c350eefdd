"""Tests of the preview backend's animatic renderer (``storyboard.media.animatic``).

Media are tiny (128x72 at 12 fps, 1-2 s) so that every test encodes in a fraction of a
second. Videos are inspected with the same ffmpeg binary the renderer uses.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from storyboard.errors import MediaError
from storyboard.media import animatic, text
from storyboard.media.animatic import (
    MOTIONS,
    AnimaticSpec,
    Motion,
    motion_from_prompt,
    render_animatic,
)
from storyboard.media.probe import last_frame

W, H, FPS = 128, 72, 12
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# Rows above the caption band: colour checks look only here.
TOP = slice(0, H // 2)

Frames = npt.NDArray[np.uint8]


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [FFMPEG, "-hide_banner", *args]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False)


def _stream_info(video: Path) -> tuple[int, int, float, str]:
    """Width, height, fps and the stream line of the first video stream (from ``ffmpeg -i``)."""
    text = _run("-i", str(video)).stderr.decode()
    line = next(line for line in text.splitlines() if "Video:" in line)
    size = re.search(r", (\d+)x(\d+)", line)
    fps = re.search(r", ([\d.]+) fps", line)
    assert size is not None and fps is not None, line
    return int(size[1]), int(size[2]), float(fps[1]), line


def _decode(video: Path, width: int = W, height: int = H) -> Frames:
    """Every frame of ``video`` as an (n, height, width, 3) uint8 array."""
    result = _run("-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    assert result.returncode == 0, result.stderr.decode()
    raw = np.frombuffer(result.stdout, dtype=np.uint8)
    return raw.reshape(-1, height, width, 3)


def _mean(frame: Frames) -> npt.NDArray[np.float64]:
    """Mean colour of the part of a frame above the caption band."""
    return np.asarray(frame[TOP].reshape(-1, 3).mean(axis=0), dtype=np.float64)


def _solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (160, 90)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def _pattern(path: Path, size: tuple[int, int] = (200, 150)) -> Path:
    """Four coloured quadrants and a white disc: any shift or zoom changes its pixels."""
    image = Image.new("RGB", size, (230, 40, 40))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w // 2, 0, w, h // 2), fill=(40, 200, 60))
    draw.rectangle((0, h // 2, w // 2, h), fill=(40, 60, 220))
    draw.rectangle((w // 2, h // 2, w, h), fill=(240, 220, 40))
    draw.ellipse((w // 2 - 25, h // 2 - 25, w // 2 + 25, h // 2 + 25), fill=(255, 255, 255))
    image.save(path)
    return path


def _spec(**changes: object) -> AnimaticSpec:
    fields: dict[str, object] = {"width": W, "height": H, "fps": FPS, "seconds": 1.5}
    fields.update(changes)
    return AnimaticSpec(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- output


def test_output_is_h264_mp4_with_the_spec_geometry(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4.part"  # the caller's temporary name has no .mp4 extension
    spec = _spec(caption="hover · take 1\na bird", motion="push-in")
    render_animatic(spec, out)
    width, height, fps, line = _stream_info(out)
    assert (width, height, fps) == (W, H, FPS)
    assert "h264" in line and "yuv420p" in line
    assert "Audio" not in _run("-i", str(out)).stderr.decode()
    assert len(_decode(out)) == spec.frames == 18


@pytest.mark.parametrize(("seconds", "frames"), [(0.0, 1), (0.01, 1), (1.0, 12), (2.04, 24)])
def test_frame_count_is_seconds_times_fps_and_at_least_one(
    tmp_path: Path, seconds: float, frames: int
) -> None:
    spec = _spec(seconds=seconds)
    assert spec.frames == frames
    render_animatic(spec, tmp_path / "clip.mp4")
    assert len(_decode(tmp_path / "clip.mp4")) == frames


def test_same_spec_gives_identical_bytes(tmp_path: Path) -> None:
    red = _solid(tmp_path / "red.png", (220, 20, 20))
    spec = _spec(
        seconds=2.0,
        stills=((0.0, _pattern(tmp_path / "p.png")), (2.0, red)),
        motion="pan-left",
        caption="hover · take 2\nslow pan left over the garden, late light",
        title="Act One",
        seed=7,
    )
    render_animatic(spec, tmp_path / "a.mp4")
    render_animatic(spec, tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_generated_backgrounds_differ_visibly_between_seeds(tmp_path: Path) -> None:
    means = []
    for seed in (0, 1, 2):
        out = tmp_path / f"take{seed}.mp4"
        render_animatic(_spec(seed=seed, motion="static"), out)
        frames = _decode(out)
        # Not a flat placeholder: the background has structure.
        assert frames[0][TOP].std() > 3
        means.append(_mean(frames[0]))
    assert len({(tmp_path / f"take{seed}.mp4").read_bytes() for seed in (0, 1, 2)}) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(means[i] - means[j]) > 20, (i, j, means)


# --------------------------------------------------------------------------- stills


def test_stills_are_reached_at_their_timestamps(tmp_path: Path) -> None:
    red = _solid(tmp_path / "red.png", (255, 0, 0))
    green = _solid(tmp_path / "green.png", (0, 255, 0), size=(90, 160))  # portrait: cover fit
    blue = _solid(tmp_path / "blue.jpg", (0, 0, 255))
    spec = _spec(
        seconds=2.0,
        stills=((0.0, red), (1.0, green), (2.0, blue)),
        motion="push-in",
        caption="shot · take 1\nred to green to blue",
    )
    render_animatic(spec, tmp_path / "clip.mp4")
    frames = _decode(tmp_path / "clip.mp4")
    assert len(frames) == 24

    def dominant(index: int) -> int:
        return int(np.argmax(_mean(frames[index])))

    first, middle, last = _mean(frames[0]), _mean(frames[12]), _mean(frames[-1])
    assert first[0] > 200 and first[1:].max() < 40, first
    assert middle[1] > 200 and middle[[0, 2]].max() < 40, middle
    assert last[2] > 200 and last[:2].max() < 40, last
    # Between keys the images are crossfaded, not cut.
    halfway = _mean(frames[6])
    assert 60 < halfway[0] < 200 and 60 < halfway[1] < 200, halfway
    assert [dominant(i) for i in (0, 3, 9, 12, 15, 21, 23)] == [0, 0, 1, 1, 1, 2, 2]


def test_the_nearest_still_holds_before_the_first_and_after_the_last(tmp_path: Path) -> None:
    red = _solid(tmp_path / "red.png", (255, 0, 0))
    blue = _solid(tmp_path / "blue.png", (0, 0, 255))
    spec = _spec(seconds=2.0, stills=((0.5, red), (1.0, blue)))
    render_animatic(spec, tmp_path / "clip.mp4")
    frames = _decode(tmp_path / "clip.mp4")
    assert all(_mean(frames[i])[0] > 200 for i in range(7))
    assert all(_mean(frames[i])[2] > 200 for i in range(12, 24))


def test_transparent_images_lie_on_the_generated_background(tmp_path: Path) -> None:
    path = tmp_path / "cutout.png"
    Image.new("RGBA", (160, 90), (0, 0, 0, 0)).save(path)
    render_animatic(_spec(stills=((0.0, path),), seed=3), tmp_path / "clip.mp4")
    frame = _decode(tmp_path / "clip.mp4")[0]
    assert _mean(frame).sum() > 40  # the seeded background, not black


def test_camera_moves_unless_static(tmp_path: Path) -> None:
    still = ((0.0, _pattern(tmp_path / "p.png")),)
    for motion in MOTIONS:
        out = tmp_path / f"{motion}.mp4"
        render_animatic(_spec(stills=still, motion=motion), out)
        frames = _decode(out).astype(np.int16)
        change = np.abs(frames[0] - frames[-1])[TOP].mean()
        if motion == "static":
            assert change < 2, motion
        else:
            assert change > 4, motion


# --------------------------------------------------------------------------- continuation


def test_a_continuation_starts_on_the_last_frame_of_its_source(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    render_animatic(
        _spec(stills=((0.0, _pattern(tmp_path / "p.png")),), motion="push-in", seed=4),
        source,
    )
    green = _solid(tmp_path / "green.png", (0, 255, 0))
    follow = tmp_path / "follow.mp4"
    render_animatic(
        _spec(
            seconds=2.0,
            stills=((0.0, green), (2.0, green)),  # the t=0 still gives way to the source frame
            source_video=source,
            motion="pan-right",
            caption="hover · take 1\ncontinues the source",
            seed=9,
        ),
        follow,
    )
    source_end = _decode(source)[-1].astype(np.int16)
    frames = _decode(follow)
    first = frames[0].astype(np.int16)
    assert np.abs(first - source_end)[TOP].mean() < 6
    assert np.abs(first - source_end)[: H - 30].mean() < 8
    assert _mean(frames[-1])[1] > 200  # and it still reaches the later still


def test_last_frame_writes_the_final_frame_as_png(tmp_path: Path) -> None:
    red = _solid(tmp_path / "red.png", (255, 0, 0))
    blue = _solid(tmp_path / "blue.png", (0, 0, 255))
    video = tmp_path / "clip.mp4"
    render_animatic(_spec(stills=((0.0, red), (1.5, blue))), video)
    dest = last_frame(video, tmp_path / "nested" / "last.png")
    assert dest == tmp_path / "nested" / "last.png"
    with Image.open(dest) as image:
        assert image.size == (W, H)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert np.abs(pixels - _decode(video)[-1]).mean() < 2
    assert pixels[TOP].reshape(-1, 3).mean(axis=0)[2] > 200


def test_last_frame_of_a_one_frame_clip(tmp_path: Path) -> None:
    video = tmp_path / "one.mp4"
    render_animatic(_spec(seconds=0.0), video)
    with Image.open(last_frame(video, tmp_path / "last.png")) as image:
        assert image.size == (W, H)


# --------------------------------------------------------------------------- text


def test_caption_band_darkens_the_bottom_and_keeps_the_top(tmp_path: Path) -> None:
    white = _solid(tmp_path / "white.png", (255, 255, 255))
    long_prompt = " ".join(["a very long prompt with ünïcödé — and emoji 🐦"] * 30)
    spec = _spec(stills=((0.0, white),), caption=f"hover · take 3\n{long_prompt}")
    render_animatic(spec, tmp_path / "clip.mp4")
    frame = _decode(tmp_path / "clip.mp4")[0].astype(np.float64)
    assert frame[TOP].mean() > 245
    assert frame[H - 8 :].mean() < 170


def test_title_is_drawn_in_the_middle(tmp_path: Path) -> None:
    black = _solid(tmp_path / "black.png", (0, 0, 0))
    render_animatic(_spec(stills=((0.0, black),), title="THE END"), tmp_path / "clip.mp4")
    frame = _decode(tmp_path / "clip.mp4")[0].astype(np.float64)
    assert frame[H // 3 : 2 * H // 3, W // 4 : 3 * W // 4].max() > 200
    assert frame[:8].max() < 30 and frame[:, :8].max() < 30


@pytest.mark.parametrize(("width", "height"), [(2, 2), (16, 16), (64, 8), (8, 64)])
def test_tiny_frames_still_render_with_caption_and_title(
    tmp_path: Path, width: int, height: int
) -> None:
    spec = AnimaticSpec(
        width, height, FPS, 0.5, motion="push-in", caption="shot · take 1\nprompt", title="T"
    )
    render_animatic(spec, tmp_path / "clip.mp4")
    assert len(_decode(tmp_path / "clip.mp4", width, height)) == 6


@given(
    caption=st.text(st.characters(codec="utf-8"), max_size=300),
    width=st.integers(min_value=20, max_value=400),
    max_lines=st.integers(min_value=1, max_value=4),
)
def test_wrapped_lines_fit_the_band(caption: str, width: int, max_lines: int) -> None:
    font = text.embedded_font(14)
    lines = text.wrap(text.displayable(caption, font), font, width, max_lines)
    assert len(lines) <= max_lines
    for line in lines:
        # A single glyph wider than the band is the only thing allowed to stick out.
        assert font.getlength(line) <= width or len(line.rstrip(text.ELLIPSIS)) <= 1


# --------------------------------------------------------------------------- errors


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is not a PNG")
    out = tmp_path / "clip.mp4"
    with pytest.raises(MediaError, match=r"not-an-image\.png"):
        render_animatic(_spec(stills=((0.0, bad),)), out)
    with pytest.raises(MediaError, match=r"missing\.png"):
        render_animatic(_spec(stills=((0.0, tmp_path / "missing.png"),)), out)
    assert not out.exists()


def test_an_ffmpeg_failure_raises_media_error_with_its_message(tmp_path: Path) -> None:
    out = tmp_path / "no-such-folder" / "clip.mp4"
    failed = r"could not write the animatic .*: ffmpeg failed \(exit status \d+\): .+"
    with pytest.raises(MediaError, match=failed):
        render_animatic(_spec(), out)
    assert not out.exists()


def test_last_frame_of_a_broken_video_raises_media_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError, match=r"broken\.mp4"):
        last_frame(broken, tmp_path / "last.png")
    with pytest.raises(MediaError, match=r"absent\.mp4"):
        render_animatic(_spec(source_video=tmp_path / "absent.mp4"), tmp_path / "clip.mp4")


def _ffmpeg_children() -> list[int]:
    """Pids of this process's children (zombies included) that run ffmpeg (Linux only)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ffmpeg" in cmdline or not cmdline:  # a zombie has an empty command line
            found.append(pid)
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_failure_while_drawing_leaves_no_ffmpeg_process_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_frames(*args: object) -> Iterator[bytes]:
        yield bytes(W * H * 3)
        raise MemoryError("drawing failed")

    monkeypatch.setattr(animatic, "_frames", broken_frames)
    out = tmp_path / "clip.mp4"
    with pytest.raises(MemoryError):
        render_animatic(_spec(), out)
    assert not out.exists()
    assert _ffmpeg_children() == []


def test_a_hung_encode_is_killed_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_frames(*args: object) -> Iterator[bytes]:
        for _ in range(3):
            time.sleep(0.5)
            yield bytes(W * H * 3)

    monkeypatch.setattr(animatic, "_frames", slow_frames)
    monkeypatch.setattr(animatic, "_ENCODE_TIMEOUT_BASE", 0.3)
    monkeypatch.setattr(animatic, "_ENCODE_TIMEOUT_PER_FRAME", 0.0)
    out = tmp_path / "clip.mp4"
    with pytest.raises(MediaError, match="took longer than"):
        render_animatic(_spec(), out)
    assert not out.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 127},
        {"height": 0},
        {"fps": 0},
        {"seconds": -1.0},
        {"seconds": float("nan")},
        {"motion": "zoom"},
        {"stills": ((float("inf"), Path("x.png")),)},
    ],
)
def test_impossible_specs_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _spec(**changes)


# --------------------------------------------------------------------------- prompt hints


@pytest.mark.parametrize(
    ("prompt", "motion"),
    [
        ("slow push-in on the hummingbird", "push-in"),
        ("Push in towards the door", "push-in"),
        ("dolly in, golden hour", "push-in"),
        ("the camera zooms in on her face", "push-in"),
        ("ZOOM-IN", "push-in"),
        ("zoom out to reveal the valley", "pull-out"),
        ("pull back from the window", "pull-out"),
        ("slow pull-out", "pull-out"),
        ("dolly out", "pull-out"),
        ("pan left across the skyline", "pan-left"),
        ("camera pans to the left", "pan-left"),
        ("pan right", "pan-right"),
        ("panning to the right over the market", "pan-right"),
        ("a slow pan across the field", "pan-right"),
        ("tilt up to the tree tops", "tilt-up"),
        ("tilt-down to the river", "tilt-down"),
        ("camera tilts", "tilt-up"),
        ("static shot, locked off", "static"),
        ("on a tripod", "static"),
        ("zoom in, then pan left", "push-in"),  # the earliest hint wins
        ("pan left, then zoom in", "pan-left"),
        ("a panorama of Japan, company logo", "push-in"),  # no "pan" word: the default
        ("a bird on a branch", "push-in"),
        ("", "push-in"),
    ],
)
def test_motion_from_prompt(prompt: str, motion: Motion) -> None:
    assert motion_from_prompt(prompt) == motion


@given(st.text(max_size=200))
def test_motion_from_prompt_always_answers_a_known_motion(prompt: str) -> None:
    assert motion_from_prompt(prompt) in MOTIONS
