"""Read the tracks and sample tables of an MP4 or QuickTime file, without decoding anything.

The cutter joins clips by copying their coded samples (:mod:`storyboard.media.mux`); for that
it needs, per track, what the container says about each sample: where it is in the file,
how large it is, how long it lasts, whether it is a sync sample, and the codec
configuration of the sample entry (``avcC`` for H.264, the AudioSpecificConfig for AAC).
:func:`read` parses the ``moov`` box of an ISO base media file (MP4, MOV, M4A) into
:class:`Track` objects; it reads nothing but the box headers and the ``moov`` itself.

Fragmented files (``moof``), compact sample sizes (``stz2``) and anything else this reader
does not understand raise :class:`~storyboard.errors.MediaError`: the caller then treats the
clip as one to re-encode.
"""

from __future__ import annotations

import functools
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storyboard.errors import MediaError

__all__ = ["Edit", "Movie", "Track", "read"]

# Bounds: a moov of a one-hour clip is a few MB; anything far larger is not a clip.
_MAX_MOOV = 64 << 20
_MAX_SAMPLES = 10_000_000
_VISUAL_ENTRY = 78  # bytes of a VisualSampleEntry before its child boxes
_AUDIO_ENTRY = {0: 28, 1: 44, 2: 64}  # AudioSampleEntry, by QuickTime sound version


@dataclass(frozen=True)
class Edit:
    """One entry of a track's edit list: ``duration`` in movie units, ``media_time`` in
    track units (-1: an empty edit), ``rate`` 1.0 for normal play."""

    duration: int
    media_time: int
    rate: float


@dataclass(frozen=True)
class Track:
    """One track of a movie: its sample entry and its sample table.

    Sample indices are 0-based. ``deltas`` and ``offsets`` are run-length ``(count, value)``
    pairs as the ``stts`` and ``ctts`` boxes store them.
    """

    track_id: int
    handler: str  # "vide", "soun", ...
    timescale: int
    duration: int  # in track units (mdhd)
    codec: str  # sample entry type: "avc1", "mp4a", ...
    entries: int  # sample descriptions (copying needs exactly one)
    config: bytes  # avcC payload, or the AAC AudioSpecificConfig; b"" otherwise
    width: int  # visual sample entries; 0 otherwise
    height: int
    channels: int  # audio sample entries; 0 otherwise
    identity_matrix: bool  # no rotation or flip in the track header
    edits: tuple[Edit, ...]
    deltas: tuple[tuple[int, int], ...]
    composition: tuple[tuple[int, int], ...]  # (count, offset): empty when no ctts
    sync: tuple[int, ...] | None  # sync samples; None: every sample is one
    sizes: array[int] = field(repr=False)
    chunks: array[int] = field(repr=False)  # chunk offsets in the file
    stsc: tuple[tuple[int, int], ...] = field(repr=False)  # (first chunk 0-based, samples)

    @property
    def count(self) -> int:
        return len(self.sizes)

    @functools.cached_property
    def offsets(self) -> array[int]:
        """Where each sample starts in the file."""
        out = array("q")
        sizes, count = self.sizes, len(self.sizes)
        sample = 0
        runs = self.stsc
        for i, (first, per) in enumerate(runs):
            last = runs[i + 1][0] if i + 1 < len(runs) else len(self.chunks)
            for chunk in range(first, last):
                at = self.chunks[chunk]
                for _ in range(per):
                    if sample >= count:
                        return out
                    out.append(at)
                    at += sizes[sample]
                    sample += 1
        if sample != count:
            raise MediaError(f"the sample table of track {self.track_id} is inconsistent")
        return out


@dataclass(frozen=True)
class Movie:
    """The movie header's timescale and the tracks of a file."""

    timescale: int
    tracks: tuple[Track, ...]

    def first(self, handler: str) -> Track | None:
        """The first track of a kind ("vide", "soun"), if any."""
        return next((t for t in self.tracks if t.handler == handler), None)


# --------------------------------------------------------------------------------------------
# boxes


def _boxes(data: memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of the boxes in ``data[start:end]``."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                break
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise MediaError(f"a {kind!r} box runs past its parent")
        yield bytes(kind), at + header, at + size
        at += size


def _children(data: memoryview, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    found: dict[bytes, list[tuple[int, int]]] = {}
    for kind, a, b in _boxes(data, start, end):
        found.setdefault(kind, []).append((a, b))
    return found


def _find(data: memoryview, start: int, end: int, path: bytes) -> tuple[int, int] | None:
    """The first box along ``path`` (types joined by ``/``) under ``data[start:end]``."""
    for name in path.split(b"/"):
        hit = next(((a, b) for kind, a, b in _boxes(data, start, end) if kind == name), None)
        if hit is None:
            return None
        start, end = hit
    return start, end


def _moov(path: Path) -> bytes:
    """The payload of the file's top-level ``moov`` box."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            length = f.tell()
            at = 0
            while at + 8 <= length:
                f.seek(at)
                head = f.read(16)
                size, kind = struct.unpack_from(">I4s", head)
                header = 8
                if size == 1:
                    (size,) = struct.unpack_from(">Q", head, 8)
                    header = 16
                elif size == 0:
                    size = length - at
                if size < header:
                    break
                if kind == b"moof":
                    raise MediaError(f"{path} is a fragmented MP4")
                if kind == b"moov":
                    if size > _MAX_MOOV:
                        raise MediaError(f"{path}: its moov box is too large ({size} bytes)")
                    f.seek(at + header)
                    data = f.read(size - header)
                    if len(data) != size - header:
                        break
                    return data
                at += size
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from exc
    raise MediaError(f"{path} is not an MP4 or QuickTime file with a moov box")


# --------------------------------------------------------------------------------------------
# tracks


def _full(data: memoryview, at: int) -> tuple[int, int]:
    """Version and the position after the version/flags word of a full box."""
    return data[at], at + 4


def _table(data: memoryview, box: tuple[int, int] | None, fmt: str) -> list[tuple[int, ...]]:
    if box is None:
        return []
    _, at = _full(data, box[0])
    (count,) = struct.unpack_from(">I", data, at)
    width = struct.calcsize(fmt)
    if count > _MAX_SAMPLES or at + 4 + count * width > box[1]:
        raise MediaError("a sample table is larger than its box")
    return list(struct.iter_unpack(fmt, data[at + 4 : at + 4 + count * width]))


def _descriptor(data: bytes, at: int) -> tuple[int, int, int]:
    """An MPEG-4 descriptor's ``(tag, payload start, payload end)`` at ``data[at]``."""
    tag, length, at = data[at], 0, at + 1
    for _ in range(4):
        byte = data[at]
        at += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, at, at + length


def _audio_specific_config(esds: bytes) -> bytes:
    """The DecoderSpecificInfo (AAC: AudioSpecificConfig) inside an ``esds`` payload."""
    try:
        tag, at, end = _descriptor(esds, 4)  # after the full-box word
        if tag != 3:
            return b""
        flags = esds[at + 2]
        at += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
        if flags & 0x40:
            at += 1 + esds[at]
        tag, at, end = _descriptor(esds, at)
        if tag != 4 or esds[at] != 0x40:  # DecoderConfigDescriptor of MPEG-4 audio
            return b""
        at += 13
        while at < end:
            tag, start, stop = _descriptor(esds, at)
            if tag == 5:
                return esds[start:stop]
            at = stop
    except IndexError:
        pass
    return b""


def _entry(data: memoryview, stsd: tuple[int, int]) -> tuple[str, int, bytes, int, int, int]:
    """``(codec, entries, config, width, height, channels)`` of the first sample entry."""
    _, at = _full(data, stsd[0])
    (entries,) = struct.unpack_from(">I", data, at)
    first = next(iter(_boxes(data, at + 4, stsd[1])), None)
    if first is None:
        raise MediaError("a track has no sample description")
    kind, a, b = first
    codec = kind.decode("latin-1")
    config, width, height, channels = b"", 0, 0, 0
    if codec in ("avc1", "avc3", "hvc1", "hev1", "mp4v", "av01", "vp09"):
        width, height = struct.unpack_from(">HH", data, a + 24)
        avcc = _find(data, a + _VISUAL_ENTRY, b, b"avcC")
        if avcc is not None:
            config = bytes(data[avcc[0] : avcc[1]])
    elif codec == "mp4a":
        (version,) = struct.unpack_from(">H", data, a + 8)
        (channels,) = struct.unpack_from(">H", data, a + 16)
        skip = _AUDIO_ENTRY.get(version)
        if skip is not None:
            # QuickTime files may wrap the esds in a 'wave' box.
            esds = _find(data, a + skip, b, b"esds") or _find(data, a + skip, b, b"wave/esds")
            if esds is not None:
                config = _audio_specific_config(bytes(data[esds[0] : esds[1]]))
    return codec, entries, config, width, height, channels


def _track(data: memoryview, start: int, end: int) -> Track | None:
    boxes = _children(data, start, end)
    tkhd, mdia = boxes.get(b"tkhd", [None])[0], boxes.get(b"mdia", [None])[0]
    if tkhd is None or mdia is None:
        return None
    version, at = _full(data, tkhd[0])
    (track_id,) = struct.unpack_from(">I", data, at + (16 if version else 8))
    matrix = struct.unpack_from(">9i", data, at + (48 if version else 36))
    identity = matrix == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    edits: list[Edit] = []
    elst = _find(data, start, end, b"edts/elst")
    if elst is not None:
        fmt = ">QqhH" if data[elst[0]] == 1 else ">IihH"
        for duration, media_time, whole, frac in _table(data, elst, fmt):
            edits.append(Edit(duration, media_time, whole + frac / 65536))
    mdhd = _find(data, *mdia, b"mdhd")
    hdlr = _find(data, *mdia, b"hdlr")
    stbl = _find(data, *mdia, b"minf/stbl")
    if mdhd is None or hdlr is None or stbl is None:
        return None
    version, at = _full(data, mdhd[0])
    if version:
        timescale, duration = struct.unpack_from(">IQ", data, at + 16)
    else:
        timescale, duration = struct.unpack_from(">II", data, at + 8)
    handler = bytes(data[hdlr[0] + 8 : hdlr[0] + 12]).decode("latin-1")
    table = _children(data, *stbl)
    if b"stz2" in table:
        raise MediaError("compact sample sizes (stz2) are not supported")
    stsd = table.get(b"stsd", [None])[0]
    stsz = table.get(b"stsz", [None])[0]
    if stsd is None or stsz is None or timescale <= 0:
        return None
    codec, entries, config, width, height, channels = _entry(data, stsd)
    _, at = _full(data, stsz[0])
    size, count = struct.unpack_from(">II", data, at)
    if count > _MAX_SAMPLES:
        raise MediaError(f"track {track_id} has too many samples ({count})")
    if size:
        sizes = array("q", [size]) * count
    else:
        if at + 8 + 4 * count > stsz[1]:
            raise MediaError("the sample size table is larger than its box")
        sizes = array("q", struct.unpack_from(f">{count}I", data, at + 8))
    if b"co64" in table:
        chunks = array("q", (v for (v,) in _table(data, table[b"co64"][0], ">Q")))
    else:
        chunks = array("q", (v for (v,) in _table(data, table.get(b"stco", [None])[0], ">I")))
    stsc = tuple((first - 1, per) for first, per, _ in _table(data, _one(table, b"stsc"), ">III"))
    deltas = tuple((c, d) for c, d in _table(data, _one(table, b"stts"), ">II"))
    ctts = _one(table, b"ctts")
    composition: tuple[tuple[int, int], ...] = ()
    if ctts is not None:
        signed = data[ctts[0]] == 1
        composition = tuple((c, o) for c, o in _table(data, ctts, ">Ii" if signed else ">II"))
    stss = _one(table, b"stss")
    sync = None if stss is None else tuple(n - 1 for (n,) in _table(data, stss, ">I"))
    if sum(c for c, _ in deltas) != count:
        raise MediaError(f"track {track_id}: its durations do not cover its samples")
    return Track(
        track_id, handler, timescale, duration, codec, entries, config, width, height,
        channels, identity, tuple(edits), deltas, composition, sync, sizes, chunks, stsc,
    )  # fmt: skip


def _one(table: dict[bytes, list[tuple[int, int]]], kind: bytes) -> tuple[int, int] | None:
    found = table.get(kind)
    return found[0] if found else None


def read(path: Path) -> Movie:
    """The tracks of an MP4/MOV/M4A file, read from its ``moov`` box.

    A file is read once per process while its size and modification time stay the same
    (probing a clip and copying its samples both need its tables).

    Raises:
        MediaError: the file cannot be read, is not an ISO base media file, is fragmented,
            or its tables are damaged or of a kind this reader does not know.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from exc
    return _read(path.resolve(), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read(path: Path, size: int, mtime: int) -> Movie:
    del size, mtime  # part of the cache key only
    data = memoryview(_moov(path))
    try:
        mvhd = _find(data, 0, len(data), b"mvhd")
        if mvhd is None:
            raise MediaError(f"{path}: no movie header")
        version, at = _full(data, mvhd[0])
        (scale,) = struct.unpack_from(">I", data, at + (16 if version else 8))
        if _find(data, 0, len(data), b"mvex") is not None:
            raise MediaError(f"{path} is a fragmented MP4")
        tracks = []
        for kind, a, b in _boxes(data, 0, len(data)):
            if kind == b"trak":
                track = _track(data, a, b)
                if track is not None:
                    tracks.append(track)
    except (struct.error, IndexError, ValueError) as exc:
        raise MediaError(f"{path}: damaged MP4 tables ({exc})") from exc
    return Movie(scale, tuple(tracks))
