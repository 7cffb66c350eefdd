"""Stage 3, templating: render every string field of a shot as a sandboxed Jinja2 template.

Templates run in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
``StrictUndefined`` (a missing variable is an error, never an empty string). The scope is
``vars`` (with ``--set`` overrides), ``shot`` (the shot's own fields) and ``storyboard``
(``title``); every variable is also in scope by its own name (``{{ hero }}``).
``{% include %}`` reads only from the storyboard's folder tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from storyboard.errors import UsageError

__all__ = ["TemplateProblem", "Templater", "is_template", "parse_set", "render_simple"]

_MARKERS = ("{{", "{%", "{#")


_SIMPLE = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")
_MISSING = object()


def _lookup(scope: Mapping[str, Any], dotted: str) -> Any:
    """Resolve ``a.b.c`` the way Jinja does for plain data, or ``_MISSING`` to defer to it."""
    parts = dotted.split(".")
    value: Any = scope.get(parts[0], _MISSING)
    for part in parts[1:]:
        # Jinja tries the attribute first (so `vars.items` is dict.items): leave those to it.
        if not isinstance(value, dict) or hasattr(dict, part) or part not in value:
            return _MISSING
        value = value[part]
    if value is _MISSING or not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return _MISSING
    return value


def render_simple(text: str, scope: Mapping[str, Any]) -> str | None:
    """Render a template made only of text and ``{{ name }}`` / ``{{ a.b }}`` substitutions.

    Compiling a Jinja template costs about a millisecond; most prompts only substitute
    variables, and a storyboard has hundreds of them. Returns ``None`` whenever the result
    could differ from Jinja's (any other syntax, an unknown name, a non-scalar value), and
    the caller renders with Jinja. A property test checks that both agree.
    """
    if "\r" in text or any(m in _SIMPLE.sub("", text) for m in (*_MARKERS, "}}")):
        return None
    out: list[str] = []
    pos = 0
    for match in _SIMPLE.finditer(text):
        value = _lookup(scope, match.group(1))
        if value is _MISSING:
            return None
        out.append(text[pos : match.start()])
        out.append(str(value))
        pos = match.end()
    out.append(text[pos:])
    result = "".join(out)
    # Jinja drops one trailing newline of the template (keep_trailing_newline=False).
    return result[:-1] if text.endswith("\n") else result


def is_template(text: str) -> bool:
    """Whether ``text`` contains any Jinja2 syntax (plain text renders as itself)."""
    return any(m in text for m in _MARKERS)


class TemplateProblem(Exception):
    """A template could not be rendered; ``lineno`` is the line inside the template."""

    def __init__(self, message: str, *, lineno: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.lineno = lineno
        self.hint = hint


_MAX_TEXT = 100_000  # characters a single `*` may produce; prompts are capped at 5000


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on the two operators that can exhaust memory/CPU.

    ``{{ 'x' * 10**10 }}`` or ``{{ 9**9**9 }}`` in a storyboard should be an error, not a
    machine brought to its knees.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 100:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(n, int)
                if sized and len(seq) * n > _MAX_TEXT:
                    raise SecurityError(f"result longer than {_MAX_TEXT} characters")
        return super().call_binop(context, operator, left, right)


class _FolderLoader(jinja2.FileSystemLoader):
    """A loader confined to one folder tree, symlinks included.

    ``FileSystemLoader`` already refuses ``..`` segments; it follows symlinks, so a link
    pointing outside the storyboard's tree is checked here.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), followlinks=False)
        self.root = root.resolve()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(os.path.realpath(filename))
        if not real.is_relative_to(self.root):
            raise jinja2.TemplateNotFound(f"{template} (it points outside the storyboard's folder)")
        return source, filename, uptodate


class Templater:
    """Renders the templates of one storyboard."""

    def __init__(self, root: Path, variables: Mapping[str, Any], title: str | None) -> None:
        self.env = _Sandbox(
            loader=_FolderLoader(root),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.variables = dict(variables)
        self.storyboard = {"title": title}
        self._compile: Callable[[str], jinja2.Template] = lru_cache(maxsize=4096)(
            self.env.from_string
        )

    def render(self, text: str, shot: Mapping[str, Any]) -> str:
        """Render one template in the scope of one shot.

        Raises:
            TemplateProblem: syntax error, undefined variable, sandbox violation, or an
                include that cannot be read.
        """
        if not is_template(text):
            return text
        context = {
            **self.variables,
            "vars": self.variables,
            "shot": shot,
            "storyboard": self.storyboard,
        }
        fast = render_simple(text, context)
        if fast is not None:
            return fast
        try:
            template = self._compile(text)
            # Variables are in scope by name (`{{ hero }}`) and under `vars.`; the three
            # reserved names win over a variable of the same name.
            return template.render(
                {
                    **self.variables,
                    "vars": self.variables,
                    "shot": shot,
                    "storyboard": self.storyboard,
                }
            )
        except jinja2.TemplateSyntaxError as exc:
            where = exc.name or None
            message = f"template syntax error: {exc.message}"
            if where:
                message += f" (in included {where})"
            return _raise(message, lineno=None if where else exc.lineno)
        except jinja2.UndefinedError as exc:
            return _raise(
                f"template error: {exc.message}",
                hint=_undefined_hint(str(exc.message), self.variables),
            )
        except SecurityError as exc:
            return _raise(f"template not allowed by the sandbox: {exc}")
        except jinja2.TemplateNotFound as exc:
            return _raise(
                f"cannot include {exc.name!r}: no such file in the storyboard's folder",
                hint="includes are read relative to the storyboard file and must stay inside its folder",
            )
        except jinja2.TemplateError as exc:  # filter argument errors, runtime errors
            return _raise(f"template error: {exc.message or exc}")
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            # Errors raised by filters and operators on user data (e.g. `{{ 1 / 0 }}`).
            return _raise(f"template error: {exc}")


def _raise(message: str, *, lineno: int | None = None, hint: str | None = None) -> str:
    raise TemplateProblem(message, lineno=lineno, hint=hint)


def _undefined_hint(message: str, variables: Mapping[str, Any]) -> str:
    # jinja's message reads "'x' is undefined" or "'dict object' has no attribute 'x'".
    known = ", ".join(sorted(variables)) or "none"
    if "has no attribute" in message:
        return f"check the name after the dot; variables defined: {known}"
    return f"define it under vars: or pass --set NAME=VALUE (variables defined: {known})"


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``--set NAME=VALUE`` arguments; each value is read as a YAML scalar.

    Raises:
        UsageError: an item is not ``NAME=VALUE`` or the value is not a scalar.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(
                f"--set {item!r}: expected NAME=VALUE", hint="for example --set hero='a red fox'"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw  # a scalar was asked for; keep the text as written
        out[name] = value
    return out
