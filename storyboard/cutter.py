"""Join rendered clips into the final cut, re-encoding as little as possible.

The cutter is the engine of the stitch stage (ARCHITECTURE §8, "stitcher with a fast path").
Every segment (a clip with its trim window, or a title card) lasts a whole number of
frames; a transition overlaps its two neighbours. The cut is made of:

1. **Copied video**: a clip whose H.264 stream already is what the cut shows (the cut's
   size and frame rate, 8-bit 4:2:0 limited-range BT.709 with square pixels, no B-frames,
   :class:`~storyboard.media.probe.VideoCopy`) enters the cut sample by sample, from the
   first IDR picture of its visible part to the end of that part. Clips are probed once
   (the facts are remembered in ``work_dir/lengths``), by reading their MP4 tables.
2. **Pieces**: what cannot be copied is encoded once, from the source, into a cached piece
   (:mod:`storyboard.media.encoding`): a card; a clip that does not conform (decoded,
   trimmed, brought to the cut's rate, size and colours); and the frames of a conforming
   clip before its first IDR picture when its visible part starts between two ("the
   partial GOP"). Pieces are cached by a digest of everything that shapes them.
3. **Seams**: each transition is one small clip, rendered by one ffmpeg process from the
   two windows of the sources (:mod:`storyboard.seams`), encoded for speed.
4. **Sound**: one AAC track (:mod:`storyboard.media.audiotrack`): the clips' own packets
   where one clip is heard alone, encoded runs where transitions mix two (or the soundtrack
   plays under everything), packets of silence where nothing sounds.
5. **Mux**: :mod:`storyboard.media.mux` writes the MP4 from the samples of all of these, no
   ffmpeg involved, into a temp file that is then renamed.

Why the copies join: every picture of the cut decodes with the one sample description the
cut declares. Pieces and seams carry parameter set ids of their own
(:data:`~storyboard.media.encoding.RESERVED_IDS`); copied clips keep theirs, and the
description lists them all. Two copied clips whose parameter sets share an id but differ
are not both copied: the one with more frames is, the other is re-encoded.

Timing rules:

* A segment lasts a whole number of frames: ``round((end - start) * fps)``, at least one.
  Cards last ``round(seconds * fps)`` frames; ``start``/``end`` do not apply to cards. A
  clip's frame ``f`` of a segment is the clip's first frame at or after ``start``, plus ``f``.
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
* Sound: frame ``f`` of the cut is samples ``samples(f)`` to ``samples(f + 1) - 1`` at
  48 kHz. A copied clip's sound lands within half an AAC packet (10.7 ms) of its place.
* Directions follow ffmpeg's ``xfade``: ``wipe-left`` moves the edge leftwards, revealing B
  from the right; ``slide-left`` moves both pictures leftwards, B entering from the right.

The work folder stays bounded: :func:`make_cut` says which work files a cut uses, and
:func:`~storyboard.workfolder.prune` removes every other one. Cuts hold a shared lock on the
folder while they run (:func:`~storyboard.workfolder.work_lock`).

ffmpeg runs through :mod:`storyboard.media.ffmpeg`: every run has a deadline and is killed on
error or timeout; a failure raises :class:`~storyboard.errors.StitchError` with the tail of
ffmpeg's stderr. Pillow is imported only when a card is drawn; a warm cut starts no ffmpeg.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storyboard import seams
from storyboard.catalog import TRANSITIONS as _REGISTRY_TRANSITIONS
from storyboard.errors import MediaError, StitchError
from storyboard.media import audiotrack, mux, probe
from storyboard.media.audiotrack import Voice
from storyboard.media.encoding import (
    RESERVED_IDS,
    SAMPLE_RATE,
    samples,
    temp_sibling,
)
from storyboard.media.probe import AudioCopy, Colour, VideoCopy
from storyboard.workfolder import digest, run_jobs, work_lock, write_json

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

# Bump when anything that changes the bytes of a cached piece or seam changes (encoder
# settings, filter graphs): old cache entries then simply stop being found.
_CACHE_VERSION = "cutter/3"
# The same, for seams only (their encoder settings changed; pieces are still valid).
_SEAM_VERSION = "seams/2"
# Transitions whose sound dips to silence in the middle; all others crossfade.
_DIPS = frozenset({"fade"})


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
    of the clip or card, used to cache pieces (when empty, the clip file's path, size and
    mtime stand in for it).
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
    files: frozenset[Path]  # pieces, seams, sound runs and length memos (kept by prune)


# --------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class _Source:
    """How many frames a segment lasts, and what making it needs to know of its clip."""

    frames: int
    has_audio: bool
    start: float
    colour: Colour | None  # None for cards (drawn as RGB)
    video: VideoCopy | None = None  # None: not an H.264 MP4 this module can read
    audio: AudioCopy | None = None


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
    """Where what is known of a clip segment is remembered."""
    key = {"id": identity, "start": segment.start, "end": segment.end, "fps": spec.fps}
    return memo_dir / f"{digest(_CACHE_VERSION, key)}.json"


def _read_memo(memo: Path) -> _Source | None:
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
        colour = Colour(str(data["pix_fmt"]), bool(data["full_range"]), str(data["matrix"]))
        video = data["video"] and VideoCopy(
            **{**data["video"], "keyframes": tuple(data["video"]["keyframes"])}
        )
        audio = data["audio"] and AudioCopy(**data["audio"])
        return _Source(
            int(data["frames"]), bool(data["has_audio"]), float(data["start"]), colour,
            video or None, audio or None,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a missing or damaged memo is a miss


def _source(segment: Segment, identity: str, spec: CutSpec, memo_dir: Path) -> _Source:
    """Length in frames of a segment, and its clip's facts; probes a clip only once."""
    if segment.card is not None:
        return _Source(max(1, round(segment.card.seconds * spec.fps)), False, 0.0, None)
    assert segment.clip is not None
    memo = _length_memo(segment, identity, spec, memo_dir)
    known = _read_memo(memo)
    if known is not None:
        return known
    found = probe.streams(segment.clip)  # the MP4's tables, when it is an H.264 MP4
    if found is not None:
        info, colour, video, audio = found.info, found.colour, found.video, found.audio
    else:
        (info, colour), video, audio = probe.probe_colour(segment.clip), None, None
    start = segment.start
    if start >= info.duration:
        raise StitchError(
            f"trim start {start:g} s is past the end of {segment.clip} ({info.duration:.3f} s)"
        )
    end = info.duration if segment.end is None else min(segment.end, info.duration)
    if end <= start:
        raise StitchError(f"empty trim window {start:g}..{end:g} s for {segment.clip}")
    frames = max(1, round((end - start) * spec.fps))
    source = _Source(frames, info.has_audio, start, colour, video, audio)
    write_json(
        memo,
        {
            "frames": frames,
            "has_audio": source.has_audio,
            "start": start,
            **dataclasses.asdict(colour),
            "video": dataclasses.asdict(video) if video else None,
            "audio": dataclasses.asdict(audio) if audio else None,
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


def _folders(work_dir: Path) -> dict[str, Path]:
    folders = {name: work_dir / name for name in ("lengths", "pieces", "seams", "audio", "tmp")}
    try:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StitchError(f"cannot use the work folder {work_dir}: {exc}") from exc
    return folders


def layout(segments: Sequence[Segment], spec: CutSpec, work_dir: Path) -> Layout:
    """The frames of every segment and transition of the cut :func:`make_cut` would make.

    Probes each clip once (remembered in ``work_dir`` as :func:`make_cut` does); encodes
    nothing. Timeline exports and the review page use it so that they match the cut to the
    frame.
    """
    _check(list(segments), spec)
    memo_dir = _folders(work_dir)["lengths"]
    try:
        sources = [_source(seg, _identity(seg), spec, memo_dir) for seg in segments]
    except MediaError as exc:
        raise StitchError(str(exc), shot=exc.shot) from exc
    joins = _clamp(_requested(segments, spec.fps), [s.frames for s in sources])
    return Layout(
        frames=tuple(s.frames for s in sources),
        starts=tuple(s.start for s in sources),
        joins=tuple(joins),
    )


# --------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class _Plan:
    """A segment with its clamped transition windows, where it sits and what it is."""

    segment: Segment
    source: _Source
    identity: str
    offset: int  # frame of the cut where it begins
    head: int  # frames consumed by the incoming transition
    tail: int  # frames consumed by the outgoing transition
    card_png: Path | None  # where its card is drawn

    @property
    def first_frame(self) -> int:
        """The clip's frame (at the cut's rate) shown as the segment's first."""
        return math.ceil(
            self.source.start * (self.source.video.fps if self.source.video else 0) - 1e-6
        )

    def key(self, spec: CutSpec, first: int, count: int) -> dict[str, object]:
        """Everything the pictures of frames ``first .. first + count - 1`` depend on."""
        seg = self.segment
        return {
            "id": self.identity, "card": _card_fields(seg.card), "start": seg.start,
            "end": seg.end, "size": [spec.width, spec.height], "fps": spec.fps,
            "fit": spec.fit, "first": first, "count": count,
        }  # fmt: skip


def _window(plan: _Plan, spec: CutSpec, first: int, count: int) -> seams.Window:
    """Frames ``first .. first + count - 1`` of a segment, as the cut shows them."""
    video = plan.source.video
    frame = plan.first_frame + first if video and video.timed and video.fps == spec.fps else None
    keys = video.keyframes if video is not None else ()
    at = bisect.bisect_left(keys, frame) if frame is not None else len(keys)
    source = plan.card_png or plan.segment.clip
    assert source is not None
    return seams.window(
        source, plan.source.start, frame, plan.source.colour,
        (spec.width, spec.height, spec.fps, spec.fit), first, count,
        keyframe=at < len(keys) and keys[at] == frame,
    )  # fmt: skip


def _draw(plan: _Plan, spec: CutSpec) -> None:
    """Draw a card's picture once (pieces and seams decode it)."""
    card, path = plan.segment.card, plan.card_png
    assert card is not None and path is not None
    if path.is_file():
        return
    from storyboard.media.text import draw_card  # Pillow: only when a card is drawn

    tmp = temp_sibling(path)
    try:
        draw_card(
            card.text, spec.width, spec.height, tmp.with_suffix(".png"),
            background=card.background, color=card.color,
        )  # fmt: skip
        tmp.with_suffix(".png").replace(path)
    finally:
        tmp.with_suffix(".png").unlink(missing_ok=True)


def _body(plan: _Plan, copied: bool) -> tuple[int, int, tuple[int, int] | None]:
    """A segment's frames between its transitions: ``(first, count)`` of them to encode, and
    ``(first clip sample, count)`` to copy (``None``: all are encoded).

    A copied body starts at the first IDR picture in it; the frames before that one (the
    partial GOP) are encoded.
    """
    first, count = plan.head, plan.source.frames - plan.head - plan.tail
    video = plan.source.video
    if count <= 0 or not copied or video is None:
        return first, max(count, 0), None
    start = plan.first_frame + first
    at = bisect.bisect_left(video.keyframes, start)
    if at == len(video.keyframes) or video.keyframes[at] >= start + count:
        return first, count, None
    key = video.keyframes[at]
    return first, key - start, (key, start + count - key)


def _copyable(plan: _Plan, spec: CutSpec) -> bool:
    """Whether the segment's clip conforms, so that its pictures may be copied."""
    video = plan.source.video
    return (
        video is not None
        and video.plain
        and (video.width, video.height) == (spec.width, spec.height)
        and video.fps == spec.fps
        and not RESERVED_IDS & {video.sps_id, video.pps_id}
        and plan.first_frame + plan.source.frames <= video.frames
    )


def _parameter_sets(plans: Sequence[_Plan], spec: CutSpec) -> set[int]:
    """The segments whose pictures are copied: they conform, and their parameter sets do not
    clash (one SPS and one PPS per id; the segment with more frames wins)."""
    sps: dict[int, str] = {}
    pps: dict[int, str] = {}
    chosen: set[int] = set()
    order = sorted(range(len(plans)), key=lambda i: -plans[i].source.frames)
    for i in order:
        plan = plans[i]
        if not _copyable(plan, spec):
            continue
        video = plan.source.video
        assert video is not None
        if (
            sps.get(video.sps_id, video.sps) != video.sps
            or pps.get(video.pps_id, video.pps) != video.pps
        ):
            continue
        sps[video.sps_id], pps[video.pps_id] = video.sps, video.pps
        chosen.add(i)
    return chosen


def _voice(plans: Sequence[_Plan], i: int, spec: CutSpec, copy_sound: bool) -> Voice:
    """Segment ``i``'s sound: where it sits in the cut's samples and how it fades."""
    plan, fps = plans[i], spec.fps
    o, n = plan.offset, plan.source.frames
    start = samples(o, fps)
    length = samples(o + n, fps) - start
    fade_in = fade_out = None
    alone_from, alone_to = 0, length
    if plan.head:
        window = samples(o + plan.head, fps) - start
        alone_from = window
        if plans[i - 1].segment.transition in _DIPS:
            half = samples(o + plan.head // 2, fps) - start
            fade_in = (half, window - half)
        else:
            fade_in = (0, window)
    if plan.tail:
        begin = samples(o + n - plan.tail, fps) - start
        alone_to = begin
        if plan.segment.transition in _DIPS:
            fade_out = (begin, samples(o + n - plan.tail + plan.tail // 2, fps) - start - begin)
        else:
            fade_out = (begin, length - begin)
    audio = plan.source.audio
    sounds = plan.segment.clip is not None and plan.source.has_audio
    copy = (
        audio
        if sounds and copy_sound and audio is not None and audio.plain
        and audio.sample_rate == SAMPLE_RATE and audio.channels == 2
        else None
    )  # fmt: skip
    return Voice(
        start, length, plan.segment.clip if sounds else None,
        round(plan.source.start * SAMPLE_RATE), fade_in, fade_out, (alone_from, alone_to),
        copy, plan.identity,
    )  # fmt: skip


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


# Memory the cut's ffmpeg runs may hold at once, and what one holds (MB): a picture job (two
# decoders, x264, the frames between them) grows with the frame size; 1080p: about 190 MB.
# With the cutter itself the process tree then stays under 300 MB.
_MEMORY_BUDGET = 224
_SOUND_MEMORY = 30


def _picture_memory(spec: CutSpec) -> int:
    return 25 + 55 * spec.width * spec.height * 3 // 2 // (1 << 20)


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
    file or the complete new one. ``work_dir`` is a cache this function owns: pieces, seams
    and sound runs are reused by later cuts with the same inputs, so a repeated cut only
    copies samples. It may be deleted at any time, and :func:`~storyboard.workfolder.prune`
    keeps it bounded given the ``files`` of the cuts still wanted. The cut holds the
    folder's shared lock (:func:`~storyboard.workfolder.work_lock`) while it runs.

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


def _plans(segments: Sequence[Segment], spec: CutSpec, folders: dict[str, Path]) -> list[_Plan]:
    """Probe (only clips never seen before), clamp and place every segment."""
    identities = [_identity(seg) for seg in segments]
    known: dict[tuple[object, ...], _Source] = {}
    sources = []
    for seg, ident in zip(segments, identities, strict=True):
        what = (ident, seg.clip, seg.card, seg.start, seg.end)
        if what not in known:  # reading MP4 tables is Python's work: no threads
            known[what] = _source(seg, ident, spec, folders["lengths"])
        sources.append(known[what])
    joins = _clamp(_requested(segments, spec.fps), [s.frames for s in sources])
    heads, tails = [0, *joins], [*joins, 0]
    plans, at = [], 0
    for i, (seg, src, ident) in enumerate(zip(segments, sources, identities, strict=True)):
        png = None
        if seg.card is not None:
            name = digest(
                _CACHE_VERSION, {"card": _card_fields(seg.card), "size": [spec.width, spec.height]}
            )
            png = folders["pieces"] / f"{name}.png"
        plans.append(_Plan(seg, src, ident, at, heads[i], tails[i], png))
        at += src.frames - tails[i]
    return plans


def _make_cut(
    segments: list[Segment],
    spec: CutSpec,
    out: Path,
    work_dir: Path,
    progress: Callable[[float], None] | None,
) -> CutResult:
    _check(segments, spec)
    fps = spec.fps
    folders = _folders(work_dir)

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(1.0, fraction))

    report(0.0)
    plans = _plans(segments, spec, folders)
    copied = _parameter_sets(plans, spec)
    jobs: dict[Path, tuple[int, Callable[[], object]]] = {}
    heavy = _picture_memory(spec)
    spans: list[mux.Span] = []
    used: set[Path] = set()
    missing_seams: dict[int, Path] = {}  # segment index -> its outgoing seam, to render

    def piece(plan: _Plan, first: int, count: int) -> None:
        path = folders["pieces"] / f"{digest(_CACHE_VERSION, plan.key(spec, first, count))}.mov"
        spans.append(mux.Span(path, "vide", 0, count))
        used.add(path)
        if path not in jobs and not path.is_file():
            what = f"normalising {plan.segment.clip or 'a card'}"
            job = functools.partial(_piece_job, plan, spec, first, count, path, what)
            jobs[path] = heavy, job

    bodies = [_body(plan, i in copied) for i, plan in enumerate(plans)]
    for i, plan in enumerate(plans):
        n, (first, count, copy) = plan.source.frames, bodies[i]
        if count and not (plan.head and copy):  # else it rides with the incoming seam
            piece(plan, first, count)
        if copy is not None:
            assert plan.segment.clip is not None
            spans.append(mux.Span(plan.segment.clip, "vide", *copy))
        if plan.tail:
            nxt, k = plans[i + 1], plan.tail
            # A copied body that starts between two IDR pictures: its first frames (up
            # to the next one) are encoded with the seam before it, in one process.
            after = bodies[i + 1][1] if bodies[i + 1][2] is not None else 0
            name = digest(
                _CACHE_VERSION,
                {"a": plan.key(spec, n - k, k), "b": nxt.key(spec, 0, k + after),
                 "transition": plan.segment.transition, "frames": k, "v": _SEAM_VERSION},
            )  # fmt: skip
            path = folders["seams"] / f"{name}.mov"
            spans.append(mux.Span(path, "vide", 0, k + after))
            used.add(path)
            if path not in jobs and not path.is_file():
                jobs[path] = heavy, functools.partial(_seam_job, plan, nxt, spec, path, after)
                missing_seams[i] = path

    # The sound: copied where it can be, runs encoded where it cannot.
    total = sum(s.count for s in spans)
    copy_sound = spec.soundtrack is None
    voices = [_voice(plans, i, spec, copy_sound) for i in range(len(plans))]
    bed = _bed(spec, total)
    sound = audiotrack.plan(voices, samples(total, fps), bed, folders["audio"])
    for run in sound.runs:
        used.add(run.path)
        if run.path.is_file():
            continue
        heard = audiotrack.heard(run, voices)
        seam = missing_seams.get(heard[0]) if len(heard) == 2 and heard[1] == heard[0] + 1 else None
        if seam is not None and bed is None:  # the transition's sound, made with its picture
            i = heard[0]
            jobs[seam] = heavy + _SOUND_MEMORY, functools.partial(
                _seam_job, plans[i], plans[i + 1], spec, seam, bodies[i + 1][1] if bodies[i + 1][2] else 0,
                (run, voices, sound.total),
            )  # fmt: skip
            del missing_seams[i]
        else:
            jobs[run.path] = (
                _SOUND_MEMORY,
                functools.partial(audiotrack.render, run, voices, bed, sound.total),
            )
    if sound.silence is not None:
        used.add(sound.silence)
        if not sound.silence.is_file():
            jobs[sound.silence] = (
                _SOUND_MEMORY,
                functools.partial(audiotrack.render_silence, sound.silence),
            )
    for plan in plans:
        if plan.card_png is not None:
            used.add(plan.card_png)

    steps, finished = len(jobs) + 1, 0

    def step() -> None:
        nonlocal finished
        finished += 1
        report(finished / steps)

    run_jobs(list(jobs.values()), step, _MEMORY_BUDGET)

    # The mux: every sample copied, nothing decoded.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StitchError(f"cannot write {out}: {exc}") from exc
    picture = mux.Video(tuple(spans), fps, spec.width, spec.height, mux.parameter_sets(spans))
    mux.write(out, picture, audiotrack.track(sound))
    report(1.0)
    for plan in plans:
        if plan.segment.clip is not None:
            used.add(_length_memo(plan.segment, plan.identity, spec, folders["lengths"]))
    return CutResult(total / fps, frozenset(used))


def _bed(spec: CutSpec, total: int) -> audiotrack.Bed | None:
    if spec.soundtrack is None:
        return None
    try:
        st = spec.soundtrack.stat()
    except OSError as exc:
        raise StitchError(f"cannot read soundtrack {spec.soundtrack}: {exc}") from exc
    key = f"{spec.soundtrack.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    fade = round(spec.fade_out * SAMPLE_RATE)
    return audiotrack.Bed(spec.soundtrack, key, spec.volume, fade)


def _piece_job(plan: _Plan, spec: CutSpec, first: int, count: int, path: Path, what: str) -> None:
    """Encode one piece (drawing its card first when it is one)."""
    if plan.card_png is not None:
        _draw(plan, spec)
    seams.encode(_window(plan, spec, first, count), path, spec.fps, what)


def _seam_job(
    a: _Plan,
    b: _Plan,
    spec: CutSpec,
    path: Path,
    after: int,
    sound: tuple[audiotrack.Run, list[Voice], int] | None = None,
) -> None:
    """Render one seam and the ``after`` frames of B that follow it (drawing the cards it
    shows first); and ``sound``, a run of the cut's sound, in the same process."""
    for plan in (a, b):
        if plan.card_png is not None:
            _draw(plan, spec)
    k = a.tail
    seam = seams.Seam(
        a.segment.transition,
        k,
        _window(a, spec, a.source.frames - k, k),
        _window(b, spec, 0, k + after),
        path,
    )
    if sound is None:
        seams.render_seam(seam, spec.fps)
        return
    run, voices, total = sound
    work = audiotrack.command(run, voices, None, total, first_input=2)
    try:
        seams.render_seam(seam, spec.fps, work)
        work.temp.replace(run.path)
    finally:
        work.temp.unlink(missing_ok=True)
