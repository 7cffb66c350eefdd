"""The cut as a timeline (storyboard.timeline): the same frames as the stitched MP4.

``timeline_of`` describes the cut with the cutter's own arithmetic; these tests hold it to
the MP4 the cutter really writes (item lengths, where each begins, the overlaps as the
cutter clamps them, the total probed from the file), and hold the cutter's layout to its
clamp rule over generated lists of lengths and transitions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import PAIR_BOARD, Project
from cutboard import EXPECTED, Rendered, render
from hypothesis import given
from hypothesis import strategies as st

from storyboard.cache import Store
from storyboard.cutter import CardSpec, CutSpec, Layout, Segment, layout, make_cut
from storyboard.errors import StitchError
from storyboard.media.probe import probe
from storyboard.pipeline import plan_build
from storyboard.timeline import timeline_of


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(tmp_path_factory.mktemp("timeline") / "proj")


@pytest.mark.slow
def test_items_match_the_board_and_the_stitched_cut(rendered: Rendered) -> None:
    timeline = rendered.timeline
    got = [(i.shot, i.kind, i.frames, i.transition, i.transition_frames) for i in timeline.items]
    assert got == list(EXPECTED)  # the skipped shot is not in the cut
    starts, at = [], 0
    for _, _, n, _, k in EXPECTED:
        starts.append(at)
        at += n - k
    assert [i.record_start for i in timeline.items] == starts
    # The total, to the frame, is the stitched MP4's.
    assert timeline.frames == at == rendered.cut_frames == 167
    assert timeline.seconds == pytest.approx(167 / 24)
    info = probe(rendered.plan.cut)
    assert (info.width, info.height) == (timeline.width, timeline.height) == (854, 480)
    assert round(info.fps) == timeline.fps == 24
    assert timeline.name == "Export test"
    assert timeline.cut == rendered.plan.cut and timeline.backend == "preview"
    assert timeline.soundtrack is not None
    assert timeline.soundtrack.path == rendered.board.parent / "music.wav"
    assert (timeline.soundtrack.volume, timeline.soundtrack.fade_out) == (0.8, 0.5)
    assert timeline.spent == 0.0


@pytest.mark.slow
def test_clip_items_name_the_selected_take_and_the_footage_the_cut_uses(
    rendered: Rendered,
) -> None:
    timeline = rendered.timeline
    items = {i.shot: i for i in timeline.items}
    shots = {sp.id: sp for sp in rendered.plan.shots}
    for shot in ("kite", "kite-more"):
        item, sp = items[shot], shots[shot]
        sel = sp.selected
        assert sel is not None and sel.clip is not None
        assert (item.take, item.key, item.digest) == (sel.take, sel.key, sel.clip.digest)
        assert item.path == sel.clip.path == rendered.store.object_path(sel.clip.digest)
        assert item.takes == len(sp.takes)
        assert item.clip_seconds == pytest.approx(probe(sel.clip.path).duration, abs=0.02)
        assert item.model == "skyreels-v4-fast" and item.provider == "preview"
        assert item.prompt == sel.material.prompt and item.cost == 0.0
    # select: 2 of takes: 2, trimmed from 0.5 s: the cut starts 12 frames into take 2.
    assert (items["kite"].take, items["kite"].takes) == (2, 2)
    assert items["kite"].source_start == 0.5 and timeline.source_frame(items["kite"]) == 12
    # The V4 extension returns its 3 s source and 3 s of new footage: only the new is cut.
    assert items["kite-more"].clip_seconds == pytest.approx(6.0, abs=0.05)
    assert items["kite-more"].source_start == pytest.approx(3.0, abs=0.05)
    assert items["kite-more"].frames == 72
    for card in ("title", "interlude", "end"):
        item = items[card]
        assert item.kind == "card" and item.path is None and item.take is None
        assert item.source_start == 0.0
    assert items["title"].card_text == "Export test"
    assert items["title"].card_background == "#102030"
    assert items["end"].card_color == "#ffcc00"


def test_an_unrendered_shot_is_named(project: Project) -> None:
    project.write(PAIR_BOARD)
    plan = plan_build(project.file)
    store = Store.for_storyboard(plan.board.path)
    with pytest.raises(StitchError) as caught:
        timeline_of(plan, store)
    assert caught.value.shot == "kite"
    assert "shot kite is not rendered" in str(caught.value)
    assert not (store.cuts_dir() / "work").exists(), "nothing was probed or laid out"


# -- the cutter's clamp rule -----------------------------------------------------------------


def card(frames: int, fps: int, transition: str = "cut", join: int = 0) -> Segment:
    return Segment(
        clip=None,
        card=CardSpec(f"{frames}", frames / fps),
        transition=transition,
        transition_seconds=join / fps,
    )


@pytest.mark.slow
def test_layout_is_the_cut_the_cutter_makes_when_it_clamps(tmp_path: Path) -> None:
    """Two transitions that want more of the middle card than it has: the outgoing one gets
    what the incoming one left (here nothing: a hard cut)."""
    fps = 24
    segments = [card(24, fps, "crossfade", 12), card(12, fps, "wipe-left", 12), card(24, fps)]
    spec = CutSpec(width=128, height=72, fps=fps)
    lay = layout(segments, spec, tmp_path / "work")
    assert lay == Layout(frames=(24, 12, 24), starts=(0.0, 0.0, 0.0), joins=(12, 0))
    assert lay.offsets == (0, 12, 24) and lay.total == 48
    out = tmp_path / "cut.mp4"
    seconds = make_cut(segments, spec, out, tmp_path / "work").seconds
    assert round(probe(out).duration * fps) == round(seconds * fps) == lay.total


def reference_joins(lengths: list[int], requested: list[int]) -> list[int]:
    """The rule as the cutter's docstring states it, written out again."""
    joins: list[int] = []
    for i, want in enumerate(requested):
        left_of_a = lengths[i] - (joins[-1] if joins else 0)
        joins.append(max(0, min(want, left_of_a, lengths[i + 1])))
    return joins


@given(
    st.integers(1, 60).flatmap(
        lambda fps: st.tuples(
            st.just(fps),
            st.lists(st.integers(1, 90), min_size=1, max_size=10).flatmap(
                lambda lengths: st.tuples(
                    st.just(lengths),
                    st.lists(
                        st.tuples(
                            st.sampled_from(["cut", "crossfade", "fade", "wipe-left"]),
                            st.integers(0, 120),
                        ),
                        min_size=len(lengths) - 1,
                        max_size=len(lengths) - 1,
                    ),
                )
            ),
        )
    )
)
def test_layout_follows_the_clamp_rule(
    case: tuple[int, tuple[list[int], list[tuple[str, int]]]],
) -> None:
    fps, (lengths, joins_asked) = case
    segments = [
        card(n, fps, *(joins_asked[i] if i < len(joins_asked) else ("cut", 0)))
        for i, n in enumerate(lengths)
    ]
    requested = [0 if kind == "cut" else k for kind, k in joins_asked]
    with tempfile.TemporaryDirectory() as work:
        lay = layout(segments, CutSpec(width=128, height=72, fps=fps), Path(work))
    assert list(lay.frames) == lengths
    assert list(lay.joins) == reference_joins(lengths, requested)
    offsets, total = lay.offsets, lay.total
    assert offsets[0] == 0
    for i in range(len(lengths) - 1):
        # Item i overlaps item i + 1 by exactly its join...
        assert offsets[i] + lengths[i] - offsets[i + 1] == lay.joins[i]
        # ...and never reaches item i + 2: no frame shows three items.
        if i + 2 < len(lengths):
            assert offsets[i + 2] >= offsets[i] + lengths[i]
    assert total == offsets[-1] + lengths[-1] == sum(lengths) - sum(lay.joins)
    assert total >= max(lengths)
