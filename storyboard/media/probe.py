"""What a video file holds, and its last frame, read with the ffmpeg of :mod:`.ffmpeg`.

imageio-ffmpeg ships no ffprobe, so :func:`probe` parses the stream summary
``ffmpeg -hide_banner -i PATH`` prints: duration, displayed size, frame rate, whether there
is audio, and (:func:`probe_colour`) how the pixels are stored, which the cutter needs to
convert them to BT.709. :func:`last_frame` writes a clip's last frame as a PNG (a
``continues`` shot starts from it). All raise :class:`~storyboard.errors.MediaError`.

:func:`streams` answers the cutter's questions about an H.264 MP4 without starting ffmpeg:
the same facts as :func:`probe_colour` read from the container and the SPS, plus what
joining its samples by stream copy depends on (:class:`VideoCopy`, :class:`AudioCopy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storyboard.errors import MediaError
from storyboard.media import codecs, ffmpeg, mp4

__all__ = [
    "AudioCopy",
    "ClipInfo",
    "Colour",
    "Streams",
    "VideoCopy",
    "last_frame",
    "probe",
    "probe_colour",
    "streams",
]

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


# --------------------------------------------------------------------------------------------
# stream copy facts

# ffmpeg's names of the H.264 matrix coefficients (Table E-5), as probe_colour reports them.
_MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
             8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}  # fmt: skip
_BT709 = (1, 1, 1)


@dataclass(frozen=True)
class VideoCopy:
    """What joining a clip's H.264 samples by stream copy depends on.

    ``timed``: every sample lasts the same, presentation order is decode order and starts
    with the first sample; sample ``i`` is then frame ``i``, shown at ``i / fps`` exactly.
    ``plain`` says the samples can be copied at all: timed, one avc1 sample description with
    4-byte NAL lengths, one SPS and one PPS, progressive 8-bit 4:2:0 limited-range BT.709
    with square pixels, an IDR picture first, and no rotation.
    """

    plain: bool
    timed: bool
    fps: float  # exact when timed: timescale / duration of every sample
    frames: int
    width: int
    height: int
    sps: str  # the parameter sets, hex
    pps: str
    sps_id: int
    pps_id: int
    keyframes: tuple[int, ...]  # sync samples that are IDR pictures: where a copy may start


@dataclass(frozen=True)
class AudioCopy:
    """What copying a clip's AAC packets depends on (``plain``: AAC-LC, 1024-sample packets,
    one sample description, presented from ``priming`` samples into the first packet)."""

    plain: bool
    sample_rate: int
    channels: int
    packets: int
    priming: int


@dataclass(frozen=True)
class Streams:
    """:func:`probe_colour`'s facts read from an MP4, and what stream copy depends on."""

    info: ClipInfo
    colour: Colour
    video: VideoCopy
    audio: AudioCopy | None


def _pix_fmt(sps: codecs.Sps) -> str:
    base = {0: "gray", 1: "yuv420p", 2: "yuv422p", 3: "yuv444p"}.get(sps.chroma_format, "")
    if sps.bit_depth != 8:
        return f"{base}{sps.bit_depth}le"
    return base.replace("yuv", "yuvj") if sps.full_range else base


def _keyframes(path: Path, track: mp4.Track, length_size: int) -> tuple[int, ...]:
    """The sync samples whose first picture is an IDR (only those start a closed sequence)."""
    candidates = range(track.count) if track.sync is None else track.sync
    found = []
    with path.open("rb") as f:
        for i in candidates:
            f.seek(track.offsets[i])
            head = f.read(min(track.sizes[i], 4096))
            vcl = [t for t in codecs.nal_types(head, length_size) if t in (1, 5)]
            if vcl[:1] == [5]:
                found.append(i)
    return tuple(found)


def _shown(track: mp4.Track, movie: mp4.Movie) -> float:
    """Seconds of a track that are shown: its samples' durations, cut by its edit list."""
    total = sum(count * delta for count, delta in track.deltas) / track.timescale
    edited = sum(e.duration for e in track.edits if e.media_time >= 0) / max(movie.timescale, 1)
    return min(total, edited) if edited > 0 else total


def _video_copy(path: Path, track: mp4.Track, movie: mp4.Movie) -> tuple[VideoCopy, codecs.Sps]:
    avcc = codecs.parse_avcc(track.config)
    sps = codecs.parse_sps(avcc.sps[0])
    frames = track.count
    total = sum(count * delta for count, delta in track.deltas)
    delta = track.deltas[0][1] if len(track.deltas) == 1 else 0
    fps = track.timescale / delta if delta else frames * track.timescale / max(total, 1)
    reorders = len({offset for _, offset in track.composition}) > 1
    start = track.composition[0][1] if track.composition else 0
    edits = [e for e in track.edits if e.media_time >= 0 or e.duration > 0]
    shown = _shown(track, movie)
    timed = (
        bool(delta)
        and not reorders
        and len(edits) <= 1
        and all(e.media_time == start and e.rate == 1.0 for e in edits)
        and (bool(edits) or start == 0)  # the first sample is shown at 0
        and shown * track.timescale >= total - delta / 2  # ... and the last one too
    )
    plain = (
        timed
        and track.codec == "avc1"
        and track.entries == 1
        and avcc.length_size == 4
        and len(avcc.sps) == len(avcc.pps) == 1
        and sps.chroma_format == 1
        and sps.bit_depth == sps.chroma_bit_depth == 8
        and sps.progressive
        and not sps.full_range
        and sps.colour == _BT709
        and sps.sar in (None, (1, 1))
        and track.identity_matrix
    )
    pps_id, sps_of_pps = codecs.pps_ids(avcc.pps[0]) if avcc.pps else (-1, -1)
    plain = plain and sps_of_pps == sps.sps_id
    keyframes = _keyframes(path, track, avcc.length_size) if plain else ()
    copy = VideoCopy(
        plain and 0 in keyframes, timed, fps, frames, sps.width, sps.height,
        avcc.sps[0].hex(), avcc.pps[0].hex() if avcc.pps else "", sps.sps_id, pps_id,
        keyframes,
    )  # fmt: skip
    return copy, sps


def _audio_copy(track: mp4.Track) -> AudioCopy:
    try:
        asc = codecs.parse_asc(track.config)
    except ValueError:
        return AudioCopy(False, 0, 0, track.count, 0)
    edits = [e for e in track.edits if e.media_time >= 0]
    priming = edits[0].media_time if edits else 0
    whole = track.deltas[:-1] if len(track.deltas) > 1 else track.deltas
    plain = (
        track.codec == "mp4a"
        and track.entries == 1
        and asc.plain
        and asc.sample_rate == track.timescale
        and all(delta == 1024 for _, delta in whole)
        and len(track.edits) <= 1
        and all(e.rate == 1.0 for e in track.edits)
    )
    return AudioCopy(plain, asc.sample_rate, asc.channels, track.count, priming)


def streams(path: Path) -> Streams | None:
    """What an MP4 with an H.264 video track holds, read from its tables (no ffmpeg).

    ``None`` when the file is something else (another container or codec, a rotated
    picture): :func:`probe_colour` then reads it.

    Raises:
        MediaError: the file cannot be read.
    """
    try:
        movie = mp4.read(path)
    except MediaError:
        if not path.is_file():
            raise MediaError(f"cannot read clip {path}: no such file") from None
        return None
    video = movie.first("vide")
    if video is None or video.codec not in ("avc1", "avc3") or not video.count:
        return None
    if not video.identity_matrix:
        return None  # rotated: ffmpeg says which way
    try:
        copy, sps = _video_copy(path, video, movie)
    except (ValueError, IndexError, OSError):
        return None
    total = _shown(video, movie)
    sound = next((t for t in movie.tracks if t.handler == "soun" and t.count), None)
    audio = _audio_copy(sound) if sound is not None else None
    info = ClipInfo(total, sps.width, sps.height, copy.fps, sound is not None)
    matrix = _MATRICES.get(sps.colour[2], "") if sps.colour else ""
    return Streams(info, Colour(_pix_fmt(sps), sps.full_range, matrix), copy, audio)


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
