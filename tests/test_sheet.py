"""The contact sheet (issue 11 item 4): its size and tiles follow the storyboard, each tile is
the frame of the cut it claims to be, and the same cut gives the same bytes.

Real clips only: a tiny storyboard rendered with the free preview, and a clip made with
ffmpeg's lavfi whose every frame shows its own number, so a tile tells which frame it is.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_image
from PIL import Image

from storyboard.cache import Store
from storyboard.catalog import frame_size
from storyboard.errors import StitchError, UsageError
from storyboard.media import ffmpeg
from storyboard.pipeline import plan_build
from storyboard.sheet import Sheet, write_sheet
from storyboard.timeline import Item, Timeline, timeline_of

# The layout, as the module's documentation states it.
MARGIN, TITLE, LABEL, GAP, MIN_ROW, COLUMNS = 12, 32, 180, 4, 80, 3

BOARD = """\
storyboard: 1
title: sheet test
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  aspect_ratio: "16:9"
  fps: 24
  transition: {type: crossfade, duration: 0.5}
shots:
  - id: open
    card: {text: "Sheet test", duration: 1.0, background: "#204080", color: "#ffee00"}
    transition: cut
  - id: kite
    first_frame: refs/a.png
    prompt: a red kite, push-in
    trim: {start: 0.5}
  - id: door
    first_frame: refs/b.png
    prompt: a blue door, pan left
    takes: 3
    select: 2
"""
SHOTS = ("open", "kite", "door")  # in cut order; "open" is the card


def tile_height(tile_width: int, width: int, height: int) -> int:
    return (2 * tile_width * height + width) // (2 * width)


def expected_size(items: int, tile_width: int, width: int, height: int) -> tuple[int, int]:
    row = max(tile_height(tile_width, width, height), MIN_ROW)
    return (
        2 * MARGIN + LABEL + COLUMNS * (GAP + tile_width),
        2 * MARGIN + TITLE + items * row + (items - 1) * GAP,
    )


def tile_box(row: int, column: int, tile_width: int, th: int) -> tuple[int, int, int, int]:
    row_height = max(th, MIN_ROW)
    x = MARGIN + LABEL + GAP + column * (tile_width + GAP)
    y = MARGIN + TITLE + row * (row_height + GAP)
    return x, y, x + tile_width, y + th


def pixels(images: list[Image.Image]) -> np.ndarray:
    """Frames as one signed array (frames, height, width, 3), so differences do not wrap."""
    return np.stack([np.asarray(i.convert("RGB"), dtype=np.int16) for i in images])


def frames_of(video: Path, size: tuple[int, int], scratch: Path) -> list[Image.Image]:
    """Every frame of ``video`` scaled to ``size``, read independently of the sheet's code."""
    raw = scratch / f"{video.stem}-{size[0]}x{size[1]}.rgb"
    w, h = size
    graph = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},format=rgb24"
    ffmpeg.run(
        ["-i", str(video), "-vf", graph, "-fps_mode", "passthrough", "-f", "rawvideo", str(raw)],
        what="reading frames for the test",
        timeout=60,
    )
    data = raw.read_bytes()
    n = w * h * 3
    return [Image.frombytes("RGB", size, data[i : i + n]) for i in range(0, len(data), n)]


# -- a rendered preview storyboard, once for the module -------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sheet") / "proj"
    write_image(root / "refs" / "a.png", (200, 60, 40))
    write_image(root / "refs" / "b.png", (40, 90, 200))
    board = root / "storyboard.yaml"
    board.write_text(BOARD, encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        # conftest's clean environment is per test; this render must not see a shared cache.
        env.delenv("STORYBOARD_CACHE", raising=False)
        result = run_cli("render", "-q", str(board))
        assert result.code == 0, result.err
        yield board


def _timeline(board: Path) -> Timeline:
    plan = plan_build(board)
    return timeline_of(plan, Store.for_storyboard(plan.board.path))


@pytest.mark.slow
def test_size_and_tiles_are_what_the_storyboard_implies(rendered: Path) -> None:
    out = rendered.parent / "renders" / "sheet.png"
    sheet = write_sheet(_timeline(rendered), out)
    width, height = frame_size("480p", "16:9")
    th = tile_height(240, width, height)
    size = expected_size(len(SHOTS), 240, width, height)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"  # small enough to keep every colour
        assert image.size == size
        picture = image.convert("RGB")
    # Two clips of three tiles and one card of one tile.
    assert sheet == Sheet(out, *size, tiles=2 * 3 + 1, rows=3, columns=3)
    empty = picture.getpixel(tile_box(0, 1, 240, th)[:2])
    for row, shot in enumerate(SHOTS):
        for column in range(COLUMNS):
            tile = picture.crop(tile_box(row, column, 240, th))
            colours = tile.getcolors(1 << 16)
            plain = colours is not None and len(colours) == 1
            # A drawn tile has a picture; the card's unused slots are one flat colour.
            assert plain == (shot == "open" and column > 0), (shot, column)
    assert picture.getpixel(tile_box(0, 2, 240, th)[:2]) == empty
    # The card is drawn with its own background.
    corner = picture.getpixel(tuple(v + 3 for v in tile_box(0, 0, 240, th)[:2]))
    assert max(abs(a - b) for a, b in zip(corner, (0x20, 0x40, 0x80), strict=True)) <= 6


@pytest.mark.slow
def test_tiles_are_the_frames_the_cut_shows(rendered: Path, tmp_path: Path) -> None:
    """Each clip's tiles are frames record_start + (0, frames // 2, frames - 1) of the
    stitched MP4 (where no transition mixes them), and the selected take is the one shown."""
    timeline = _timeline(rendered)
    out = tmp_path / "sheet.png"
    write_sheet(timeline, out)
    width, height = frame_size("480p", "16:9")
    th = tile_height(240, width, height)
    cut = pixels(frames_of(timeline.cut, (240, th), tmp_path))
    assert len(cut) == timeline.frames
    with Image.open(out) as image:
        picture = pixels([image.convert("RGB")])[0]
    checked = 0
    for row, item in enumerate(timeline.items):
        if item.kind != "clip":
            continue
        before = timeline.items[row - 1].transition_frames if row else 0
        clean = range(
            item.record_start + before, item.record_start + item.frames - item.transition_frames
        )
        for column, k in enumerate((0, item.frames // 2, item.frames - 1)):
            here = item.record_start + k
            if here not in clean:
                continue  # mixed with a neighbour in the cut
            x, y, x2, y2 = tile_box(row, column, 240, th)
            diffs = abs(cut - picture[y:y2, x:x2]).mean(axis=(1, 2, 3))
            # The tile is that frame (up to the sheet's 256 colours), and no other frame of
            # the shot is closer to it.
            assert diffs[here] < 3.0, (item.shot, column, diffs[here])
            assert diffs[here] <= diffs[clean.start : clean.stop].min() + 0.05, (item.shot, column)
            assert diffs[here] < diffs[clean.start : clean.stop].max() - 0.5
            checked += 1
    assert checked >= 4
    # door shows take 2 of its three takes: its middle tile is take 2's frame, not take 1's.
    plan = plan_build(rendered)
    door = next(sp for sp in plan.shots if sp.id == "door")
    item = next(i for i in timeline.items if i.shot == "door")
    assert (item.take, item.takes) == (2, 3)
    x, y, x2, y2 = tile_box(2, 1, 240, th)
    middle = picture[y:y2, x:x2]
    k = timeline.source_frame(item) + item.frames // 2
    by_take = {}
    for take in door.takes:
        assert take.clip is not None
        frame = pixels(frames_of(take.clip.path, (240, th), tmp_path))[k]
        by_take[take.take] = float(abs(frame - middle).mean())
    assert min(by_take, key=by_take.__getitem__) == 2, by_take


@pytest.mark.slow
def test_same_cut_same_bytes_and_nothing_left_behind(rendered: Path, tmp_path: Path) -> None:
    timeline = _timeline(rendered)
    first = write_sheet(timeline, tmp_path / "one.png").path.read_bytes()
    second = write_sheet(_timeline(rendered), tmp_path / "two.png").path.read_bytes()
    assert first == second
    write_sheet(timeline, tmp_path / "one.png")  # over an existing sheet
    assert (tmp_path / "one.png").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]


@pytest.mark.slow
def test_jpeg_when_asked(rendered: Path, tmp_path: Path) -> None:
    timeline = _timeline(rendered)
    for name in ("sheet.jpg", "sheet.JPEG"):
        sheet = write_sheet(timeline, tmp_path / "deeper" / name)
        with Image.open(sheet.path) as image:
            assert image.format == "JPEG"
            assert image.size == (sheet.width, sheet.height)
            assert image.size == expected_size(3, 240, *frame_size("480p", "16:9"))


@pytest.mark.slow
def test_the_command_writes_beside_the_cut(rendered: Path) -> None:
    result = run_cli("sheet", "--json", str(rendered))
    assert result.code == 0, result.err
    data = result.json()
    path = Path(data["path"])
    assert path == rendered.parent / "renders" / "storyboard.preview.sheet.png"
    with Image.open(path) as image:
        assert image.size == (data["width"], data["height"])
    assert (data["tiles"], data["rows"], data["columns"]) == (7, 3, 3)


# -- frames picked to the frame, on numbered clips ---------------------------------------------

FPS = 24
BITS = 6


@pytest.fixture(scope="module")
def numbered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 24 fps, 128x72: frame N shows N in binary as six black or white bars (the
    lowest bit on the left), which survive scaling and any colour reduction."""
    path = tmp_path_factory.mktemp("numbered") / "numbered.mp4"
    bars = f"if(mod(floor(N/pow(2,floor(X*{BITS}/W))),2),235,16)"
    ffmpeg.run(
        ["-f", "lavfi", "-i", f"nullsrc=s=128x72:r={FPS}:d=2,geq=lum='{bars}':cb=128:cr=128",
         "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path)],
        what="making a numbered clip",
        timeout=60,
    )  # fmt: skip
    return path


def frame_number(tile: np.ndarray) -> int:
    """The number a tile of the numbered clip shows, read at the middle of each bar."""
    width = tile.shape[1]
    columns = [int((i + 0.5) * width / BITS) for i in range(BITS)]
    return sum(1 << i for i, x in enumerate(columns) if tile[:, x, :].mean() > 128)


def _clip(shot: str, path: Path, *, frames: int, start: float, at: int) -> Item:
    return Item(
        shot=shot, kind="clip", frames=frames, record_start=at, source_start=start,
        transition="cut", transition_frames=0, path=path, take=1, takes=1, model="skyreels-v1",
    )  # fmt: skip


def _card(shot: str, *, frames: int, at: int) -> Item:
    return Item(
        shot=shot, kind="card", frames=frames, record_start=at, source_start=0.0,
        transition="cut", transition_frames=0, card_text="The end", card_background="#10201a",
        card_color="#f4e3b0",
    )  # fmt: skip


def _numbered_timeline(clip: Path) -> Timeline:
    items = (
        _clip("numbered", clip, frames=30, start=0.5, at=0),
        # Asks for 40 frames from 1.0 s of a 2 s clip: the cutter clones the last frame.
        _clip("short", clip, frames=40, start=1.0, at=30),
    )
    return Timeline("numbers", clip.with_name("cut.mp4"), "preview", FPS, 128, 72, items, None, 70)


@pytest.mark.slow
def test_each_tile_is_the_exact_frame(numbered: Path, tmp_path: Path) -> None:
    all_frames = pixels(frames_of(numbered, (64, 36), tmp_path))
    assert [frame_number(f) for f in all_frames] == list(range(48))  # the clip reads back
    sheet = write_sheet(_numbered_timeline(numbered), tmp_path / "numbers.png", tile_width=64)
    assert (sheet.width, sheet.height) == expected_size(2, 64, 128, 72)
    th = tile_height(64, 128, 72)
    with Image.open(sheet.path) as image:
        picture = pixels([image])[0]
    # numbered: 30 frames from frame 12 (0.5 s); short: frames 24..47, then 47 cloned.
    expected = [(12, 27, 41), (24, 44, 47)]
    shown = [
        tuple(frame_number(picture[y:y2, x:x2]) for x, y, x2, y2 in
              (tile_box(row, column, 64, th) for column in range(COLUMNS)))
        for row in range(2)
    ]  # fmt: skip
    assert shown == expected


@pytest.mark.slow
def test_a_large_sheet_is_reduced_to_256_colours(tmp_path: Path) -> None:
    """Past a megabyte of true colour, a PNG is a palette image: still the same size and
    layout, deterministic, and far smaller than the true-colour image would be."""
    clip = tmp_path / "noise.mp4"
    ffmpeg.run(
        ["-f", "lavfi", "-i", "color=c=gray:s=320x180:r=24:d=0.5,noise=alls=100:allf=t",
         "-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p", str(clip)],
        what="making a noise clip",
        timeout=60,
    )  # fmt: skip
    items = tuple(_clip(f"n{i}", clip, frames=12, start=0.0, at=12 * i) for i in range(4))
    timeline = Timeline("noise", tmp_path / "cut.mp4", "live", FPS, 320, 180, items, None, 48)
    out = tmp_path / "out" / "noise.png"
    sheet = write_sheet(timeline, out, tile_width=320)
    with Image.open(out) as image:
        assert image.mode == "P"
        assert image.size == expected_size(4, 320, 320, 180) == (sheet.width, sheet.height)
        true_colour = io.BytesIO()
        image.convert("RGB").save(true_colour, format="PNG")
    assert true_colour.tell() > 1_000_000
    assert out.stat().st_size < true_colour.tell() / 2
    first = out.read_bytes()
    write_sheet(timeline, out, tile_width=320)
    assert out.read_bytes() == first
    assert [p.name for p in out.parent.iterdir()] == ["noise.png"]


def test_cards_alone_need_no_video_and_follow_the_arithmetic(tmp_path: Path) -> None:
    """A portrait cut of two cards at another tile width: one tile per card."""
    items = (_card("open", frames=24, at=0), _card("close", frames=48, at=24))
    timeline = Timeline("cards", tmp_path / "cut.mp4", "live", FPS, 480, 854, items, None, 72)
    sheet = write_sheet(timeline, tmp_path / "cards.png", tile_width=100)
    th = tile_height(100, 480, 854)
    assert th == 178
    assert (sheet.width, sheet.height) == expected_size(2, 100, 480, 854) == (516, 416)
    assert (sheet.tiles, sheet.rows, sheet.columns) == (2, 2, 3)
    with Image.open(sheet.path) as image:
        assert image.size == (516, 416)
        picture = image.convert("RGB")
    x, y, _, _ = tile_box(1, 0, 100, th)
    corner = picture.getpixel((x + 2, y + 2))
    assert max(abs(a - b) for a, b in zip(corner, (0x10, 0x20, 0x1A), strict=True)) <= 6


def test_what_cannot_be_drawn_is_refused(tmp_path: Path) -> None:
    timeline = Timeline(
        "cards", tmp_path / "cut.mp4", "preview", FPS, 128, 72,
        (_card("open", frames=24, at=0),), None, 24,
    )  # fmt: skip
    with pytest.raises(UsageError, match="png"):
        write_sheet(timeline, tmp_path / "sheet.gif")
    with pytest.raises(UsageError, match="tile_width"):
        write_sheet(timeline, tmp_path / "sheet.png", tile_width=8)
    with pytest.raises(UsageError, match="no shot"):
        write_sheet(replace(timeline, items=()), tmp_path / "sheet.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_missing_clip_names_its_shot(numbered: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone.mp4"
    timeline = _numbered_timeline(numbered)
    timeline = replace(timeline, items=(timeline.items[0], replace(timeline.items[1], path=gone)))
    with pytest.raises(StitchError, match="short") as caught:
        write_sheet(timeline, tmp_path / "sheet.png")
    assert caught.value.shot == "short"
    assert not (tmp_path / "sheet.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def _unrendered(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write_image(root / "refs" / "a.png", (200, 60, 40))
    write_image(root / "refs" / "b.png", (40, 90, 200))
    board = root / "storyboard.yaml"
    board.write_text(BOARD, encoding="utf-8")
    return board


def test_an_unrendered_storyboard_names_the_shot(tmp_path: Path) -> None:
    board = _unrendered(tmp_path)
    with pytest.raises(StitchError, match="kite") as caught:
        _timeline(board)
    assert caught.value.shot == "kite"


def test_the_command_on_an_unrendered_storyboard_names_the_shot(tmp_path: Path) -> None:
    board = _unrendered(tmp_path)
    result = run_cli("sheet", str(board))
    assert result.code == 1, result.err
    assert "kite" in result.err
    assert "storyboard render" in result.err
    renders = board.parent / "renders"
    assert not renders.exists() or not any(renders.iterdir())


def test_the_module_is_importable_without_pillow_loaded() -> None:
    """``storyboard sheet --help`` and ``validate`` stay fast: Pillow loads only to draw."""
    import subprocess
    import sys

    code = "import sys, storyboard.sheet; print('PIL' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    assert done.stdout.strip() == "False"
