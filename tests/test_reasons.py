"""Reasons that explain (issue 9 item 4): old → new where it is short, against the clip the
cut uses now, as structured records in ``plan --json``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, run_cli, write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.cache import Store
from storyboard.plan import Plan, Reason, make_plan, say
from storyboard.validate import load_storyboard

# -- through make_plan and the store's own record of what a shot was rendered from --------
#
# render records what each shot was rendered from (Store.record_material); these tests
# record it the same way and plan the edited storyboard, with no video encoded.

_TMP = Path(tempfile.mkdtemp(prefix="storyboard-reasons-"))
write_image(_TMP / "refs" / "bird.png", (200, 10, 10))
write_image(_TMP / "refs" / "orchid.png", (10, 10, 200))
write_image(_TMP / "refs" / "other.png", (10, 200, 10))


def _board() -> dict[str, Any]:
    return {
        "storyboard": 1,
        "defaults": {"model": "skyreels-v4-fast", "resolution": "480p", "duration": 5},
        "output": {"resolution": "480p", "fps": 12},
        "shots": [
            {"id": "hover", "prompt": "a hummingbird hovering by an orchid",
             "refs": ["refs/bird.png", "refs/orchid.png"]},
            {"id": "away", "extends": "hover", "prompt": "the bird darts away", "duration": 4},
            {"id": "door", "model": "skyreels-v1", "first_frame": "refs/bird.png",
             "prompt": "a door", "seed": 7},
        ],
    }  # fmt: skip


def _plan(data: dict[str, Any], store: Path, name: str = "storyboard.yaml") -> Plan:
    path = _TMP / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return make_plan(load_storyboard(path), Store(store, path))


def _rendered(data: dict[str, Any], name: str = "storyboard.yaml") -> Path:
    """A fresh store holding ``data`` as rendered: a clip per take and what render records
    per shot (the bytes stand in for a video: the plan looks clips up by digest only)."""
    root = Path(tempfile.mkdtemp(prefix="store-", dir=_TMP))
    plan = _plan(data, root, name)
    store = Store(root, _TMP / name)
    for sp in plan.shots:
        for take in sp.takes:
            clip = root / f"{take.key}.mp4"
            clip.write_bytes(take.key.encode())
            store.put(take.key, clip, seconds=1.0, shot=sp.id, take=take.take)
        if sp.takes:
            store.record_material("preview", sp.id, sp.takes[0].material)
    store.save()
    return root


def _reasons(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    root = _rendered(before)
    plan = _plan(after, root)
    return {sp.id: [str(r) for r in sp.reasons] for sp in plan.shots}


def test_short_values_read_old_to_new() -> None:
    after = _board()
    after["defaults"]["duration"] = 6
    after["shots"][2]["seed"] = 8
    reasons = _reasons(_board(), after)
    assert reasons["hover"] == ["duration 5 → 6"]
    assert reasons["away"] == ["upstream hover changed"]  # its own duration is 4 still
    assert reasons["door"] == ["seed 7 → 8"]


def test_the_model_reads_old_to_new_and_hides_what_only_one_model_has() -> None:
    after = _board()
    after["shots"][0]["model"] = "skyreels-v4-std"
    assert _reasons(_board(), after)["hover"] == ["model skyreels-v4-fast → skyreels-v4-std"]


def test_a_prompt_is_only_said_to_have_changed() -> None:
    after = _board()
    after["shots"][2]["prompt"] = "a red door"
    plan_reasons = _reasons(_board(), after)
    assert plan_reasons["door"] == ["prompt changed"]


def test_an_input_is_named_by_its_path() -> None:
    after = _board()
    after["shots"][0]["refs"] = ["refs/other.png", "refs/orchid.png"]
    assert _reasons(_board(), after)["hover"] == ["refs/other.png changed"]
    after["shots"][0]["refs"] = ["refs/bird.png", "refs/orchid.png", "refs/other.png"]
    assert _reasons(_board(), after)["hover"] == ["refs/other.png added"]


def test_a_new_take_reads_as_added_not_as_a_seed() -> None:
    after = _board()
    after["shots"][2]["takes"] = 3
    plan = _plan(after, _rendered(_board()))
    door = plan.shot("door")
    assert [r.to_json() for r in door.reasons] == [
        {"field": "take", "old": None, "new": 2},
        {"field": "take", "old": None, "new": 3},
    ]
    assert door.reason == "takes 2, 3 added"


def test_never_rendered_and_unchanged() -> None:
    root = Path(tempfile.mkdtemp(prefix="store-", dir=_TMP))
    plan = _plan(_board(), root)
    assert {sp.id: sp.reason for sp in plan.shots} == dict.fromkeys(
        ["hover", "away", "door"], "not rendered yet"
    )
    assert plan.shot("door").reasons == (Reason("render"),)


# Every field a shot can change, with a value other than the base's.
_CHANGES: dict[str, Any] = {
    "duration": st.sampled_from([3, 4, 6, 7, 8]),
    "resolution": st.sampled_from(["720p", "1080p"]),
    "aspect_ratio": st.sampled_from(["9:16", "1:1"]),
    "prompt_optimizer": st.just(False),
    "model": st.just("skyreels-v4-std"),
}
_BASE = {"duration": 5, "resolution": "480p", "aspect_ratio": "16:9", "prompt_optimizer": True,
         "model": "skyreels-v4-fast"}  # fmt: skip


def _written(value: Any) -> str:
    """A value as it is written in YAML (5.0 s is written 5)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=_CHANGES))
def test_reasons_name_exactly_the_fields_changed_with_their_values(
    changes: dict[str, Any],
) -> None:
    """Property: for any set of edits, one reason per field edited, carrying old and new."""
    after = _board()
    after["shots"][0].update(changes)
    plan = _plan(after, _rendered(_board()))
    hover = plan.shot("hover")
    if not changes:
        assert hover.status == "fresh" and hover.reasons == ()
        return
    got = {r.field: (r.old, r.new) for r in hover.reasons}
    assert got == {name: (_BASE[name], value) for name, value in changes.items()}
    for r in hover.reasons:
        assert str(r) == f"{r.field} {_written(r.old)} → {_written(r.new)}"
    assert hover.reason == say(hover.reasons)


# -- the clip the cut uses now, through the real CLI (renders the preview) -----------------

BOARD = """\
storyboard: 1
defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}
output: {resolution: 480p, fps: 12}
shots:
  - id: hover
    first_frame: refs/a.png
    prompt: a bird hovering
    takes: 2
    select: 2
  - id: door
    model: skyreels-v1
    first_frame: refs/b.png
    prompt: a door
    seed: 7
"""


def _shot(project: Project, shot: str) -> dict[str, Any]:
    data = project.plan()
    return next(s for s in data["shots"] if s["id"] == shot)


def _render(project: Project) -> None:
    result = run_cli("render", "-q", str(project.file))
    assert result.code == 0, result.err


@pytest.mark.slow
def test_the_reason_compares_with_the_clip_the_cut_uses(project: Project) -> None:
    """An edit undone and rendered again puts the old clip back in the cut: a later edit is
    explained against that clip, not against the last render (which was the undone edit)."""
    project.write(BOARD)
    _render(project)
    project.edit("prompt: a bird hovering", "prompt: a bird feeding")
    project.edit("seed: 7", "seed: 9")
    _render(project)  # renders the edits: the last render is "feeding", seed 9
    project.edit("prompt: a bird feeding", "prompt: a bird hovering")
    project.edit("seed: 9", "seed: 7")
    assert _shot(project, "hover")["status"] == "fresh"  # the old clips are still there
    _render(project)  # stitches them back: the cut shows "hovering", seed 7
    project.edit("duration: 3}", "duration: 4}")
    project.edit("seed: 7", "seed: 8")
    hover = _shot(project, "hover")
    assert hover["reason"] == "duration 3 → 4"  # not "prompt changed" as well
    assert hover["reasons"] == [{"field": "duration", "old": 3.0, "new": 4.0}]
    door = _shot(project, "door")
    assert door["reason"] == "seed 7 → 8"  # not 9 → 8
    assert door["reasons"] == [{"field": "seed", "old": 7, "new": 8}]


@pytest.mark.slow
def test_select_and_takes_read_against_the_selected_clip(project: Project) -> None:
    """The cut uses take 2 (select: 2); switching back to take 1 and adding a take says what
    happened: the added take, not a seed."""
    project.write(BOARD)
    _render(project)
    project.edit("    select: 2\n", "")
    _render(project)  # the cut uses take 1 now
    project.edit("takes: 2", "takes: 3")
    hover = _shot(project, "hover")
    assert hover["status"] == "stale"
    assert hover["reason"] == "take 3 added"
    assert hover["reasons"] == [{"field": "take", "old": 2, "new": 3}]
    project.edit("prompt: a bird hovering", "prompt: a bird feeding")
    assert _shot(project, "hover")["reasons"] == [
        {"field": "prompt", "old": "a bird hovering", "new": "a bird feeding"}
    ]


@pytest.mark.slow
def test_a_clip_gone_from_the_store_says_so(project: Project) -> None:
    project.write(BOARD)
    _render(project)
    clip = Path(_shot(project, "door")["output"])
    clip.unlink()
    door = _shot(project, "door")
    assert door["reason"] == "clip missing from the store"
    assert door["reasons"] == [{"field": "clip", "old": None, "new": None}]
