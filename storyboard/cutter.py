"""Join rendered clips into the final cut, re-encoding as little as possible.

The cutter is the engine of the stitch stage (ARCHITECTURE §8, "stitcher with a fast path").
It works in four steps, each cached in a ``work_dir`` the caller owns:

1. **Normalise** every segment once into *pieces* with identical codec parameters (H.264
   yuv420p High profile without B-frames, the cut's fps and frame size, BT.709 tags, a fixed
   track timescale, 48 kHz stereo PCM audio — silent when the clip has none). Trim, fps
   conversion and crop/pad happen here. A segment is cut into up to three pieces: ``head``
   (the frames the incoming transition consumes), ``body`` and ``tail`` (the frames the
   outgoing transition consumes). Each piece is its own file starting on a keyframe, so a
   body can be joined by stream copy. Pieces are cached by a digest of everything that
   shapes them (segment key, trim, geometry, fit, fps, transition windows).
2. **Seams**: each transition is rendered as one small clip, ``transition_seconds`` long,
   from the tail of A and the head of B, by :mod:`storyboard.seams` (transition name ->
   picture composite + audio mix), with the same encoder settings as the pieces
   (:mod:`storyboard.media.encoding`).
3. **Audio**: the clip audio of all bodies and seams (and the optional soundtrack, looped or
   cut to the picture, at ``volume`` with ``fade_out``) is encoded to AAC *once*, as one
   continuous track. It is cached by the sequence of pieces and the soundtrack settings.
4. **Mux**: the ffmpeg concat demuxer joins the video of bodies and seams by stream copy and
   the cached audio track is copied beside it, into a temp file that is then renamed.

Why PCM inside the pieces and one AAC track at the end: every AAC stream starts with 1024
samples of encoder priming that an MP4 edit list hides. The concat demuxer with ``-c copy``
keeps those packets, so each joined file pushes the audio ~21 ms later (0.85 s of drift
after 40 clips; measured with the ffmpeg 9 that imageio-ffmpeg ships) and the muxer warns
about non-monotonic timestamps. PCM has no priming, so the concatenated audio is sample-exact;
encoding it once keeps the result exact, and caching the encoded track keeps a warm cut a
pure stream copy.

Timing rules:

* A segment lasts a whole number of frames: ``round((end - start) * fps)``, at least one.
  Cards last ``round(seconds * fps)`` frames; ``start``/``end`` do not apply to cards.
* Every transition other than ``cut`` overlaps its neighbours: the cut is
  ``sum(segment lengths) - sum(transition lengths)`` long. ``fade`` goes through black
  within that overlap: the first half fades A's tail out to black, the second half fades
  B's head in from black (the audio dips to silence the same way); the last half of A's
  window and the first half of B's window are not seen.
* Clamping: a transition is at most as long as either neighbour. Transitions are clamped
  left to right, and when a segment is shared by two transitions the outgoing one gets only
  what the incoming one left (``min(requested, len(A) - incoming(A), len(B))``). A
  transition clamped to zero frames becomes a cut. A transition on the last segment is
  ignored.
* Directions follow ffmpeg's ``xfade``: ``wipe-left`` moves the edge leftwards, revealing B
  from the right; ``slide-left`` moves both pictures leftwards, B entering from the right.

The work folder stays bounded: :func:`make_cut` says which work files a cut uses, and
:func:`prune` removes every other one (the caller keeps the files of every cut it still
has). Cuts hold a shared lock on the folder while they run and :func:`prune` takes it
exclusively without waiting, so a prune never removes a piece a running cut is making or
reading; when a cut is running the prune is skipped (the next one catches up).

ffmpeg runs through :mod:`storyboard.media.ffmpeg`: every run has a deadline and is killed on
error or timeout; a failure raises :class:`~storyboard.errors.StitchError` with the tail of
ffmpeg's stderr. moviepy, numpy and Pillow are imported only when a seam or card is actually
rendered, so a warm cut costs one ffmpeg run and no heavy imports.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storyboard import seams
from storyboard.catalog import TRANSITIONS as _REGISTRY_TRANSITIONS
from storyboard.errors import MediaError, StitchError
from storyboard.media import ffmpeg, probe
from storyboard.media.encoding import (
    AUDIO_PCM_ARGS,
    COLOUR,
    MUX_ARGS,
    SAMPLE_RATE,
    fit_filter,
    samples,
    temp_sibling,
    timeout,
    video_codec_args,
)
from storyboard.media.probe import Colour
from storyboard.workfolder import work_lock

__all__ = [
    "TRANSITIONS",
    "CardSpec",
    "CutResult",
    "CutSpec",
    "Layout",
    "Segment",
    "cut",
    "layout",
    "make_cut",
]

#: Every value ``Segment.transition`` may take (the registry's list of transitions).
TRANSITIONS: frozenset[str] = frozenset(_REGISTRY_TRANSITIONS)

# Bump when anything that changes the bytes of a cached piece changes (encoder settings,
# filter graphs): old cache entries then simply stop being found.
_CACHE_VERSION = "cutter/1"
_AUDIO_BITRATE = "192k"


# --------------------------------------------------------------------------------------------
# Public data


@dataclass(frozen=True)
class CardSpec:
    """A title card drawn locally: centred, wrapped ``text`` on a plain background."""

    text: str
    seconds: float
    background: str = "#000000"  # CSS hex or colour name (Pillow ImageColor)
    color: str = "#ffffff"


@dataclass(frozen=True)
class Segment:
    """One entry of the cut: a rendered clip (with a trim window) or a title card.

    ``transition`` says how this segment joins the *next* one; ``key`` is a content digest
    of the clip or card, used to cache normalised pieces (when empty, the clip file's path,
    size and mtime stand in for it).
    """

    clip: Path | None  # rendered clip; None for a title card
    card: CardSpec | None  # set exactly when clip is None
    start: float = 0.0  # trim window inside the clip, seconds
    end: float | None = None  # None = to the end of the clip
    transition: str = "cut"
    transition_seconds: float = 0.0
    key: str = ""


@dataclass(frozen=True)
class CutSpec:
    """The output settings of the cut."""

    width: int
    height: int
    fps: int
    fit: Literal["crop", "pad"] = "crop"  # how clips of another aspect ratio are fitted
    soundtrack: Path | None = None
    volume: float = 1.0
    fade_out: float = 0.0


@dataclass(frozen=True)
class CutResult:
    """What :func:`make_cut` made: the cut's length and the work files it used."""

    seconds: float
    files: frozenset[Path]  # pieces, seams, audio track and length memos (kept by prune)


# --------------------------------------------------------------------------------------------
# helpers


def _digest(payload: dict[str, object]) -> str:
    blob = json.dumps({"v": _CACHE_VERSION, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _write_json_atomic(path: Path, data: dict[str, object]) -> None:
    tmp = temp_sibling(path)
    try:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class _Source:
    """How many frames a segment lasts, and what normalising it needs to know."""

    frames: int
    has_audio: bool
    start: float
    colour: Colour | None  # None for cards (drawn as RGB)


@dataclass(frozen=True)
class _Piece:
    """One cached piece of a normalised segment."""

    path: Path
    first: int  # first frame (inside the segment)
    frames: int


@dataclass(frozen=True)
class _Plan:
    """A segment with its clamped transition windows and cached piece files."""

    segment: Segment
    source: _Source
    head: int  # frames consumed by the incoming transition
    tail: int  # frames consumed by the outgoing transition
    digest: str
    folder: Path

    def piece(self, name: Literal["head", "body", "tail"]) -> _Piece:
        n = self.source.frames
        first, count = {
            "head": (0, self.head),
            "body": (self.head, n - self.head - self.tail),
            "tail": (n - self.tail, self.tail),
        }[name]
        return _Piece(self.folder / f"{self.digest}.{name}.mov", first, count)

    def pieces(self) -> list[_Piece]:
        return [p for p in (self.piece("head"), self.piece("body"), self.piece("tail")) if p.frames]

    def cached(self) -> bool:
        return all(p.path.is_file() for p in self.pieces())


def _identity(segment: Segment) -> str:
    """What the cache believes a segment's content is."""
    if segment.key:
        return segment.key
    if segment.card is not None:
        return ""  # the card's fields are hashed separately
    assert segment.clip is not None
    try:
        st = segment.clip.stat()
    except OSError as exc:
        raise StitchError(f"cannot read clip {segment.clip}: {exc}") from exc
    # Without a digest, path + size + mtime stand in for the content (as git's index does).
    return f"stat:{segment.clip.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _card_fields(card: CardSpec | None) -> dict[str, object] | None:
    if card is None:
        return None
    return {"text": card.text, "seconds": card.seconds, "bg": card.background, "fg": card.color}


def _length_memo(segment: Segment, identity: str, spec: CutSpec, memo_dir: Path) -> Path:
    """Where the length of a clip segment is remembered."""
    key = {"id": identity, "start": segment.start, "end": segment.end, "fps": spec.fps}
    return memo_dir / f"{_digest(key)}.json"


def _source(segment: Segment, identity: str, spec: CutSpec, memo_dir: Path) -> _Source:
    """Length in frames of a segment; probes a clip only the first time it is seen."""
    if segment.card is not None:
        return _Source(max(1, round(segment.card.seconds * spec.fps)), False, 0.0, None)
    assert segment.clip is not None
    memo = _length_memo(segment, identity, spec, memo_dir)
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
        colour = Colour(str(data["pix_fmt"]), bool(data["full_range"]), str(data["matrix"]))
        return _Source(int(data["frames"]), bool(data["has_audio"]), float(data["start"]), colour)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a missing or damaged memo is a miss
    info, colour = probe.probe_colour(segment.clip)
    start = segment.start
    if start >= info.duration:
        raise StitchError(
            f"trim start {start:g} s is past the end of {segment.clip} ({info.duration:.3f} s)"
        )
    end = info.duration if segment.end is None else min(segment.end, info.duration)
    if end <= start:
        raise StitchError(f"empty trim window {start:g}..{end:g} s for {segment.clip}")
    source = _Source(max(1, round((end - start) * spec.fps)), info.has_audio, start, colour)
    _write_json_atomic(
        memo,
        {
            "frames": source.frames,
            "has_audio": source.has_audio,
            "start": source.start,
            **dataclasses.asdict(colour),
        },
    )
    return source


def _clamp(requested: Sequence[int], lengths: Sequence[int]) -> list[int]:
    """Clamp transition ``i`` (between segments ``i`` and ``i + 1``) to what both can give.

    Left to right: a transition takes at most what the incoming transition left of A, and
    at most all of B.
    """
    clamped: list[int] = []
    incoming = 0
    for i, want in enumerate(requested):
        k = max(0, min(want, lengths[i] - incoming, lengths[i + 1]))
        clamped.append(k)
        incoming = k
    return clamped


def _requested(segments: Sequence[Segment], fps: int) -> list[int]:
    """The frames each transition asks for (between segment ``i`` and ``i + 1``)."""
    return [
        round(seg.transition_seconds * fps) if seg.transition != "cut" else 0
        for seg in segments[:-1]
    ]


@dataclass(frozen=True)
class Layout:
    """Where each segment sits in the cut, in frames at the cut's fps (what :func:`make_cut`
    makes, computed without encoding anything).

    ``frames[i]`` is segment ``i``'s length, ``starts[i]`` the second of its clip where it
    begins (0 for a card), ``joins[i]`` the clamped frames of the transition between
    segment ``i`` and ``i + 1`` (0: a hard cut) and ``offsets[i]`` the frame of the cut
    where segment ``i`` begins.
    """

    frames: tuple[int, ...]
    starts: tuple[float, ...]
    joins: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        at, out = 0, []
        for i, n in enumerate(self.frames):
            out.append(at)
            at += n - (self.joins[i] if i < len(self.joins) else 0)
        return tuple(out)

    @property
    def total(self) -> int:
        return sum(self.frames) - sum(self.joins)


def layout(segments: Sequence[Segment], spec: CutSpec, work_dir: Path) -> Layout:
    """The frames of every segment and transition of the cut :func:`make_cut` would make.

    Probes each clip once (remembered in ``work_dir`` as :func:`make_cut` does); encodes
    nothing. Timeline exports and the review page use it so that they match the cut to the
    frame.
    """
    _check(list(segments), spec)
    memo_dir = work_dir / "lengths"
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StitchError(f"cannot use the work folder {work_dir}: {exc}") from exc
    sources = [_source(seg, _identity(seg), spec, memo_dir) for seg in segments]
    joins = _clamp(_requested(segments, spec.fps), [s.frames for s in sources])
    return Layout(
        frames=tuple(s.frames for s in sources),
        starts=tuple(s.start for s in sources),
        joins=tuple(joins),
    )


# --------------------------------------------------------------------------------------------
# normalising


def _normalise(plan: _Plan, spec: CutSpec, scratch: Path) -> None:
    """Encode a segment's pieces in one ffmpeg run (one decode, up to three encoders)."""
    segment, source, fps = plan.segment, plan.source, spec.fps
    n = source.frames
    seconds = n / fps
    inputs: list[str]
    card_png: Path | None = None
    if segment.card is not None:
        card_png = scratch / f"card-{uuid.uuid4().hex}.png"
        from storyboard.media.text import draw_card  # Pillow: only when a card is drawn

        card = segment.card
        draw_card(
            card.text, spec.width, spec.height, card_png,
            background=card.background, color=card.color,
        )  # fmt: skip
        inputs = ["-loop", "1", "-framerate", str(fps), "-t", f"{seconds + 1:.6f}"]
        inputs += ["-i", str(card_png)]
        label = f"card {segment.card.text[:40]!r}"
    else:
        assert segment.clip is not None
        inputs = ["-threads", "1"]
        if source.start > 0:
            # Input seeking decodes from the previous keyframe and drops what lies before
            # the start, so the trim is frame-accurate.
            inputs += ["-ss", f"{source.start:.6f}"]
        # A little more than needed; tpad/trim below make the frame count exact.
        inputs += ["-t", f"{seconds + 2 / fps:.6f}", "-i", str(segment.clip)]
        label = f"normalising {segment.clip}"
    if source.has_audio:
        audio_in = "[0:a:0]"
    else:
        inputs += ["-f", "lavfi", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo"]
        audio_in = "[1:a:0]"

    pieces = plan.pieces()
    count = len(pieces)
    total_samples = samples(n, fps)
    video = (
        f"[0:v:0]fps={fps},{fit_filter(spec.width, spec.height, spec.fit, source.colour)},{COLOUR},"
        # Clone the last frame if the clip is shorter than its stated duration.
        f"tpad=stop=-1:stop_mode=clone,trim=end_frame={n}"
    )
    audio = (
        f"{audio_in}aresample={SAMPLE_RATE},aformat=sample_fmts=s16:channel_layouts=stereo,"
        # Pad with silence if the audio is short, then cut at the exact sample count.
        f"apad,atrim=end_sample={total_samples}"
    )
    if count == 1:
        graph = [f"{video},setpts=PTS-STARTPTS[v0]", f"{audio},asetpts=PTS-STARTPTS[a0]"]
    else:
        # One decode feeds every piece: split, then cut each copy to its frame range.
        graph = [
            f"{video},split={count}" + "".join(f"[vs{i}]" for i in range(count)),
            f"{audio},asplit={count}" + "".join(f"[as{i}]" for i in range(count)),
        ]
        for i, piece in enumerate(pieces):
            end = piece.first + piece.frames
            graph.append(
                f"[vs{i}]trim=start_frame={piece.first}:end_frame={end},setpts=PTS-STARTPTS[v{i}]"
            )
            graph.append(
                f"[as{i}]atrim=start_sample={samples(piece.first, fps)}:"
                f"end_sample={samples(end, fps)},asetpts=PTS-STARTPTS[a{i}]"
            )

    args = [*inputs, "-filter_complex", ";".join(graph)]
    temps = [temp_sibling(p.path) for p in pieces]
    for i, tmp in enumerate(temps):
        args += ["-map", f"[v{i}]", "-map", f"[a{i}]", *video_codec_args(fps)]
        args += [*AUDIO_PCM_ARGS, *MUX_ARGS, "-f", "mov", str(tmp)]
    try:
        ffmpeg.run(args, what=label, timeout=timeout(seconds))
        for piece, tmp in zip(pieces, temps, strict=True):
            tmp.replace(piece.path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if card_png is not None:
            card_png.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# audio track and mux


def _concat_list(paths: Iterable[Path], folder: Path) -> Path:
    """Write a concat-demuxer list file; single quotes are escaped the way it expects."""
    lines = []
    for path in paths:
        quoted = str(path.resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'\n")
    listing = folder / f"list-{uuid.uuid4().hex}.txt"
    listing.write_text("".join(lines), encoding="utf-8")
    return listing


def _soundtrack_identity(spec: CutSpec) -> str | None:
    if spec.soundtrack is None:
        return None
    try:
        st = spec.soundtrack.stat()
    except OSError as exc:
        raise StitchError(f"cannot read soundtrack {spec.soundtrack}: {exc}") from exc
    return f"{spec.soundtrack.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _encode_audio(listing: Path, spec: CutSpec, total_frames: int, out: Path) -> None:
    """Encode the whole cut's audio to one continuous AAC track (with the soundtrack mixed)."""
    count = samples(total_frames, spec.fps)
    seconds = total_frames / spec.fps
    args = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    if spec.soundtrack is None:
        args += ["-map", "0:a:0"]
    else:
        fade = min(count, round(spec.fade_out * SAMPLE_RATE))
        music = (
            f"[1:a:0]aresample={SAMPLE_RATE},aformat=channel_layouts=stereo,"
            f"volume={spec.volume:g},atrim=end_sample={count}"
        )
        if fade > 0:
            music += f",afade=t=out:ss={count - fade}:ns={fade}"
        # Looped with -stream_loop, cut to the picture by atrim; amix ends with the clips.
        args += ["-stream_loop", "-1", "-i", str(spec.soundtrack), "-filter_complex"]
        args += [
            f"{music}[m];[0:a:0][m]amix=inputs=2:duration=first:normalize=0:"
            "dropout_transition=0[a]",
            "-map",
            "[a]",
        ]
    tmp = temp_sibling(out)
    args += ["-c:a", "aac", "-b:a", _AUDIO_BITRATE, "-ar", str(SAMPLE_RATE), "-ac", "2"]
    args += ["-flags:a", "+bitexact", *MUX_ARGS, "-f", "ipod", str(tmp)]
    try:
        ffmpeg.run(args, what="encoding the audio of the cut", timeout=timeout(seconds / 10))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _mux(listing: Path, audio: Path, out: Path, seconds: float) -> None:
    """Join the video pieces and the audio track by stream copy into ``out``, atomically."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StitchError(f"cannot write {out}: {exc}") from exc
    tmp = temp_sibling(out)
    args = ["-f", "concat", "-safe", "0", "-i", str(listing), "-i", str(audio)]
    args += ["-map", "0:v:0", "-map", "1:a:0", "-c", "copy", "-movflags", "+faststart"]
    args += [*MUX_ARGS, "-f", "mp4", str(tmp)]
    try:
        ffmpeg.run(args, what=f"writing {out}", timeout=timeout(seconds / 20))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# cut


def _check(segments: Sequence[Segment], spec: CutSpec) -> None:
    if spec.width <= 0 or spec.height <= 0 or spec.width % 2 or spec.height % 2:
        raise StitchError(
            f"output size {spec.width}x{spec.height} must be positive and even (yuv420p)"
        )
    if not 0 < spec.fps <= 240:
        raise StitchError(f"output fps {spec.fps} must be between 1 and 240")
    if spec.fit not in ("crop", "pad"):
        raise StitchError(f"fit must be 'crop' or 'pad', not {spec.fit!r}")
    if spec.volume < 0 or spec.fade_out < 0:
        raise StitchError("soundtrack volume and fade-out must not be negative")
    if not segments:
        raise StitchError("nothing to cut: no segments")
    for i, seg in enumerate(segments):
        where = f"segment {i + 1}"
        if (seg.clip is None) == (seg.card is None):
            raise StitchError(f"{where}: exactly one of clip and card must be set")
        if seg.transition not in TRANSITIONS:
            known = ", ".join(sorted(TRANSITIONS))
            raise StitchError(f"{where}: unknown transition {seg.transition!r} (known: {known})")
        if seg.transition_seconds < 0 or seg.start < 0:
            raise StitchError(f"{where}: trim start and transition length must not be negative")
        if seg.end is not None and seg.end <= seg.start:
            raise StitchError(f"{where}: trim end {seg.end:g} is not after start {seg.start:g}")
        if seg.card is not None and seg.card.seconds <= 0:
            raise StitchError(f"{where}: a card must last more than 0 seconds")


def _run_all(
    pool: ThreadPoolExecutor, jobs: Sequence[Callable[[], object]], done: Callable[[], None]
) -> None:
    """Run ``jobs`` on ``pool``; the first failure cancels what has not started and raises."""
    futures: list[Future[object]] = [pool.submit(job) for job in jobs]
    try:
        for future in as_completed(futures):
            future.result()
            done()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def cut(
    segments: list[Segment],
    spec: CutSpec,
    out: Path,
    work_dir: Path,
    progress: Callable[[float], None] | None = None,
) -> float:
    """Join ``segments`` into the final cut at ``out`` and return its duration in seconds.

    :func:`make_cut` without the list of work files (see there).
    """
    return make_cut(segments, spec, out, work_dir, progress).seconds


def make_cut(
    segments: list[Segment],
    spec: CutSpec,
    out: Path,
    work_dir: Path,
    progress: Callable[[float], None] | None = None,
) -> CutResult:
    """Join ``segments`` into the final cut at ``out``: its length and the work files it used.

    ``out`` is written to a temp file in its folder and renamed, so it is either the old
    file or the complete new one. ``work_dir`` is a cache this function owns: normalised
    pieces, seams and audio tracks are reused by later cuts with the same inputs, so a
    repeated cut costs one stream-copying ffmpeg run. It may be deleted at any time, and
    :func:`prune` keeps it bounded given the ``files`` of the cuts still wanted. The cut
    holds the folder's shared lock (:func:`work_lock`) while it runs.

    Args:
        segments: the clips and cards in order; each one's transition joins it to the next.
        spec: output size, fps, fit and soundtrack.
        out: where the final MP4 goes.
        work_dir: the cache folder (created if missing).
        progress: called with the fraction done (0.0 to 1.0) as the work advances.

    Raises:
        StitchError: a clip is unreadable, an argument is invalid, or ffmpeg failed.
    """
    with work_lock(work_dir):
        try:
            return _make_cut(segments, spec, out, work_dir, progress)
        except MediaError as exc:  # the media layer's failures are this stage's
            raise StitchError(str(exc), shot=exc.shot) from exc


def _make_cut(
    segments: list[Segment],
    spec: CutSpec,
    out: Path,
    work_dir: Path,
    progress: Callable[[float], None] | None,
) -> CutResult:
    _check(segments, spec)
    fps = spec.fps
    folders = {name: work_dir / name for name in ("lengths", "pieces", "seams", "audio", "tmp")}
    try:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StitchError(f"cannot use the work folder {work_dir}: {exc}") from exc

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(1.0, fraction))

    report(0.0)
    workers = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cutter") as pool:
        # 1. lengths (probing only clips never seen before, in parallel)
        identities = [_identity(seg) for seg in segments]
        lookups: dict[tuple[object, ...], Future[_Source]] = {}
        for seg, ident in zip(segments, identities, strict=True):
            what = (ident, seg.clip, seg.card, seg.start, seg.end)
            if what not in lookups:
                lookups[what] = pool.submit(_source, seg, ident, spec, folders["lengths"])
        sources = [
            lookups[ident, seg.clip, seg.card, seg.start, seg.end].result()
            for seg, ident in zip(segments, identities, strict=True)
        ]
        joins = _clamp(_requested(segments, fps), [s.frames for s in sources])
        heads = [0, *joins]
        tails = [*joins, 0]
        plans = [
            _Plan(
                seg,
                src,
                heads[i],
                tails[i],
                _digest(
                    {
                        "id": ident,
                        "card": _card_fields(seg.card),
                        "start": seg.start,
                        "end": seg.end,
                        "size": [spec.width, spec.height],
                        "fps": fps,
                        "fit": spec.fit,
                        "in": heads[i],
                        "out": tails[i],
                    }
                ),
                folders["pieces"],
            )
            for i, (seg, src, ident) in enumerate(zip(segments, sources, identities, strict=True))
        ]
        joints: list[seams.Seam | None] = []
        for i, k in enumerate(joins):
            if k == 0:
                joints.append(None)
                continue
            a, b = plans[i], plans[i + 1]
            name = _digest(
                {"a": a.digest, "b": b.digest, "transition": a.segment.transition, "frames": k}
            )
            joints.append(
                seams.Seam(
                    a.segment.transition,
                    k,
                    a.piece("tail").path,
                    b.piece("head").path,
                    folders["seams"] / f"{name}.mov",
                )
            )

        # 2. what is missing (a segment used twice is normalised once)
        missing: dict[str, _Plan] = {p.digest: p for p in plans if not p.cached()}
        missing_seams = {s.path: s for s in joints if s is not None and not s.path.is_file()}
        steps = len(missing) + len(missing_seams) + 2
        finished = 0

        def step() -> None:
            nonlocal finished
            finished += 1
            report(finished / steps)

        _run_all(
            pool,
            [functools.partial(_normalise, p, spec, folders["tmp"]) for p in missing.values()],
            step,
        )
        _run_all(
            pool,
            [
                functools.partial(seams.render_seam, s, spec.width, spec.height, fps)
                for s in missing_seams.values()
            ],
            step,
        )

    # 3. the timeline: body, seam, body, ...
    timeline: list[Path] = []
    total = 0
    for plan, seam in zip(plans, [*joints, None], strict=True):
        body = plan.piece("body")
        if body.frames > 0:
            timeline.append(body.path)
            total += body.frames
        if seam is not None:
            timeline.append(seam.path)
            total += seam.frames
    audio = folders["audio"] / (
        _digest(
            {
                "timeline": [p.name for p in timeline],
                "soundtrack": _soundtrack_identity(spec),
                "volume": spec.volume if spec.soundtrack else None,
                "fade_out": spec.fade_out if spec.soundtrack else None,
            }
        )
        + ".m4a"
    )
    listing = _concat_list(timeline, folders["tmp"])
    try:
        if not audio.is_file():
            _encode_audio(listing, spec, total, audio)
        step()
        _mux(listing, audio, out, total / fps)
    finally:
        listing.unlink(missing_ok=True)
    report(1.0)
    used = {audio, *(s.path for s in joints if s is not None)}
    for plan, ident in zip(plans, identities, strict=True):
        used.update(piece.path for piece in plan.pieces())
        if plan.segment.clip is not None:
            used.add(_length_memo(plan.segment, ident, spec, folders["lengths"]))
    return CutResult(total / fps, frozenset(used))
