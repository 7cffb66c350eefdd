"""Animatic renderer of the preview backend: stills, camera move and caption, encoded locally.

The preview backend (ARCHITECTURE §6) stands in for the hosted video models so that the whole
pipeline runs offline and free. Instead of a grey placeholder it renders an *animatic*: the
shot's images reached at their timestamps and crossfaded between, a slow push-in, pull-out,
pan or tilt over the whole clip, a readable caption band (shot id, take, prompt) and an
optional centred title. Without any image a seeded gradient background is drawn, so that takes
with different seeds look visibly different.

Design points:

* **Fast.** Everything that does not change per frame is prepared once: images are fitted
  (cover-crop) to a canvas slightly larger than the frame, the caption and title overlay is
  drawn once and pasted through a precomputed alpha mask. Per frame there is at most one
  crossfade (a paste through a constant mask), one sub-pixel crop-and-scale
  (``Image.resize`` with a float ``box``) and one masked paste of the overlay, all in
  Pillow's C code; raw RGB frames are piped into the ffmpeg binary of imageio-ffmpeg,
  which encodes in parallel with the drawing.
* **Deterministic.** The same :class:`AnimaticSpec` gives a byte-identical MP4 on the same
  machine and toolchain: palette choices come from a string-seeded :class:`random.Random`,
  x264 runs with a fixed thread count and the muxer in bitexact mode without metadata.
* **Contained.** Failures of ffmpeg or of an image raise :class:`~storyboard.errors.MediaError`
  with the file and ffmpeg's own words; ffmpeg runs through :mod:`storyboard.media.ffmpeg`,
  with a deadline, and no ffmpeg process outlives a call.
"""

from __future__ import annotations

import bisect
import colorsys
import functools
import math
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter, ImageOps

from storyboard.errors import MediaError
from storyboard.media import ffmpeg, text
from storyboard.media.probe import last_frame

__all__ = [
    "MOTIONS",
    "AnimaticSpec",
    "Motion",
    "motion_from_prompt",
    "render_animatic",
]

Motion = Literal["push-in", "pull-out", "pan-left", "pan-right", "tilt-up", "tilt-down", "static"]
MOTIONS: tuple[Motion, ...] = get_args(Motion)

# How far the camera travels: the canvas is this much larger than the frame, so a push-in ends
# 12 % closer and a pan crosses 12 % of the frame width (the brief asks for about 10-15 %).
_MOTION_ZOOM = 1.12

# Encoder settings. The thread count is pinned because x264's output depends on it: letting it
# follow the CPU count would make the same spec encode to different bytes on different machines.
_X264_PRESET = "veryfast"
_X264_CRF = 23
_X264_THREADS = 4
_GOP_SECONDS = 2
# No B-frames: each picture is presented in decoding order, which the stitcher needs to copy
# a clip into the cut instead of re-encoding it (and an extension's concat by copy needs
# nothing else). It costs about 5 % more bytes.
_X264_BFRAMES = 0

# Deadlines (seconds). Generous: a 1080p frame costs a few tens of milliseconds to draw and
# encode, so a render that exceeds these is hung, not slow.
_ENCODE_TIMEOUT_BASE = 30.0
_ENCODE_TIMEOUT_PER_FRAME = 0.25
_LAST_FRAME_TIMEOUT = 60.0

_GOLDEN = 0.6180339887498949
_BAND_OPACITY = 165  # of 255: dark enough for white text over any image, still see-through

_RGB = tuple[int, int, int]
_Box = tuple[float, float, float, float]
_FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AnimaticSpec:
    """Everything that decides the pixels of one animatic clip.

    Attributes:
        width: Frame width in pixels; even (yuv420p needs it).
        height: Frame height in pixels; even.
        fps: Frames per second.
        seconds: Clip length; the clip has ``round(seconds * fps)`` frames, at least one.
        stills: ``(time in s, image file)`` pairs. Each image is shown exactly at its time
            (a time at or after the last frame's timestamp is reached on the last frame),
            neighbours are crossfaded, and before the first / after the last one the nearest
            image holds.
        motion: Slow camera move over the whole clip.
        caption: Text for the translucent band at the bottom (``\\n`` separates paragraphs;
            wrapped, at most three lines, an ellipsis when cut). The first line is
            highlighted in the take's accent colour.
        seed: Drives the generated background, the accent colour and the exact end point of
            the camera move, so that takes differ visibly.
        source_video: When set the clip continues this video: its last frame is the image at
            t=0 (stills at t <= 0 are superseded by it) and the camera move starts from the
            whole frame, so the cut between the two clips is seamless.
        title: Optional large text centred in the frame (title cards).

    Raises:
        ValueError: On impossible geometry (odd or non-positive size, fps < 1, negative or
            non-finite length, unknown motion). These are programming errors of the caller,
            which derives the geometry from the model registry.
    """

    width: int
    height: int
    fps: int
    seconds: float
    stills: tuple[tuple[float, Path], ...] = ()
    motion: Motion = "static"
    caption: str = ""
    seed: int = 0
    source_video: Path | None = None
    title: str = ""

    def __post_init__(self) -> None:
        for name, value in (("width", self.width), ("height", self.height)):
            if value <= 0 or value % 2:
                raise ValueError(f"animatic {name} must be a positive even number, not {value}")
        if self.fps < 1:
            raise ValueError(f"animatic fps must be at least 1, not {self.fps}")
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"animatic length must be a finite number >= 0, not {self.seconds}")
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown camera motion {self.motion!r}; expected one of {MOTIONS}")
        for time, _ in self.stills:
            if not math.isfinite(time):
                raise ValueError(f"still time must be finite, not {time}")

    @property
    def frames(self) -> int:
        """Number of frames the clip will have."""
        return max(1, round(self.seconds * self.fps))


# --------------------------------------------------------------------------- prompt hints

# (pattern, motion). Hyphens and underscores are turned into spaces before matching, so
# "push-in" and "push in" are one case. The earliest hint in the prompt wins; at the same
# position the longer (more specific) match wins, so "pan left" beats plain "pan".
_HINT_PATTERNS: tuple[tuple[str, Motion], ...] = (
    (r"\b(?:static|locked off|lock off|fixed camera|still camera|tripod)\b", "static"),
    (
        r"\b(?:push(?:es|ed|ing)?|dolly(?:ing|ies|ied)?|zoom(?:s|ed|ing)?|track(?:s|ed|ing)?)"
        r" in(?:to|wards?)?\b",
        "push-in",
    ),
    (
        r"\b(?:pull(?:s|ed|ing)?|dolly(?:ing|ies|ied)?|zoom(?:s|ed|ing)?|track(?:s|ed|ing)?)"
        r" (?:out|back)\b",
        "pull-out",
    ),
    (r"\bpan(?:s|ned|ning)? (?:to (?:the )?)?left\b", "pan-left"),
    (r"\bpan(?:s|ned|ning)? (?:to (?:the )?)?right\b", "pan-right"),
    (r"\btilt(?:s|ed|ing)? up(?:wards?)?\b", "tilt-up"),
    (r"\btilt(?:s|ed|ing)? down(?:wards?)?\b", "tilt-down"),
    (r"\bpan(?:s|ned|ning)?\b", "pan-right"),
    (r"\btilt(?:s|ed|ing)?\b", "tilt-up"),
    (r"\bpush(?:es|ed|ing)?\b", "push-in"),
)
_MOTION_HINTS = tuple((re.compile(pattern), motion) for pattern, motion in _HINT_PATTERNS)


def motion_from_prompt(prompt: str) -> Motion:
    """Pick the camera move an animatic should make from the words of a prompt.

    Recognised hints (case-insensitive, hyphen or space): "push in", "dolly in", "zoom in",
    "track in" -> push-in; "pull out", "pull back", "zoom out", "dolly out" -> pull-out;
    "pan left", "pan right", "tilt up", "tilt down"; a plain "pan" -> pan-right, a plain
    "tilt" -> tilt-up, a plain "push" -> push-in; "static", "locked off", "tripod",
    "fixed camera" -> static. When several hints occur the earliest wins. Negations
    ("no pan") are not understood.

    A prompt without any hint gets a gentle push-in: a preview whose frames never move reads
    as a frozen player, and a slow push-in is the most neutral move there is.

    Args:
        prompt: The rendered prompt of the shot.

    Returns:
        The motion for :attr:`AnimaticSpec.motion`.
    """
    text = " ".join(re.sub(r"[-_]", " ", prompt.lower()).split())
    best: tuple[int, int, Motion] | None = None
    for pattern, motion in _MOTION_HINTS:
        match = pattern.search(text)
        if match is None:
            continue
        rank = (match.start(), -(match.end() - match.start()), motion)
        if best is None or rank[:2] < best[:2]:
            best = rank
    return best[2] if best is not None else "push-in"


# --------------------------------------------------------------------------- ffmpeg


# --------------------------------------------------------------------------- encoding


def _encoder_args(spec: AnimaticSpec, out: Path) -> list[str]:
    """The ffmpeg arguments that turn raw RGB frames on stdin into the H.264 MP4 ``out``."""
    size, fps = f"{spec.width}x{spec.height}", spec.fps
    # Convert with the BT.709 matrix and tag the stream so: players and our own decoding
    # (last_frame) then turn the pixels back into the colours that were drawn. Square pixels
    # are stated so that clips of one geometry stay stream-copy compatible in the stitcher.
    video_filter = (
        "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setsar=1,"
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
    )
    options = (
        f"-nostats -f rawvideo -pix_fmt rgb24 -s {size} -r {fps} -i pipe:0"
        f" -map 0:v:0 -an -sn -dn -vf {video_filter}"
        f" -c:v libx264 -preset {_X264_PRESET} -crf {_X264_CRF} -pix_fmt yuv420p"
        f" -g {_GOP_SECONDS * fps} -bf {_X264_BFRAMES} -threads {_X264_THREADS}"
        # Determinism: no encoder or muxer version strings, no creation time, no metadata.
        " -flags:v +bitexact -fflags +bitexact -map_metadata -1"
        # The caller writes to a temporary name, so the format cannot come from the extension.
        " -movflags +faststart -f mp4"
    )
    return [*options.split(), str(out)]


def _encode(frames: Iterable[bytes], spec: AnimaticSpec, out: Path) -> None:
    """Pipe raw frames into ffmpeg and wait for the MP4; on any failure nothing is left."""
    deadline = _ENCODE_TIMEOUT_BASE + _ENCODE_TIMEOUT_PER_FRAME * spec.frames
    try:
        with ffmpeg.Writer(
            _encoder_args(spec, out), what=f"could not write the animatic {out}", timeout=deadline
        ) as writer:
            for data in frames:
                # ffmpeg exited early (bad output path, killed by the deadline): leaving the
                # block reports its exit status and stderr.
                if not writer.write(data):
                    break
    except BaseException:
        # A half-written MP4 has no moov atom and would only be mistaken for a clip.
        out.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- palette


@dataclass(frozen=True)
class _Palette:
    """Seeded colours of one take: background gradient, soft blobs and the accent."""

    top: _RGB
    bottom: _RGB
    blobs: tuple[tuple[float, float, float, _RGB, float], ...]  # x, y, radius, colour, opacity
    angle: float
    accent: _RGB
    focus: tuple[float, float]  # where (in -1..1) a push-in ends or a pan looks


def _hsv(hue: float, saturation: float, value: float) -> _RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _palette(seed: int) -> _Palette:
    """The colours of take ``seed``.

    The base hue steps by the golden ratio from seed to seed, so consecutive seeds (takes
    0, 1, 2 ...) always land far apart on the colour wheel; the rest is drawn from a
    :class:`random.Random` seeded with a string, which is hashed with SHA-512 and therefore
    stable across runs and Python versions (unlike ``hash()``).
    """
    rng = random.Random(f"storyboard.animatic:{seed}")
    hue = ((seed % 2**32) * _GOLDEN + rng.uniform(-0.03, 0.03)) % 1.0
    second = hue + rng.choice((-1, 1)) * rng.uniform(0.06, 0.16)
    accent_hue = hue + 0.5 + rng.uniform(-0.08, 0.08)
    top = _hsv(hue, rng.uniform(0.55, 0.8), rng.uniform(0.5, 0.68))
    bottom = _hsv(second, rng.uniform(0.6, 0.85), rng.uniform(0.14, 0.26))
    blobs = tuple(
        (
            rng.uniform(0.0, 1.0),
            rng.uniform(0.0, 1.0),
            rng.uniform(0.12, 0.3),
            _hsv(
                rng.choice((hue, second, accent_hue)) + rng.uniform(-0.04, 0.04),
                rng.uniform(0.35, 0.7),
                rng.uniform(0.6, 0.95),
            ),
            rng.uniform(0.2, 0.45),
        )
        for _ in range(rng.randint(5, 8))
    )
    return _Palette(
        top=top,
        bottom=bottom,
        blobs=blobs,
        angle=rng.uniform(0.0, 2 * math.pi),
        accent=_hsv(accent_hue, 0.5, 1.0),
        focus=(rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6)),
    )


# 4x4 Bayer matrix: ordered dithering hides the banding of 8-bit gradients without any noise
# that would differ between runs (or cost bitrate by changing from frame to frame).
_BAYER = (
    np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], dtype=np.float32) + 0.5
) / 16.0


def _background(palette: _Palette, size: tuple[int, int]) -> Image.Image:
    """A soft gradient with blurred colour blobs and a vignette, ``size`` pixels.

    Drawn in float at a quarter of the size (it has no detail to lose) and scaled up per
    channel in float, then dithered once into 8 bits.
    """
    width, height = size
    small_w, small_h = max(16, width // 4), max(9, height // 4)
    aspect = width / height
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    xs = (xs + 0.5) / small_w * aspect  # x in 0..aspect, y in 0..1: circles stay round
    ys = (ys + 0.5) / small_h
    direction = np.cos(palette.angle) * (xs - aspect / 2) + np.sin(palette.angle) * (ys - 0.5)
    ramp = np.clip(direction / (aspect / 2 + 0.5) + 0.5, 0.0, 1.0)[..., None]
    top = np.array(palette.top, dtype=np.float32)
    bottom = np.array(palette.bottom, dtype=np.float32)
    image: _FloatArray = (bottom + (top - bottom) * ramp).astype(np.float32)
    for bx, by, radius, colour, opacity in palette.blobs:
        dist2 = (xs - bx * aspect) ** 2 + (ys - by) ** 2
        weight = (opacity * np.exp(-dist2 / (2 * radius * radius)))[..., None]
        image = image + (np.array(colour, dtype=np.float32) - image) * weight
    vignette = 1.0 - 0.45 * ((xs / aspect - 0.5) ** 2 + (ys - 0.5) ** 2) * 2
    image = image * vignette[..., None]
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
                size, Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        for c in range(3)
    ]
    full = np.stack(channels, axis=-1)
    threshold = np.tile(_BAYER, (height // 4 + 1, width // 4 + 1))[:height, :width, None]
    pixels = np.clip(np.floor(full + threshold), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


# --------------------------------------------------------------------------- images


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale and centre-crop ``image`` so that it covers ``size`` exactly (cover fit)."""
    width, height = image.size
    scale = max(size[0] / width, size[1] / height)
    box_w, box_h = size[0] / scale, size[1] / scale
    # Clamp: float rounding can make the box a hair larger than the image (Pillow refuses).
    box_w, box_h = min(box_w, width), min(box_h, height)
    left, top = max(0.0, (width - box_w) / 2), max(0.0, (height - box_h) / 2)
    return image.resize(size, Image.Resampling.LANCZOS, box=(left, top, left + box_w, top + box_h))


def _load_still(
    path: Path, size: tuple[int, int], backdrop: Callable[[], Image.Image]
) -> Image.Image:
    """Read an image file and cover-fit it to ``size`` as RGB.

    Transparent images are laid over the take's generated background (``backdrop()``)
    rather than over black.
    """
    try:
        with Image.open(path) as opened:
            # JPEG can decode at 1/2, 1/4, 1/8 size for free; ask for no less than we need
            # in either orientation (EXIF rotation is applied afterwards).
            side = max(size)
            opened.draft("RGB", (side, side))
            image = ImageOps.exif_transpose(opened)
            image.load()
    except Exception as exc:
        # Pillow's decoders raise a zoo of types on bad files (OSError, SyntaxError,
        # struct.error, DecompressionBombError ...); for the caller they all mean one thing.
        raise MediaError(f"cannot read image {path}: {exc}") from exc
    transparent = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not transparent:
        return _fit(image.convert("RGB"), size)
    fitted = _fit(image.convert("RGBA"), size)
    base = backdrop().convert("RGBA")
    return Image.alpha_composite(base, fitted).convert("RGB")


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class _View:
    """A framing of the canvas: zoom (1 = whole canvas) and centre offsets in -1..1."""

    zoom: float
    fx: float
    fy: float


@dataclass(frozen=True)
class _Camera:
    """The camera path: which window of the canvas each moment of the clip shows."""

    canvas: tuple[int, int]
    frame: tuple[int, int]
    max_zoom: float  # the zoom at which the window is exactly the frame size
    start: _View
    end: _View

    def box(self, progress: float) -> _Box:
        """The canvas window at ``progress`` (0..1, already eased) as a float box."""
        start, end = self.start, self.end
        # Zoom is interpolated geometrically: equal steps of time look like equal steps of
        # magnification (a linear window size would seem to accelerate on a push-in).
        zoom = start.zoom * (end.zoom / start.zoom) ** progress
        fx = start.fx + (end.fx - start.fx) * progress
        fy = start.fy + (end.fy - start.fy) * progress
        canvas_w, canvas_h = self.canvas
        width = self.frame[0] * self.max_zoom / zoom
        height = self.frame[1] * self.max_zoom / zoom
        centre_x = canvas_w / 2 + fx * (canvas_w - width) / 2
        centre_y = canvas_h / 2 + fy * (canvas_h - height) / 2
        left = min(max(centre_x - width / 2, 0.0), canvas_w - width)
        top = min(max(centre_y - height / 2, 0.0), canvas_h - height)
        return (left, top, left + width, top + height)


def _camera(spec: AnimaticSpec, focus: tuple[float, float], canvas: tuple[int, int]) -> _Camera:
    """The camera path for ``spec.motion``; ``focus`` (seeded) varies where it goes."""
    max_zoom = min(canvas[0] / spec.width, canvas[1] / spec.height)
    fx, fy = focus
    whole = _View(1.0, 0.0, 0.0)
    close = max_zoom
    start, end = {
        "static": (whole, whole),
        "push-in": (whole, _View(close, fx, fy)),
        "pull-out": (_View(close, fx, fy), whole),
        # Pans and tilts run from one edge of the canvas to the other; the cross axis sits at
        # the seeded focus so different takes frame the move differently.
        "pan-left": (_View(close, 1.0, fy), _View(close, -1.0, fy)),
        "pan-right": (_View(close, -1.0, fy), _View(close, 1.0, fy)),
        "tilt-up": (_View(close, fx, 1.0), _View(close, fx, -1.0)),
        "tilt-down": (_View(close, fx, -1.0), _View(close, fx, 1.0)),
    }[spec.motion]
    if spec.source_video is not None:
        # A continuation must open on exactly the frame the source ended on, i.e. the whole
        # canvas. (A pull-out therefore holds: it cannot reveal more than the source showed.)
        start = whole
    return _Camera(canvas, (spec.width, spec.height), max_zoom, start, end)


def _smoothstep(x: float) -> float:
    """Ease in and out: zero velocity at both ends, so moves and dissolves start gently."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _blend_at(positions: Sequence[float], index: float) -> tuple[int, int, float]:
    """Which two keys frame ``index`` is between, and how far (eased) toward the second."""
    after = bisect.bisect_right(positions, index)
    if after == 0:
        return 0, 0, 0.0
    current = after - 1
    if after == len(positions):
        return current, current, 0.0
    span = positions[after] - positions[current]
    return current, after, _smoothstep((index - positions[current]) / span)


# --------------------------------------------------------------------------- text


def _colour_layer(size: tuple[int, int], colour: _RGB, alpha: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", size, (*colour, 0))
    layer.putalpha(alpha)
    return layer


@dataclass(frozen=True)
class _Band:
    """Geometry of the caption band for one frame size.

    The band always has room for its maximum number of lines, whatever the caption: its
    height then never jumps between the shots of a cut, and a clip continuing a preview clip
    covers the band baked into that clip's last frame exactly (see :func:`_frost`).
    """

    font_size: int
    line_h: int
    pad: int
    stripe: int
    max_lines: int
    frame_h: int

    @property
    def height(self) -> int:
        """Rows of the opaque part of the band."""
        return self.max_lines * self.line_h + 2 * self.pad

    @property
    def feather(self) -> int:
        """Rows above the band over which its opacity ramps up (none if there is no room)."""
        return max(0, min(max(2, self.pad), self.frame_h - self.height))


def _band(height: int) -> _Band:
    font_size = max(9, round(height * 0.042))
    line_h = text.line_height(text.embedded_font(font_size)) + max(1, font_size // 6)
    pad = max(3, round(font_size * 0.55))
    # The band may cover at most 40 % of the frame, which on tiny frames means one line.
    max_lines = max(1, min(3, (int(height * 0.4) - 2 * pad) // line_h))
    return _Band(font_size, line_h, pad, max(2, font_size // 6), max_lines, height)


def _caption_layer(caption: str, size: tuple[int, int], accent: _RGB) -> Image.Image | None:
    """The caption band: dark translucent, accent stripe on the left, up to three lines."""
    width, height = size
    band = _band(height)
    font = text.embedded_font(band.font_size)
    text_x = band.stripe + band.pad
    lines = text.wrap(
        text.displayable(caption, font), font, width - text_x - band.pad, band.max_lines
    )
    if not lines:
        return None
    top = max(0, height - band.height)  # frames too small for one line get a full band
    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[top:] = _BAND_OPACITY
    # A soft top edge looks less like a UI widget pasted on the film than a hard line does.
    if band.feather:
        steps = np.arange(1, band.feather + 1, dtype=np.float32) / (band.feather + 1)
        ramp = np.round(steps * _BAND_OPACITY).astype(np.uint8)
        alpha[top - band.feather : top] = ramp[:, None]
    layer = _colour_layer(size, (8, 10, 14), Image.fromarray(alpha))
    stripe_alpha = Image.new("L", size, 0)
    stripe_alpha.paste(255, (0, top, band.stripe, height))
    layer = Image.alpha_composite(layer, _colour_layer(size, accent, stripe_alpha))
    # Fewer lines than the band holds are centred vertically in it.
    text_top = top + band.pad + (band.max_lines - len(lines)) * band.line_h // 2
    placed = [((text_x, text_top + i * band.line_h), line) for i, line in enumerate(lines)]
    header_colour = _mix(accent, (255, 255, 255), 0.55)
    layer = Image.alpha_composite(
        layer, _colour_layer(size, header_colour, text.text_mask(size, placed[:1], font))
    )
    body = text.text_mask(size, placed[1:], font)
    return Image.alpha_composite(layer, _colour_layer(size, (238, 238, 238), body))


def _mix(first: _RGB, second: _RGB, amount: float) -> _RGB:
    """``first`` moved ``amount`` (0..1) of the way toward ``second``."""
    r, g, b = (round(a + (z - a) * amount) for a, z in zip(first, second, strict=True))
    return (r, g, b)


def _frost(image: Image.Image, frame_h: int, band: _Band) -> Image.Image:
    """``image`` with the strip a caption band would cover blurred beyond reading.

    Used on the last frame of a source video: when that video is itself a preview clip its
    own caption is baked in exactly where this clip's translucent band goes, and the old text
    showing through would make both unreadable. A frosted strip under the band looks
    intentional when there was no caption, too.
    """
    scale = image.height / frame_h
    strip = min(image.height, math.ceil((band.height + band.feather) * scale))
    top = image.height - strip
    region = image.crop((0, top, image.width, image.height))
    blurred = region.filter(ImageFilter.GaussianBlur(band.font_size * 0.6 * scale))
    # Fade the blur in over the feather rows so no hard edge shows above the band.
    ramp = max(1, math.ceil(band.feather * scale))
    rows = np.minimum(np.arange(strip, dtype=np.float32) / ramp, 1.0) * 255
    mask = np.repeat(np.round(rows).astype(np.uint8)[:, None], image.width, axis=1)
    frosted = image.copy()
    frosted.paste(blurred, (0, top), Image.fromarray(mask))
    return frosted


def _title_layer(title: str, size: tuple[int, int], bottom: int) -> Image.Image | None:
    """Large centred title with a soft shadow, centred in the space above ``bottom``."""
    width, height = size
    font_size = max(12, round(height * 0.1))
    font = text.embedded_font(font_size)
    line_h = text.line_height(font) + max(1, font_size // 8)
    lines = text.wrap(text.displayable(title, font), font, width * 0.86, 3)
    if not lines:
        return None
    block_top = (bottom - len(lines) * line_h) // 2
    placed = [
        ((round((width - font.getlength(line)) / 2), block_top + i * line_h), line)
        for i, line in enumerate(lines)
    ]
    mask = text.text_mask(size, placed, font)
    offset = max(1, font_size // 20)
    shadow = Image.new("L", size, 0)
    shadow.paste(mask, (offset, offset))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1, font_size // 10)))
    shadow = shadow.point(lambda v: v * 3 // 4)
    layer = _colour_layer(size, (0, 0, 0), shadow)
    return Image.alpha_composite(layer, _colour_layer(size, (255, 255, 255), mask))


@dataclass(frozen=True)
class _Overlay:
    """The static part of every frame: an RGB patch, its alpha and where it goes."""

    rgb: Image.Image
    alpha: Image.Image
    origin: tuple[int, int]


def _overlay(spec: AnimaticSpec, accent: _RGB) -> _Overlay | None:
    """Title and caption drawn once, cropped to the pixels they touch."""
    size = (spec.width, spec.height)
    composite = Image.new("RGBA", size, (0, 0, 0, 0))
    caption = _caption_layer(spec.caption, size, accent) if spec.caption.strip() else None
    band_top = spec.height
    if caption is not None:
        composite = Image.alpha_composite(composite, caption)
        band_top = max(0, band_top - _band(spec.height).height)
    if spec.title.strip():
        title = _title_layer(spec.title, size, band_top)
        if title is not None:
            composite = Image.alpha_composite(composite, title)
    bbox = composite.getchannel("A").getbbox()
    if bbox is None:
        return None
    patch = composite.crop(bbox)
    return _Overlay(patch.convert("RGB"), patch.getchannel("A"), (bbox[0], bbox[1]))


# --------------------------------------------------------------------------- frames


def _frames(
    keys: Sequence[tuple[float, Image.Image]],
    camera: _Camera,
    count: int,
    overlay: _Overlay | None,
) -> Iterator[bytes]:
    """Raw RGB bytes of each frame: crossfade, camera window, overlay."""
    positions = [position for position, _ in keys]
    whole = (0.0, 0.0, float(camera.frame[0]), float(camera.frame[1]))
    previous: tuple[int, int, int, _Box] | None = None
    data = b""
    for index in range(count):
        first, second, weight = _blend_at(positions, float(index))
        # The crossfade runs through a constant "L" mask: Pillow's integer masked paste is
        # nearly twice as fast as Image.blend, and 255 levels are plenty for a dissolve.
        level = round(weight * 255)
        if level == 255:
            first, level = second, 0
        box = camera.box(_smoothstep(index / (count - 1)) if count > 1 else 0.0)
        state = (first, second if level else first, level, box)
        if state == previous:
            # Holds (a static camera on one image) repeat the bytes without drawing.
            yield data
            continue
        previous = state
        canvas = keys[first][1]
        if level:
            canvas = canvas.copy()
            canvas.paste(keys[second][1], (0, 0), Image.new("L", canvas.size, level))
        if canvas.size == camera.frame and box == whole:
            frame = canvas.copy() if overlay is not None and not level else canvas
        else:
            # Box (area) resampling: within the 1x-1.12x scales of a camera move it gives
            # the same smooth sub-pixel motion as bilinear at about two thirds of the cost.
            frame = canvas.resize(camera.frame, Image.Resampling.BOX, box=box)
        if overlay is not None:
            frame.paste(overlay.rgb, overlay.origin, overlay.alpha)
        data = frame.tobytes()
        yield data


def _keys(
    spec: AnimaticSpec, canvas: tuple[int, int], palette: _Palette, scratch: Path
) -> list[tuple[float, Image.Image]]:
    """The images of the clip as ``(frame position, fitted canvas)``, sorted by position."""
    last_index = float(spec.frames - 1)
    # Drawn only if something needs it: no image at all, or an image with transparency.
    backdrop = functools.cache(lambda: _background(palette, canvas))
    cache: dict[Path, Image.Image] = {}

    def fitted(path: Path) -> Image.Image:
        if path not in cache:
            cache[path] = _load_still(path, canvas, backdrop)
        return cache[path]

    keys: list[tuple[float, Image.Image]] = []
    stills = sorted(spec.stills, key=lambda still: still[0])
    if spec.source_video is not None:
        source = fitted(_last_frame(spec.source_video, scratch))
        if spec.caption.strip():
            source = _frost(source, spec.height, _band(spec.height))
        keys.append((0.0, source))
        stills = [still for still in stills if still[0] > 0]
    for time, path in stills:
        keys.append((min(max(time * spec.fps, 0.0), last_index), fitted(path)))
    if not keys:
        keys.append((0.0, backdrop()))
    return keys


def _last_frame(video: Path, scratch: Path) -> Path:
    """The last frame of ``video`` as an image file in ``scratch``.

    As :func:`~storyboard.media.probe.last_frame` (the fallback, which can also decode the
    whole video), but the frames of the last half second are written as uncompressed BMP:
    compressing each of them to PNG cost a continuation of a 720p clip most of a second.
    """
    dest = scratch / "source-last-frame.bmp"
    args = ["-sseof", "-0.5", "-i", str(video), "-map", "0:v:0", "-an", "-sn", "-dn"]
    args += ["-pix_fmt", "bgr24", "-c:v", "bmp", "-f", "image2", "-update", "1", str(dest)]
    what = f"cannot read the last frame of {video}"
    done = ffmpeg.run(args, what=what, timeout=_LAST_FRAME_TIMEOUT, check=False)
    if done.code == 0 and dest.is_file() and dest.stat().st_size > 0:
        return dest
    return last_frame(video, scratch / "source-last-frame.png")


def render_animatic(spec: AnimaticSpec, out: Path) -> None:
    """Render the animatic described by ``spec`` as an H.264 MP4 at ``out``.

    The file is yuv420p, BT.709, without audio, with the index at the front (faststart) and
    byte-identical for identical specs. It is written at exactly ``out`` (the caller renames
    it into place); on failure nothing is left there.

    Args:
        spec: What to draw.
        out: The file to write; its folder must exist.

    Raises:
        MediaError: An image or the source video cannot be read, or ffmpeg failed (the
            message carries the end of its output) or ran past its deadline.
    """
    palette = _palette(spec.seed)
    zoom = 1.0 if spec.motion == "static" else _MOTION_ZOOM
    # Round up to even so the window at full zoom never needs pixels outside the canvas.
    canvas = (
        spec.width if zoom == 1.0 else 2 * math.ceil(spec.width * zoom / 2),
        spec.height if zoom == 1.0 else 2 * math.ceil(spec.height * zoom / 2),
    )
    with tempfile.TemporaryDirectory(prefix="storyboard-animatic-") as scratch:
        keys = _keys(spec, canvas, palette, Path(scratch))
    camera = _camera(spec, palette.focus, canvas)
    overlay = _overlay(spec, palette.accent)
    _encode(_frames(keys, camera, spec.frames, overlay), spec, out)
