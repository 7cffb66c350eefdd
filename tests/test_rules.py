"""Rules are data over the catalogue: a model's spec alone decides what its shots may be.

The fixtures (tests/test_validate_fixtures.py) check each message at its place in a file;
here the rules are driven with model specs the catalogue does not have (made with
``dataclasses.replace``), to show no check is tied to a model's or provider's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from storyboard.catalog import ACTION_NEEDS, MANAGED, MODELS, V4_ACTIONS, ModelSpec
from storyboard.rules import Finding, check_model_fields, not_accepted
from storyboard.suggest import closest, did_you_mean

V1 = MODELS["skyreels-v1"]
V4 = MODELS["skyreels-v4-fast"]


def _at(findings: list[Finding], field: str) -> list[str]:
    return [f.message for f in findings if f.field == field]


@given(low=st.integers(1, 20), span=st.integers(0, 20), duration=st.integers(-5, 50))
def test_the_duration_range_is_the_specs(low: int, span: int, duration: int) -> None:
    spec = dataclasses.replace(V4, id="test-model", durations=(low, low + span))
    found = _at(check_model_fields(spec, {"prompt": "p", "duration": duration}), "duration")
    inside = low <= duration <= low + span
    assert found == (
        [] if inside else [f"test-model takes a duration of {low}-{low + span} s, not {duration}"]
    )


@given(seed=st.integers(-(2**40), 2**40), low=st.integers(-10, 10), high=st.integers(0, 2**31))
def test_the_seed_range_is_the_specs(seed: int, low: int, high: int) -> None:
    spec = dataclasses.replace(V1, seed_range=(low, high))
    found = _at(
        check_model_fields(spec, {"prompt": "p", "first_frame": "a.png", "seed": seed}), "seed"
    )
    assert bool(found) == (not low <= seed <= high)


@given(ratio=st.sampled_from(["16:9", "9:16", "4:3", "3:4", "1:1", "21:9", "9:21"]))
def test_choices_are_the_specs(ratio: str) -> None:
    spec = dataclasses.replace(V4, aspect_ratios=("21:9", "9:21"))
    found = _at(check_model_fields(spec, {"prompt": "p", "aspect_ratio": ratio}), "aspect_ratio")
    assert bool(found) == (ratio not in ("21:9", "9:21"))


def test_reserved_params_and_accepted_fields_are_the_specs() -> None:
    spec = dataclasses.replace(
        V4,
        reserved_params={"fps": "duration", "sync": MANAGED},
        accepts=V4.accepts - {"keyframes"},
    )
    params: dict[str, Any] = {"fps": 30, "sync": True, "resolution": "4k", "style": "noir"}
    found = [
        f
        for f in check_model_fields(spec, {"prompt": "p", "params": params})
        if f.field == "params"
    ]
    assert [(f.below, f.key) for f in found] == [(("fps",), True), (("sync",), True)]
    assert found[0].hint == "did you mean `duration: 30` on the shot itself?"
    assert found[1].hint == "remove 'sync' from params"
    refused = not_accepted(spec, "keyframes")
    assert refused is not None and refused.key
    assert not_accepted(V4, "keyframes") is None


def test_a_model_with_modes_says_what_each_mode_needs() -> None:
    assert set(ACTION_NEEDS) == set(V4_ACTIONS) - {"generate"}
    # No prompt and no media: a text-to-video shot needs its prompt (V4 only, by its spec).
    assert _at(check_model_fields(V4, {}), "prompt") == ["a text-to-video shot needs a prompt"]
    assert _at(check_model_fields(V4, {"refs": ["a.png"]}), "prompt") == []
    plain = dataclasses.replace(V4, prompt_unless=frozenset())
    assert _at(check_model_fields(plain, {}), "prompt") == []
    for action, needs in ACTION_NEEDS.items():
        found = _at(check_model_fields(V4, {"prompt": "p", "action": action}), "action")
        assert f"action {action!r} needs {' or '.join(needs)}" in found
        given_one = {"prompt": "p", "action": action, needs[0]: "x"}
        if action != "reference_audio":
            assert _at(check_model_fields(V4, given_one), "action") == []


def test_required_fields_and_their_stand_ins() -> None:
    assert _at(check_model_fields(V1, {"prompt": "p"}), "first_frame") == [
        "skyreels-v1 needs 'first_frame'"
    ]
    assert _at(check_model_fields(V1, {"prompt": "p", "continues": "a"}), "first_frame") == []
    spec: ModelSpec = MODELS["skyreels-v3-reference"]
    hint = next(f.hint for f in check_model_fields(spec, {"prompt": "p"}) if f.field == "refs")
    assert (
        hint == f"add refs: [refs/subject.jpg] with {spec.refs[0]}-{spec.refs[1]} reference images"
    )


@given(word=st.text(max_size=12), choices=st.lists(st.text(max_size=12), max_size=8))
def test_one_did_you_mean(word: str, choices: list[str]) -> None:
    match = closest(word, choices)
    assert match is None or match in choices
    if word in choices:
        assert match == word
    hint = did_you_mean(word, choices)
    assert hint == (None if match is None else f"did you mean {match!r}?")
