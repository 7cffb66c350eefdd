"""A contact sheet of the cut: one small image to attach to a pull request (issue 11 item 4).

One row per item of the cut, in cut order: a label column (the shot id, its length in the
cut, the model, ``take N of M`` when the shot has several takes, and the transition into
the next item when there is one) and then the tiles. A clip gets three tiles: the first,
middle and last frame of the part of its selected take that the cut shows (frames ``0``,
``frames // 2`` and ``frames - 1`` of the ``frames`` frames from ``source_start``,
transitions included), taken with the cutter's own filters (input seek, ``fps``, the last
frame cloned when the clip runs short) in one ffmpeg run per clip, clips in parallel. A card
gets ONE tile in the first column: the card as the cut draws it (its text, background and
colour) scaled down; the two other columns of its row stay empty, since a card does not
change. ``Sheet.tiles`` is ``3 * clips + cards``, exactly what is drawn.

Tiles keep the cut's aspect and, like the cut's default ``fit: crop``, fill it:

* ``tile_height = round(tile_width * cut_height / cut_width)`` (half up),
* ``row = max(tile_height, 80)`` (a row always has room for five label lines),
* ``width = 2 * 12 + 180 + 3 * (4 + tile_width)``,
* ``height = 2 * 12 + 32 + rows * row + (rows - 1) * 4``, ``rows`` = items of the cut.

The whole is ``12`` px of margin, a ``32`` px title band (the storyboard's name, the cut's
length, the number of shots and cards, the backend), a ``180`` px label column and ``4`` px
between tiles and rows. A ``.png`` keeps every colour when that takes at most 1 MB (an
animatic, a short cut); otherwise it is reduced to 256 colours (Pillow's fast octree, which
keeps small areas such as a card's text in their colour) and optimised: about 1.2 MB for
twenty shots of finely detailed photographs, less for typical footage. ``.jpg``/``.jpeg``
is a quality 85 JPEG. The same timeline gives the same bytes; the file is written
atomically.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storyboard.errors import MediaError, StitchError, UsageError
from storyboard.timeline import Item, Timeline

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Sheet", "write_sheet"]

_MARGIN = 12
_TITLE = 32
_LABEL = 180
_GAP = 4
_MIN_ROW = 80
_COLUMNS = 3
_MIN_TILE = 32
_MAX_TILE = 1920

_BACKGROUND = (24, 24, 27)
_EMPTY = (36, 36, 40)  # the unused slots of a card's row
_TEXT = (236, 236, 236)
_DIM = (160, 160, 168)
_TITLE_SIZE = 17
_ID_SIZE = 15
_LABEL_SIZE = 12

_JPEG_QUALITY = 85
_PNG_TRUE_COLOUR_LIMIT = 1_000_000  # bytes; a larger true-colour PNG becomes 256 colours
_MAX_WORKERS = 4


@dataclass(frozen=True)
class Sheet:
    """The contact sheet written by :func:`write_sheet`: where, its pixel size, what it holds.

    ``rows`` is the number of items of the cut (clips and cards), ``columns`` the tile
    columns (3), ``tiles`` the tiles drawn (three per clip, one per card).
    """

    path: Path
    width: int
    height: int
    tiles: int
    rows: int
    columns: int


@dataclass(frozen=True)
class _Geometry:
    tile_width: int
    tile_height: int
    row: int
    width: int
    height: int

    @classmethod
    def of(cls, timeline: Timeline, tile_width: int) -> _Geometry:
        tile_height = max(
            1, (2 * tile_width * timeline.height + timeline.width) // (2 * timeline.width)
        )
        row = max(tile_height, _MIN_ROW)
        rows = len(timeline.items)
        return cls(
            tile_width=tile_width,
            tile_height=tile_height,
            row=row,
            width=2 * _MARGIN + _LABEL + _COLUMNS * (_GAP + tile_width),
            height=2 * _MARGIN + _TITLE + rows * row + max(0, rows - 1) * _GAP,
        )

    def tile_origin(self, row: int, column: int) -> tuple[int, int]:
        x = _MARGIN + _LABEL + _GAP + column * (self.tile_width + _GAP)
        return x, self.row_top(row)

    def row_top(self, row: int) -> int:
        return _MARGIN + _TITLE + row * (self.row + _GAP)


def _frame_numbers(frames: int) -> tuple[int, int, int]:
    """The frames a clip's tiles show: first, middle and last of ``frames`` frames."""
    return 0, frames // 2, max(0, frames - 1)


def write_sheet(timeline: Timeline, out: Path, *, tile_width: int = 240) -> Sheet:
    """Draw the contact sheet of ``timeline`` into ``out`` (``.png``, ``.jpg`` or ``.jpeg``).

    See the module's documentation for what is drawn and the layout's arithmetic.

    Raises:
        UsageError: ``out`` has another suffix, ``tile_width`` is out of range, or the
            timeline has no item.
        StitchError: a clip cannot be read (the error names the shot).
        MediaError: the file cannot be written.
    """
    suffix = out.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise UsageError(
            f"a contact sheet is a .png, .jpg or .jpeg image, not {out.name!r}",
            hint=f"name the image {out.with_suffix('.png').name}",
        )
    if not _MIN_TILE <= tile_width <= _MAX_TILE:
        raise UsageError(f"tile_width must be {_MIN_TILE} to {_MAX_TILE} pixels, not {tile_width}")
    if not timeline.items:
        raise UsageError(f"the cut of {timeline.name!r} has no shot to draw")
    geo = _Geometry.of(timeline, tile_width)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Frames and cards are drawn beside the sheet, never outside the folder it goes to.
        scratch = tempfile.TemporaryDirectory(prefix=".sheet-", dir=out.parent)
    except OSError as exc:
        raise MediaError(f"cannot write the contact sheet {out}: {exc}") from exc
    with scratch as folder:
        tiles = _tiles(timeline, geo, Path(folder))
    image = _compose(timeline, geo, tiles)
    _save(image, out, suffix)
    return Sheet(
        path=out,
        width=geo.width,
        height=geo.height,
        tiles=sum(len(t) for t in tiles),
        rows=len(timeline.items),
        columns=_COLUMNS,
    )


# -- tiles -------------------------------------------------------------------------------------


def _tiles(timeline: Timeline, geo: _Geometry, scratch: Path) -> list[list[Image.Image]]:
    """Each item's tiles in cut order: three frames of a clip, one drawing of a card."""
    jobs = [(i, item) for i, item in enumerate(timeline.items) if item.kind == "clip"]
    found: dict[int, list[Image.Image]] = {}
    if jobs:
        workers = max(1, min(len(jobs), os.cpu_count() or 1, _MAX_WORKERS))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sheet") as pool:
            frames = pool.map(
                lambda job: _clip_tiles(timeline, job[1], geo, scratch / f"clip-{job[0]}.rgb"),
                jobs,
            )
            found = {i: tiles for (i, _), tiles in zip(jobs, frames, strict=True)}
    return [
        found[i] if item.kind == "clip" else [_card_tile(timeline, item, geo, scratch)]
        for i, item in enumerate(timeline.items)
    ]


def _clip_tiles(timeline: Timeline, item: Item, geo: _Geometry, raw: Path) -> list[Image.Image]:
    """Frames 0, middle and last of what the cut shows of ``item``, one ffmpeg run."""
    from PIL import Image

    from storyboard.media import ffmpeg
    from storyboard.media.encoding import SWS_ACCURATE, timeout

    assert item.path is not None
    fps, n = timeline.fps, item.frames
    wanted = _frame_numbers(n)
    distinct = sorted(set(wanted))
    tw, th = geo.tile_width, geo.tile_height
    seconds = n / fps
    inputs = ["-threads", "1"]
    if item.source_start > 0:
        inputs += ["-ss", f"{item.source_start:.6f}"]
    inputs += ["-t", f"{seconds + 2 / fps:.6f}", "-i", str(item.path)]
    select = "+".join(f"eq(n\\,{k})" for k in distinct)
    graph = (
        # The cutter's own arithmetic: frame k of the item is frame k of this stream.
        f"fps={fps},tpad=stop=-1:stop_mode=clone,trim=end_frame={n},select={select},"
        f"scale={tw}:{th}:force_original_aspect_ratio=increase:flags={SWS_ACCURATE},"
        f"crop={tw}:{th},format=rgb24"
    )
    args = [*inputs, "-filter_threads", "1", "-vf", graph, "-an", "-fps_mode", "passthrough"]
    args += ["-f", "rawvideo", "-pix_fmt", "rgb24", str(raw)]
    try:
        ffmpeg.run(args, what=f"shot {item.shot}: frames of {item.path}", timeout=timeout(seconds))
        data = raw.read_bytes()
    except (MediaError, OSError) as exc:
        raise StitchError(
            f"shot {item.shot}: cannot take frames from its clip {item.path}: {exc}",
            shot=item.shot,
        ) from exc
    size = tw * th * 3
    if len(data) < size * len(distinct):
        raise StitchError(
            f"shot {item.shot}: its clip {item.path} holds fewer frames than the cut shows "
            f"({len(data) // size} of the {len(distinct)} needed from {item.source_start:.3f} s)",
            shot=item.shot,
        )
    images = {
        k: Image.frombytes("RGB", (tw, th), data[j * size : (j + 1) * size])
        for j, k in enumerate(distinct)
    }
    return [images[k] for k in wanted]


def _card_tile(timeline: Timeline, item: Item, geo: _Geometry, scratch: Path) -> Image.Image:
    """The card as the cutter draws it at the cut's size, scaled down to a tile."""
    from PIL import Image

    from storyboard.media.text import draw_card

    png = scratch / f"card-{item.record_start}.png"
    try:
        draw_card(
            item.card_text or "",
            timeline.width,
            timeline.height,
            png,
            background=item.card_background or "#000000",
            color=item.card_color or "#ffffff",
        )
    except MediaError as exc:
        raise StitchError(f"shot {item.shot}: {exc}", shot=item.shot) from exc
    with Image.open(png) as card:
        tile: Image.Image = card.convert("RGB")
    return tile.resize((geo.tile_width, geo.tile_height), Image.Resampling.LANCZOS)


# -- the page ----------------------------------------------------------------------------------


def _seconds(frames: int, fps: int) -> str:
    return f"{frames / fps:.1f} s"


def _label(item: Item, fps: int) -> list[tuple[str, int, tuple[int, int, int]]]:
    """The lines of an item's label: (text, font size, colour)."""
    lines = [(item.shot, _ID_SIZE, _TEXT), (_seconds(item.frames, fps), _LABEL_SIZE, _TEXT)]
    if item.kind == "card":
        lines.append(("title card", _LABEL_SIZE, _DIM))
    else:
        lines.append((item.model or "", _LABEL_SIZE, _DIM))
        if item.takes > 1 and item.take is not None:
            lines.append((f"take {item.take} of {item.takes}", _LABEL_SIZE, _DIM))
    if item.transition_frames:
        join = _seconds(item.transition_frames, fps)
        lines.append((f"then {item.transition} {join}", _LABEL_SIZE, _DIM))
    return lines


def _title(timeline: Timeline) -> str:
    cards = sum(1 for i in timeline.items if i.kind == "card")
    shots = f"{len(timeline.items)} shot{'s' if len(timeline.items) != 1 else ''}"
    if cards:
        shots += f" ({cards} card{'s' if cards != 1 else ''})"
    return f"{timeline.name} - {timeline.seconds:.1f} s, {shots}, {timeline.backend}"


def _compose(
    timeline: Timeline, geo: _Geometry, tiles: Sequence[Sequence[Image.Image]]
) -> Image.Image:
    from PIL import Image, ImageDraw

    from storyboard.media.text import displayable, ellipsize, embedded_font, line_height

    sheet = Image.new("RGB", (geo.width, geo.height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    def text(
        xy: tuple[int, int], line: str, size: int, fill: tuple[int, int, int], width: int
    ) -> int:
        font = embedded_font(size)
        line = displayable(line, font)
        if font.getlength(line) > width:
            line = ellipsize(line, font, width)
        draw.text(xy, line, font=font, fill=fill)
        return line_height(font)

    text((_MARGIN, _MARGIN), _title(timeline), _TITLE_SIZE, _TEXT, geo.width - 2 * _MARGIN)
    for row, (item, images) in enumerate(zip(timeline.items, tiles, strict=True)):
        y = geo.row_top(row)
        for line, size, fill in _label(item, timeline.fps):
            y += text((_MARGIN, y), line, size, fill, _LABEL - _GAP)
        for column in range(_COLUMNS):
            x, top = geo.tile_origin(row, column)
            if column < len(images):
                sheet.paste(images[column], (x, top))
            else:
                draw.rectangle(
                    [x, top, x + geo.tile_width - 1, top + geo.tile_height - 1], fill=_EMPTY
                )
    return sheet


def _encode(image: Image.Image, suffix: str) -> bytes:
    """The file's bytes: a true-colour PNG when small enough, else 256 colours; or a JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    if suffix != ".png":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
        return buffer.getvalue()
    image.save(buffer, format="PNG")
    if buffer.tell() <= _PNG_TRUE_COLOUR_LIMIT:
        return buffer.getvalue()
    buffer = io.BytesIO()
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _save(image: Image.Image, out: Path, suffix: str) -> None:
    from storyboard.media.encoding import temp_sibling

    data = _encode(image, suffix)
    tmp = temp_sibling(out)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        raise MediaError(f"cannot write the contact sheet {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
