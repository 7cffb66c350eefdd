"""What a video file holds, and its last frame, read with the ffmpeg of :mod:`.ffmpeg`.

imageio-ffmpeg ships no ffprobe, so :func:`probe` parses the stream summary
``ffmpeg -hide_banner -i PATH`` prints: duration, displayed size, frame rate, whether there
is audio, and (:func:`probe_colour`) how the pixels are stored, which the cutter needs to
convert them to BT.709. :func:`last_frame` writes a clip's last frame as a PNG (a
``continues`` shot starts from it). Both raise :class:`~storyboard.errors.MediaError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storyboard.errors import MediaError
from storyboard.media import ffmpeg

__all__ = ["ClipInfo", "Colour", "last_frame", "probe", "probe_colour"]

_PROBE_TIMEOUT = 30.0
_LAST_FRAME_TIMEOUT = 60.0

_DURATION_RE = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio): (.*)$", re.MULTILINE)
_SIZE_RE = re.compile(r"(?:^|[\s,])(\d{2,5})x(\d{2,5})(?=[\s,\[]|$)")
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees")
# "yuv420p(tv, bt709/unknown/unknown, progressive), 1920x1080": pixel format, its details, size
_PIXFMT_RE = re.compile(r"(?:^|, )(\w+)(?:\(([^)]*)\))?, \d{2,5}x\d{2,5}")


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`probe` learns about a video file.

    ``width`` and ``height`` are the displayed size (swapped for clips rotated by 90°).
    """

    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool


@dataclass(frozen=True)
class Colour:
    """How a clip's pixels are stored, as far as converting them to BT.709 goes."""

    pix_fmt: str
    full_range: bool
    matrix: str  # "" when the file does not say


def _parse_colour(video: str) -> Colour:
    match = _PIXFMT_RE.search(video)
    if match is None:
        return Colour("", False, "")
    pix_fmt, details = match.group(1), match.group(2) or ""
    full_range = pix_fmt.startswith("yuvj")
    matrix = ""
    for token in (t.strip() for t in details.split(",")):
        if token in ("tv", "pc"):
            full_range = full_range or token == "pc"
        elif re.fullmatch(r"[\w-]+(/[\w-]+){0,2}", token) and token != "progressive":
            space = token.split("/")[0]
            matrix = "" if space in ("unknown", "reserved") else space
            break
    return Colour(pix_fmt, full_range, matrix)


def probe(path: Path) -> ClipInfo:
    """Read a video file's duration, displayed size, frame rate and whether it has audio.

    Raises:
        MediaError: the file is missing, not a readable video, or has no video stream.
    """
    return probe_colour(path)[0]


def probe_colour(path: Path) -> tuple[ClipInfo, Colour]:
    """:func:`probe`, plus the colour facts normalising needs."""
    what = f"cannot read clip {path}"
    done = ffmpeg.run(
        ["-i", str(path)], what=what, timeout=_PROBE_TIMEOUT, check=False, loglevel=None
    )
    # Without an output file ffmpeg always exits 1; success is an "Input #0" header.
    text = done.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise MediaError(f"{what}: {ffmpeg.tail(text)}")
    video: str | None = None
    has_audio = False
    for match in _STREAM_RE.finditer(text):
        kind, rest = match.groups()
        if kind == "Audio":
            has_audio = True
        elif video is None and "(attached pic)" not in rest:
            video = rest
    if video is None:
        raise MediaError(f"{what}: it has no video stream")
    size = _SIZE_RE.search(video)
    duration = _DURATION_RE.search(text)
    if size is None or duration is None:
        raise MediaError(f"{what}: no frame size or duration in {ffmpeg.tail(text)}")
    hours, minutes, seconds = duration.groups()
    length = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if length <= 0:
        raise MediaError(f"{what}: it is empty (duration 0)")
    fps = 0.0
    for value, kilo, _unit in _RATE_RE.findall(video):
        fps = float(value) * (1000 if kilo else 1)
        break
    width, height = int(size.group(1)), int(size.group(2))
    rotation = _ROTATION_RE.search(text)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        # ffmpeg auto-rotates when decoding, so the filters see the displayed size.
        width, height = height, width
    return ClipInfo(length, width, height, fps, has_audio), _parse_colour(video)


def last_frame(video: Path, dest: Path) -> Path:
    """Write the last frame of a video to a PNG file.

    Only the final half second is decoded (``-sseof``); when that yields nothing (a clip
    shorter than its container claims, or a stream without a known duration) the whole video
    is decoded instead.

    Args:
        video: Any video file ffmpeg can read.
        dest: Where to write the PNG (overwritten; its folder is created).

    Returns:
        ``dest``.

    Raises:
        MediaError: The video cannot be read, has no frames, or ffmpeg timed out.
    """
    if not video.is_file():
        raise MediaError(f"cannot read video {video}: no such file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    what = f"cannot read the last frame of {video}"
    reason = b""
    for seek in (["-sseof", "-0.5"], []):
        dest.unlink(missing_ok=True)
        args = [*seek, "-i", str(video), "-map", "0:v:0", "-an", "-sn", "-dn"]
        # "-update 1" overwrites the one file with every decoded frame: the last one stays.
        args += ["-pix_fmt", "rgb24", "-c:v", "png", "-f", "image2", "-update", "1", str(dest)]
        done = ffmpeg.run(args, what=what, timeout=_LAST_FRAME_TIMEOUT, check=False)
        if done.code == 0 and dest.is_file() and dest.stat().st_size > 0:
            return dest
        reason = done.stderr
    raise MediaError(f"{what}: {ffmpeg.tail(reason)}")
