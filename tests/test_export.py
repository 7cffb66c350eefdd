"""Timeline export (issue 11 item 5): every format read back with OpenTimelineIO.

A tiny storyboard with a card, a trim, an extension, two takes with the second selected, a
fade, a cut, a wipe of an odd number of frames, a crossfade and a looped soundtrack is
rendered once (the free preview) and exported to every format. Each file is read back by
the format's own adapter and compared with the timeline, which the timeline tests tie to the
cutter and the stitched MP4: clip order and count, every clip's source range to the frame,
the dissolves' positions and lengths where the format keeps them, and the total length,
which must equal the MP4's.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from xml.etree import ElementTree as ET

import opentimelineio as otio  # type: ignore[import-untyped]
import pytest
from cutboard import EXPECTED, MUSIC_SECONDS, Rendered, render, write_music
from hypothesis import given
from hypothesis import strategies as st

from storyboard.cutter import Layout, _clamp
from storyboard.errors import StitchError, UsageError
from storyboard.export import (
    FORMATS,
    Exported,
    ExportFailed,
    UnknownFormat,
    dissolve_splits,
    export_timeline,
)
from storyboard.hashing import sha256_file
from storyboard.media.probe import probe
from storyboard.timeline import Item, Soundtrack, Timeline

FACTS = {"shot", "take", "model", "prompt", "key", "cost", "task_id", "provider", "digest"}


# -- the rendered board and its exports ------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(tmp_path_factory.mktemp("export") / "proj")


@pytest.fixture(scope="module")
def exports(rendered: Rendered) -> Iterator[dict[str, Exported]]:
    """Every format, exported once into one folder (the cards' files are shared)."""
    folder = rendered.board.parent / "exports"
    yield {
        fmt: export_timeline(rendered.timeline, fmt, folder / f"cut{suffix}")
        for fmt, suffix in FORMATS.items()
    }


def read_back(exported: Exported, timeline: Timeline) -> Any:
    if exported.format == "edl":
        return otio.adapters.read_from_file(str(exported.path), rate=timeline.fps)
    return otio.adapters.read_from_file(str(exported.path))


def frames(time: Any, fps: int) -> int:
    value = time.rescaled_to(fps).value
    assert value == round(value), f"{time} is not a whole frame at {fps} fps"
    return round(value)


def tracks(tl: Any, kind: str) -> list[Any]:
    return [t for t in tl.tracks if t.kind == kind]


def expected_ranges(timeline: Timeline, fmt: str) -> list[tuple[str, int, int]]:
    """(shot, source start, duration) of every clip as the format should read back.

    An overlap of k frames sits around the cut point: k // 2 frames before it (taken from
    the next clip's head), the rest after it (taken from the clip's tail). An EDL puts the
    whole dissolve after the cut point (its cut is where the dissolve starts), so there the
    next clip starts k // 2 frames earlier and the clip before ends k // 2 frames earlier.
    """
    items = timeline.items
    out = []
    for i, item in enumerate(items):
        k_in = items[i - 1].transition_frames if i > 0 else 0
        k_out = item.transition_frames
        before, after = k_in // 2, k_out - k_out // 2
        start = timeline.source_frame(item) + before
        length = item.frames - before - after
        if fmt == "edl":
            start -= before
            length += before - k_out // 2
        out.append((item.shot, start, length))
    return out


# -- every format ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_reads_back_frame_exact(
    fmt: str, rendered: Rendered, exports: dict[str, Exported]
) -> None:
    timeline = rendered.timeline
    exported = exports[fmt]
    assert exported.path.name == f"cut{FORMATS[fmt]}"
    assert exported.clips == len(EXPECTED)
    back = read_back(exported, timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    fps = timeline.fps

    clips = list(video.find_clips())
    got = [
        (c.name, frames(c.source_range.start_time, fps), frames(c.source_range.duration, fps))
        for c in clips
    ]
    assert got == expected_ranges(timeline, fmt), fmt
    assert [c.name for c in clips] == [e[0] for e in EXPECTED]

    # The total length, to the frame: the timeline's, which is the stitched MP4's.
    assert frames(video.duration(), fps) == timeline.frames == rendered.cut_frames
    assert frames(back.duration(), fps) == rendered.cut_frames

    transitions = [
        (i, child) for i, child in enumerate(video) if isinstance(child, otio.schema.Transition)
    ]
    joins = [(a, b) for a, b in zip(timeline.items, timeline.items[1:], strict=False)]
    wanted = [(b.record_start, a.transition_frames) for a, b in joins if a.transition_frames]
    if fmt == "fcpxml":
        assert transitions == []  # the adapter writes none (and says so in a warning)
        return
    where = [
        (frames(video.range_of_child_at_index(i).start_time, fps), frames(t.duration(), fps))
        for i, t in transitions
    ]
    assert where == wanted, "each dissolve covers exactly the frames the two items overlap"
    assert all(
        t.transition_type == otio.schema.TransitionTypes.SMPTE_Dissolve for _, t in transitions
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["otio", "otioz", "fcp7xml"])
def test_dissolves_are_split_around_the_cut_point(
    fmt: str, rendered: Rendered, exports: dict[str, Exported]
) -> None:
    """OTIO semantics: in_offset before the cut point, out_offset after; the odd frame of
    the 7-frame wipe goes after it, as FCP 7 reads a centred transition."""
    back = read_back(exports[fmt], rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    fps = rendered.timeline.fps
    offsets = [
        (frames(t.in_offset, fps), frames(t.out_offset, fps))
        for t in video
        if isinstance(t, otio.schema.Transition)
    ]
    assert offsets == [(3, 3), (3, 4), (6, 6)]
    # Expanding the transitions (OTIO's own reading of them) needs no frame the clips lack.
    otio.algorithms.track_with_expanded_transitions(video)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["otio", "otioz"])
def test_other_transitions_name_their_type(
    fmt: str, rendered: Rendered, exports: dict[str, Exported]
) -> None:
    back = read_back(exports[fmt], rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    named = [
        t.metadata.get("storyboard", {}).get("transition")
        for t in video
        if isinstance(t, otio.schema.Transition)
    ]
    assert named == ["fade", "wipe-left", None]  # the crossfade is a plain dissolve


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["otio", "otioz"])
def test_every_clip_carries_its_facts(
    fmt: str, rendered: Rendered, exports: dict[str, Exported]
) -> None:
    back = read_back(exports[fmt], rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    for clip, item in zip(video.find_clips(), rendered.timeline.items, strict=True):
        facts = clip.metadata["storyboard"]
        assert set(facts) >= FACTS
        assert facts["shot"] == item.shot
        if item.kind == "card":
            assert facts["card"]["text"] == item.card_text
            continue
        sp = next(s for s in rendered.plan.shots if s.id == item.shot)
        assert sp.selected is not None and sp.selected.clip is not None
        assert facts["take"] == sp.selected.take
        assert facts["key"] == sp.selected.key
        assert facts["digest"] == sp.selected.clip.digest
        assert facts["model"] == "skyreels-v4-fast"
        assert facts["prompt"] == sp.selected.material.prompt
        assert facts["cost"] == 0.0
        assert facts["provider"] == "preview"
    kite = next(c for c in video.find_clips() if c.name == "kite")
    assert kite.metadata["storyboard"]["take"] == 2  # select: 2 of takes: 2
    assert back.metadata["storyboard"]["frames"] == rendered.cut_frames


@pytest.mark.slow
def test_fcp7_xml_keeps_the_facts_in_logging_info(
    rendered: Rendered, exports: dict[str, Exported]
) -> None:
    back = read_back(exports["fcp7xml"], rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    for clip, item in zip(video.find_clips(), rendered.timeline.items, strict=True):
        info = clip.metadata["fcp_xml"]["logginginfo"]
        assert info["scene"] == item.shot
        if item.kind == "clip":
            assert info["shottake"] == f"{item.take}/{item.takes}"
            assert info["description"] == item.prompt
            assert f"key={item.key}" in info["lognote"]
            assert f"digest={item.digest}" in info["lognote"]


@pytest.mark.slow
def test_fcp7_xml_has_its_format(rendered: Rendered, exports: dict[str, Exported]) -> None:
    """Resolve ignores an FCP 7 XML whose sequence has no frame size and rate."""
    root = ET.parse(exports["fcp7xml"].path).getroot()
    (chars,) = root.findall("./project/children/sequence/media/video/format/samplecharacteristics")
    timeline = rendered.timeline
    assert chars.findtext("width") == str(timeline.width) == "854"
    assert chars.findtext("height") == str(timeline.height) == "480"
    assert chars.findtext("rate/timebase") == "24"
    assert chars.findtext("rate/ntsc") == "FALSE"
    assert chars.findtext("pixelaspectratio") == "square"


@pytest.mark.slow
def test_fcpxml_format_has_the_frame_size(rendered: Rendered, exports: dict[str, Exported]) -> None:
    root = ET.parse(exports["fcpxml"].path).getroot()
    formats = root.findall("./resources/format")
    assert formats
    for fmt in formats:
        assert (fmt.get("width"), fmt.get("height")) == ("854", "480")
        assert fmt.get("frameDuration") == "25/600s"  # 1/24 s, as the adapter writes it


# -- the soundtrack ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["otio", "otioz", "fcp7xml", "fcpxml"])
def test_soundtrack_loops_under_the_picture(
    fmt: str, rendered: Rendered, exports: dict[str, Exported]
) -> None:
    timeline = rendered.timeline
    fps = timeline.fps
    back = read_back(exports[fmt], timeline)
    (audio,) = tracks(back, otio.schema.TrackKind.Audio)
    loops = list(audio.find_clips())
    loop = round(MUSIC_SECONDS * fps)  # 31 frames
    lengths = [frames(c.source_range.duration, fps) for c in loops]
    assert sum(lengths) == timeline.frames == frames(audio.duration(), fps)
    assert lengths[:-1] == [loop] * (len(lengths) - 1) and 0 < lengths[-1] <= loop
    assert all(frames(c.source_range.start_time, fps) == 0 for c in loops)
    if fmt in ("otio", "otioz"):
        assert all(c.metadata["storyboard"]["volume"] == 0.8 for c in loops)
        assert audio.metadata["storyboard"]["fade_out"] == 0.5
    if fmt in ("otio", "otioz", "fcp7xml"):
        fade = audio[len(audio) - 1]
        assert isinstance(fade, otio.schema.Transition), "the fade-out ends the track"
        assert (frames(fade.in_offset, fps), frames(fade.out_offset, fps)) == (12, 0)
    if fmt == "fcp7xml":
        for clip in loops:
            (effect,) = clip.effects
            assert effect.name == "Audio Levels"
            assert effect.metadata["fcp_xml"]["parameter"]["value"] == "0.8"
        root = ET.parse(exports[fmt].path).getroot()
        (fade_effect,) = root.findall(".//audio/track/transitionitem/effect")
        assert fade_effect.findtext("effectid") == "KGAudioTransCrossFade0dB"
        assert fade_effect.findtext("mediatype") == "audio"


# -- media -------------------------------------------------------------------------------------


def local_path(url: str, base: Path) -> Path:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    assert parsed.scheme == "" and not url.startswith("/"), url
    return base / unquote(url)


@pytest.mark.slow
def test_references_are_absolute_urls_to_the_store(
    rendered: Rendered, exports: dict[str, Exported]
) -> None:
    exported = exports["otio"]
    back = read_back(exported, rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    for clip, item in zip(video.find_clips(), rendered.timeline.items, strict=True):
        url = clip.media_reference.target_url
        assert url.startswith("file:///")
        path = local_path(url, exported.path.parent)
        if item.kind == "clip":
            assert path == item.path
        else:
            assert path.parent == exported.path.parent / "cut.media"
        assert path in exported.media
    assert rendered.timeline.soundtrack is not None
    assert rendered.timeline.soundtrack.path in exported.media


@pytest.mark.slow
def test_cards_are_video_files_exactly_as_long_as_they_are_seen(
    rendered: Rendered, exports: dict[str, Exported]
) -> None:
    exported = exports["otio"]
    cards = [
        (item, path)
        for item, path in zip(rendered.timeline.items, exported.media, strict=False)
        if item.kind == "card"
    ]
    assert len(cards) == 3
    for item, path in cards:
        info = probe(path)
        assert round(info.duration * info.fps) == item.frames == 24
        assert (info.width, info.height, round(info.fps)) == (854, 480, 24)


@pytest.mark.slow
def test_copy_media_refers_to_copies_by_relative_urls(rendered: Rendered, tmp_path: Path) -> None:
    out = rendered.board.parent / "handoff" / "dawn.otio"
    exported = export_timeline(rendered.timeline, "otio", out, copy_media=True)
    back = read_back(exported, rendered.timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    (audio,) = tracks(back, otio.schema.TrackKind.Audio)
    media = out.parent / "dawn.media"
    for clip, item in zip(video.find_clips(), rendered.timeline.items, strict=True):
        url = clip.media_reference.target_url
        assert urlparse(url).scheme == "" and url.startswith("dawn.media/"), url
        path = local_path(url, out.parent)
        assert path.is_file() and path.parent == media
        if item.kind == "clip":
            assert item.digest is not None
            assert sha256_file(path) == item.digest
            assert path != item.path
    sound = local_path(next(iter(audio.find_clips())).media_reference.target_url, out.parent)
    assert rendered.timeline.soundtrack is not None
    assert sound == media / "music.wav"
    assert sha256_file(sound) == sha256_file(rendered.timeline.soundtrack.path)
    assert set(exported.media) == set(media.iterdir())


@pytest.mark.slow
def test_otioz_bundles_its_media(rendered: Rendered, exports: dict[str, Exported]) -> None:
    exported = exports["otioz"]
    assert exported.media == ()  # it needs nothing beside it
    with zipfile.ZipFile(exported.path) as bundle:
        names = set(bundle.namelist())
        back = otio.adapters.read_from_string(
            bundle.read("content.otio").decode("utf-8"), "otio_json"
        )
        (video,) = tracks(back, otio.schema.TrackKind.Video)
        for clip, item in zip(video.find_clips(), rendered.timeline.items, strict=True):
            member = clip.media_reference.target_url
            assert member.startswith("media/") and member in names
            if item.kind == "clip":
                assert item.digest is not None
                assert hashlib.sha256(bundle.read(member)).hexdigest() == item.digest
        assert "media/music.wav" in names
    # The cards drawn for the bundle are gone: only the bundle is left of it.
    assert not [p for p in exported.path.parent.iterdir() if p.name.endswith(".cards")]


@pytest.mark.slow
def test_export_writes_only_into_its_folder(rendered: Rendered) -> None:
    project = rendered.board.parent

    def snapshot() -> set[Path]:
        return {p for p in project.rglob("*") if p.is_file()}

    before = snapshot()
    out = project / "only-here" / "x.fcpxml"
    for fmt in ("otioz", "fcpxml", "otio"):
        export_timeline(rendered.timeline, fmt, out.with_suffix(FORMATS[fmt]), copy_media=True)
    new = snapshot() - before
    assert new and all(p.is_relative_to(out.parent) for p in new)
    assert not [p for p in new if p.name.startswith(".")], "no temp file is left behind"


# -- warnings ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_warnings_name_what_each_format_drops(exports: dict[str, Exported]) -> None:
    def said(fmt: str) -> str:
        return "\n".join(exports[fmt].warnings)

    fcpx = said("fcpxml")
    assert "writes no transitions" in fcpx and "3 become hard cuts" in fcpx
    for join in ("title→kite fade", "kite-more→interlude wipe-left", "interlude→end crossfade"):
        assert join in fcpx
    assert "volume (0.8)" in fcpx and "fade-out (0.5 s)" in fcpx
    edl = said("edl")
    assert "no soundtrack (music.wav)" in edl
    assert "generation key" in edl and "prompt" in edl
    for fmt in ("otio", "otioz", "fcp7xml", "edl"):
        text = said(fmt)
        assert "2 transition(s) other than a crossfade" in text
        assert "title→kite fade (6 frames)" in text
        assert "kite-more→interlude wipe-left (7 frames)" in text
    assert "metadata names each type" in said("otio")
    assert "soundtrack" not in said("otio") and "soundtrack" not in said("fcp7xml")


# -- cards only: no render needed -------------------------------------------------------------


def card_timeline(
    root: Path, fps: int, lengths: list[int], requested: list[int], *, music: bool = True
) -> Timeline:
    """A timeline of title cards laid out by the cutter's rule, with an optional soundtrack."""
    joins = _clamp(requested, lengths)
    offsets = Layout(tuple(lengths), (0.0,) * len(lengths), tuple(joins)).offsets
    kinds = ["crossfade", "wipe-up", "fade", "slide-left"]
    items = tuple(
        Item(
            shot=f"c{i}",
            kind="card",
            frames=n,
            record_start=offsets[i],
            source_start=0.0,
            transition=kinds[i % len(kinds)] if i < len(joins) and joins[i] else "cut",
            transition_frames=joins[i] if i < len(joins) else 0,
            card_text=f"card {i}",
            card_background="#203040",
            card_color="#ffffff",
        )
        for i, n in enumerate(lengths)
    )
    sound = Soundtrack(write_music(root / "m.wav", 0.7), 1.0, 0.25) if music else None
    total = sum(lengths) - sum(joins)
    return Timeline("cards", root / "cut.mp4", "preview", fps, 128, 72, items, sound, total)


@pytest.mark.parametrize("fmt", ["otio", "fcp7xml", "fcpxml", "edl"])
def test_one_frame_cards_inside_dissolves_stay_whole(fmt: str, tmp_path: Path) -> None:
    """Items entirely inside their overlaps still get a frame of their own on the track."""
    lengths, requested = [4, 1, 4, 2, 3], [0, 1, 2, 1]  # centred, c1 would have no frame
    timeline = card_timeline(tmp_path, 24, lengths, requested, music=False)
    exported = export_timeline(timeline, fmt, tmp_path / f"cards{FORMATS[fmt]}")
    back = read_back(exported, timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    assert frames(video.duration(), 24) == timeline.frames == 11
    own = [frames(c.source_range.duration, 24) for c in video.find_clips()]
    assert sum(own) == timeline.frames, own
    # An EDL puts a whole dissolve after its cut, so an item seen only inside dissolves is
    # an event of no length there (the usual EDL form); every other format keeps a frame.
    assert all(n >= (0 if fmt == "edl" else 1) for n in own), own
    for item in timeline.items:  # each card's file is exactly as long as the card is seen
        (path,) = (p for p in exported.media if p.name.startswith(f"card-{item.shot}-"))
        assert round(probe(path).duration * 24) == item.frames


def test_fcpxml_at_a_rate_its_adapter_lacks(tmp_path: Path) -> None:
    """At 12 fps the FCPXML adapter has no frame duration and cannot place audio: the file
    gets its frame duration, the soundtrack is left out and a warning says so."""
    timeline = card_timeline(tmp_path, 12, [12, 18, 12], [4, 5])
    exported = export_timeline(timeline, "fcpxml", tmp_path / "cards.fcpxml")
    assert any("no soundtrack (m.wav)" in w and "not 12" in w for w in exported.warnings)
    assert all(p.suffix == ".mp4" for p in exported.media)
    root = ET.parse(exported.path).getroot()
    assert {f.get("frameDuration") for f in root.iterfind("./resources/format")} == {"1/12s"}
    back = read_back(exported, timeline)
    (video,) = tracks(back, otio.schema.TrackKind.Video)
    assert frames(video.duration(), 12) == timeline.frames == 33
    assert tracks(back, otio.schema.TrackKind.Audio) == []


def test_a_fade_longer_than_the_last_loop_is_kept_whole_in_metadata(tmp_path: Path) -> None:
    timeline = card_timeline(tmp_path, 24, [24, 24, 24], [0, 0])
    timeline = Timeline(
        timeline.name, timeline.cut, timeline.backend, 24, 128, 72, timeline.items,
        Soundtrack(write_music(tmp_path / "m.wav", 1.0), 0.5, 2.0), timeline.frames,
    )  # fmt: skip
    exported = export_timeline(timeline, "otio", tmp_path / "cards.otio")
    back = read_back(exported, timeline)
    (audio,) = tracks(back, otio.schema.TrackKind.Audio)
    lengths = [frames(c.source_range.duration, 24) for c in audio.find_clips()]
    assert lengths == [24, 24, 24]
    fade = audio[len(audio) - 1]
    assert frames(fade.in_offset, 24) == 24  # a transition covers one clip at most
    assert fade.metadata["storyboard"] == {"fade_out": 2.0, "frames": 48}


# -- refusals ----------------------------------------------------------------------------------


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    timeline = Timeline("x", tmp_path / "x.mp4", "preview", 24, 854, 480, (), None, 0)
    with pytest.raises(UnknownFormat) as caught:
        export_timeline(timeline, "mp4", tmp_path / "x.mp4")
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    assert caught.value.known == tuple(FORMATS)
    assert "otio, otioz, fcpxml, fcp7xml, edl" in str(caught.value)
    assert caught.value.hint() == "storyboard export FILE --format otio"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_as_the_output_is_refused(tmp_path: Path) -> None:
    timeline = Timeline("x", tmp_path / "x.mp4", "preview", 24, 854, 480, (), None, 0)
    with pytest.raises(ExportFailed) as caught:
        export_timeline(timeline, "otio", tmp_path)
    assert isinstance(caught.value, StitchError) and caught.value.exit_code == 1
    assert caught.value.format == "otio" and caught.value.path == tmp_path


def test_formats_and_their_suffixes() -> None:
    assert dict(FORMATS) == {
        "otio": ".otio",
        "otioz": ".otioz",
        "fcpxml": ".fcpxml",
        "fcp7xml": ".xml",
        "edl": ".edl",
    }
    adapters = set(otio.adapters.available_adapter_names())
    assert {"otio_json", "otioz", "fcpx_xml", "fcp_xml", "cmx_3600"} <= adapters


# -- the split of overlaps ---------------------------------------------------------------------


def _every_clip_can_keep_a_frame(lengths: list[int], joins: list[int]) -> bool:
    """Whether some choice of splits leaves every clip a frame (all choices, left to right:
    the set of in_offsets the next clip may have to give)."""
    possible = {0}
    for i, k in enumerate(joins):
        possible = {k - out for a in possible for out in range(k + 1) if lengths[i] - a - out >= 1}
    return any(lengths[-1] - a >= 1 for a in possible)


@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=12).flatmap(
        lambda lengths: st.tuples(
            st.just(lengths),
            st.lists(st.integers(0, 50), min_size=len(lengths) - 1, max_size=len(lengths) - 1),
        )
    )
)
def test_splits_keep_the_cut_length_and_every_clip(case: tuple[list[int], list[int]]) -> None:
    lengths, requested = case
    joins = _clamp(requested, lengths)  # what the cutter makes of the requests
    splits = dissolve_splits(lengths, joins)
    assert [a + b for a, b in splits] == joins
    own = [
        n - (splits[i - 1][0] if i else 0) - (splits[i][1] if i < len(splits) else 0)
        for i, n in enumerate(lengths)
    ]
    assert sum(own) == sum(lengths) - sum(joins), "the track is as long as the cut"
    assert all(n >= 0 for n in own)
    # Every clip keeps a frame of its own whenever some split allows it.
    if _every_clip_can_keep_a_frame(lengths, joins):
        assert all(n >= 1 for n in own), (lengths, joins, splits)
    # Centred (the odd frame after the cut point) unless that would empty a clip.
    centred = [(k // 2, k - k // 2) for k in joins]
    if splits != centred:
        centred_own = [
            n - (centred[i - 1][0] if i else 0) - (centred[i][1] if i < len(centred) else 0)
            for i, n in enumerate(lengths)
        ]
        assert min(centred_own) < 1


# -- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_export_command_writes_beside_the_cut_and_warns_on_stderr(rendered: Rendered) -> None:
    from conftest import run_cli

    result = run_cli("export", str(rendered.board), "--format", "edl")
    assert result.code == 0, result.err
    out = rendered.plan.cut.with_suffix(".edl")
    assert out.is_file()
    assert "no soundtrack (music.wav)" in result.err
    assert "title→kite fade (6 frames)" in result.err
    back = otio.adapters.read_from_file(str(out), rate=24)
    assert frames(back.duration(), 24) == rendered.cut_frames

    bad = run_cli("export", str(rendered.board), "--format", "mov")
    assert bad.code == 2
