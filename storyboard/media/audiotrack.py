"""The cut's sound: AAC packets copied where one clip is heard alone, encoded where it is not.

The cut's audio is one AAC-LC track at 48 kHz stereo, a sequence of 1024-sample packets
("slots"): slot ``j`` holds cut samples ``1024 j`` to ``1024 j + 1023``. A packet before
slot 0 primes the decoder and the track's edit list skips it, so the track starts on the
cut's first sample and ends on its last one.

Each segment of the cut is a :class:`Voice`: where it sits, which clip sounds, from which
sample, and the fades of its transitions. A slot whose samples are all heard from voices
alone (no transition mixing them, no soundtrack) and whose voice's clip holds AAC-LC 48 kHz
stereo is *copied*: the clip's packet that covers the same instant, shifted by less than
half a packet (10.7 ms), whole; a slot where nothing sounds (cards, clips without sound)
copies a packet of encoded silence (:func:`render_silence`, made once per work folder).
Every other slot is *encoded*: consecutive ones, plus one
slot on either side (so that the switch between copied and encoded packets falls where both
hold the same sound) form a :class:`Run`, which one ffmpeg process mixes from the clips
(transition fades, the soundtrack) and encodes. A run is cached by what it is made of.

Why copy at all: re-encoding AAC costs far more than everything else a hard cut does
(ffmpeg's encoder runs at some 20x real time here), and copying keeps the clips' own sound.
The price is at a hard cut between two copied clips: the decoder overlaps the last packet
of one with the first of the other, blending the two over 21 ms where a re-encode would
switch at once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storyboard.errors import MediaError
from storyboard.media import ffmpeg, mp4
from storyboard.media.encoding import SAMPLE_RATE, temp_sibling, timeout
from storyboard.media.mux import Audio, Span
from storyboard.media.probe import AudioCopy

__all__ = [
    "ASC",
    "SLOT",
    "Bed",
    "Command",
    "Plan",
    "Run",
    "Voice",
    "command",
    "heard",
    "plan",
    "render",
    "render_silence",
    "silence",
    "track",
]

SLOT = 1024  # samples per AAC-LC packet
#: The AudioSpecificConfig of the cut's track: AAC-LC, 48 kHz, stereo.
ASC = bytes([0x11, 0x90])
_BITRATE = "192k"
# The fast coder: twice as fast as ffmpeg's default (two-loop search), and at this rate the
# difference is not audible; a cut with a soundtrack encodes all of its sound.
_AAC_ARGS = [
    "-c:a", "aac", "-aac_coder", "fast", "-b:a", _BITRATE, "-ar", str(SAMPLE_RATE), "-ac", "2",
    "-flags:a", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1",
]  # fmt: skip
_VERSION = "audiotrack/2"
_SILENT = -1  # the "voice" of a slot in which nothing sounds
_SILENT_PACKET = 2  # a packet of the silence file deep inside it (not the priming)


@dataclass(frozen=True)
class Voice:
    """One segment's sound in the cut, in samples at 48 kHz.

    ``fade_in`` and ``fade_out`` are ``(first sample, length)`` relative to ``start``: the
    gain rises from 0 (silent before it) or falls to 0 (silent after it). ``alone`` is
    ``[first, end)``, relative to ``start``, where nothing else is heard.
    """

    start: int
    length: int
    clip: Path | None  # None: silent (a card, a clip without sound)
    offset: int  # the clip's sample heard at ``start``
    fade_in: tuple[int, int] | None
    fade_out: tuple[int, int] | None
    alone: tuple[int, int]
    copy: AudioCopy | None  # set when the clip's packets may be copied
    key: str  # what the clip is (its digest), for the cache


@dataclass(frozen=True)
class Bed:
    """The soundtrack under the whole cut: looped, at ``volume``, faded out at the end."""

    path: Path
    key: str
    volume: float
    fade_out: int  # samples


@dataclass(frozen=True)
class Run:
    """Slots ``first`` to ``end - 1``, encoded by one ffmpeg run into ``path``."""

    first: int
    end: int
    path: Path


@dataclass(frozen=True)
class Plan:
    """Where each packet of the track comes from: ``packets[q]`` is ``(file, index)``;
    packet ``q`` holds slot ``q - 1`` (packet 0 primes the decoder)."""

    total: int
    packets: tuple[tuple[Path, int], ...]
    runs: tuple[Run, ...]
    silence: Path | None  # the file of silence, when some slot copies from it


def _locate(voices: Sequence[Voice], total: int, slots: int) -> list[tuple[int, int] | None]:
    """For each slot, ``(voice, packet)`` when it can be copied, else ``None``
    (voice :data:`_SILENT`: a packet of silence)."""
    alone = []  # absolute [first, end) where a copyable or silent voice is heard alone
    for i, v in enumerate(voices):
        a, b = v.start + v.alone[0], v.start + v.alone[1]
        if (v.copy is not None or v.clip is None) and b > a:
            alone.append((a, b, i))
    out: list[tuple[int, int] | None] = [None] * slots
    at = 0
    for j in range(slots):
        lo, hi = SLOT * j, min(SLOT * (j + 1), total)
        centre = min(lo + SLOT // 2, hi - 1)
        while at < len(alone) and alone[at][1] <= lo:
            at += 1
        # Covered: the zones from ``at`` on must tile [lo, hi) without a gap.
        reach, k, owner = lo, at, None
        while k < len(alone) and alone[k][0] <= reach < hi:
            if alone[k][0] <= centre < alone[k][1]:
                owner = alone[k][2]
            reach = max(reach, alone[k][1])
            k += 1
        if reach < hi or owner is None:
            continue
        v = voices[owner]
        if v.clip is None:
            out[j] = (_SILENT, _SILENT_PACKET)
            continue
        assert v.copy is not None
        shift = math.floor((v.offset - v.start + v.copy.priming) / SLOT + 0.5)
        packet = j + shift
        if (1 if j == 0 else 0) <= packet < v.copy.packets:
            out[j] = (owner, packet)
    return out


def _runs(found: Sequence[tuple[int, int] | None]) -> list[tuple[int, int]]:
    """Slots to encode, grouped: each group of dirty slots grown by one slot either side."""
    groups: list[tuple[int, int]] = []
    n = len(found)
    j = 0
    while j < n:
        if found[j] is not None:
            j += 1
            continue
        end = j
        while end < n and found[end] is None:
            end += 1
        first, last = max(0, j - 1), min(n, end + 1)
        if groups and groups[-1][1] >= first:
            groups[-1] = (groups[-1][0], last)
        else:
            groups.append((first, last))
        j = end
    return groups


def _recipe(
    voices: Sequence[Voice], bed: Bed | None, total: int, first: int, end: int
) -> dict[str, object]:
    """Everything a run's samples depend on, positions relative to the run."""
    lo, hi = SLOT * first, SLOT * (end + 1)
    parts = []
    for v in voices:
        if v.clip is None or v.start >= hi or v.start + v.length <= lo:
            continue
        parts.append(
            {
                "key": v.key,
                "at": v.start - lo,
                "offset": v.offset,
                "length": v.length,
                "in": v.fade_in,
                "out": v.fade_out,
            }
        )
    return {
        "v": _VERSION,
        "samples": hi - lo,
        "end": total - lo,  # where the cut ends, relative to the run
        "parts": parts,
        "bed": None
        if bed is None
        else {"key": bed.key, "volume": bed.volume, "fade": bed.fade_out, "from": lo},
    }


def silence(folder: Path) -> Path:
    """The file of encoded silence whose packets silent slots copy."""
    name = hashlib.sha256(f"{_VERSION}:silence:{_BITRATE}".encode()).hexdigest()[:32]
    return folder / f"silence-{name}.m4a"


def render_silence(path: Path) -> None:
    """Encode a few packets of silence into ``path`` (atomically)."""
    tmp = temp_sibling(path)
    args = ["-f", "lavfi", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo", "-t", "0.15"]
    args += [*_AAC_ARGS, "-f", "mp4", str(tmp)]
    try:
        ffmpeg.run(args, what="encoding silence", timeout=timeout(1))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def plan(voices: Sequence[Voice], total: int, bed: Bed | None, folder: Path) -> Plan:
    """Decide which packets are copied and which runs are encoded (into ``folder``).

    Slots in which nothing sounds copy packets of :func:`silence` (``folder``'s).
    """
    slots = max(1, math.ceil(total / SLOT))
    found: list[tuple[int, int] | None]
    found = [None] * slots if bed is not None else _locate(voices, total, slots)
    runs = []
    owner: dict[int, int] = {}
    for first, end in _runs(found):
        recipe = json.dumps(_recipe(voices, bed, total, first, end), sort_keys=True)
        name = hashlib.sha256(recipe.encode("utf-8")).hexdigest()
        runs.append(Run(first, end, folder / f"{name}.m4a"))
        for j in range(first, end):
            owner[j] = len(runs) - 1
    packets: list[tuple[Path, int]] = []
    quiet, silent = silence(folder), False
    for q in range(slots + 1):
        j = max(q - 1, 0)
        if j in owner:
            run = runs[owner[j]]
            packets.append((run.path, q - run.first))
            continue
        copied = found[j]
        assert copied is not None
        voice, packet = copied
        if voice == _SILENT:
            packets.append((quiet, packet - (1 if q == 0 else 0)))
            silent = True
            continue
        clip = voices[voice].clip
        assert clip is not None
        packets.append((clip, packet - (1 if q == 0 else 0)))
    return Plan(total, tuple(packets), tuple(runs), quiet if silent else None)


# --------------------------------------------------------------------------------------------
# encoding a run


def _part_graph(index: int, v: Voice, lo: int, hi: int, label: str) -> tuple[list[str], str, int]:
    """Input args, filter chain and first run sample of voice ``v`` heard in [lo, hi)."""
    a, b = max(lo, v.start), min(hi, v.start + v.length)
    rel, n = a - v.start, b - a
    # Decode from the start of any fade that is still running at ``rel``, so that the fade
    # is computed whole and then cut.
    lead = 0
    for fade in (v.fade_in, v.fade_out):
        if fade is not None and fade[0] < rel < fade[0] + fade[1]:
            lead = max(lead, rel - fade[0])
    begin = rel - lead
    # Seek to a round instant at least half a second before, and cut the rest by samples:
    # seeking near the start makes ffmpeg skip an AAC clip's priming twice (-ss 0 drops
    # its first 1024 samples), and input seeking is exact only to the source's own rate.
    at = (v.offset + begin) / SAMPLE_RATE
    seek = math.floor(max(at - 0.5, 0.0) * 10) / 10
    skip = v.offset + begin - round(seek * SAMPLE_RATE)
    args = ["-ss", f"{seek:.1f}"] if seek > 0 else []
    args += ["-t", f"{at - seek + (n + lead) / SAMPLE_RATE + 0.1:.6f}", "-i", str(v.clip)]
    chain = (
        f"[{index}:a:0]aresample={SAMPLE_RATE},"
        "aformat=sample_fmts=fltp:channel_layouts=stereo,asetpts=N/SR/TB,"
        f"apad,atrim=start_sample={skip}:end_sample={skip + n + lead},asetpts=N/SR/TB"
    )
    stop = rel + n
    if v.fade_in is not None and v.fade_in[0] + v.fade_in[1] > begin:
        # Silent before the fade, rising through it; nothing to do once it is over.
        chain += f",afade=t=in:ss={v.fade_in[0] - begin}:ns={max(v.fade_in[1], 1)}"
    if v.fade_out is not None and v.fade_out[0] < stop:
        if v.fade_out[0] + v.fade_out[1] <= begin:
            chain += ",volume=0"  # faded out already (the first half of a dip)
        else:
            chain += f",afade=t=out:ss={v.fade_out[0] - begin}:ns={max(v.fade_out[1], 1)}"
    if lead:
        chain += f",atrim=start_sample={lead},asetpts=N/SR/TB"
    return args, f"{chain}[{label}]", a - lo


def _silence(samples: int, label: str) -> str:
    return (
        f"anullsrc=r={SAMPLE_RATE}:cl=stereo,aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"atrim=end_sample={samples}[{label}]"
    )


@dataclass(frozen=True)
class Command:
    """An ffmpeg run's share of work for one run: its inputs, its filters (numbering its
    inputs from where the run's first one will be) and its output, written to ``temp``."""

    inputs: tuple[str, ...]
    graph: str
    outputs: tuple[str, ...]
    temp: Path
    seconds: float  # of sound


def heard(run: Run, voices: Sequence[Voice]) -> tuple[int, ...]:
    """The voices whose clips sound in ``run`` (their indices)."""
    lo, hi = SLOT * run.first, SLOT * (run.end + 1)
    return tuple(
        i
        for i, v in enumerate(voices)
        if v.clip is not None and v.start < hi and v.start + v.length > lo
    )


def command(
    run: Run, voices: Sequence[Voice], bed: Bed | None, total: int, first_input: int = 0
) -> Command:
    """The ffmpeg work that mixes and encodes ``run`` (alone, or inside another run)."""
    lo, hi = SLOT * run.first, SLOT * (run.end + 1)
    length = hi - lo
    inputs: list[str] = []
    graph: list[str] = []
    layers: list[list[tuple[int, int, str]]] = [[], []]  # (first sample, samples, label)
    count = 0
    for i in heard(run, voices):
        v = voices[i]
        label = f"sp{count}"
        args, chain, at = _part_graph(first_input + count, v, lo, hi, label)
        inputs += args
        graph.append(chain)
        layers[i % 2].append((at, min(hi, v.start + v.length) - max(lo, v.start), label))
        count += 1
    mixed: list[str] = []
    gaps = 0
    for n, layer in enumerate(layers):
        if not layer:
            continue
        pieces, at = [], 0
        for first, samples, label in sorted(layer):
            if first > at:
                graph.append(_silence(first - at, f"sg{gaps}"))
                pieces.append(f"[sg{gaps}]")
                gaps += 1
            pieces.append(f"[{label}]")
            at = first + samples
        if at < length:
            graph.append(_silence(length - at, f"sg{gaps}"))
            pieces.append(f"[sg{gaps}]")
            gaps += 1
        graph.append(f"{''.join(pieces)}concat=n={len(pieces)}:v=0:a=1[sl{n}]")
        mixed.append(f"[sl{n}]")
    if bed is not None:
        inputs += ["-stream_loop", "-1", "-i", str(bed.path)]
        fade = min(total, bed.fade_out)
        chain = (
            f"[{first_input + count}:a:0]aresample={SAMPLE_RATE},"
            "aformat=sample_fmts=fltp:channel_layouts=stereo,asetpts=N/SR/TB,"
            f"volume={bed.volume:g},atrim=end_sample={total}"
        )
        if fade > 0:
            chain += f",afade=t=out:ss={total - fade}:ns={fade}"
        chain += f",apad,atrim=start_sample={lo}:end_sample={hi},asetpts=N/SR/TB[sbed]"
        graph.append(chain)
        mixed.append("[sbed]")
    if not mixed:
        graph.append(_silence(length, "smix"))
    elif len(mixed) == 1:
        graph.append(f"{mixed[0]}anull[smix]")
    else:
        graph.append(
            f"{''.join(mixed)}amix=inputs={len(mixed)}:duration=longest:normalize=0:"
            "dropout_transition=0[smix]"
        )
    # Beyond the cut's last sample the track is silent (the edit list hides it anyway).
    graph.append(
        f"[smix]atrim=end_sample={max(total - lo, 0)},apad,atrim=end_sample={length}[sout]"
    )
    tmp = temp_sibling(run.path)
    outputs = ("-map", "[sout]", *_AAC_ARGS, "-f", "mp4", str(tmp))
    return Command(tuple(inputs), ";".join(graph), outputs, tmp, length / SAMPLE_RATE)


def render(run: Run, voices: Sequence[Voice], bed: Bed | None, total: int) -> None:
    """Mix and encode ``run`` (one ffmpeg process) into ``run.path``, atomically.

    Raises:
        MediaError: a clip cannot be decoded, or ffmpeg failed or ran past its deadline.
    """
    work = command(run, voices, bed, total)
    args = [*work.inputs, "-filter_complex_threads", "1", "-filter_complex", work.graph]
    args += work.outputs
    try:
        ffmpeg.run(args, what="encoding the sound of the cut", timeout=timeout(work.seconds / 4))
        work.temp.replace(run.path)
    finally:
        work.temp.unlink(missing_ok=True)


def _check_run(run: Run) -> None:
    """An encoded run must prime with exactly one packet and hold every slot it covers."""
    track = mp4.read(run.path).first("soun")
    edits = [] if track is None else [e for e in track.edits if e.media_time >= 0]
    if track is None or (edits[0].media_time if edits else 0) != SLOT:
        raise MediaError(f"{run.path}: the encoder's priming is not one packet")
    if track.count < run.end - run.first + 1:
        raise MediaError(f"{run.path} holds {track.count} packets, fewer than its slots")


def track(plan_: Plan) -> Audio:
    """The track :func:`storyboard.media.mux.write` writes, from a plan whose runs exist."""
    for run in plan_.runs:
        _check_run(run)
    spans: list[Span] = []
    current: Path | None = None
    first = count = 0
    for path, index in plan_.packets:
        if path is current and first + count == index:  # the plan reuses its Path objects
            count += 1
            continue
        if current is not None:
            spans.append(Span(current, "soun", first, count))
        current, first, count = path, index, 1
    if current is not None:
        spans.append(Span(current, "soun", first, count))
    return Audio(tuple(spans), ASC, SAMPLE_RATE, 2, SLOT, plan_.total, SLOT)
