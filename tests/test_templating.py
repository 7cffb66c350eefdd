"""Templating: the sandbox, includes, --set, and the fast path agreeing with Jinja."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from storyboard.errors import UsageError
from storyboard.templating import (
    MAX_INCLUDE_BYTES,
    MAX_OUTPUT,
    MAX_STEPS,
    MAX_TOTAL_STEPS,
    MAX_VALUE,
    TemplateProblem,
    Templater,
    parse_set,
    render_simple,
)

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
    assert render_simple("{{{ hero }}", {"hero": ""}) is None  # Jinja: a syntax error
    assert render_simple("\n{{{ hero }}", {"hero": "x"}) is None
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


# -- bounded evaluation (issue 8 item 2) -----------------------------------------------------

BOMBS = {
    "loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(10000000) }}",
    "center filter": "{{ 'x' | center(1000000000) }}",
    "center method": "{{ 'x'.center(1000000000) }}",
    "zfill": "{{ '1'.zfill(1000000000) }}",
    "replace filter": "{{ ('a' * 99999) | replace('a', 'a' * 99999) }}",
    "replace method": "{{ ('a' * 99999).replace('', 'b' * 99999) }}",
    "expandtabs": "{{ ('\\t' * 99999).expandtabs(99999) }}",
    "translate": "{{ ('a' * 99999).translate({97: 'b' * 99999}) }}",
    "format filter": "{{ '%1000000000s' | format('x') }}",
    "str.format": "{{ '{:>1000000000}'.format('x') }}",
    "str.format fields": "{{ ('{0}' * 33333).format('x' * 99999) }}",
    "percent": "{{ '%1000000000d' % 7 }}",
    "indent": "{{ ('a\\n' * 49999) | indent(100000) }}",
    "wordwrap": "{{ ('a ' * 49999) | wordwrap(1, wrapstring='b' * 99999) }}",
    "slice": "{{ [1] | slice(1000000000) | list | length }}",
    "batch": "{{ [1] | batch(1000000000, 'x') | list }}",
    "tojson": "{{ [1, 2] | tojson(indent=1000000000) }}",
    "join filter": "{{ (['x' * 99999] * 1000) | join }}",
    "join method": "{{ ''.join(['x' * 99999] * 1000) }}",
    "sum of lists": "{{ ([[1] * 99999] * 99999) | sum(start=[]) | length }}",
    "concat doubling": (
        "{% set ns = namespace(x='ab') %}"
        "{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x | length }}"
    ),
    "plus doubling": (
        "{% set ns = namespace(x='ab') %}"
        "{% for i in range(60) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x | length }}"
    ),
    "macro doubling": (
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s | length }}{% endif %}"
        "{% endmacro %}{{ d('ab', 60) }}"
    ),
    "block doubling": (
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
        "{% set y %}{{ ns.x }}{{ ns.x }}{% endset %}{% set ns.x = y %}{% endfor %}"
    ),
    "macro recursion": (
        "{% macro twice(n) %}{% if n %}{{ twice(n - 1) }}{{ twice(n - 1) }}{% endif %}"
        "{% endmacro %}{{ twice(40) }}"
    ),
    "printed list": "{% set l = ['x' * 99999] * 99999 %}{{ l }}",
    "list through a text filter": "{% set l = ['x' * 99999] * 99999 %}{{ l | upper | length }}",
    "escaped list": "{% set l = ['x' * 99999] * 99999 %}{{ l | e | length }}",
    "printf list": "{% set l = ['x' * 99999] * 99999 %}{{ '%s' % (l,) }}",
    "attr method": "{{ ('x' | attr('center'))(1000000000) }}",
    "map filter": "{{ ['x'] | map('center', 1000000000) | list }}",
    "printed in concat": "{% set l = ['x' * 99999] * 99999 %}{{ 'a' ~ l }}",
    "output": "{% for i in range(100000) %}{{ 'x' * 99999 }}{% endfor %}",
    "big int": (
        "{% set ns = namespace(n=10 ** 100) %}"
        "{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}"
    ),
    "big power": "{{ ((10 ** 100) ** 100) ** 100 }}",
    "loop over text": "{% for a in 'x' * 99999 %}{% for b in 'x' * 99999 %}{% endfor %}{% endfor %}",
    "filter over list": "{% for i in range(99999) %}{{ ([1] * 99999) | unique | list | length }}{% endfor %}",
}


@pytest.mark.parametrize("template", list(BOMBS.values()), ids=list(BOMBS))
def test_bombs_stop_at_a_limit(tmp_path: Path, template: str) -> None:
    t = Templater(tmp_path, {}, None)
    start = time.monotonic()
    with pytest.raises(TemplateProblem) as info:
        t.render("a fox at dawn,\n" + template, {})
    assert time.monotonic() - start < 2.0
    problem = info.value
    assert re.search(
        r"(more|longer) than \d+|limited to|sandbox|width|with `sum`", problem.message
    ), problem.message
    assert problem.lineno == 2 or "sandbox" in problem.message, (problem.lineno, problem.message)


def test_limits_are_exact_at_the_edge(tmp_path: Path) -> None:
    t = Templater(tmp_path, {}, None)
    assert len(t.render(f"{{{{ 'x' * {MAX_OUTPUT} }}}}", {})) == MAX_OUTPUT
    with pytest.raises(TemplateProblem, match=f"produces more than {MAX_OUTPUT} characters"):
        t.render(f"{{{{ 'x' * {MAX_OUTPUT + 1} }}}}", {})
    assert len(t.render(f"{{{{ ('x' * {MAX_VALUE}) | length }}}}", {})) == len(str(MAX_VALUE))
    with pytest.raises(TemplateProblem, match=f"longer than {MAX_VALUE}"):
        t.render(f"{{{{ 'x'.center({MAX_VALUE + 1}) | length }}}}", {})


def test_the_line_of_a_limit_is_the_template_line(tmp_path: Path) -> None:
    t = Templater(tmp_path, {}, None)
    with pytest.raises(TemplateProblem) as info:
        t.render(
            "one\ntwo\n{% for i in range(99999) %}\n{% for j in range(99999) %}{% endfor %}\n{% endfor %}",
            {},
        )
    assert info.value.lineno == 4 and f"more than {MAX_STEPS} steps" in info.value.message
    with pytest.raises(TemplateProblem) as info:
        t.render("one\n{% for i in range(99999) %}\n{{ 'x' * 999 }}{% endfor %}", {})
    assert info.value.lineno == 3 and "produces more than" in info.value.message
    (tmp_path / "p.j2").write_text("fine\n{{ 'x'.center(10 ** 9) }}\n")
    with pytest.raises(TemplateProblem) as info:
        t.render('{% include "p.j2" %}', {})
    assert "in included p.j2" in info.value.message
    (tmp_path / "big.j2").write_text("x" * (MAX_INCLUDE_BYTES + 1))
    with pytest.raises(TemplateProblem, match="larger than"):
        t.render('{% include "big.j2" %}', {})


def test_a_storyboard_s_templates_share_a_total_budget(tmp_path: Path) -> None:
    t = Templater(tmp_path, {}, None)
    # about 0.9 * MAX_STEPS steps: 450 outer and 180000 inner iterations
    heavy = "{% for i in range(450) %}{% for j in range(400) %}{% endfor %}{% endfor %}ok"
    rendered = 0
    with pytest.raises(TemplateProblem, match="together run more than"):
        for _ in range(MAX_TOTAL_STEPS // MAX_STEPS + 2):
            assert t.render(heavy, {}) == "ok"
            rendered += 1
    assert MAX_TOTAL_STEPS // MAX_STEPS <= rendered <= MAX_TOTAL_STEPS // MAX_STEPS + 1
    assert Templater(tmp_path, {}, None).render(heavy, {}) == "ok"


def test_ordinary_templates_still_work(tmp_path: Path) -> None:
    (tmp_path / "style.j2").write_text("{{ light | title }}, {{ mood }}\n")
    t = Templater(
        tmp_path,
        {"hero": "fox", "light": "dawn light", "mood": "calm", "beats": ["a", "b", "c"],
         "tree": [{"n": "x", "kids": [{"n": "y", "kids": []}]}]},
        "T",
    )  # fmt: skip
    cases = {
        "{% for b in beats %}{{ loop.index }}/{{ loop.length }} {{ b }}{{ ', ' if not loop.last }}{% endfor %}": "1/3 a, 2/3 b, 3/3 c",
        "{{ beats | join(' then ') }} {{ ', '.join(beats) }}": "a then b then c a, b, c",
        "{{ '%s at %03d' | format(hero, 7) }} {{ '{} {:>4}'.format(hero, 1) }} {{ '%s!' % hero }}": "fox at 007 fox    1 fox!",
        "{{ hero ~ ' ' ~ light }} {{ hero + '!' }} {{ hero * 2 }} {{ 2 ** 10 * 3 }}": "fox dawn light fox! foxfox 3072",
        "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(hero) }}{% set s %}{{ m(1) }}{% endset %}{{ s }}": "<fox><1>",
        "{% for n in tree recursive %}{{ n.n }}({{ loop(n.kids) }}){% endfor %}": "x(y())",
        "{{ hero | center(9) }}|{{ 'a\nb' | indent(2, true) }}|{{ hero | replace('o', '0') }}": "   fox   |  a\n  b|f0x",
        "{{ range(3) | list }} {{ [3, 1, 2] | sort | first }} {{ beats | map('upper') | join }}": "[0, 1, 2] 1 ABC",
        "{{ lipsum(1, false, 5, 6) | wordcount > 4 }} {{ '\t'.expandtabs(2) | length }}": "True 2",
        "{% include 'style.j2' %}": "Dawn Light, calm",
        "{{ beats | tojson }} {{ {'a': 1} | tojson(indent=2) | length }}": '["a", "b", "c"] 12',
        "{% for a in beats %}{% for b in beats %}{{ a }}{{ b }} {% endfor %}{% endfor %}": "aa ab ac ba bb bc ca cb cc ",
    }
    for template, expected in cases.items():
        assert t.render(template, {}) == expected, template


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=4), st.integers(0, 3))
def test_nested_loops_render_exactly_or_stop_at_the_step_budget(
    sizes: list[int], width: int
) -> None:
    template = "".join(f"{{% for i{k} in range({n}) %}}" for k, n in enumerate(sizes))
    template += f"{{{{ 'x' * {width} }}}}" + "{% endfor %}" * len(sizes)
    iterations, total = 0, 1
    for n in sizes:
        total *= n
        iterations += total
    start = time.monotonic()
    try:
        out = Templater(Path(), {}, None).render(template, {})
    except TemplateProblem as exc:
        assert iterations > MAX_STEPS // 3 or total * width > MAX_OUTPUT, exc.message
        assert "steps" in exc.message or "characters" in exc.message
    else:
        assert out == "x" * (total * width)
    assert time.monotonic() - start < 3.0
