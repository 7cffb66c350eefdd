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
from storyboard.catalog import MODELS
from storyboard.keys import take_seed
from storyboard.model import Shot
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


# -- params, keyframe tags and take seeds (issue 7) ----------------------------------------


def _plan(data: dict[str, Any], name: str = "storyboard.yaml") -> Any:
    path = _TMP / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return make_plan(load_storyboard(path), Store(_TMP / ".store", path))


def test_params_pass_unchanged_into_the_generation_material() -> None:
    written = _board()["shots"][0]["params"]
    take = _plan(_board()).shot("one").takes[0]
    assert take.material.params["params"] == written


@SETTINGS
@given(
    key=st.sampled_from(["camera", "callback_url", "extra", "motion_strength"]),
    value=st.one_of(st.integers(-5, 5), st.text(max_size=8), st.booleans()),
)
def test_a_passed_through_param_is_part_of_the_key(key: str, value: Any) -> None:
    data = _board()
    data["shots"][0]["params"] = {**data["shots"][0]["params"], key: value}
    keys = _keys(data)["gen"]
    assert keys["one"] != BASE["gen"]["one"]
    assert keys["two"] != BASE["gen"]["two"]  # the dependant follows
    assert keys["three"] == BASE["gen"]["three"]


def test_a_keyframe_tag_is_part_of_the_key() -> None:
    data = _board()
    data["shots"][0]["keyframes"] = [{"at": 1.5, "image": "refs/b.png"}]
    untagged = _keys(data)["gen"]
    data["shots"][0]["keyframes"][0]["tag"] = "peak"
    tagged = _keys(data)["gen"]
    assert tagged["one"] != untagged["one"]
    data["shots"][0]["keyframes"][0]["tag"] = "kf_2s"
    assert _keys(data)["gen"]["one"] not in (tagged["one"], untagged["one"])


SEEDED = sorted(m.id for m in MODELS.values() if m.seed_range is not None)


def _seeded_shot(model: str, seed: int, takes: int) -> Shot:
    return Shot(id="s", index=0, line=1, model=model, seed=seed, takes=takes)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(SEEDED),
    seed=st.one_of(
        st.integers(min_value=-1, max_value=2147483647),
        st.integers(min_value=2147483647 - 20, max_value=2147483647),
    ),
    takes=st.integers(min_value=1, max_value=16),
)
def test_take_seeds_stay_inside_the_models_range(model: str, seed: int, takes: int) -> None:
    spec = MODELS[model]
    assert spec.seed_range is not None
    low, high = spec.seed_range
    seeds = [take_seed(_seeded_shot(model, seed, takes), n) for n in range(1, takes + 1)]
    if seed == -1:
        assert seeds == [None] * takes  # random: resolved at submit
        return
    assert seeds[0] == seed
    assert all(s is not None and max(low, 0) <= s <= high for s in seeds)
    assert len(set(seeds)) == takes  # every take its own seed
    if seed + takes - 1 <= high:
        assert seeds == list(range(seed, seed + takes))  # unchanged where it always worked


def test_a_top_seed_with_takes_wraps_in_the_plan() -> None:
    """Through validate and plan: V1 seed 2147483647 with 3 takes plans 2147483647, 0, 1."""
    data = _board()
    data["shots"][2].update(seed=2147483647, takes=3)
    plan = _plan(data, "top-seed.yaml")
    takes = plan.shot("three").takes
    assert [t.seed for t in takes] == [2147483647, 0, 1]
    assert [t.material.seed for t in takes] == [2147483647, 0, 1]
    assert len({t.key for t in takes}) == 3


# -- reasons name what changed (issue 9) ---------------------------------------------------

# What the reason of each generation change names (its field), and the shot it is about.
REASON_FIELDS = {
    ("shots", 0, "prompt"): "prompt",
    ("vars", "hero"): "prompt",
    ("shots", 0, "first_frame"): "first_frame",
    ("shots", 0, "duration"): "duration",
    ("shots", 0, "resolution"): "resolution",
    ("shots", 0, "aspect_ratio"): "aspect_ratio",
    ("shots", 0, "model"): "model",
    ("shots", 0, "prompt_optimizer"): "prompt_optimizer",
    ("shots", 0, "params"): "params",
    ("defaults", "duration"): "duration",
    ("shots", 2, "seed"): "seed",
    ("shots", 2, "negative_prompt"): "negative_prompt",
}


@SETTINGS
@given(st.sampled_from(GENERATION_CHANGES))
def test_every_generation_change_is_named_by_the_reason(change: tuple[Any, ...]) -> None:
    """A change that makes a new key is explained by the field it changed, never by a
    catch-all, and the dependant of a changed shot says its upstream changed."""
    root = Path(tempfile.mkdtemp(prefix="store-", dir=_TMP))
    path = _TMP / "reasons.yaml"
    path.write_text(yaml.safe_dump(_board(), sort_keys=False), encoding="utf-8")
    store = Store(root, path)
    for sp in make_plan(load_storyboard(path), store).shots:
        if sp.takes:
            store.record_material("preview", sp.id, sp.takes[0].material)
    data = _board()
    *where, value = change
    target: Any = data
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    plan = make_plan(load_storyboard(path), Store(root, path))
    shot_id = _board()["shots"][where[1] if where[0] == "shots" else 0]["id"]
    fields = [r.field for r in plan.shot(shot_id).reasons]
    assert REASON_FIELDS[tuple(where)] in fields
    assert "settings" not in fields
    if shot_id == "one":
        assert "upstream" in [r.field for r in plan.shot("two").reasons]
