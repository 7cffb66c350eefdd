"""Automatic checks on each take: what a reviewer should know before pressing play.

For every rendered take of every model shot, :func:`check_plan` reports

* **black**: the picture is black for at least 0.5 s (ffmpeg ``blackdetect``: a frame is
  black when 98 % of its pixels are darker than 10 % of the luma range; ffmpeg's defaults);
* **frozen**: the picture does not change for at least 1.0 s (``freezedetect``: each frame
  differs from the first frame of the stretch by a mean absolute difference under -60 dB,
  0.1 % of the range, ffmpeg's default, on a picture scaled down to 320 px wide, which
  averages codec noise away and costs little). Because the comparison is with the stretch's
  first frame, a slow camera move adds up and ends a stretch soon. Not a laxer -50 dB: it
  would call slow push-ins frozen (measured on the animatic: stretches of 1-3 s all through
  6 s clips), and a false alarm costs a reviewer's trust. The price: an encoder still
  refining a picture that stopped (x264 ultrafast, CRF 23, measured: 0.3 s) can make a
  freeze start that much late. A frozen stretch that black frames cover is reported once,
  as black;
* **silent**: the sound stays under -50 dB for at least 1.0 s (``silencedetect``), or stops
  that long before the picture does (``astats`` counts its samples), and **no-audio**: the
  clip has no audio stream at all, both only where sound was asked for
  (:func:`expects_audio`); when nothing asks for sound, silence is what the clip should be;
* **short** / **long**: the take's new footage is further from what the shot asked for
  (:attr:`ShotPlan.seconds`) than :func:`length_tolerance`: the larger of 0.25 s, 5 % of the
  asked length and a frame and a half (providers round a length to whole frames, and the
  open-source V3 writes one frame more). An extension that holds its source footage is
  judged on what follows the source (:func:`storyboard.media.footage.new_footage_seconds`).

The preview animatic is a stand-in and is judged as one: its camera eases in and out, so the
ends of a clip move less than the noise floor and read as frozen (``examples/dawn``: 5 of its
9 takes frozen for their first 1.1-1.7 s, one 3 s take from a still image throughout), and it
never makes sound. That is what the animatic is, not a failed take, so on the preview backend
frozen stretches and sound are not findings; black stretches and lengths still are (they
would mean the renderer broke).

All detections of a clip come from ONE ffmpeg decode (the video filters chained on the
downscaled picture, the audio filter beside them, ``-f null``), under a deadline. The raw
detections are a pure function of the clip's bytes and of :data:`DETECTOR` (the thresholds),
so they are cached once per clip digest in the store (``checks/ab/<digest>.json``); findings
are derived from them at read time, with what the shot asked for. A cache file that cannot be
read, or that another detector version wrote, is a miss, never an error.

Trust: a clip is decoded as the plan found it, at the plan's own level of trust (its size and
mtime, through the store's digest memo; a clip rewritten since the plan is hashed again, and
left out when it is no longer its digest). Checking reads no clip in full that the memo
vouches for and changes nothing in the store but the cache: the findings are advice, while the
stitcher, uploads and exports verify every byte before they use one.

Failures: a clip ffmpeg cannot decode at all (no video stream, no frame decoded, or past the
deadline) raises :class:`ClipUnreadable` (a :class:`~storyboard.errors.MediaError` naming the
shot and take) after every other clip has been checked and cached; it carries those checks,
so a caller can show them and say which take could not be read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from storyboard.cache import ClipEntry, Store
from storyboard.errors import MediaError, StoreError
from storyboard.hashing import atomic_write, canonical_json
from storyboard.media import ffmpeg
from storyboard.model import Shot
from storyboard.plan import Plan, ShotPlan, TakePlan

__all__ = [
    "DETECTOR",
    "ClipUnreadable",
    "Detections",
    "Finding",
    "FindingKind",
    "TakeCheck",
    "check_plan",
    "decode_args",
    "detect",
    "expects_audio",
    "judge",
    "length_tolerance",
    "parse_log",
]

FindingKind = Literal["black", "frozen", "silent", "no-audio", "short", "long"]

# -- thresholds (changing one changes DETECTOR, which invalidates every cached record) -------

_WIDTH = 320  # the picture the video detectors see (never scaled up)
_BLACK_SECONDS = 0.5
_BLACK_PIXEL = 0.10  # a pixel is black below this share of the luma range
_BLACK_PICTURE = 0.98  # a frame is black when this share of its pixels is
_FREEZE_SECONDS = 1.0
_FREEZE_NOISE_DB = -60
_SILENCE_SECONDS = 1.0
_SILENCE_NOISE_DB = -50
_REVISION = 2  # bump when the parser or the record changes

#: Names the detector and its thresholds; a cached record made by another one is a miss.
DETECTOR = (
    f"takecheck/{_REVISION} w={_WIDTH} "
    f"black d={_BLACK_SECONDS} pix={_BLACK_PIXEL} pic={_BLACK_PICTURE} "
    f"freeze d={_FREEZE_SECONDS} n={_FREEZE_NOISE_DB}dB "
    f"silence d={_SILENCE_SECONDS} n={_SILENCE_NOISE_DB}dB"
)

_LENGTH_SECONDS = 0.25
_LENGTH_SHARE = 0.05
_LENGTH_FRAMES = 1.5
_TIMEOUT_BASE = 60.0
_TIMEOUT_PER_SECOND = 4.0  # decoding runs at many times real time; this is a deadline only
_ORDER: dict[str, int] = {
    "short": 0,
    "long": 0,
    "no-audio": 1,
    "black": 2,
    "frozen": 2,
    "silent": 2,
}


class ClipUnreadable(MediaError):
    """A take's clip cannot be decoded at all, so nothing about it can be checked."""

    def __init__(
        self, message: str, *, shot: str, take: int, path: Path, board: Path, live: bool
    ) -> None:
        super().__init__(message, shot=shot)
        self.take = take
        self.path = path
        self.board = board
        self.live = live
        #: What :func:`check_plan` found on every other take, and every take that failed.
        self.checks: Mapping[tuple[str, int], TakeCheck] = {}
        self.takes: tuple[tuple[str, int], ...] = ((shot, take),)

    def hint(self) -> str | None:
        if self.live:
            return (
                f"render the shot again: `storyboard render {self.board} --live --force "
                f"{self.shot}` (its takes are paid for again)"
            )
        return f"render the shot again: `storyboard render {self.board} --force {self.shot}`"


# -- findings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing a reviewer should know about a take.

    ``start`` is where it begins in the clip (``None`` for length and missing audio);
    ``seconds`` how long it lasts (for short/long/no-audio: the clip's length).
    """

    kind: FindingKind
    start: float | None
    seconds: float
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "seconds": self.seconds, "text": self.text}


@dataclass(frozen=True)
class TakeCheck:
    """The findings on one take's clip (``digest``); none: nothing to report."""

    digest: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
        }


# -- raw detections (what is cached) --------------------------------------------------------

Span = tuple[float, float]


@dataclass(frozen=True)
class Detections:
    """What one decode of a clip found; a pure function of its bytes and :data:`DETECTOR`.

    ``seconds`` is the length of the picture (frames decoded over the frame rate, or the
    container's duration when the decode did not count frames); stretches are
    ``(start, end)`` in seconds, one still open when the clip ended ends at ``seconds``.
    """

    seconds: float
    fps: float
    frames: int
    audio: bool
    black: tuple[Span, ...] = ()
    frozen: tuple[Span, ...] = ()
    silent: tuple[Span, ...] = ()
    audio_seconds: float | None = None  # how long the sound is, when ffmpeg said

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": DETECTOR,
            "seconds": self.seconds,
            "fps": self.fps,
            "frames": self.frames,
            "audio": self.audio,
            "black": [list(s) for s in self.black],
            "frozen": [list(s) for s in self.frozen],
            "silent": [list(s) for s in self.silent],
            "audio_seconds": self.audio_seconds,
        }

    @classmethod
    def from_json(cls, data: object) -> Detections | None:
        """A record as cached, or ``None`` when it is not one this detector wrote."""
        if not isinstance(data, Mapping) or data.get("detector") != DETECTOR:
            return None
        try:
            seconds, fps = _number(data["seconds"]), _number(data["fps"])
            frames, audio = data["frames"], data["audio"]
            if not isinstance(frames, int) or isinstance(frames, bool):
                return None
            if not isinstance(audio, bool) or seconds < 0 or fps < 0:
                return None
            spans = {name: _spans(data[name]) for name in ("black", "frozen", "silent")}
            sound = data["audio_seconds"]
            sound = None if sound is None else _number(sound)
        except (KeyError, TypeError, ValueError):
            return None
        return cls(seconds, fps, frames, audio, **spans, audio_seconds=sound)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _spans(value: object) -> tuple[Span, ...]:
    if not isinstance(value, list):
        raise ValueError(value)
    out: list[Span] = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError(item)
        start, end = _number(item[0]), _number(item[1])
        if end < start:
            raise ValueError(item)
        out.append((start, end))
    return tuple(out)


# -- the decode and its log -----------------------------------------------------------------

_NUM = r"(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
# A detector's own line: "[Parsed_blackdetect_1 @ 0x55d0c8] black_start:0 black_end:1 ...".
# Only lines that start with a detector's tag count, so a clip's metadata (printed, indented,
# in the input header) can never pose as a detection.
_LINE_RE = re.compile(
    r"^\[Parsed_(blackdetect|freezedetect|silencedetect|astats)_\d+ @ [^\]]*\]\s*(.*)$"
)
_EVENT_RE = {
    "blackdetect": re.compile(r"\bblack_(start|end|duration)\s*:\s*" + _NUM),
    "freezedetect": re.compile(r"\blavfi\.freezedetect\.freeze_(start|end|duration)\s*:\s*" + _NUM),
    "silencedetect": re.compile(r"\bsilence_(start|end|duration)\s*:\s*" + _NUM),
    # astats' summary when the sound ends: how many samples (per channel) it had.
    "astats": re.compile(r"\bNumber of (samples)\s*:\s*(\d+)"),
}
_HZ_RE = re.compile(r"(?:^|, )(\d+) Hz\b")
_DURATION_RE = re.compile(r"^\s*Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)", re.MULTILINE)
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+.*?: (Video|Audio): (.*)$", re.MULTILINE)
_RATE_RE = re.compile(r"(?:^|, )(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_FRAME_RE = re.compile(r"(?:^|\s|\r)frame=\s*(\d+)")


def decode_args(path: Path, *, threads: int = 1) -> list[str]:
    """The ffmpeg arguments of the one decode that feeds every detector."""
    video = ",".join(
        [
            rf"scale=w=min(iw\,{_WIDTH}):h=-2:flags=area",
            f"blackdetect=d={_BLACK_SECONDS}:pix_th={_BLACK_PIXEL}:pic_th={_BLACK_PICTURE}",
            f"freezedetect=n={_FREEZE_NOISE_DB}dB:d={_FREEZE_SECONDS}",
        ]
    )
    audio = ",".join(
        [
            f"silencedetect=n={_SILENCE_NOISE_DB}dB:d={_SILENCE_SECONDS}",
            # How long the sound is: where it stops before the picture, the rest is silence.
            "astats=measure_perchannel=none:measure_overall=Number_of_samples",
        ]
    )
    return [
        # Absolute: ffmpeg would read a relative name like "http:x.mp4" as a URL.
        "-nostats", "-threads", str(max(1, threads)), "-i", str(path.absolute()),
        "-map", "0:v:0", "-vf", video,
        "-map", "0:a:0?", "-af", audio,  # "?": a clip without sound is decoded all the same
        "-f", "null", "-",
    ]  # fmt: skip


class _Undecodable(ValueError):
    """The log shows that nothing of the clip was decoded."""


def parse_log(text: str) -> Detections:
    """The detections in the log of :func:`decode_args`' ffmpeg run (``-loglevel info``).

    Robust to what logs do: the detectors' lines interleave in any order; a stretch still
    open at the end of the clip (ffmpeg prints no end for a freeze that lasts to the end)
    ends at the clip's length; an end without its start is placed by its duration; a start
    that is followed by another start before any end (a lost line) is dropped; a negative
    start (silencedetect's rounding) is 0; progress lines may share a line through ``\\r``.

    Raises:
        ValueError: the log has no input with a video stream, or no frame was decoded.
    """
    mapping = text.find("Stream mapping:")
    header = text if mapping < 0 else text[:mapping]
    if "Input #0" not in header:
        raise _Undecodable("ffmpeg did not open the clip")
    video: str | None = None
    audio = False
    hz = 0
    for kind, rest in _STREAM_RE.findall(header):
        if kind == "Audio":
            if not audio and (rate_hz := _HZ_RE.search(rest)) is not None:
                hz = int(rate_hz.group(1))
            audio = True
        elif video is None and "(attached pic)" not in rest:
            video = rest
    if video is None:
        raise _Undecodable("the clip has no video stream")
    fps = 0.0
    rate = _RATE_RE.search(video)
    if rate is not None:
        fps = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    duration = _DURATION_RE.search(header)
    container = 0.0
    if duration is not None:
        hours, minutes, secs = duration.groups()
        container = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    # Counted after the header only: a clip's metadata could say "frame=" too.
    counted = [int(n) for n in _FRAME_RE.findall(text[len(header) :])]
    frames = counted[-1] if counted else -1
    if frames == 0:
        raise _Undecodable("no frame could be decoded")
    seconds = container
    if frames > 0 and fps > 0:
        decoded = frames / fps
        # The picture is what is judged: a container whose sound runs past the picture, or a
        # file cut short in the middle, says more than there is to see.
        if container <= 0 or decoded < container - max(0.25, 2 / fps):
            seconds = decoded
    if seconds <= 0:
        raise _Undecodable("the clip has no length")
    events = _events(text)
    silent = _stretches(events["silencedetect"], seconds) if audio else ()
    sound: float | None = None
    samples = [value for _, value in events["astats"]]
    if audio and samples and hz > 0:
        sound = round(samples[-1] / hz, 6)
        silent = _mute_tail(silent, sound, seconds)
    return Detections(
        seconds=round(seconds, 6),
        fps=round(fps, 6),
        frames=max(frames, 0),
        audio=audio,
        black=_stretches(events["blackdetect"], seconds),
        frozen=_stretches(events["freezedetect"], seconds),
        silent=silent,
        audio_seconds=sound,
    )


def _mute_tail(silent: tuple[Span, ...], sound: float, seconds: float) -> tuple[Span, ...]:
    """Silence, counting the picture's end after the sound stopped (``sound`` seconds in)."""
    if sound >= seconds - 0.05:
        return silent
    spans = list(silent)
    if spans and spans[-1][1] >= sound - 0.05:  # silent up to where the sound stops
        spans[-1] = (spans[-1][0], round(seconds, 6))
    elif seconds - sound >= _SILENCE_SECONDS:
        spans.append((sound, round(seconds, 6)))
    return tuple(spans)


def _events(text: str) -> dict[str, list[tuple[str, float]]]:
    found: dict[str, list[tuple[str, float]]] = {name: [] for name in _EVENT_RE}
    for line in re.split(r"[\r\n]+", text):
        match = _LINE_RE.match(line)
        if match is None:
            continue
        name, rest = match.groups()
        for field, value in _EVENT_RE[name].findall(rest):
            number = float(value)
            if math.isfinite(number):
                found[name].append((field, number))
    return found


def _stretches(events: Sequence[tuple[str, float]], seconds: float) -> tuple[Span, ...]:
    spans: set[Span] = set()
    start: float | None = None
    orphan: float | None = None  # an end whose start was lost: its duration places it

    def add(a: float, b: float) -> None:
        a, b = max(0.0, a), min(seconds, b)
        if b > a:
            spans.add((round(a, 6), round(b, 6)))

    for field, value in events:
        if field == "start":
            start, orphan = value, None
        elif field == "end":
            if start is not None:
                add(start, value)
            orphan = value if start is None else None
            start = None
        elif orphan is not None:  # the duration printed after an orphaned end
            add(orphan - value, orphan)
            orphan = None
    if start is not None:  # still open when the clip ended
        add(start, seconds)
    return tuple(sorted(spans))


def detect(path: Path, *, threads: int = 1, timeout: float | None = None) -> Detections:
    """Decode ``path`` once and return what the detectors found.

    Raises:
        MediaError: ffmpeg cannot run, ran past its deadline, or decoded nothing of the clip.
    """
    what = f"cannot check {path}"
    if timeout is None:
        timeout = _TIMEOUT_BASE
    done = ffmpeg.run(
        decode_args(path, threads=threads), what=what, timeout=timeout, check=False,
        loglevel="info",
    )  # fmt: skip
    text = done.stderr.decode("utf-8", "replace")
    try:
        raw = parse_log(text)
    except _Undecodable as exc:
        raise MediaError(f"{what}: {exc}: {ffmpeg.tail(text)}") from exc
    if done.code != 0 and raw.frames == 0:
        # Failed before it counted a frame (a filter or the decoder refused the clip): the
        # header alone proves nothing was looked at.
        raise MediaError(f"{what}: ffmpeg failed (exit status {done.code}): {ffmpeg.tail(text)}")
    return raw


# -- judging a take -------------------------------------------------------------------------


def expects_audio(shot: Shot) -> bool:
    """Whether a take of ``shot`` should carry sound: the shot asks for it.

    It does when it drives the video with audio (``audio``, or a ref's ``audio``: V4's
    ``reference_audio`` mode, lip and beat sync), locks that mode (``action:
    reference_audio``), or passes ``sound: true`` through ``params`` (a provider's switch for
    generated sound, as on WaveSpeed's V4). A model that may add sound of its own accord is
    not asked, so its silence is no finding.
    """
    if shot.audio or any(ref.audio is not None for ref in shot.refs):
        return True
    if shot.action == "reference_audio":
        return True
    return shot.params.get("sound") is True


def length_tolerance(asked: float, fps: float) -> float:
    """How far a take's new footage may be from ``asked`` seconds before it is a finding."""
    frame = _LENGTH_FRAMES / fps if fps > 0 else 0.0
    return max(_LENGTH_SECONDS, _LENGTH_SHARE * asked, frame)


def _s(value: float) -> str:
    return f"{value:.1f} s"


def _stretch(kind: FindingKind, span: Span, clip: float) -> Finding:
    start, end = span
    seconds = round(end - start, 3)
    whole = " (the whole clip)" if start <= 0.05 and end >= clip - 0.05 else ""
    return Finding(kind, round(start, 3), seconds, f"{kind} {_s(seconds)} at {_s(start)}{whole}")


def _covered(span: Span, by: Iterable[Span], slack: float) -> bool:
    """Whether ``by`` covers ``span`` all but ``slack`` seconds (it is one stretch or more)."""
    start, end = span
    inside = sum(max(0.0, min(end, b) - max(start, a)) for a, b in by)
    return inside >= (end - start) - slack


def _length(raw: Detections, sp: ShotPlan, upstream: float | None) -> Finding | None:
    from storyboard.media.footage import new_footage_seconds

    shot, asked, actual = sp.shot, sp.seconds, raw.seconds
    if asked <= 0:
        return None
    extends = shot.extends is not None and shot.spec is not None
    mode = shot.spec.extend_output if shot.spec is not None else "new"
    new = new_footage_seconds(actual, asked, upstream if extends else None, mode)
    source = actual - new
    tol = length_tolerance(asked, raw.fps)
    with_source = f" (+{_s(source)} of its source)" if source > tol else ""
    if new < asked - tol:
        text = f"short: {_s(new)} of {_s(asked)} asked{with_source}"
        return Finding("short", None, round(actual, 3), text)
    # An extension whose source length is unknown (its clip is gone) may hold the source:
    # only a short clip is sure to be wrong.
    if new > asked + tol and not (extends and upstream is None):
        text = f"long: {_s(new)} of {_s(asked)} asked{with_source}"
        return Finding("long", None, round(actual, 3), text)
    return None


def judge(
    raw: Detections, sp: ShotPlan, take: TakePlan, *, upstream: float | None = None
) -> tuple[Finding, ...]:
    """The findings on one take from its clip's detections (see the module's rules).

    ``upstream`` is the length of the clip the take extends (``None``: not an extension, or
    its clip is not in the store).
    """
    preview = take.material.backend == "preview"
    found: list[Finding] = []
    length = _length(raw, sp, upstream)
    if length is not None:
        found.append(length)
    sound = not preview and expects_audio(sp.shot)
    if sound and not raw.audio:
        found.append(Finding("no-audio", None, round(raw.seconds, 3), "no audio: sound was asked"))
    found.extend(_stretch("black", s, raw.seconds) for s in raw.black)
    if not preview:
        slack = 1.0 / raw.fps if raw.fps > 0 else 0.05
        found.extend(
            _stretch("frozen", s, raw.seconds)
            for s in raw.frozen
            if not _covered(s, raw.black, slack)
        )
    if sound:
        found.extend(_stretch("silent", s, raw.seconds) for s in raw.silent)
    found.sort(key=lambda f: (_ORDER[f.kind], f.start if f.start is not None else -1.0))
    return tuple(found)


# -- the cache --------------------------------------------------------------------------------


def _record_path(store: Store, digest: str) -> Path:
    return store.root / "checks" / digest[:2] / f"{digest}.json"


def _cached(store: Store, digest: str) -> Detections | None:
    try:
        data = json.loads(_record_path(store, digest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("digest") != digest:
        return None
    return Detections.from_json(data)


def _remember(store: Store, digest: str, raw: Detections) -> None:
    """Cache ``raw`` (best effort: a store that cannot be written only costs a decode)."""
    with contextlib.suppress(OSError, StoreError):
        store.ensure()
        atomic_write(
            _record_path(store, digest), canonical_json({**raw.to_json(), "digest": digest})
        )


# -- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Take:
    sp: ShotPlan
    take: TakePlan
    clip: ClipEntry


def _rendered(plan: Plan) -> list[_Take]:
    return [
        _Take(sp, t, t.clip)
        for sp in plan.shots
        if sp.kind == "model"
        for t in sp.takes
        if t.clip is not None
    ]


def _as_planned(store: Store, clip: ClipEntry) -> bool:
    """Whether the object still holds the bytes the plan found under ``clip.digest``.

    The plan's own level of trust (its lookups are stat-only, through the digest memo): an
    object whose size and mtime are unchanged is not read; one rewritten since is hashed
    again. Nothing in the store is changed, whatever the answer (checking is read-only).
    """
    try:
        known = store.memo.known(clip.path)
        return (known if known is not None else store.memo.digest(clip.path)) == clip.digest
    except OSError:
        return False


def _decode_all(
    store: Store, plan: Plan, misses: Mapping[str, _Take]
) -> tuple[dict[str, Detections], list[ClipUnreadable]]:
    """Decode each missing clip once (in parallel), cache what decodes; the failures."""
    from concurrent.futures import ThreadPoolExecutor

    found: dict[str, Detections] = {}
    failed: list[ClipUnreadable] = []
    if not misses:
        return found, failed
    cpus = os.cpu_count() or 1
    workers = max(1, min(len(misses), cpus))
    threads = max(1, cpus // workers)

    def one(item: _Take) -> Detections:
        timeout = _TIMEOUT_BASE + _TIMEOUT_PER_SECOND * max(item.clip.seconds, 0.0)
        return detect(item.clip.path, threads=threads, timeout=timeout)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="takecheck") as pool:
        futures = {digest: pool.submit(one, item) for digest, item in misses.items()}
        for digest, future in futures.items():
            item = misses[digest]
            try:
                raw = future.result()
            except MediaError as exc:
                failed.append(
                    ClipUnreadable(
                        f"shot {item.sp.id} take {item.take.take}: {exc}",
                        shot=item.sp.id,
                        take=item.take.take,
                        path=item.clip.path,
                        board=plan.board.path,
                        live=plan.backend == "live",
                    )
                )
                continue
            found[digest] = raw
            _remember(store, digest, raw)
    return found, failed


def check_plan(plan: Plan, store: Store) -> dict[tuple[str, int], TakeCheck]:
    """The checks of every rendered take of every model shot, keyed ``(shot id, take)``.

    Each clip is decoded at most once, ever: its detections are cached by digest in the
    store, and the clips not cached yet are decoded in parallel (one worker per CPU). A take
    whose clip changed on disk since the plan found it is left out (as a plan made now would
    find it not rendered). Only the cache is written.

    Raises:
        ClipUnreadable: a clip cannot be decoded at all; raised once every other clip has
            been checked and cached, for the first such take in cut order, with the checks
            of every other take (``checks``) and every take that failed (``takes``).
    """
    takes = _rendered(plan)
    raws: dict[str, Detections] = {}
    misses: dict[str, _Take] = {}
    for item in takes:
        digest = item.clip.digest
        if digest in raws or digest in misses:
            continue
        cached = _cached(store, digest)
        if cached is not None:
            raws[digest] = cached
        elif _as_planned(store, item.clip):  # the record will name these bytes: check first
            misses[digest] = item
    found, failed = _decode_all(store, plan, misses)
    raws.update(found)
    by_key = {item.take.key: item.clip for item in takes}
    checks: dict[tuple[str, int], TakeCheck] = {}
    for item in takes:
        raw = raws.get(item.clip.digest)
        if raw is None:
            continue  # changed on disk since the plan, or not decodable (``failed``)
        up = item.take.material.upstream
        upstream = None
        if up is not None and up.mode == "extends" and up.key in by_key:
            upstream = by_key[up.key].seconds
        findings = judge(raw, item.sp, item.take, upstream=upstream)
        checks[(item.sp.id, item.take.take)] = TakeCheck(item.clip.digest, findings)
    if failed:
        bad = {e.path for e in failed}
        first = failed[0]
        first.checks = checks
        first.takes = tuple((i.sp.id, i.take.take) for i in takes if i.clip.path in bad)
        raise first
    return checks
