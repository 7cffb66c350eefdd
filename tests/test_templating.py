"""Templating: the sandbox, includes, --set, and the fast path agreeing with Jinja."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from storyboard.errors import UsageError
from storyboard.templating import TemplateProblem, Templater, parse_set, render_simple

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)

names = st.sampled_from(["hero", "light", "n", "x", "vars", "shot", "items", "keys", "_p"])
scalars = st.one_of(
    st.text(max_size=8), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(),
)  # fmt: skip
values = st.recursive(scalars, lambda kids: st.dictionaries(names, kids, max_size=3), max_leaves=6)
pieces = st.one_of(
    st.text(alphabet=" abc{}%#\n\r.", max_size=6),
    st.builds(lambda a, b: "{{ " + a + (("." + b) if b else "") + " }}", names, st.none() | names),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=6), st.dictionaries(names, values, max_size=4))
def test_fast_path_agrees_with_jinja(parts: list[str], scope: dict[str, Any]) -> None:
    text = "".join(parts)
    fast = render_simple(text, scope)
    if fast is None:
        return
    assert fast == _ENV.from_string(text).render(scope)


def test_fast_path_defers_anything_else() -> None:
    assert render_simple("{{ hero | upper }}", {"hero": "x"}) is None
    assert render_simple("{{ missing }}", {}) is None
    assert render_simple("{{ vars.items }}", {"vars": {"items": "a"}}) is None
    assert render_simple("{{ a }} {% if b %}", {"a": 1}) is None
    assert render_simple("{{ hero }}, dawn\n", {"hero": "fox"}) == "fox, dawn"


def test_sandbox_and_strict_undefined(tmp_path: Path) -> None:
    t = Templater(tmp_path, {"hero": "fox"}, "T")
    assert t.render("{{ hero }} in {{ storyboard.title }} ({{ shot.id }})", {"id": "a"}) == (
        "fox in T (a)"
    )
    with pytest.raises(TemplateProblem, match="'nope' is undefined"):
        t.render("{{ nope }}", {})
    with pytest.raises(TemplateProblem, match="sandbox"):
        t.render("{{ hero.__class__.__mro__ }}", {})
    with pytest.raises(TemplateProblem, match="syntax"):
        t.render("{{ hero | }}", {})


def test_includes_stay_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "board"
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "look.j2").write_text("golden {{ hero }}\n")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "prompts" / "link.j2").symlink_to(tmp_path / "secret.txt")
    t = Templater(root, {"hero": "fox"}, None)
    assert t.render('{% include "prompts/look.j2" %}', {}) == "golden fox"
    for bad in ('{% include "../secret.txt" %}', '{% include "prompts/link.j2" %}'):
        with pytest.raises(TemplateProblem, match="cannot include"):
            t.render(bad, {})


def test_parse_set_reads_yaml_scalars() -> None:
    assert parse_set(["n=3", "hero=a red fox", "ok=true", "empty="]) == {
        "n": 3, "hero": "a red fox", "ok": True, "empty": "",
    }  # fmt: skip
    with pytest.raises(UsageError):
        parse_set(["no-equals"])
    with pytest.raises(UsageError):
        parse_set(["1bad=x"])


def test_sandbox_limits_runaway_operators(tmp_path: Path) -> None:
    t = Templater(tmp_path, {}, None)
    with pytest.raises(TemplateProblem, match="sandbox"):
        t.render("{{ 9 ** (9 ** 9) }}", {})
    with pytest.raises(TemplateProblem, match="sandbox"):
        t.render("{{ 'x' * 10 ** 10 }}", {})
    assert t.render("{{ 'ab' * 3 }} {{ 2 ** 10 }}", {}) == "ababab 1024"
