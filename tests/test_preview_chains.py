"""Linear preview chains (issue 13 item 5): an extension copies its source, encodes only the new.

A V4-style extension returns its source followed by the new footage. The preview used to
re-encode the source with every link of a chain; now the source's packets are copied as
they are and only the new footage is encoded, with the same encoder settings, so the concat
is exact. Checked here on tiny clips: each clip's length, the source's packets byte for byte,
the new footage's packets against the same animatic rendered alone, the decoded pictures,
determinism, the re-encoding fallback for a source of another geometry, and the same
through `storyboard render` with a storyboard that writes no output settings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import Project, run_cli
from PIL import Image

from storyboard.catalog import MODELS
from storyboard.errors import MediaError
from storyboard.media import ffmpeg
from storyboard.media.animatic import AnimaticSpec, _last_frame, render_animatic
from storyboard.media.probe import last_frame, probe
from storyboard.model import Shot
from storyboard.providers.base import Job
from storyboard.providers.preview import _video_entry, animatic_spec, render_preview

W, H, FPS = 128, 72, 12
V4 = MODELS["skyreels-v4-fast"]


def _job(
    shot_id: str, seconds: float, upstream: Path | None, *, size: tuple[int, int] = (W, H)
) -> Job:
    shot = Shot(
        id=shot_id,
        index=0,
        line=1,
        model=V4.id,
        prompt=f"{shot_id}: the kite climbs, pan left",
        duration=seconds,
        extends="up" if upstream is not None else None,
    )
    return Job(
        shot=shot,
        spec=V4,
        take=1,
        key=hashlib.sha256(shot_id.encode()).hexdigest(),
        seed=None,
        seconds=seconds,
        width=size[0],
        height=size[1],
        fps=FPS,
        upstream=upstream,
        upstream_mode="extends" if upstream is not None else None,
    )


def _packets(video: Path, tmp: Path) -> list[tuple[str, str]]:
    """(size, md5) of each video packet, in decoding order, as stored (no decoding)."""
    out = tmp / f"{video.name}.packets.txt"
    ffmpeg.run(["-i", str(video), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", str(out)],
               what="packets", timeout=60)  # fmt: skip
    rows = [line.split(",") for line in out.read_text().splitlines() if not line.startswith("#")]
    return [(row[4].strip(), row[5].strip()) for row in rows]


def _pictures(video: Path, tmp: Path) -> list[str]:
    """The md5 of each decoded picture."""
    out = tmp / f"{video.name}.frames.txt"
    ffmpeg.run(["-i", str(video), "-map", "0:v:0", "-f", "framemd5", str(out)],
               what="frames", timeout=60)  # fmt: skip
    return [line.split(",")[5].strip() for line in out.read_text().splitlines()
            if not line.startswith("#")]  # fmt: skip


def _chain(tmp: Path, seconds: tuple[float, ...]) -> list[tuple[Job, Path]]:
    """Render a chain: the first clip from nothing, each next one extending the one before."""
    made: list[tuple[Job, Path]] = []
    upstream: Path | None = None
    for i, length in enumerate(seconds):
        job = _job(f"s{i}", length, upstream)
        out = tmp / f"s{i}.mp4"
        render_preview(job, out)
        made.append((job, out))
        upstream = out
    return made


@pytest.mark.slow
def test_a_chain_copies_each_source_and_encodes_only_the_new_footage(tmp_path: Path) -> None:
    seconds = (1.0, 0.5, 1.5, 0.75)
    chain = _chain(tmp_path, seconds)
    frames = [round(s * FPS) for s in seconds]
    for i, (job, clip) in enumerate(chain):
        # The clip is what the provider returns: the whole source, then the new footage.
        assert len(_packets(clip, tmp_path)) == sum(frames[: i + 1])
        assert probe(clip).duration == pytest.approx(sum(frames[: i + 1]) / FPS, abs=1e-3)
        if i == 0:
            continue
        source = chain[i - 1][1]
        packets = _packets(clip, tmp_path)
        # The source's packets, byte for byte (not re-encoded, no parameter sets added) ...
        assert packets[: sum(frames[:i])] == _packets(source, tmp_path)
        # ... followed by exactly the packets of the new footage rendered on its own.
        alone = tmp_path / f"alone{i}.mp4"
        render_animatic(animatic_spec(job), alone)
        assert packets[sum(frames[:i]) :] == _packets(alone, tmp_path)
        assert _pictures(clip, tmp_path) == _pictures(source, tmp_path) + _pictures(alone, tmp_path)


@pytest.mark.slow
def test_the_same_extension_gives_the_same_bytes(tmp_path: Path) -> None:
    (_, first), (job, clip) = _chain(tmp_path, (0.5, 0.5))
    again = tmp_path / "again.mp4"
    render_preview(job, again)
    assert again.read_bytes() == clip.read_bytes()
    assert first.is_file() and not list(tmp_path.glob("*.concat.txt"))
    assert not list(tmp_path.glob("*.new.mp4"))


@pytest.mark.slow
def test_a_source_of_another_geometry_is_re_encoded_to_the_jobs(tmp_path: Path) -> None:
    source = tmp_path / "wide.mp4"
    render_animatic(AnimaticSpec(width=160, height=72, fps=24, seconds=1.0, seed=3), source)
    job = _job("ext", 0.5, source)
    out = tmp_path / "ext.mp4"
    render_preview(job, out)
    info = probe(out)
    assert (info.width, info.height, round(info.fps)) == (W, H, FPS)
    # The source's second at the job's rate, then the new half second.
    assert len(_pictures(out, tmp_path)) == FPS + round(0.5 * FPS)
    assert _packets(out, tmp_path)[0] != _packets(source, tmp_path)[0]


@pytest.mark.slow
def test_which_clips_join_by_stream_copy(tmp_path: Path) -> None:
    def clip(name: str, width: int, fps: int, seed: int) -> Path:
        path = tmp_path / f"{name}.mp4"
        spec = AnimaticSpec(width=width, height=H, fps=fps, seconds=0.5, seed=seed, caption=name)
        render_animatic(spec, path)
        return path

    a, b = clip("a", W, FPS, 1), clip("b", W, FPS, 2)
    entry = _video_entry(a)
    assert entry is not None and entry == _video_entry(b)  # other pictures, same stream shape
    assert _video_entry(clip("wider", W + 32, FPS, 1)) != entry
    assert _video_entry(clip("faster", W, FPS * 2, 1)) != entry
    # Not an MP4, a truncated one, a missing one: never joined by copy.
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(a.read_bytes()[:100])
    assert _video_entry(text) is _video_entry(cut) is _video_entry(tmp_path / "none.mp4") is None


CHAIN_BOARD = """\
storyboard: 1
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
shots:
  - id: one
    prompt: a kite over a field, push-in
  - id: two
    extends: one
    prompt: the kite climbs higher
  - id: three
    extends: two
    prompt: the kite disappears into the clouds
"""


@pytest.mark.slow
def test_render_of_a_chain_with_auto_output(project: Project, tmp_path: Path) -> None:
    """Through the pipeline: clips in the store grow by their new footage only, the source
    part of each is its upstream's packets, and the cut (no output settings written: auto)
    is at the model's 32 fps and 854x480, frame-exact: three times the new 3 s."""
    project.write(CHAIN_BOARD)
    done = run_cli("render", str(project.file))
    assert done.code == 0, done.err
    clips = {s["id"]: Path(s["output"]) for s in project.plan()["shots"]}
    per_shot = 3 * 32
    assert [len(_packets(clips[s], tmp_path)) for s in ("one", "two", "three")] == [
        per_shot,
        2 * per_shot,
        3 * per_shot,
    ]
    for clip in clips.values():  # each at what the live model returns: V4 480p 16:9, 32 fps
        info = probe(clip)
        assert (info.width, info.height, round(info.fps)) == (854, 480, 32)
    assert _packets(clips["two"], tmp_path)[:per_shot] == _packets(clips["one"], tmp_path)
    assert _packets(clips["three"], tmp_path)[: 2 * per_shot] == _packets(clips["two"], tmp_path)
    cut = project.root / "renders" / "storyboard.preview.mp4"
    info = probe(cut)
    assert (info.width, info.height, round(info.fps)) == (854, 480, 32)
    assert len(_pictures(cut, tmp_path)) == 3 * per_shot


@pytest.mark.slow
def test_the_source_frame_an_extension_starts_from(tmp_path: Path) -> None:
    """The continuation starts from the source's last frame, read without compressing the
    frames before it to PNG: the same pixels as :func:`probe.last_frame` gives."""
    source = tmp_path / "source.mp4"
    spec = AnimaticSpec(width=W, height=H, fps=FPS, seconds=1.5, motion="pan-left", seed=5)
    render_animatic(spec, source)
    fast = _last_frame(source, tmp_path)
    assert fast.suffix == ".bmp"
    with Image.open(fast) as one, Image.open(last_frame(source, tmp_path / "l.png")) as two:
        assert np.array_equal(np.asarray(one.convert("RGB")), np.asarray(two.convert("RGB")))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(source.read_bytes()[:300])
    with pytest.raises(MediaError):
        _last_frame(broken, tmp_path)
