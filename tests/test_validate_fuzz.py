"""Property tests of `load_storyboard`: whatever the input, the only outcomes are a valid
storyboard or `InvalidStoryboard` with located problems — never another exception.

Three sources of input:

(a) random YAML-like documents (a free-form recursive one, and one shaped like a storyboard
    with real field names and values), dumped with ``yaml.safe_dump``;
(b) random mutations of the valid examples (``examples/*/storyboard.yaml``) and of the valid
    fixtures, written next to their reference files so that deep checks are reached;
(c) raw random text and bytes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storyboard.catalog import (
    ALL_SHOT_FIELDS,
    ASPECT_RATIOS,
    MODELS,
    RESOLUTIONS,
    TRANSITIONS,
    V4_ACTIONS,
)
from storyboard.errors import InvalidStoryboard
from storyboard.model import Storyboard
from storyboard.validate import load_storyboard

# When a test fails, Hypothesis's pytest plugin imports libcst to suggest a patch; this
# libcst emits a DeprecationWarning on import, which `filterwarnings = error` turns into a
# pytest INTERNALERROR that hides the real failure. Import it here with that warning off.
with warnings.catch_warnings(), contextlib.suppress(ImportError):  # no libcst: no patch
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # deterministic: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the outcome every input must have -----------------------------------------------------


def check(file: Path) -> None:
    """Load ``file``: success, or located problems. Any other exception fails the test."""
    try:
        board = load_storyboard(file)
    except InvalidStoryboard as exc:
        assert exc.problems, "InvalidStoryboard without a problem"
        for p in exc.problems:
            assert p.line >= 0
            assert p.col >= 0
            assert (p.line == 0) == (p.col == 0), p
            assert p.path.startswith("$"), p
            assert p.message.strip(), p
            assert p.file == str(file)
            assert str(p).startswith(str(file))
            json.dumps(p.to_json())
    else:
        assert isinstance(board, Storyboard)
        assert board.shots


# -- strategies ----------------------------------------------------------------------------

TOP_KEYS = ["storyboard", "title", "vars", "defaults", "render", "output", "shots"]
NESTED_KEYS = [
    "budget", "concurrency", "wavespeed", "qingbo", "preview", "path", "fps", "fit", "volume",
    "fade_out", "type", "text", "background", "color", "at", "image", "images", "tag", "start",
    "end", "hero", "light",
]  # fmt: skip
FIELD_NAMES = sorted({*ALL_SHOT_FIELDS, *TOP_KEYS, *NESTED_KEYS})

FILES = [
    "refs/a.jpg",
    "refs/p.png",
    "refs/tone.wav",
    "refs/missing.jpg",
    "refs/anim.gif",
    "refs",
    "refs/a\x00.jpg",
    "../outside.jpg",
    "/etc/hostname",
    "https://example.com/a.jpg",
    "ftp://example.com/a.jpg",
]
TEMPLATES = [
    "{{ hero }}",
    "{{ nope }}",
    "{{ vars.hero }}",
    "{{ shot.id }}",
    "{{ storyboard.title }}",
    "{{ 1 / 0 }}",
    "{{ '' .__class__ }}",
    "{% include 'refs/a.jpg' %}",
    "{% include '../x' %}",
    "{% if %}",
    "{{",
    "{%",
    "{#",
    "}}",
    "{{ 'x' * 6000 }}",
    "{{ hero | upper }}\n{{ hero | }}\n",
    "{{ 1.5 | round(method='x') }}",
    "{% set x = 1 %}{% set x.y = 2 %}",
]
KNOWN = [
    *MODELS,
    *ASPECT_RATIOS,
    *RESOLUTIONS,
    *TRANSITIONS,
    *V4_ACTIONS,
    *FILES,
    *TEMPLATES,
    "Auto",
    "a",
    "b",
    "fox",
    "Bad Id",
    "#ff0000",
    "blurple",
    "",
]

texts = st.text(max_size=12)
templated_text = st.builds(
    lambda a, b, c: f"{a}{{{{ {b} }}}}{c}", texts, st.sampled_from(["hero", "x", "1", ""]), texts
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=20),
    st.integers(),
    st.floats(),
    st.floats(min_value=0, max_value=20),
    texts,
    templated_text,
    st.sampled_from(KNOWN),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), texts)


def _collections(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    )


anything = st.recursive(scalars, _collections, max_leaves=20)


def _field(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, anything) if name else anything


SHOT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from([*MODELS, "skyreels-v9"]),
    "prompt": st.one_of(texts, templated_text, st.sampled_from(TEMPLATES)),
    "negative_prompt": texts,
    "seed": st.integers(min_value=-2, max_value=2**33),
    "duration": st.one_of(st.integers(min_value=0, max_value=32), st.floats(-1, 61)),
    "aspect_ratio": st.sampled_from(ASPECT_RATIOS),
    "resolution": st.sampled_from(RESOLUTIONS),
    "first_frame": st.sampled_from(FILES),
    "last_frame": st.sampled_from(FILES),
    "keyframes": st.lists(
        st.fixed_dictionaries(
            {"at": st.floats(-1, 16), "image": st.sampled_from(FILES)},
            optional={"tag": texts},
        ),
        max_size=8,
    ),
    "refs": st.lists(
        st.one_of(
            st.sampled_from(FILES),
            st.fixed_dictionaries(
                {"image": st.sampled_from(FILES)},
                optional={"tag": texts, "audio": st.sampled_from(FILES)},
            ),
            st.fixed_dictionaries(
                {"images": st.lists(st.sampled_from(FILES), max_size=11)},
                optional={"tag": texts},
            ),
        ),
        max_size=7,
    ),
    "audio": st.one_of(st.sampled_from(FILES), st.lists(st.sampled_from(FILES), max_size=3)),
    "reference_video": st.sampled_from([*FILES, "refs/clip.mp4"]),
    "extends": st.sampled_from(["a", "b", "c", "Bad Id"]),
    "continues": st.sampled_from(["a", "b", "c"]),
    "action": st.sampled_from(V4_ACTIONS),
    "prompt_optimizer": st.booleans(),
    "cut_type": st.sampled_from(["Auto", "Cut-In", "cut-in"]),
    "params": st.dictionaries(texts, scalars, max_size=3),
    "takes": st.integers(min_value=-1, max_value=17),
    "select": st.integers(min_value=-1, max_value=17),
    "trim": st.fixed_dictionaries(
        {}, optional={"start": st.floats(-1, 16), "end": st.floats(-1, 16)}
    ),
    "transition": st.one_of(
        st.sampled_from(TRANSITIONS),
        st.fixed_dictionaries(
            {"type": st.sampled_from(TRANSITIONS)}, optional={"duration": st.floats(-1, 11)}
        ),
    ),
    "card": st.fixed_dictionaries(
        {"text": st.one_of(texts, templated_text)},
        optional={
            "duration": st.floats(-1, 61),
            "background": st.sampled_from(["#000000", "navy", "blurple", ""]),
            "color": st.sampled_from(["white", "#fff", "nope"]),
        },
    ),
    "skip": st.booleans(),
}

shots = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c", "a", "Bad Id"])},
    optional={name: _field(name, strategy) for name, strategy in SHOT_VALUES.items()},
)
DEFAULT_FIELDS = [
    k for k in SHOT_VALUES if k not in ("extends", "continues", "card", "select", "skip")
]
storyboards = st.fixed_dictionaries(
    {
        "storyboard": st.sampled_from([1, 1, 1, 2, "1", None]),
        "shots": st.one_of(st.lists(shots, min_size=1, max_size=4), anything),
    },
    optional={
        "title": st.one_of(texts, templated_text),
        "vars": st.dictionaries(
            st.one_of(st.sampled_from(["hero", "x", "n"]), texts), scalars, max_size=3
        ),
        "defaults": st.fixed_dictionaries(
            {}, optional={name: SHOT_VALUES[name] for name in DEFAULT_FIELDS}
        ),
        "render": st.fixed_dictionaries(
            {},
            optional={
                "budget": st.floats(-1, 10),
                "concurrency": st.dictionaries(
                    st.sampled_from(["wavespeed", "qingbo", "preview", "other"]),
                    st.integers(-1, 70),
                ),
            },
        ),
        "output": st.fixed_dictionaries(
            {},
            optional={
                "path": st.sampled_from(["renders/x.mp4", "", "../x.mp4"]),
                "fps": st.integers(-1, 130),
                "resolution": st.sampled_from(RESOLUTIONS),
                "aspect_ratio": st.sampled_from(ASPECT_RATIOS),
                "fit": st.sampled_from(["crop", "pad", "zoom"]),
                "transition": SHOT_VALUES["transition"],
                "audio": st.fixed_dictionaries(
                    {"path": st.sampled_from(FILES)},
                    optional={"volume": st.floats(-1, 5), "fade_out": st.floats(-1, 61)},
                ),
            },
        ),
    },
)


# -- a folder with real media for the fuzzed files -----------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``board/`` with the fixtures' small media in ``board/refs``, and a file outside it."""
    base = tmp_path_factory.mktemp("fuzz")
    board = base / "board"
    shutil.copytree(FIXTURES / "invalid" / "refs", board / "refs")
    shutil.copy(FIXTURES / "outside.jpg", base / "outside.jpg")
    return board


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# -- (a) random YAML-like documents --------------------------------------------------------


@FUZZ
@given(doc=anything)
def test_random_documents(workdir: Path, doc: Any) -> None:
    file = workdir / "random.yaml"
    file.write_text(_dump(doc), encoding="utf-8")
    check(file)


# Inputs that once escaped as other exceptions (found by this test), kept as regressions.
_V4 = {"id": "a", "model": "skyreels-v4-fast", "prompt": "a fox"}
REGRESSIONS: list[dict[str, Any]] = [
    {"storyboard": 1, "shots": [{**_V4, "duration": math.nan}]},
    {"storyboard": 1, "defaults": {"duration": math.nan}, "shots": [_V4]},
    {"storyboard": 1, "defaults": [], "shots": [_V4]},
    {"storyboard": 1, "defaults": True, "shots": [_V4]},
    {"storyboard": 1, "shots": [{**_V4, "first_frame": "refs/a\x00.jpg"}]},
    {"storyboard": 1, "shots": [{**_V4, "prompt": "{{ 1.5 | round(method='x') }}"}]},
    {"storyboard": 1, "shots": [{**_V4, "prompt": "{% set x = 1 %}{% set x.y = 2 %}"}]},
]


@FUZZ
@given(doc=storyboards)
@example(doc=REGRESSIONS[0])
@example(doc=REGRESSIONS[1])
@example(doc=REGRESSIONS[2])
@example(doc=REGRESSIONS[3])
@example(doc=REGRESSIONS[4])
@example(doc=REGRESSIONS[5])
@example(doc=REGRESSIONS[6])
def test_random_storyboards(workdir: Path, doc: dict[str, Any]) -> None:
    file = workdir / "shaped.yaml"
    file.write_text(_dump(doc), encoding="utf-8")
    check(file)


# -- (b) mutations of the valid examples ---------------------------------------------------


def _seed_files() -> list[Path]:
    examples = sorted((ROOT / "examples").glob("*/storyboard.yaml"))
    return [*examples, *sorted((FIXTURES / "valid").glob("*.yaml"))]


SEEDS = _seed_files()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Any]]:
    """Each seed storyboard's folder copied to a temporary place, with its parsed data."""
    base = tmp_path_factory.mktemp("seeds")
    out: list[tuple[Path, Any]] = []
    for i, file in enumerate(SEEDS):
        folder = base / f"{i}-{file.parent.name}"
        shutil.copytree(
            file.parent, folder, ignore=shutil.ignore_patterns(".storyboard", "renders")
        )
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # an example being edited right now: nothing to mutate
        if isinstance(data, dict):
            out.append((folder, data))
    if not out:
        pytest.skip("no example storyboards to mutate")
    return out


def _paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = [(path, data)]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*path, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*path, i)))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mutate(draw: st.DrawFn, data: Any) -> Any:
    """Apply one random mutation to ``data`` (a deep copy is mutated and returned)."""
    data = copy.deepcopy(data)
    nodes = _paths(data)
    op = draw(
        st.sampled_from(
            [
                "delete_key",
                "retype_scalar",
                "duplicate_shot",
                "swap_shots",
                "insert_key",
                "change_number",
                "template_string",
                "replace_subtree",
            ]
        )
    )
    shots_ = data.get("shots") if isinstance(data, dict) else None
    if op == "delete_key":
        entries = [(p, k) for p, v in nodes if isinstance(v, dict) for k in v]
        if entries:
            where, key = draw(st.sampled_from(entries))
            del _get(data, where)[key]
    elif op == "retype_scalar":
        leaves = [p for p, v in nodes if not isinstance(v, (dict, list))]
        if leaves:
            data = _set(data, draw(st.sampled_from(leaves)), draw(scalars))
    elif op == "duplicate_shot" and isinstance(shots_, list) and shots_:
        i = draw(st.integers(0, len(shots_) - 1))
        j = draw(st.integers(0, len(shots_)))
        shots_.insert(j, copy.deepcopy(shots_[i]))
    elif op == "swap_shots" and isinstance(shots_, list) and len(shots_) > 1:
        i = draw(st.integers(0, len(shots_) - 1))
        j = draw(st.integers(0, len(shots_) - 1))
        shots_[i], shots_[j] = shots_[j], shots_[i]
    elif op == "insert_key":
        mappings = [p for p, v in nodes if isinstance(v, dict)]
        if mappings:
            where = draw(st.sampled_from(mappings))
            _get(data, where)[draw(keys)] = draw(
                st.one_of(scalars, *(SHOT_VALUES[k] for k in sorted(SHOT_VALUES)))
            )
    elif op == "change_number":
        numbers = [(p, v) for p, v in nodes if _is_number(v)]
        if numbers:
            where, value = draw(st.sampled_from(numbers))
            new = draw(
                st.sampled_from(
                    [0, -1, value + 1, value - 1, value * 10, -value, value + 0.5, math.nan]
                )
            )
            data = _set(data, where, new)
    elif op == "template_string":
        strings = [p for p, v in nodes if isinstance(v, str)]
        if strings:
            data = _set(data, draw(st.sampled_from(strings)), draw(st.sampled_from(TEMPLATES)))
    elif op == "replace_subtree":
        data = _set(data, draw(st.sampled_from([p for p, _ in nodes])), draw(anything))
    return data


@FUZZ
@given(st.data())
def test_mutated_examples(seeds: list[tuple[Path, Any]], data: st.DataObject) -> None:
    folder, doc = data.draw(st.sampled_from(seeds))
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutate(data.draw, doc)
    file = folder / "mutant.yaml"
    file.write_text(_dump(doc), encoding="utf-8")
    check(file)


def test_unmutated_seeds_load(seeds: list[tuple[Path, Any]]) -> None:
    """The seeds round-trip through safe_dump, so mutants differ only by their mutations."""
    for folder, doc in seeds:
        file = folder / "roundtrip.yaml"
        file.write_text(_dump(doc), encoding="utf-8")
        check(file)


# -- (c) raw text ---------------------------------------------------------------------------

yamlish_text = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "storyboard: 1\n",
                "shots:\n",
                "  - id: a\n",
                "    model: skyreels-v4-fast\n",
                "    prompt: {{ x }}\n",
                "\t",
                "  ",
                "- ",
                ": ",
                "&a ",
                "*a ",
                "&a [*a]",
                "<<: *a\n",
                "!!float ",
                "!!python/object ",
                "? ",
                '"',
                "'",
                "|\n",
                "{",
                "}",
                "[",
                "]",
                ",",
                "\n",
                "#",
                "---\n",
                "...\n",
            ]
        ),
        st.text(max_size=5),
    ),
    max_size=30,
).map("".join)


@FUZZ
@given(text=st.one_of(st.text(), yamlish_text))
@example(text="!!float ")
@example(text="storyboard: 1\nshots: [{id: a, duration: !!int ten}]\n")
@example(text="storyboard: 1\ntitle: &t [*t]\nshots: []\n")
def test_random_text(workdir: Path, text: str) -> None:
    file = workdir / "text.yaml"
    file.write_text(text, encoding="utf-8")
    check(file)


@settings(FUZZ, max_examples=40)
@given(raw=st.binary(max_size=200))
def test_random_bytes(workdir: Path, raw: bytes) -> None:
    file = workdir / "bytes.yaml"
    file.write_bytes(raw)
    check(file)
