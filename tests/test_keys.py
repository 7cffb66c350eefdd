"""Properties of the generation and edit keys (issue 3): Hypothesis over real files."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import yaml
from conftest import write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.cache import Store
from storyboard.plan import make_plan
from storyboard.validate import load_storyboard

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TMP = Path(tempfile.mkdtemp(prefix="storyboard-keys-"))
write_image(_TMP / "refs" / "a.png", (200, 10, 10))
write_image(_TMP / "refs" / "b.png", (10, 10, 200))


def _board() -> dict[str, Any]:
    return {
        "storyboard": 1,
        "title": "keys",
        "vars": {"hero": "a fox", "place": "a field", "n": 3},
        "defaults": {"model": "skyreels-v4-fast", "resolution": "480p", "duration": 4},
        "output": {"resolution": "480p", "fps": 24},
        "shots": [
            {"id": "one", "prompt": "{{ hero }} in {{ place }}", "first_frame": "refs/a.png",
             "params": {"x": 1, "y": [1, 2], "z": {"p": "q", "r": "s"}}},
            {"id": "two", "extends": "one", "prompt": "then {{ hero }} runs", "takes": 2},
            {"id": "three", "model": "skyreels-v1", "first_frame": "refs/b.png",
             "prompt": "a door", "seed": 5},
            {"id": "card", "card": {"text": "end"}},
        ],
    }  # fmt: skip


def _shuffled(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


def _keys(data: dict[str, Any], name: str = "storyboard.yaml") -> dict[str, Any]:
    path = _TMP / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    board = load_storyboard(path)
    plan = make_plan(board, Store(_TMP / ".store", path))
    return {
        "gen": {s.id: [t.key for t in s.takes] for s in plan.shots},
        "edit": plan.edit_key,
    }


BASE = _keys(_board())


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_keys_are_stable_under_mapping_reordering(rnd: random.Random) -> None:
    assert _keys(_shuffled(_board(), rnd))["gen"] == BASE["gen"]


GENERATION_CHANGES = [
    ("shots", 0, "prompt", "{{ hero }} in a forest"),
    ("vars", "hero", "a wolf"),
    ("shots", 0, "first_frame", "refs/b.png"),
    ("shots", 0, "duration", 5),
    ("shots", 0, "resolution", "720p"),
    ("shots", 0, "aspect_ratio", "9:16"),
    ("shots", 0, "model", "skyreels-v4-std"),
    ("shots", 0, "prompt_optimizer", False),
    ("shots", 0, "params", {"x": 2}),
    ("defaults", "duration", 6),
    ("shots", 2, "seed", 6),
    ("shots", 2, "negative_prompt", "blur"),
]


@SETTINGS
@given(st.sampled_from(GENERATION_CHANGES))
def test_every_generation_field_changes_the_key(change: tuple[Any, ...]) -> None:
    data = _board()
    *path, value = change
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    keys = _keys(data)["gen"]
    changed = {shot for shot in keys if keys[shot] != BASE["gen"][shot]}
    shot_index = path[1] if path[0] == "shots" else 0
    shot_id = _board()["shots"][shot_index]["id"]
    assert shot_id in changed
    if shot_id == "one":
        assert "two" in changed  # the dependant follows its upstream
    assert "three" not in changed or shot_id == "three"


EDIT_CHANGES = [
    ("shots", 1, "select", 2),
    ("shots", 0, "trim", {"start": 0.5}),
    ("shots", 2, "transition", "crossfade"),
    ("shots", 3, "card", {"text": "fin", "duration": 3}),
    ("output", "fps", 30),
    ("output", "transition", {"type": "fade", "duration": 1}),
]


@SETTINGS
@given(st.sampled_from(EDIT_CHANGES))
def test_edit_only_fields_never_change_a_generation_key(change: tuple[Any, ...]) -> None:
    data = _board()
    *path, value = change
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    # (select is edit-only for `two` itself; nothing builds on `two`.)
    assert _keys(data)["gen"] == BASE["gen"]


def test_select_of_an_upstream_shot_changes_its_dependants() -> None:
    data = _board()
    data["shots"][0]["takes"] = 2
    base = _keys(data)["gen"]
    data["shots"][0]["select"] = 2
    after = _keys(data)["gen"]
    assert after["one"] == base["one"]  # same takes
    assert after["two"] != base["two"]  # it extends another clip now


@SETTINGS
@given(st.integers(min_value=1, max_value=5))
def test_takes_have_distinct_keys(takes: int) -> None:
    data = _board()
    data["shots"][0]["takes"] = takes
    keys = _keys(data)["gen"]["one"]
    assert len(set(keys)) == takes
    assert keys[0] == BASE["gen"]["one"][0]  # adding takes keeps take 1
