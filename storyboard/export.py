"""The cut as a timeline an editor opens: OTIO, OTIOZ, FCPXML, FCP 7 XML, CMX 3600 EDL.

Issue 11 item 5. One ``opentimelineio`` timeline is built from :class:`~storyboard.timeline.
Timeline` (the cut described with the cutter's own arithmetic) and written by the format's
OpenTimelineIO adapter, so every format agrees with the MP4 to the frame:

* one video track, every item in cut order: a shot's selected take as a clip whose media
  reference is the stored clip (an absolute ``file://`` URL; with ``copy_media`` a copy in
  ``<export stem>.media/`` beside the export, by a relative URL), its ``available_range``
  the whole clip and its source range the part the cut shows (``trim``, an extension's new
  footage); a title card as a small video file drawn beside the export, exactly as long as
  the card is seen;
* times are whole frames at the cut's rate (``RationalTime(frames, fps)``), never float
  seconds;
* a transition of ``k`` frames between two items is a ``SMPTE_Dissolve`` with
  ``in_offset + out_offset == k``: OTIO places a transition *around* the cut point between
  two clips, so each clip gives the overlap up (:func:`dissolve_splits`) and the track lasts
  exactly the cut's frames. An odd overlap puts the extra frame after the cut point, the
  way FCP 7 centres a transition, so the file reads back the same. A crossfade is a plain
  dissolve; any other type is a dissolve whose metadata names it
  (``metadata["storyboard"]["transition"]``);
* the soundtrack on an audio track as the cut plays it: looped (the file's length rounded to
  whole frames) until the picture ends, the last loop cut there, with its volume and
  fade-out in metadata and the fade as a transition to nothing at the end of the track
  (FCP 7 XML also gets its own ``Audio Levels`` filter and audio cross fade);
* every clip carries ``metadata["storyboard"]`` with the shot id, take, model, prompt,
  generation key, cost, task id, provider and digest.

What a format cannot express is returned as a warning (the CLI prints each on stderr)
instead of being dropped silently: the FCPXML adapter writes no transitions, an EDL holds no
soundtrack and no metadata, and no format has wipes or fades through black. An FCP 7 XML gets
its ``<format>`` (frame size and rate; Resolve ignores a file without one) and an FCPXML its
frame size, added to the adapter's XML afterwards.

Everything is written atomically, and only into the export's own folder.
``opentimelineio`` is imported only when something is exported.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from storyboard.errors import StitchError, UsageError
from storyboard.hashing import atomic_write, canonical_json, sha256_bytes, sha256_file

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from storyboard.timeline import Item, Soundtrack, Timeline

__all__ = [
    "FORMATS",
    "ExportFailed",
    "Exported",
    "UnknownFormat",
    "dissolve_splits",
    "export_timeline",
]

#: Every export format and the suffix of its file.
FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "otio": ".otio",
        "otioz": ".otioz",
        "fcpxml": ".fcpxml",
        "fcp7xml": ".xml",
        "edl": ".edl",
    }
)

# The OpenTimelineIO adapter that writes each format (otio.adapters.available_adapter_names();
# fcpx_xml comes from otio-fcpx-xml-adapter, fcp_xml and cmx_3600 from opentimelineio-plugins).
_ADAPTERS: Mapping[str, str] = MappingProxyType(
    {
        "otio": "otio_json",
        "otioz": "otioz",
        "fcpxml": "fcpx_xml",
        "fcp7xml": "fcp_xml",
        "edl": "cmx_3600",
    }
)
_LABELS: Mapping[str, str] = MappingProxyType(
    {"otio": "OTIO", "otioz": "OTIOZ", "fcpxml": "FCPXML", "fcp7xml": "FCP 7 XML", "edl": "EDL"}
)
# Frame rates the FCPXML adapter has a frame duration for (its FRAMERATE_FRAMEDURATION);
# at any other rate it cannot place audio, and the frame duration is written here instead.
_FCPX_RATES = frozenset({24, 25, 30, 50, 60})
# Bump when the bytes of a drawn card change (they are reused by name).
_CARD_VERSION = "export-card/1"
_META = "storyboard"


class UnknownFormat(UsageError):
    """``--format`` names no export format.

    Attributes:
        format: what was asked for.
        known: the formats there are.
    """

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.known = tuple(FORMATS)
        super().__init__(
            f"unknown export format {fmt!r}: choose one of {', '.join(self.known)}",
            hint="storyboard export FILE --format otio",
        )


class ExportFailed(StitchError):
    """The timeline could not be written (an adapter refused it, or a file could not be made).

    Attributes:
        format: the export format.
        path: the export that was being written.
        reason: what went wrong, in the adapter's or the system's words.
    """

    def __init__(self, fmt: str, path: Path, reason: str, *, hint: str | None = None) -> None:
        self.format = fmt
        self.path = path
        self.reason = reason
        self._hint = hint
        super().__init__(f"cannot export {_LABELS.get(fmt, fmt)} to {path}: {reason}")

    def hint(self) -> str | None:
        if self._hint is not None or self.format == "otio":
            return self._hint
        return "storyboard export FILE --format otio (the format with the fewest limits)"


@dataclass(frozen=True)
class Exported:
    """What :func:`export_timeline` wrote.

    ``clips`` counts the items of the video track (shots and cards); ``warnings`` say what
    the format cannot express; ``media`` are the files the export points to on disk (stored
    clips or their copies, drawn cards, the soundtrack), none for an OTIOZ, which holds its
    own.
    """

    path: Path
    format: str
    clips: int
    warnings: tuple[str, ...]
    media: tuple[Path, ...]


# --------------------------------------------------------------------------------------------
# arithmetic


def dissolve_splits(frames: Sequence[int], joins: Sequence[int]) -> list[tuple[int, int]]:
    """How each overlap is split around its cut point: ``(in_offset, out_offset)`` per join.

    ``frames[i]`` is item ``i``'s length in the cut (overlaps included) and ``joins[i]`` the
    frames item ``i`` overlaps item ``i + 1`` (clamped as the cutter clamps them). In OTIO a
    clip then lasts ``frames[i] - in_offset[i - 1] - out_offset[i]`` frames, so the track is
    ``sum(frames) - sum(joins)`` long, the cut's length. The split is centred (the odd frame
    after the cut point, as FCP 7 reads a centred transition); where that would leave an
    item no frame of its own, the overlap is pushed to the side that has frames to give.
    """
    if len(joins) != max(0, len(frames) - 1):
        raise ValueError("one join between each pair of items")
    centred = [(k // 2, k - k // 2) for k in joins]
    if all(n >= 1 for n in _durations(frames, centred)):
        return centred
    # Left to right, each item keeps one frame and gives the rest of what the joins ask:
    # as much as possible of a join is taken from the item before it, which leaves the
    # most for the items after it.
    splits: list[tuple[int, int]] = []
    incoming = 0
    for i, k in enumerate(joins):
        out = max(0, min(k, frames[i] - 1 - incoming))
        splits.append((k - out, out))
        incoming = k - out
    return splits


def _durations(frames: Sequence[int], splits: Sequence[tuple[int, int]]) -> list[int]:
    """Each item's own frames on an OTIO track, given the splits of its joins."""
    out = []
    for i, n in enumerate(frames):
        before = splits[i - 1][0] if i > 0 else 0
        after = splits[i][1] if i < len(splits) else 0
        out.append(n - before - after)
    return out


# --------------------------------------------------------------------------------------------
# media beside the export


def _file_url(path: Path) -> str:
    """An absolute ``file://`` URL; quote() escapes what XML attributes and XPath choke on."""
    return "file://" + quote(path.absolute().as_posix())


def _relative_url(path: Path, base: Path) -> str:
    return quote(path.relative_to(base).as_posix())


def _copy(src: Path, dest: Path, digest: str) -> None:
    """Copy ``src`` to ``dest`` atomically, unless ``dest`` already holds ``digest``."""
    if dest.is_file() and sha256_file(dest) == digest:
        return
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _draw_card(item: Item, timeline: Timeline, folder: Path) -> Path:
    """The card as a video file in ``folder``: the cut's size and rate, ``item.frames`` long.

    Drawn as the cutter draws it (:func:`storyboard.media.text.draw_card`, the same
    scaling and BT.709 conversion) and reused when a card with the same content exists.
    """
    from storyboard.media import ffmpeg
    from storyboard.media.encoding import COLOUR, MUX_ARGS, fit_filter, timeout, video_codec_args
    from storyboard.media.text import draw_card

    text = item.card_text or ""
    background = item.card_background or "#000000"
    color = item.card_color or "#ffffff"
    fps, width, height = timeline.fps, timeline.width, timeline.height
    key = sha256_bytes(
        canonical_json([_CARD_VERSION, text, background, color, width, height, fps, item.frames])
    )
    dest = folder / f"card-{item.shot}-{key[:12]}.mp4"
    if dest.is_file():
        return dest
    stem = f".{dest.stem}.{uuid.uuid4().hex[:12]}"
    png, tmp = folder / f"{stem}.png", folder / f"{stem}.mp4"
    try:
        draw_card(text, width, height, png, background=background, color=color)
        seconds = item.frames / fps
        args = ["-loop", "1", "-framerate", str(fps), "-t", f"{seconds + 1:.6f}", "-i", str(png)]
        args += ["-vf", f"{fit_filter(width, height, 'crop', None)},{COLOUR}"]
        args += ["-frames:v", str(item.frames), *video_codec_args(fps), "-an"]
        args += ["-movflags", "+faststart", *MUX_ARGS, "-f", "mp4", str(tmp)]
        ffmpeg.run(args, what=f"drawing the card of {item.shot}", timeout=timeout(seconds))
        os.replace(tmp, dest)
    finally:
        png.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return dest


@dataclass(frozen=True)
class _Sources:
    """The file behind each item of the video track, and the soundtrack's."""

    items: tuple[Path, ...]
    soundtrack: Path | None


def _sources(
    timeline: Timeline, media_dir: Path, card_dir: Path, *, copy_media: bool, soundtrack: bool
) -> _Sources:
    items: list[Path] = []
    for item in timeline.items:
        if item.kind == "card":
            card_dir.mkdir(parents=True, exist_ok=True)
            items.append(_draw_card(item, timeline, card_dir))
            continue
        assert item.path is not None and item.digest is not None
        if not copy_media:
            items.append(item.path)
            continue
        media_dir.mkdir(parents=True, exist_ok=True)
        dest = media_dir / f"{item.shot}-take{item.take or 1}-{item.digest[:12]}{item.path.suffix}"
        _copy(item.path, dest, item.digest)
        items.append(dest)
    sound = timeline.soundtrack.path if timeline.soundtrack is not None and soundtrack else None
    if sound is not None and copy_media:
        media_dir.mkdir(parents=True, exist_ok=True)
        dest = media_dir / sound.name
        _copy(sound, dest, sha256_file(sound))
        sound = dest
    return _Sources(tuple(items), sound)


# --------------------------------------------------------------------------------------------
# the OTIO timeline


def _clip_facts(item: Item) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "shot": item.shot,
        "kind": item.kind,
        "take": item.take,
        "takes": item.takes,
        "model": item.model,
        "prompt": item.prompt,
        "key": item.key,
        "cost": item.cost,
        "task_id": item.task_id,
        "provider": item.provider,
        "digest": item.digest,
    }
    if item.kind == "card":
        facts["card"] = {
            "text": item.card_text,
            "background": item.card_background,
            "color": item.card_color,
        }
    return facts


def _logging_info(item: Item) -> dict[str, Any]:
    """What FCP 7 XML keeps of a clip's facts: its logging info (Premiere shows it)."""
    if item.kind == "card":
        return {"scene": item.shot, "description": item.card_text or ""}
    note = "; ".join(
        f"{name}={value}"
        for name, value in (
            ("model", item.model),
            ("provider", item.provider),
            ("key", item.key),
            ("cost", item.cost),
            ("task_id", item.task_id),
            ("digest", item.digest),
        )
        if value is not None
    )
    return {
        "scene": item.shot,
        "shottake": f"{item.take}/{item.takes}",
        "description": item.prompt or "",
        "lognote": note,
    }


def _note(item: Item) -> str:
    """What an FCPXML asset clip keeps of a clip's facts: one note."""
    if item.kind == "card":
        return f"{item.shot}: title card {item.card_text!r}"
    return f"{item.shot} take {item.take}/{item.takes} · {item.model} · {item.prompt or ''}"


def _otio_timeline(
    timeline: Timeline,
    sources: _Sources,
    url: Any,
    *,
    soundtrack_seconds: float | None,
) -> Any:
    """The ``otio.schema.Timeline`` of the cut (``url`` maps a file to its reference)."""
    import opentimelineio as otio  # type: ignore[import-untyped]

    fps = timeline.fps

    def rt(frames: int) -> Any:
        return otio.opentime.RationalTime(frames, fps)

    def span(start: int, frames: int) -> Any:
        return otio.opentime.TimeRange(rt(start), rt(frames))

    items = timeline.items
    frames = [i.frames for i in items]
    joins = [i.transition_frames for i in items[:-1]]
    splits = dissolve_splits(frames, joins)
    own = _durations(frames, splits)

    result = otio.schema.Timeline(name=timeline.name, global_start_time=rt(0))
    result.metadata[_META] = {
        "cut": str(timeline.cut),
        "backend": timeline.backend,
        "fps": fps,
        "width": timeline.width,
        "height": timeline.height,
        "frames": timeline.frames,
        "spent": timeline.spent,
    }
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    result.tracks.append(video)
    for i, (item, path) in enumerate(zip(items, sources.items, strict=True)):
        before = splits[i - 1][0] if i > 0 else 0
        start = timeline.source_frame(item) + before
        if item.kind == "card":
            available = item.frames
        else:
            assert item.clip_seconds is not None
            available = round(item.clip_seconds * fps)
        # The cutter holds a clip's last frame when it is a frame short of its window.
        available = max(available, timeline.source_frame(item) + item.frames)
        reference = otio.schema.ExternalReference(
            target_url=url(path), available_range=span(0, available)
        )
        reference.name = path.name
        reference.metadata["fcpx"] = {"note": _note(item)}
        clip = otio.schema.Clip(
            name=item.shot, media_reference=reference, source_range=span(start, own[i])
        )
        clip.metadata[_META] = _clip_facts(item)
        clip.metadata["fcp_xml"] = {"logginginfo": _logging_info(item)}
        video.append(clip)
        if i < len(splits) and item.transition_frames > 0:
            cut_in, cut_out = splits[i]
            transition = otio.schema.Transition(
                name="Cross Dissolve",
                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=rt(cut_in),
                out_offset=rt(cut_out),
            )
            if item.transition != "crossfade":
                transition.metadata[_META] = {
                    "transition": item.transition,
                    "frames": item.transition_frames,
                }
            video.append(transition)
    if sources.soundtrack is not None and soundtrack_seconds is not None:
        assert timeline.soundtrack is not None
        result.tracks.append(
            _audio_track(timeline, timeline.soundtrack, sources.soundtrack, url, soundtrack_seconds)
        )
    return result


def _audio_track(
    timeline: Timeline, sound: Soundtrack, path: Path, url: Any, seconds: float
) -> Any:
    """The soundtrack as the cut plays it: looped to cover the picture, cut at its end."""
    import opentimelineio as otio

    fps, total = timeline.fps, timeline.frames

    def rt(frames: int) -> Any:
        return otio.opentime.RationalTime(frames, fps)

    facts = {"soundtrack": path.name, "volume": sound.volume, "fade_out": sound.fade_out}
    loop = max(1, round(seconds * fps))
    track = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    track.metadata[_META] = dict(facts)
    at, last, count = 0, 0, 0
    while at < total:
        last, count = min(loop, total - at), count + 1
        reference = otio.schema.ExternalReference(
            target_url=url(path), available_range=otio.opentime.TimeRange(rt(0), rt(loop))
        )
        reference.name = path.name
        # A note makes the FCPXML adapter write the browser clip once, not once a loop.
        reference.metadata["fcpx"] = {
            "note": f"soundtrack {path.name}: volume {sound.volume:g}, "
            f"fade-out {sound.fade_out:g} s"
        }
        clip = otio.schema.Clip(
            name="soundtrack",
            media_reference=reference,
            source_range=otio.opentime.TimeRange(rt(0), rt(last)),
        )
        # The loop number keeps loops apart: the FCP 7 adapter writes a clip equal to an
        # earlier one as a reference to it, at the earlier one's place.
        clip.metadata[_META] = {**facts, "loop": count}
        track.append(clip)
        at += last
    fade = min(round(sound.fade_out * fps), total)
    if fade > 0:
        fading = otio.schema.Transition(
            name="Fade Out",
            transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
            in_offset=rt(min(fade, last)),
            out_offset=rt(0),
        )
        fading.metadata[_META] = {"fade_out": sound.fade_out, "frames": fade}
        track.append(fading)
    return track


# --------------------------------------------------------------------------------------------
# what each format cannot say


def _join_list(timeline: Timeline, only: set[str] | None = None) -> list[str]:
    items = timeline.items
    return [
        f"{a.shot}→{b.shot} {a.transition} ({a.transition_frames} frames)"
        for a, b in itertools.pairwise(items)
        if a.transition_frames > 0 and (only is None or a.transition not in only)
    ]


def _warnings(fmt: str, timeline: Timeline, *, soundtrack_dropped: str | None) -> list[str]:
    label = _LABELS[fmt]
    out: list[str] = []
    sound = timeline.soundtrack
    dissolves = _join_list(timeline)
    other = _join_list(timeline, only={"crossfade"})
    if fmt == "fcpxml" and dissolves:
        out.append(
            f"{label}: the adapter writes no transitions: {len(dissolves)} become hard cuts "
            f"in the middle of their overlap: {', '.join(dissolves)}"
        )
    elif other:
        named = " (the metadata names each type)" if fmt in ("otio", "otioz") else ""
        out.append(
            f"{label}: {len(other)} transition(s) other than a crossfade are written as "
            f"dissolves{named}: {', '.join(other)}"
        )
    if sound is not None:
        if soundtrack_dropped is not None:
            out.append(f"{label}: no soundtrack ({sound.path.name}): {soundtrack_dropped}")
        elif fmt == "fcpxml":
            out.append(
                f"{label}: the soundtrack's volume ({sound.volume:g}) and fade-out "
                f"({sound.fade_out:g} s) are not written: the adapter writes no audio levels"
            )
    if fmt == "edl":
        out.append(
            f"{label}: each event keeps only the shot id and the file; the take, model, "
            "prompt, generation key, cost and task id are not in the file "
            "(export --format otio keeps them)"
        )
    elif fmt == "fcpxml":
        out.append(
            f"{label}: each clip keeps only a note (shot, take, model, prompt); the "
            "generation key, cost, task id and digest are not in the file "
            "(export --format otio keeps them)"
        )
    return out


# --------------------------------------------------------------------------------------------
# XML the adapters leave out


def _sub(parent: Element, tag: str, text: str | None = None) -> Element:
    from xml.etree.ElementTree import SubElement

    child = SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _rate(parent: Element, fps: int) -> None:
    rate = _sub(parent, "rate")
    _sub(rate, "timebase", str(fps))
    _sub(rate, "ntsc", "FALSE")


def _fcp7_fixed(xml: str, timeline: Timeline) -> str:
    """The FCP 7 XML with its ``<format>``, the soundtrack's level and its audio fade.

    The adapter writes an empty ``<format/>``; Resolve ignores a sequence without the
    frame size and rate in it.
    """
    from xml.etree import ElementTree as ET

    root = ET.fromstring(xml)
    for sequence in root.iter("sequence"):
        video = sequence.find("./media/video")
        if video is not None:
            fmt = video.find("format")
            if fmt is None:
                fmt = ET.Element("format")
                video.insert(0, fmt)
            fmt.clear()
            chars = _sub(fmt, "samplecharacteristics")
            _rate(chars, timeline.fps)
            _sub(chars, "width", str(timeline.width))
            _sub(chars, "height", str(timeline.height))
            _sub(chars, "anamorphic", "FALSE")
            _sub(chars, "pixelaspectratio", "square")
            _sub(chars, "fielddominance", "none")
            _sub(chars, "colordepth", "24")
        audio = sequence.find("./media/audio")
        if audio is None or timeline.soundtrack is None:
            continue
        if audio.find("format") is None:
            fmt = ET.Element("format")
            chars = _sub(fmt, "samplecharacteristics")
            _sub(chars, "depth", "16")
            _sub(chars, "samplerate", "48000")
            audio.insert(0, fmt)
        for clipitem in audio.iterfind("./track/clipitem"):
            effect = _sub(_sub(clipitem, "filter"), "effect")
            _sub(effect, "name", "Audio Levels")
            _sub(effect, "effectid", "audiolevels")
            _sub(effect, "effectcategory", "audiolevels")
            _sub(effect, "effecttype", "audiolevels")
            _sub(effect, "mediatype", "audio")
            parameter = _sub(effect, "parameter")
            _sub(parameter, "parameterid", "level")
            _sub(parameter, "name", "Level")
            _sub(parameter, "valuemin", "0")
            _sub(parameter, "valuemax", "3.98109")
            _sub(parameter, "value", f"{timeline.soundtrack.volume:g}")
        for effect in audio.iterfind("./track/transitionitem/effect"):
            # The adapter writes every transition as a video cross dissolve.
            for tag, text in (
                ("name", "Cross Fade (0dB)"),
                ("effectid", "KGAudioTransCrossFade0dB"),
                ("mediatype", "audio"),
            ):
                node = effect.find(tag)
                if node is not None:
                    node.text = text
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n{body}\n'


def _fcpx_fixed(xml: str, timeline: Timeline) -> str:
    """The FCPXML with the frame size on its formats (and a frame duration at any rate).

    The adapter names a format after what ``ffprobe`` says (often nothing: an empty name)
    and knows the frame duration of a few rates only.
    """
    from xml.etree import ElementTree as ET

    root = ET.fromstring(xml)
    names = {(1920, 1080): "FFVideoFormat1080p", (1280, 720): "FFVideoFormat720p"}
    for fmt in root.iterfind("./resources/format"):
        if not fmt.get("frameDuration"):
            fmt.set("frameDuration", f"1/{timeline.fps}s")
        name = names.get((timeline.width, timeline.height))
        if name is not None:
            fmt.set("name", f"{name}{timeline.fps}")
        elif not fmt.get("name"):
            del fmt.attrib["name"]
        fmt.set("width", str(timeline.width))
        fmt.set("height", str(timeline.height))
    ET.indent(root, space="    ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


# --------------------------------------------------------------------------------------------
# export


def export_timeline(
    timeline: Timeline, fmt: str, out: Path, *, copy_media: bool = False
) -> Exported:
    """Write ``timeline`` to ``out`` as ``fmt`` (a key of :data:`FORMATS`).

    Title cards are drawn to ``<out stem>.media/`` beside ``out`` (reused while they do not
    change); with ``copy_media`` the clips and the soundtrack are copied there too and
    referenced by relative URLs, else by absolute ``file://`` URLs to the store. An OTIOZ
    always holds its media (cards are drawn in a temporary folder beside it, then removed).
    Nothing is written outside ``out``'s folder; ``out`` is replaced atomically.

    Raises:
        UnknownFormat: ``fmt`` is not an export format.
        ExportFailed: the adapter refused the timeline, or a file could not be written.
        MediaError: a card could not be drawn.
    """
    if fmt not in FORMATS:
        raise UnknownFormat(fmt)
    out = out.absolute()
    if out.is_dir():
        raise ExportFailed(fmt, out, "it is a folder; name the file to write")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportFailed(fmt, out, exc.strerror or str(exc)) from exc
    media_dir = folder / f"{out.stem}.media"
    bundle = fmt == "otioz"
    card_dir = folder / f".{out.stem}.{uuid.uuid4().hex[:12]}.cards" if bundle else media_dir
    try:
        return _export(
            timeline, fmt, out, media_dir, card_dir, copy_media=copy_media and not bundle
        )
    except OSError as exc:
        raise ExportFailed(fmt, out, exc.strerror or str(exc)) from exc
    finally:
        if bundle:
            shutil.rmtree(card_dir, ignore_errors=True)


def _export(
    timeline: Timeline,
    fmt: str,
    out: Path,
    media_dir: Path,
    card_dir: Path,
    *,
    copy_media: bool,
) -> Exported:
    import opentimelineio as otio

    adapter = _ADAPTERS[fmt]
    if adapter not in otio.adapters.available_adapter_names():
        package = "otio-fcpx-xml-adapter" if fmt == "fcpxml" else "opentimelineio-plugins"
        raise ExportFailed(
            fmt,
            out,
            f"its OpenTimelineIO adapter {adapter!r} is not installed",
            hint=f"pip install {package}",
        )
    dropped: str | None = None
    if timeline.soundtrack is not None:
        if fmt == "edl":
            dropped = "a CMX 3600 EDL here holds the picture track only"
        elif fmt == "fcpxml" and timeline.fps not in _FCPX_RATES:
            rates = ", ".join(str(r) for r in sorted(_FCPX_RATES))
            dropped = f"the FCPXML adapter places audio at {rates} fps only, not {timeline.fps}"
    sources = _sources(
        timeline, media_dir, card_dir, copy_media=copy_media, soundtrack=dropped is None
    )
    base = out.parent

    def url(path: Path) -> str:
        return _relative_url(path, base) if copy_media else _file_url(path)

    seconds: float | None = None
    if sources.soundtrack is not None:
        from storyboard.mediainfo import read_seconds

        assert timeline.soundtrack is not None
        seconds = read_seconds(timeline.soundtrack.path)
    tl = _otio_timeline(timeline, sources, url, soundtrack_seconds=seconds)
    warnings = _warnings(fmt, timeline, soundtrack_dropped=dropped)
    try:
        if fmt == "otioz":
            tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                otio.adapters.write_to_file(tl, str(tmp), adapter_name=adapter)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            if fmt == "edl":
                text = otio.adapters.write_to_string(tl, adapter, rate=timeline.fps)
            else:
                text = otio.adapters.write_to_string(tl, adapter)
            if fmt == "fcp7xml":
                text = _fcp7_fixed(text, timeline)
            elif fmt == "fcpxml":
                text = _fcpx_fixed(text, timeline)
            atomic_write(out, text.encode("utf-8"))
    except OSError:
        raise
    except Exception as exc:  # an adapter's refusal (OTIOError, NotSupportedError, ValueError)
        raise ExportFailed(fmt, out, f"{type(exc).__name__}: {exc}") from exc
    media: tuple[Path, ...] = ()
    if fmt != "otioz":
        files = [*sources.items, *([sources.soundtrack] if sources.soundtrack else [])]
        media = tuple(dict.fromkeys(files))
    return Exported(out, fmt, len(timeline.items), tuple(warnings), media)
