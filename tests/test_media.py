"""The media layer (``storyboard.media``): one home for ffmpeg, deadlines on every run, and
render-stage failures that are media errors, not stitch errors.

Real ffmpeg runs on tiny media (128x72, 1-2 s); no mocks.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import pytest

import storyboard
from storyboard import catalog, seams
from storyboard.errors import MediaError, StitchError, StoryboardError
from storyboard.media import ffmpeg
from storyboard.media.probe import last_frame, probe

PACKAGE = Path(storyboard.__file__).parent
W, H, FPS = 128, 72, 12


def _children() -> list[int]:
    """Pids of this process's children that run ffmpeg, zombies included (Linux only)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ffmpeg" in cmdline or not cmdline:
            found.append(pid)
    return found


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    ffmpeg.run(
        ["-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r={FPS}:d=1", "-pix_fmt", "yuv420p", str(path)],
        what="making a test clip",
        timeout=60,
    )
    return path


# --------------------------------------------------------------------------------------------
# one home


def test_only_the_media_layer_locates_or_runs_ffmpeg() -> None:
    """The emulator under storyboard/testing/ is an independent oracle and keeps its own."""
    runners = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "testing" not in path.relative_to(PACKAGE).parts
        and _imports(path) & {"subprocess", "imageio_ffmpeg"}
    }
    # sharing.py runs git (gc --remote reads the locks of every branch), never ffmpeg.
    assert runners - {"sharing.py"} == {"media/ffmpeg.py"}
    assert "ffmpeg" not in (PACKAGE / "sharing.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "module", ["render.py", "live.py", "providers/preview.py", "media/animatic.py"]
)
def test_the_render_stage_does_not_import_the_stitcher(module: str) -> None:
    later = {"storyboard.stitcher", "storyboard.cutter", "storyboard.seams"}
    imported = _imports(PACKAGE / module)
    assert not {name for name in imported if name in later or name.rsplit(".", 1)[0] in later}


def test_every_transition_but_cut_has_a_seam() -> None:
    assert set(seams.TRANSITIONS) == set(catalog.TRANSITIONS) - {"cut"}


# --------------------------------------------------------------------------------------------
# deadlines and errors


def test_a_run_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError, match=r"^encoding forever: ffmpeg took longer than 0 s"):
        ffmpeg.run(
            ["-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=5:d=30", "-f", "null", "-"],
            what="encoding forever",
            timeout=0.3,
        )
    assert time.monotonic() - started < 10
    if sys.platform == "linux":
        assert _children() == []


def test_a_failed_run_names_what_failed_and_quotes_ffmpeg(tmp_path: Path) -> None:
    missing = tmp_path / "absent.mp4"
    with pytest.raises(MediaError) as caught:
        ffmpeg.run(["-i", str(missing), "-f", "null", "-"], what="reading absent", timeout=30)
    message = str(caught.value)
    assert message.startswith("reading absent: ffmpeg failed (exit status ")
    assert "absent.mp4" in message.split("):", 1)[1]  # ffmpeg's own words follow


def test_a_writer_past_its_deadline_is_stopped_with_its_frames_source(tmp_path: Path) -> None:
    stopped: list[bool] = []
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(FPS)]
    args += ["-i", "pipe:0", "-c:v", "libx264", "-f", "mp4", str(tmp_path / "slow.mp4")]
    with (
        pytest.raises(MediaError, match="took longer than"),
        ffmpeg.Writer(
            args, what="slow frames", timeout=0.5, on_timeout=lambda: stopped.append(True)
        ) as writer,
    ):
        for _ in range(4):
            time.sleep(0.3)
            writer.write(bytes(W * H * 3))
    assert stopped == [True]
    if sys.platform == "linux":
        assert _children() == []


def test_a_writer_left_on_an_error_leaves_no_ffmpeg(tmp_path: Path) -> None:
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(FPS)]
    args += ["-i", "pipe:0", "-f", "mp4", str(tmp_path / "half.mp4")]
    with pytest.raises(KeyError), ffmpeg.Writer(args, what="half", timeout=30) as writer:
        writer.write(bytes(W * H * 3))
        raise KeyError("drawing failed")
    if sys.platform == "linux":
        assert _children() == []


def test_probe_and_last_frame_of_a_good_clip(clip: Path, tmp_path: Path) -> None:
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.has_audio) == (W, H, FPS, False)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    frame = last_frame(clip, tmp_path / "deep" / "last.png")
    assert frame.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content", [b"", b"\x00not a video\x00" * 64])
def test_render_stage_media_failures_are_media_errors_not_stitch_errors(
    tmp_path: Path, content: bytes
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(content)
    for read in (lambda: probe(broken), lambda: last_frame(broken, tmp_path / "last.png")):
        with pytest.raises(MediaError) as caught:
            read()
        assert not isinstance(caught.value, StitchError)
        assert isinstance(caught.value, StoryboardError) and caught.value.exit_code == 1
        assert "broken.mp4" in str(caught.value)
