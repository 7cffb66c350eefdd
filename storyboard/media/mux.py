"""Write an MP4 from coded samples of other files, copied byte for byte (no ffmpeg).

The cut is mostly stream copy: clips that already conform, and the pieces and seams the
cutter encoded, are joined sample by sample. :func:`write` does it directly: it reads the
sample tables of the files it copies from (:mod:`storyboard.media.mp4`), lays out one H.264
track and one AAC track interleaved in chunks of about a second, writes ``ftyp``, ``moov``
(first, so that players can start at once: "fast start") and ``mdat``; each chunk is
gathered from its files with a few large reads and written at once.

Writing the container here instead of with the concat demuxer keeps the timing exact: every
video sample lasts one frame, the audio track's edit list skips the encoder priming of its
first packet and ends on the cut's last sample, and a copied range ends exactly where it
should (the concat demuxer ends a file at the first packet of *any* stream past its
``outpoint``, which cuts video short when audio is interleaved ahead of it).

The caller guarantees that what it joins can be decoded with the one sample entry written:
H.264 samples with 4-byte NAL lengths whose parameter sets are all in ``avcc`` (several
SPS/PPS with distinct ids may be), and AAC-LC packets of one sample rate and layout.
Deterministic: the same inputs give the same bytes (no times, no names, no versions).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storyboard.errors import MediaError
from storyboard.media import codecs, mp4
from storyboard.media.encoding import temp_sibling

__all__ = ["Audio", "Span", "Video", "parameter_sets", "write"]

_IDENTITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
# A run of samples of one file is read in one piece unless that would read more than this
# many bytes it does not need (the other track's samples between them).
_SLACK = 1 << 20


@dataclass(frozen=True)
class Span:
    """Samples ``first`` to ``first + count - 1`` of the first ``handler`` track of ``path``."""

    path: Path
    handler: str  # "vide" or "soun"
    first: int
    count: int


@dataclass(frozen=True)
class Video:
    """The picture: spans of H.264 samples, one frame each, at ``fps``."""

    spans: tuple[Span, ...]
    fps: int
    width: int
    height: int
    avcc: bytes  # the AVCDecoderConfigurationRecord every sample decodes with
    colour: tuple[int, int, int] = (1, 1, 1)  # primaries, transfer, matrix (BT.709)


@dataclass(frozen=True)
class Audio:
    """The sound: spans of AAC packets of ``frame`` samples each, presented from ``priming``
    (samples of the first packets that are skipped) for ``samples`` samples."""

    spans: tuple[Span, ...]
    asc: bytes  # AudioSpecificConfig
    sample_rate: int
    channels: int
    priming: int
    samples: int
    frame: int = 1024


# A sample to copy: (index of its file, offset in the file, size).
_Sample = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# boxes


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes([0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F])
    return bytes([tag]) + size + bytes([n & 0x7F]) + body


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Run-length ``(count, value)`` pairs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _stbl(
    entry: bytes,
    durations: Sequence[int],
    sizes: Sequence[int],
    chunks: Sequence[tuple[int, int]],  # (offset, samples)
    sync: Sequence[int] | None,
    wide: bool,
) -> bytes:
    stts = _runs(durations)
    parts = [
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">I", len(stts)), *(struct.pack(">II", *r) for r in stts)),
    ]
    if sync is not None:
        parts.append(
            _full(b"stss", 0, 0, struct.pack(">I", len(sync)), struct.pack(f">{len(sync)}I", *sync))
        )
    stsc: list[tuple[int, int]] = []
    for i, (_, count) in enumerate(chunks):
        if not stsc or stsc[-1][1] != count:
            stsc.append((i + 1, count))
    entries = b"".join(struct.pack(">III", first, count, 1) for first, count in stsc)
    parts.append(_full(b"stsc", 0, 0, struct.pack(">I", len(stsc)), entries))
    parts.append(
        _full(
            b"stsz", 0, 0, struct.pack(">II", 0, len(sizes)), struct.pack(f">{len(sizes)}I", *sizes)
        )
    )
    offsets = [offset for offset, _ in chunks]
    if wide:
        parts.append(
            _full(b"co64", 0, 0, struct.pack(f">I{len(offsets)}Q", len(offsets), *offsets))
        )
    else:
        parts.append(
            _full(b"stco", 0, 0, struct.pack(f">I{len(offsets)}I", len(offsets), *offsets))
        )
    return _box(b"stbl", *parts)


def _versioned(*values: int) -> tuple[int, str]:
    """Version 1 (64-bit times) when any value needs it, else version 0."""
    return (1, "Q") if any(v >= 1 << 32 for v in values) else (0, "I")


def _trak(
    track_id: int,
    handler: bytes,
    timescale: int,
    media_duration: int,
    movie_duration: int,
    edit: tuple[int, int],  # (duration in movie units, media time)
    header: bytes,  # vmhd or smhd
    stbl: bytes,
    size: tuple[int, int] = (0, 0),
) -> bytes:
    version, q = _versioned(movie_duration, media_duration, edit[0])
    tkhd = _full(
        b"tkhd", version, 3,
        struct.pack(f">{q}{q}II{q}", 0, 0, track_id, 0, movie_duration),
        struct.pack(">8xhhhH", 0, 0, 0x0100 if handler == b"soun" else 0, 0),
        _IDENTITY, struct.pack(">II", size[0] << 16, size[1] << 16),
    )  # fmt: skip
    elst = _full(b"elst", version, 0, struct.pack(f">I{q}{q.lower()}hH", 1, edit[0], edit[1], 1, 0))
    mdhd = _full(
        b"mdhd", version, 0,
        struct.pack(f">{q}{q}I{q}HH", 0, 0, timescale, media_duration, 0x55C4, 0),
    )  # fmt: skip
    name = b"VideoHandler\0" if handler == b"vide" else b"SoundHandler\0"
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name)
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"edts", elst), _box(b"mdia", mdhd, hdlr, minf))


def _avc1(video: Video) -> bytes:
    primaries, transfer, matrix = video.colour
    return _box(
        b"avc1",
        struct.pack(">6xH16xHHIIIH32xHh", 1, video.width, video.height,
                    0x480000, 0x480000, 0, 1, 0x18, -1),
        _box(b"avcC", video.avcc),
        _box(b"colr", b"nclx", struct.pack(">HHHB", primaries, transfer, matrix, 0)),
        _box(b"pasp", struct.pack(">II", 1, 1)),
    )  # fmt: skip


def _mp4a(audio: Audio, sizes: Sequence[int], seconds: float) -> bytes:
    average = round(8 * sum(sizes) / seconds) if seconds > 0 else 0
    peak = max(sizes, default=0)
    config = _descriptor(
        4,
        struct.pack(">BB", 0x40, 0x15)
        + peak.to_bytes(3, "big")
        + struct.pack(">II", max(average, peak * 8 * audio.sample_rate // audio.frame), average)
        + _descriptor(5, audio.asc),
    )
    esds = _full(
        b"esds", 0, 0, _descriptor(3, struct.pack(">HB", 0, 0) + config + _descriptor(6, b"\x02"))
    )
    return _box(
        b"mp4a",
        struct.pack(">6xH8xHHHHI", 1, audio.channels, 16, 0, 0, audio.sample_rate << 16),
        esds,
    )


# --------------------------------------------------------------------------------------------
# samples


class _Sources:
    """The files samples are copied from: their tables (read once) and open handles."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.movies: dict[Path, mp4.Movie] = {}

    def track(self, span: Span) -> tuple[int, mp4.Track]:
        movie = self.movies.get(span.path)
        if movie is None:
            movie = self.movies[span.path] = mp4.read(span.path)
            self.paths.append(span.path)
        track = movie.first(span.handler)
        if track is None:
            raise MediaError(f"{span.path} has no {span.handler} track to copy")
        if span.first < 0 or span.first + span.count > track.count:
            raise MediaError(
                f"{span.path}: samples {span.first}..{span.first + span.count - 1} asked for, "
                f"it has {track.count}"
            )
        return self.paths.index(span.path), track


def _video_samples(video: Video, sources: _Sources) -> tuple[list[_Sample], list[int]]:
    samples: list[_Sample] = []
    sync: list[int] = []
    for span in video.spans:
        index, track = sources.track(span)
        end = span.first + span.count
        if track.sync is None:
            sync.extend(range(len(samples) + 1, len(samples) + span.count + 1))
        else:
            base = len(samples) + 1 - span.first
            sync.extend(base + i for i in track.sync if span.first <= i < end)
        offsets, sizes = track.offsets[span.first : end], track.sizes[span.first : end]
        samples.extend(zip([index] * span.count, offsets, sizes, strict=True))
    return samples, sync


def _audio_samples(audio: Audio, sources: _Sources) -> list[_Sample]:
    samples: list[_Sample] = []
    for span in audio.spans:
        index, track = sources.track(span)
        end = span.first + span.count
        offsets, sizes = track.offsets[span.first : end], track.sizes[span.first : end]
        samples.extend(zip([index] * span.count, offsets, sizes, strict=True))
    return samples


def _interleave(
    video: int, audio: int, fps: int, audio_per_second: float
) -> list[tuple[str, int, int]]:
    """Chunks ``(track, first sample, count)`` of about one second each, in file order."""
    chunks: list[tuple[str, int, int]] = []
    v = a = 0
    second = 0
    while v < video or a < audio:
        second += 1
        v_end = min(video, second * fps)
        a_end = min(audio, math.ceil(second * audio_per_second))
        if v_end > v:
            chunks.append(("vide", v, v_end - v))
            v = v_end
        if a_end > a:
            chunks.append(("soun", a, a_end - a))
            a = a_end
    return chunks


def parameter_sets(spans: Sequence[Span]) -> bytes:
    """One ``avcC`` record holding the parameter sets of every file ``spans`` copy from.

    Raises:
        MediaError: a file has no H.264 track, or two files hold different parameter sets
            under one id (their pictures cannot share a sample description).
    """
    sps: dict[int, bytes] = {}
    pps: dict[int, bytes] = {}
    for path in dict.fromkeys(span.path for span in spans):
        track = mp4.read(path).first("vide")
        try:
            record = codecs.parse_avcc(track.config if track is not None else b"")
            for nal in record.sps:
                if sps.setdefault(codecs.parse_sps(nal).sps_id, nal) != nal:
                    raise MediaError(f"{path}: its SPS differs from another file's of one id")
            for nal in record.pps:
                if pps.setdefault(codecs.pps_ids(nal)[0], nal) != nal:
                    raise MediaError(f"{path}: its PPS differs from another file's of one id")
        except ValueError as exc:
            raise MediaError(f"{path}: no H.264 parameter sets to copy ({exc})") from exc
    return codecs.avcc_record([sps[k] for k in sorted(sps)], [pps[k] for k in sorted(pps)])


# --------------------------------------------------------------------------------------------
# writing


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, offset: int, size: int, name: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise MediaError(f"{name} ends before its samples do")
    return data


def _gather(samples: Sequence[_Sample], fds: Sequence[int], names: Sequence[str]) -> bytes:
    """The bytes of ``samples``, in order, read run by run (a run: samples of one file)."""
    parts: list[bytes] = []
    i, n = 0, len(samples)
    while i < n:
        source = samples[i][0]
        j, need, low, high = i, 0, samples[i][1], 0
        while j < n and samples[j][0] == source:
            need += samples[j][2]
            low, high = min(low, samples[j][1]), max(high, samples[j][1] + samples[j][2])
            j += 1
        fd, name = fds[source], names[source]
        if high - low <= need + _SLACK:
            block = _read(fd, low, high - low, name)
            parts += [block[o - low : o - low + size] for _, o, size in samples[i:j]]
        else:
            parts += [_read(fd, o, size, name) for _, o, size in samples[i:j]]
        i = j
    return b"".join(parts)


def write(out: Path, video: Video, audio: Audio | None) -> None:
    """Write ``out`` (atomically: a temp file renamed) from the samples of ``video`` and
    ``audio``.

    Raises:
        MediaError: a file to copy from cannot be read, or ``out`` cannot be written.
    """
    sources = _Sources()
    vsamples, sync = _video_samples(video, sources)
    asamples = _audio_samples(audio, sources) if audio is not None else []
    if not vsamples:
        raise MediaError("nothing to write: the cut has no frames")
    fps = video.fps
    v_scale, v_delta = fps * 1000, 1000
    movie_scale = math.lcm(v_scale, audio.sample_rate if audio else v_scale)
    frames = len(vsamples)
    v_movie = frames * movie_scale // fps
    chunks = _interleave(
        frames, len(asamples), fps, audio.sample_rate / audio.frame if audio else 1.0
    )
    payload = sum(s[2] for s in vsamples) + sum(s[2] for s in asamples)
    wide = payload > (1 << 32) - (64 << 20)

    def moov(offsets: dict[tuple[str, int], int]) -> bytes:
        vchunks = [(offsets[k, f], n) for k, f, n in chunks if k == "vide"]
        achunks = [(offsets[k, f], n) for k, f, n in chunks if k == "soun"]
        traks = [
            _trak(
                1, b"vide", v_scale, frames * v_delta, v_movie, (v_movie, 0),
                _full(b"vmhd", 0, 1, bytes(8)),
                _stbl(_avc1(video), [v_delta] * frames, [s[2] for s in vsamples], vchunks,
                      None if len(sync) == frames else sync, wide),
                (video.width, video.height),
            )
        ]  # fmt: skip
        duration = v_movie
        if audio is not None:
            a_movie = audio.samples * movie_scale // audio.sample_rate
            duration = max(duration, a_movie)
            sizes = [s[2] for s in asamples]
            traks.append(
                _trak(
                    2, b"soun", audio.sample_rate, len(asamples) * audio.frame, a_movie,
                    (a_movie, audio.priming), _full(b"smhd", 0, 0, bytes(4)),
                    _stbl(_mp4a(audio, sizes, audio.samples / audio.sample_rate),
                          [audio.frame] * len(asamples), sizes, achunks, None, wide),
                )
            )  # fmt: skip
        version, q = _versioned(duration)
        mvhd = _full(
            b"mvhd", version, 0,
            struct.pack(f">{q}{q}I{q}IH10x", 0, 0, movie_scale, duration, 0x10000, 0x0100),
            _IDENTITY, bytes(24), struct.pack(">I", len(traks) + 1),
        )  # fmt: skip
        return _box(b"moov", mvhd, *traks)

    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    mdat_header = 16 if wide else 8

    def layout(start: int) -> dict[tuple[str, int], int]:
        at, offsets = start, {}
        for kind, first, count in chunks:
            offsets[kind, first] = at
            pool = vsamples if kind == "vide" else asamples
            at += sum(s[2] for s in pool[first : first + count])
        return offsets

    draft = moov(layout(0))  # chunk offsets do not change the size of the moov
    offsets = layout(len(ftyp) + len(draft) + mdat_header)
    head = moov(offsets)
    assert len(head) == len(draft)
    if wide:
        mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + payload)
    else:
        mdat = struct.pack(">I4s", 8 + payload, b"mdat")

    tmp = temp_sibling(out)
    try:
        with contextlib.ExitStack() as stack:
            fds = [os.open(p, os.O_RDONLY) for p in sources.paths]
            for fd in fds:
                stack.callback(os.close, fd)
            names = [str(p) for p in sources.paths]
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            stack.callback(os.close, out_fd)
            _write_all(out_fd, ftyp + head + mdat)
            for kind, first, count in chunks:
                pool = vsamples if kind == "vide" else asamples
                _write_all(out_fd, _gather(pool[first : first + count], fds, names))
        tmp.replace(out)
    except OSError as exc:
        raise MediaError(f"cannot write {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
