"""Text on pictures: Pillow's embedded font, word wrap, title cards and caption text.

No system font is needed: everything is drawn with the font Pillow embeds (Aileron). Two
layouts live here:

* captions and titles of the animatic (:func:`wrap`): wrapped by rendered width to at most
  a number of lines, words wider than a line broken, an ellipsis when cut, characters the
  font lacks replaced by the nearest it has (:func:`displayable`);
* the stitcher's title cards (:func:`draw_card`): greedy word wrap (:func:`wrap_words`) at a
  size that shrinks until the text fits 90 % of the frame.

Pillow is imported here, so only code that draws imports this module.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageFont

from storyboard.errors import MediaError

__all__ = [
    "ELLIPSIS",
    "Font",
    "displayable",
    "draw_card",
    "ellipsize",
    "embedded_font",
    "line_height",
    "text_mask",
    "wrap",
    "wrap_words",
]

ELLIPSIS = "…"

# Glyphs missing from Pillow's embedded font (Aileron, Basic Latin plus a little) that have an
# obvious ASCII stand-in; anything else missing is first stripped of accents (é -> e).
_GLYPH_FALLBACK = {
    "\u00a0": " ",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u00d7": "x",
    "\u2192": "->",
    "\u2190": "<-",
}

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=16)
def embedded_font(size: int) -> Font:
    """Pillow's embedded font at ``size`` pixels, so that no system font is needed."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        # Pillow < 10.1 (no size argument) or built without FreeType: the small bitmap font
        # is still readable, just not scaled.
        return ImageFont.load_default()


@functools.lru_cache(maxsize=16)
def _missing_glyph(font: Font) -> bytes:
    """The bitmap of the font's "missing glyph" box, to recognise unsupported characters."""
    return bytes(font.getmask("\uffff"))


def displayable(text: str, font: Font) -> str:
    """``text`` with characters the font lacks replaced by the nearest ones it has."""
    missing = _missing_glyph(font)
    supported: dict[str, bool] = {}

    def has(char: str) -> bool:
        if char not in supported:
            supported[char] = char.isspace() or bytes(font.getmask(char)) != missing
        return supported[char]

    out: list[str] = []
    for char in text:
        if has(char):
            out.append(char)
            continue
        stripped = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        if stripped and all(has(c) for c in stripped):
            out.append(stripped)
        else:
            out.append(_GLYPH_FALLBACK.get(char, char))
    return "".join(out)


def line_height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    _, top, _, bottom = font.getbbox("Ag")
    return int(bottom - top) + 2


def ellipsize(line: str, font: Font, max_width: float) -> str:
    """``line`` shortened as needed and ended with an ellipsis, within ``max_width``."""
    line = line.rstrip()
    while line and font.getlength(line + ELLIPSIS) > max_width:
        line = line[:-1].rstrip()
    return line + ELLIPSIS


def wrap(text: str, font: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by rendered width; ``\\n`` starts a new line; cut with an ellipsis.

    Words wider than a line are broken between characters. Stops early once more lines than
    fit have been produced, so a huge prompt costs no more than a short one.
    """
    lines: list[str] = []
    for paragraph in text.splitlines():
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if font.getlength(candidate) <= max_width:
                current = candidate
                continue
            if current:
                lines.append(current)
            rest = word
            while len(rest) > 1 and font.getlength(rest) > max_width:
                cut = _fitting_prefix(rest, font, max_width)
                lines.append(rest[:cut])
                rest = rest[cut:]
            current = rest
            if len(lines) > max_lines:
                break
        if current:
            lines.append(current)
        if len(lines) > max_lines:
            break
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = ellipsize(lines[-1], font, max_width)
    return lines


def _fitting_prefix(word: str, font: Font, max_width: float) -> int:
    """Length of the longest prefix of ``word`` that fits (at least one character)."""
    low, high = 1, len(word)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(word[:mid]) <= max_width:
            low = mid
        else:
            high = mid - 1
    return low


def text_mask(
    size: tuple[int, int], lines: Iterable[tuple[tuple[int, int], str]], font: Font
) -> Image.Image:
    """An "L" mask with ``lines`` drawn in white at their positions.

    Text is drawn into a mask and coloured by compositing, because antialiased text drawn
    straight onto a transparent RGBA layer gets dark fringes.
    """
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for (x, y), line in lines:
        draw.text((x, y), line, fill=255, font=font)
    return mask


def wrap_words(text: str, measure: Callable[[str], float], max_width: float) -> list[str]:
    """Greedy word wrap; explicit newlines are kept."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words = paragraph.split()
        if not words:
            lines.append("")
            continue
        line = words[0]
        for word in words[1:]:
            if measure(f"{line} {word}") <= max_width:
                line = f"{line} {word}"
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def draw_card(
    text: str, width: int, height: int, path: Path, *, background: str, color: str
) -> None:
    """Draw a title card as a PNG of ``width`` x ``height``: ``text`` centred and wrapped.

    ``background`` and ``color`` are CSS hex or colour names (Pillow ``ImageColor``).

    Raises:
        MediaError: a colour is not one Pillow knows.
    """
    try:
        ground = ImageColor.getrgb(background)[:3]
        fill = ImageColor.getrgb(color)[:3]
    except ValueError as exc:
        raise MediaError(f"card {text[:40]!r}: {exc}") from exc
    image = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(image)
    # Start large and shrink until the wrapped text fits 90 % of the frame.
    size = max(8, height // 10)
    while True:
        face = ImageFont.load_default(size=size)
        lines = wrap_words(text, functools.partial(draw.textlength, font=face), width * 0.9)
        block = "\n".join(lines)
        spacing = max(2, size // 4)
        left, top, right, bottom = draw.multiline_textbbox(
            (0, 0), block, font=face, spacing=spacing, align="center"
        )
        if size <= 8 or (right - left <= width * 0.9 and bottom - top <= height * 0.9):
            break
        size = max(8, int(size * 0.85))
    draw.multiline_text(
        (width / 2, height / 2),
        block,
        font=face,
        fill=fill,
        anchor="mm",
        align="center",
        spacing=spacing,
    )
    image.save(path, format="PNG")
