"""Hostile storyboards (issue 8 items 1-2): bounded YAML and bounded templates.

Every bomb in ``tests/fixtures/hostile/`` (``yaml-*`` and ``template-*``) is validated in a
subprocess under a memory limit and a wall-clock limit: it must end with exit 2, a problem at
``FILE:LINE:COL`` and no traceback, in well under a second of the tool's own work.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard import loader
from storyboard.errors import InvalidStoryboard
from storyboard.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load, load_text

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
BOMBS = sorted([*HOSTILE.glob("yaml-*.yaml"), *HOSTILE.glob("template-*.yaml")])
MEMORY_LIMIT = 512 * 1024 * 1024
WALL_LIMIT = 30.0


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=WALL_LIMIT,
        preexec_fn=_limit_memory,
    )
    return done, time.monotonic() - start


@pytest.fixture(scope="module")
def baseline() -> float:
    """Wall time of importing the validator (the fixed cost of every `validate`)."""
    times = []
    for _ in range(2):
        done, elapsed = _run(["-c", "import storyboard.validate, storyboard.cli"])
        assert done.returncode == 0, done.stderr
        times.append(elapsed)
    return min(times)


def _assert_refused(path: Path, baseline: float, *, located: bool = True) -> str:
    done, elapsed = _run(["-m", "storyboard", "validate", str(path)])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "Traceback" not in output and "MemoryError" not in output, output[-2000:]
    where = rf"{re.escape(str(path))}:\d+:\d+: " if located else re.escape(str(path))
    assert re.search(where, output), output[-2000:]
    assert "hint:" in output, output[-2000:]
    # Generous against a loaded 2-core machine; the bombs took 60 s and more before.
    assert elapsed < baseline + 1.5, f"{path.name}: {elapsed:.2f} s (imports {baseline:.2f} s)"
    return output


def test_the_corpus_is_there() -> None:
    names = {p.name for p in BOMBS}
    assert {"yaml-billion-laughs.yaml", "yaml-deep-flow.yaml"} <= names


@pytest.mark.parametrize("path", BOMBS, ids=[p.name for p in BOMBS])
def test_bomb_is_refused_quickly_under_a_memory_limit(path: Path, baseline: float) -> None:
    _assert_refused(path, baseline)


def test_billion_laughs_points_at_the_alias_that_crosses_the_budget(baseline: float) -> None:
    path = HOSTILE / "yaml-billion-laughs.yaml"
    output = _assert_refused(path, baseline)
    line, col = map(int, re.search(rf"{re.escape(str(path))}:(\d+):(\d+)", output).groups())  # type: ignore[union-attr]
    text = path.read_text().splitlines()[line - 1]
    assert text[col - 1] == "*", (line, col, text)
    assert f"more than {MAX_NODES} values" in output


@pytest.mark.slow
def test_a_50_mb_storyboard_is_refused_before_it_is_read(tmp_path: Path, baseline: float) -> None:
    shot = "  - {id: s%07d, model: skyreels-v4-fast, prompt: a fox at dawn, duration: 5}\n"
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write("storyboard: 1\nshots:\n")
        i = 0
        while handle.tell() < 50 * 1024 * 1024:
            handle.write("".join(shot % (i + k) for k in range(1000)))
            i += 1000
    output = _assert_refused(path, baseline, located=False)
    assert f"at most {MAX_FILE_BYTES} bytes" in output


def test_size_cap_holds_for_files_that_do_not_report_their_size(tmp_path: Path) -> None:
    # A character device reports size 0 and never ends; the read itself stops at the cap.
    with pytest.raises(InvalidStoryboard, match="at most"):
        load("/dev/zero")
    big = "storyboard: 1\n# " + "x" * MAX_FILE_BYTES + "\n"
    with pytest.raises(InvalidStoryboard, match="at most"):
        load_text(big, file="big.yaml", path=tmp_path / "big.yaml")
    (tmp_path / "big.yaml").write_text(big)
    with pytest.raises(InvalidStoryboard, match="at most") as info:
        load(tmp_path / "big.yaml")
    assert info.value.problems[0].hint


def test_memory_and_recursion_errors_become_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for exc in (MemoryError, RecursionError):

        def explode(text: str, file: str, exc: type[BaseException] = exc) -> Any:
            raise exc()

        monkeypatch.setattr(loader, "_compose", explode)
        with pytest.raises(InvalidStoryboard) as info:
            load_text("storyboard: 1\n", file="a.yaml", path=tmp_path / "a.yaml")
        problem = info.value.problems[0]
        assert problem.location() == "a.yaml:1:1" and problem.hint


def _shots_sharing_defaults(n: int) -> str:
    lines = [
        "storyboard: 1",
        "x-defaults: &d {model: skyreels-v4-fast, resolution: 480p, duration: 3, seed: 7}",
        "x-look: &look [golden light, slow push-in, shallow focus]",
        "shots:",
    ]
    for i in range(n):
        lines += ["  - <<: *d", f"    id: s{i}", "    prompt: a fox", "    look: *look"]
    return "\n".join(lines) + "\n"


def test_ordinary_sharing_still_loads(tmp_path: Path) -> None:
    doc = load_text(_shots_sharing_defaults(200), file="a.yaml", path=tmp_path / "a.yaml")
    shots = doc.data["shots"]
    assert len(shots) == 200
    assert shots[199] == {
        "model": "skyreels-v4-fast", "resolution": "480p", "duration": 3, "seed": 7,
        "id": "s199", "prompt": "a fox", "look": ["golden light", "slow push-in", "shallow focus"],
    }  # fmt: skip
    assert doc.mark(("shots", 199, "id")).line == 4 + 199 * 4 + 2


def test_nesting_within_the_limit_loads_and_past_it_is_located(tmp_path: Path) -> None:
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    data = load_text(ok, file="a.yaml", path=tmp_path / "a.yaml").data
    depth = 0
    value = data["a"]
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH - 2  # the innermost list is empty
    bad = "a:\n  b: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    with pytest.raises(InvalidStoryboard) as info:
        load_text(bad, file="a.yaml", path=tmp_path / "a.yaml")
    problem = info.value.problems[0]
    assert (problem.line, problem.col) == (2, 6 + MAX_DEPTH - 2)  # root, `a`, then lists
    assert "nested more than" in problem.message


def test_composer_matches_pyyaml_on_every_fixture_and_example() -> None:
    files = [*ROOT.glob("tests/fixtures/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")]
    files = [f for f in files if f.parent != HOSTILE]
    assert len(files) > 20
    for file in files:
        text = file.read_text(encoding="utf-8-sig")
        try:
            expected: Any = yaml.serialize(yaml.compose(text, Loader=loader._Loader))
        except yaml.YAMLError as exc:
            expected = str(exc)
        try:
            got: Any = yaml.serialize(loader._compose(text, str(file)))
        except yaml.YAMLError as exc:
            got = str(exc)
        assert got == expected, file


def test_yaml_errors_are_the_same_as_pyyaml_s(tmp_path: Path) -> None:
    for text, message in [
        ("a: &x 1\nb: &x 2\n", "duplicate anchor"),
        ("a: *nope\n", "undefined alias"),
        ("a: 1\n---\nb: 2\n", "single document"),
        ("a: [1\n", "YAML syntax error"),
    ]:
        with pytest.raises(InvalidStoryboard, match=message):
            load_text(text, file="a.yaml", path=tmp_path / "a.yaml")


# -- random alias graphs ---------------------------------------------------------------------

fan_outs = st.lists(st.integers(1, 12), min_size=1, max_size=10)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fan_outs, st.integers(1, 5), st.booleans())
def test_alias_graphs_load_or_stop_at_the_budget(
    tmp_path: Path, fans: list[int], width: int, merge: bool
) -> None:
    """Level k holds fan[k] aliases of level k-1: the value is built exactly, or refused."""
    if merge:
        lines = ["l0: &l0 {" + ", ".join(f"k{i}: v" for i in range(width)) + "}"]
        expected: Any = {f"k{i}": "v" for i in range(width)}
        size = 1 + 2 * width
    else:
        lines = ["l0: &l0 [" + ", ".join(["v"] * width) + "]"]
        expected = ["v"] * width
        size = 1 + width
    total = 2 + size  # the root mapping, the key `l0`, the value
    for k, fan in enumerate(fans, start=1):
        if merge:  # a merge of the same mapping fan times is that mapping once
            lines.append(f"l{k}: &l{k} {{<<: [" + ", ".join([f"*l{k - 1}"] * fan) + "]}")
            size = 3 + fan * size
        else:
            lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * fan) + "]")
            expected = [expected] * fan
            size = 1 + fan * size
        total += 1 + size
    text = "\n".join(lines) + "\n"
    start = time.monotonic()
    try:
        data = load_text(text, file="g.yaml", path=tmp_path / "g.yaml").data
    except InvalidStoryboard as exc:
        assert total > MAX_NODES, text
        problem = exc.problems[0]
        assert "alias expands the document" in problem.message and problem.hint
        assert text.splitlines()[problem.line - 1][problem.col - 1] == "*"
    else:
        assert total <= MAX_NODES
        assert data[f"l{len(fans)}"] == expected
    assert time.monotonic() - start < 5.0
