"""Stage 3, templating: render every string field of a shot as a sandboxed Jinja2 template.

Templates run in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
``StrictUndefined`` (a missing variable is an error, never an empty string). The scope is
``vars`` (with ``--set`` overrides), ``shot`` (the shot's own fields) and ``storyboard``
(``title``); every variable is also in scope by its own name (``{{ hero }}``).
``{% include %}`` reads only from the storyboard's folder tree.

A storyboard may come from someone else's pull request, so every evaluation is bounded while
it runs, not only checked afterwards: no single value (text, list) longer than
:data:`MAX_VALUE`, at most :data:`MAX_OUTPUT` characters of output (streamed and stopped
there), and at most :data:`MAX_STEPS` steps of work, where a step is a loop iteration, a call
or a filter, and filters and methods are also charged for the size of what they work on.
Filters, methods and operators that can make something much larger than their input
(``center``, ``replace``, ``format``, ``join``, ``indent``, ``*``, ``%``...) check the size
of their result before making it. A template over a limit is a :class:`TemplateProblem` at
its line.
"""

from __future__ import annotations

import functools
import os
import re
import string
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from storyboard.hashing import sha256_bytes
from storyboard.overrides import parse_set  # where --set is read; named here too

__all__ = [
    "MAX_INCLUDE_BYTES",
    "MAX_OUTPUT",
    "MAX_STEPS",
    "MAX_TOTAL_STEPS",
    "MAX_VALUE",
    "TemplateProblem",
    "Templater",
    "is_template",
    "parse_set",
    "render_simple",
    "unread_overrides",
]

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
        # "{{{ a }}": Jinja's lexer opens at the first "{{", and reads "{ a }}" as a dict.
        if value is _MISSING or text[pos : match.start()].endswith("{"):
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


MAX_VALUE = 100_000
"""Most characters (or items) one operation of a template may produce."""
MAX_OUTPUT = 20_000
"""Most characters a template may produce: four times the 5000-character prompt limit."""
MAX_STEPS = 200_000
"""Most steps of work (loop iterations, calls, filters, plus their size) per evaluation."""
_MAX_BITS = 20_000  # integers a template computes: about 6000 digits
_TEXT_PER_STEP = 64  # characters of text a filter or method handles for one step
_MACRO_STEPS = 5  # a macro call does about as much as five loop iterations
MAX_INCLUDE_BYTES = 1024 * 1024
"""Largest file ``{% include %}`` reads."""
MAX_TOTAL_STEPS = 10 * MAX_STEPS
"""Most steps for all the templates of one storyboard together."""


class _Limit(Exception):
    """A template went past one of the limits above (raised through the template's frames)."""


_state = threading.local()


def _charge(steps: int) -> None:
    used: int = getattr(_state, "steps", 0) + steps
    _state.steps = used
    if used > getattr(_state, "limit", MAX_STEPS):
        if _state.limit < MAX_STEPS:
            raise _Limit(
                f"the storyboard's templates together run more than {MAX_TOTAL_STEPS} steps "
                "(loop iterations, calls, filters)"
            )
        raise _Limit(
            f"the template runs more than {MAX_STEPS} steps (loop iterations, calls, filters)"
        )


def _too_long(size: int, what: str = "a value") -> None:
    if size > MAX_VALUE:
        raise _Limit(f"the template makes {what} longer than {MAX_VALUE} characters or items")


def _cost(value: Any) -> int:
    """Steps for handling ``value``: text by the chunk, collections by the item."""
    if isinstance(value, (str, bytes)):
        return 1 + len(value) // _TEXT_PER_STEP
    if isinstance(value, (list, tuple, dict, set, frozenset, range)):
        return 1 + len(value)
    return 1


def _text_size(value: Any, limit: int = MAX_VALUE) -> int:
    """About ``len(str(value))``, computed without building it; stops once past ``limit``."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, bytes):
            total += 4 * len(item) + 3
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Namespace):
            total += 14
            stack.append(item._Namespace__attrs)
        else:  # numbers, ranges, undefined, macros, loop helpers: short representations
            total += 64
    return total


def _counted(iterable: Iterable[Any], steps: int = 1) -> Iterator[Any]:
    """Iterate, charging ``steps`` for each item."""
    for item in iterable:
        _charge(steps)
        yield item


def _materialise(iterable: Iterable[Any]) -> list[Any]:
    if isinstance(iterable, (list, tuple)):
        return list(iterable)
    return list(_counted(iterable))


_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?(?P<conv>.?)",
    re.DOTALL,
)


def _largest(values: Iterable[Any]) -> int:
    return max((_text_size(v) for v in values), default=0)


def _check_printf(fmt: str, args: Any) -> None:
    """``fmt % args`` stays within :data:`MAX_VALUE` (widths come from the format)."""
    values = list(args.values()) if isinstance(args, dict) else args
    largest = _largest(values if isinstance(values, (list, tuple)) else [values])
    size = len(fmt)
    for match in _PRINTF.finditer(fmt):
        if match["conv"] in ("%", ""):
            continue
        if match["width"] == "*" or match["prec"] == "*":
            raise _Limit("the template uses a `*` width in a % format; write the width")
        size += int(match["width"] or 0) + int(match["prec"] or 0) + largest
        _too_long(size)


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``fmt.format(*args, **kwargs)`` stays within :data:`MAX_VALUE`."""
    largest = _largest([*args, *kwargs.values()])
    size = 0
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself reports the malformed format
    for text, name, spec, _ in fields:
        size += len(text)
        if name is None:
            continue
        if spec and "{" in spec:
            raise _Limit("the template computes a format width; write the width")
        numbers = [int(n) for n in re.findall(r"\d+", spec or "")]
        size += largest + sum(numbers)
        _too_long(size)


def _check_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _too_long(len(text) + found * max(0, len(new) - len(old)))


def _check_join(items: list[Any], separator: Any) -> None:
    sep = len(separator) if isinstance(separator, str) else 0
    size = sep * max(0, len(items) - 1)
    for item in items:
        size += _text_size(item, MAX_VALUE - size)
        _too_long(size)


def _check_width(value: Any, width: Any) -> None:
    if isinstance(width, int):
        _too_long(max(width, len(value) if isinstance(value, (str, bytes)) else 0))


def _lines(value: Any) -> int:
    return value.count("\n") + 1 if isinstance(value, str) else 1


def _filter_checks() -> dict[str, Callable[..., None]]:
    """Checks run before the filters that can make much more than they are given."""

    def center(value: Any, width: Any = 80, *_: Any) -> None:
        _check_width(value, width)

    def indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
        pad = len(width) if isinstance(width, str) else width
        if isinstance(pad, int) and isinstance(value, str):
            _too_long(len(value) + _lines(value) * pad)

    def wordwrap(value: Any, width: Any = 79, *args: Any, **kwargs: Any) -> None:
        wrap = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
        if isinstance(value, str) and isinstance(width, int) and width > 0:
            breaks = len(value) // width + _lines(value)
            _too_long(len(value) + breaks * len(wrap if isinstance(wrap, str) else "\n"))

    def replace(value: Any, old: Any, new: Any = "", count: Any = None) -> None:
        _check_replace(value, old, new, count)

    def fmt(value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, str):
            _check_printf(value, kwargs or args)

    def tojson(value: Any, indent: Any = None) -> None:
        pad = len(indent) if isinstance(indent, str) else (indent or 0)
        if isinstance(pad, int):
            # every item is on its own line, indented by up to MAX_DEPTH levels
            _too_long(_text_size(value) * (1 + min(pad, 16) * 8) + (pad > 16) * MAX_VALUE)

    def pprint(value: Any, *_: Any) -> None:
        _too_long(4 * _text_size(value))

    def urlize(value: Any, *args: Any, **kwargs: Any) -> None:
        extra = sum(len(v) for v in (*args, *kwargs.values()) if isinstance(v, str))
        if isinstance(value, str):
            _too_long(3 * len(value) + (len(value) // 2 + 1) * (extra + 64))

    def slice_(value: Any, slices: Any, *_: Any) -> None:
        if isinstance(slices, int):
            _too_long(slices, "a list")

    def batch(value: Any, linecount: Any, *_: Any) -> None:
        if isinstance(linecount, int):
            _too_long(linecount, "a list")

    def sum_(value: Any, attribute: Any = None, start: Any = 0) -> None:
        if isinstance(start, (list, tuple, str)):
            raise _Limit("the template adds up lists or text with `sum`; use `join`")

    def escape(value: Any) -> None:
        _too_long(6 * _text_size(value))

    return {
        "center": center,
        "indent": indent,
        "wordwrap": wordwrap,
        "replace": replace,
        "format": fmt,
        "tojson": tojson,
        "pprint": pprint,
        "urlize": urlize,
        "slice": slice_,
        "batch": batch,
        "sum": sum_,
        "escape": escape,
        "e": escape,
        "forceescape": escape,
        "xmlattr": pprint,
        "string": pprint,
    }


# Filters that work on the text of their value (`str(value)` first, even for a list).
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "indent", "lower", "replace",
        "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode",
        "urlize", "wordcount", "wordwrap",
    }
)  # fmt: skip


def _bounded_filter(
    name: str, func: Callable[..., Any], check: Callable[..., None] | None
) -> Callable[..., Any]:
    """``func``, charged for its input, checked before (``check``) and after it runs."""
    passes = getattr(func, "jinja_pass_arg", None) is not None
    text = name in _TEXT_FILTERS

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        rest = args[1:] if passes else args
        value = rest[0] if rest else None
        _charge(_cost(value))
        if text and not isinstance(value, str):
            _too_long(_text_size(value))
        if name == "join" and rest and value is not None:
            # join consumes its input once: materialise it (counted) to size the result
            items = _materialise(value)
            _check_join(items, rest[1] if len(rest) > 1 else kwargs.get("d", ""))
            args = (*args[: len(args) - len(rest)], items, *rest[1:])
        elif check is not None and rest:
            check(*rest, **kwargs)
        result = func(*args, **kwargs)
        return _checked_result(result)

    return bounded


def _checked_result(result: Any) -> Any:
    if isinstance(result, (str, bytes, list, tuple, dict, set, frozenset)):
        _too_long(len(result))
    elif isinstance(result, Iterator):
        return _counted(result)
    return result


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    _too_long(len(numbers), "a range")
    return numbers


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > 20 or max > 200:
        raise _Limit("lipsum is limited to 20 paragraphs of at most 200 words")
    return str(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))


_STR_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda s, width=0, *_: _check_width(s, width),
    "ljust": lambda s, width=0, *_: _check_width(s, width),
    "rjust": lambda s, width=0, *_: _check_width(s, width),
    "zfill": lambda s, width=0, *_: _check_width(s, width),
    "expandtabs": lambda s, tabsize=8, **_: _too_long(
        len(s) + (s.count("\t") if isinstance(s, str) else s.count(b"\t")) * max(tabsize, 0)
    ),
    "replace": _check_replace,
    "translate": lambda s, table, *_: _too_long(
        len(s) * max([_text_size(v) for v in table.values()], default=1)
        if isinstance(table, dict)
        else len(s)
    ),
}


class _Rewrite(NodeTransformer):
    """Route every loop's iterable and every ``~`` through the environment's counters."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None
        ).set_lineno(node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.EnvironmentAttribute("bounded_concat"),
            [nodes.List(node.nodes)],
            [],
            None,
            None,
        ).set_lineno(node.lineno)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Rewrite().visit(node)
        super().visit_Template(node, frame)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every way of making a lot of work or text bounded.

    ``{{ 'x' * 10**10 }}``, ``{{ 9**9**9 }}``, nested loops, recursive macros or
    ``center(10**9)`` in a storyboard are an error at the template's line, not a machine
    brought to its knees.
    """

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize_output, **options)
        checks = _filter_checks()
        self.filters = {
            name: _bounded_filter(name, func, checks.get(name))
            for name, func in self.filters.items()
        }
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum

    # -- hooks called by compiled templates ------------------------------------------------

    def bounded_iter(self, iterable: Any) -> Iterator[Any]:
        return _counted(iterable)

    def bounded_concat(self, parts: list[Any]) -> str:
        size = 0
        for part in parts:
            size += _text_size(part, MAX_VALUE - size)
            _too_long(size)
        _charge(1 + size // _TEXT_PER_STEP)
        return "".join(map(str, parts))

    def concat(self, parts: Iterable[str]) -> str:
        """Join the output captured by a macro, a `{% set %}` block or a call block."""
        pieces = list(parts)
        size = sum(len(piece) for piece in pieces)
        _too_long(size, "a block's output")
        _charge(1 + size // _TEXT_PER_STEP)
        return "".join(pieces)

    @staticmethod
    def _finalize_output(value: Any) -> Any:
        size = _text_size(value)
        _too_long(size, "an output")
        _charge(1 + size // _TEXT_PER_STEP)
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _charge(1)
        if operator == "**" and isinstance(right, int):
            if abs(right) > 100:
                raise SecurityError("exponent too large")
            if isinstance(left, int) and left.bit_length() * abs(right) > _MAX_BITS:
                raise _Limit(f"the template computes a number of more than {_MAX_BITS} bits")
        if operator == "*":
            both_int = isinstance(left, int) and isinstance(right, int)
            if both_int and left.bit_length() + right.bit_length() > _MAX_BITS:
                raise _Limit(f"the template computes a number of more than {_MAX_BITS} bits")
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(n, int)
                if sized and len(seq) * n > MAX_VALUE:
                    raise SecurityError(f"result longer than {MAX_VALUE} characters")
        if operator == "+":
            for kind in (str, list, tuple):
                if isinstance(left, kind) and isinstance(right, kind):
                    _too_long(len(left) + len(right))
        if operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list, tuple)):
            _charge(len(result) // _TEXT_PER_STEP)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _charge(_MACRO_STEPS if isinstance(__obj, Macro) else 1)
        owner = getattr(__obj, "__self__", None)
        if owner is __self and getattr(__obj, "__name__", "") in ("bounded_iter", "bounded_concat"):
            return __obj(*args)  # our own hooks count for themselves
        if isinstance(owner, (str, bytes)):
            _charge(len(owner) // _TEXT_PER_STEP)
            name = getattr(__obj, "__name__", "")
            if name == "join" and args:
                items = _materialise(args[0])
                _check_join(items, owner)
                args = (items, *args[1:])
            elif name in _STR_METHOD_CHECKS:
                _STR_METHOD_CHECKS[name](owner, *args, **kwargs)
        elif isinstance(__obj, LoopContext) and args:
            args = (_counted(args[0]), *args[1:])  # a recursive loop's next level
        result = super().call(__context, __obj, *args, **kwargs)
        return _checked_result(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                _check_format(fmt, (), args[0])
            else:
                _check_format(fmt, args, kwargs)
            return wrapped(*args, **kwargs)

        return bounded


def _template_line(tb: TracebackType | None) -> tuple[int | None, str | None]:
    """The line (and for an included file, its name) where a template raised."""
    line: int | None = None
    name: str | None = None
    while tb is not None:
        # jinja rewrites the frames of template code: their line is the template's
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            filename = tb.tb_frame.f_code.co_filename
            line, name = (tb.tb_lineno, None) if filename == "<template>" else (None, filename)
        tb = tb.tb_next
    return line, name


class _FolderLoader(jinja2.FileSystemLoader):
    """A loader confined to one folder tree, symlinks included.

    ``FileSystemLoader`` already refuses ``..`` segments; it follows symlinks, so a link
    pointing outside the storyboard's tree is checked here.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), followlinks=False)
        self.root = root.resolve()
        # Every file looked for -> sha256 of the text read (None: not there or not allowed),
        # so a checked storyboard can tell later whether its includes changed.
        self.read: dict[str, str | None] = {}

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        # An included file is read whole: check its size first.
        candidate = self.root.joinpath(*jinja2.loaders.split_template_path(template))
        self.read.setdefault(str(candidate), None)
        if candidate.is_file() and candidate.stat().st_size > MAX_INCLUDE_BYTES:
            raise _Limit(
                f"the template includes {template!r}, larger than {MAX_INCLUDE_BYTES} bytes"
            )
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(os.path.realpath(filename))
        if not real.is_relative_to(self.root):
            raise jinja2.TemplateNotFound(f"{template} (it points outside the storyboard's folder)")
        self.read[str(candidate)] = sha256_bytes(source.encode("utf-8"))
        return source, filename, uptodate


class Templater:
    """Renders the templates of one storyboard."""

    def __init__(self, root: Path, variables: Mapping[str, Any], title: str | None) -> None:
        self._loader = _FolderLoader(root)
        self.env = _Sandbox(
            loader=self._loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.variables = dict(variables)
        self.storyboard = {"title": title}
        self._steps_left = MAX_TOTAL_STEPS
        self._compile: Callable[[str], jinja2.Template] = lru_cache(maxsize=4096)(
            self.env.from_string
        )

    @property
    def included(self) -> Mapping[str, str | None]:
        """Every file a template looked for (absolute path) -> the sha256 of the text read
        from it (universal newlines), ``None`` when it was not there or not allowed."""
        return dict(self._loader.read)

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
        _state.steps = 0
        _state.limit = min(MAX_STEPS, self._steps_left)
        try:
            template = self._compile(text)
            # Variables are in scope by name (`{{ hero }}`) and under `vars.`; the three
            # reserved names win over a variable of the same name.
            return _bounded_output(template, context)
        except _Limit as exc:
            line, included = _template_line(exc.__traceback__)
            message = str(exc)
            if included:
                message += f" (in included {Path(included).name})"
            return _raise(
                message,
                lineno=line,
                hint="a prompt is at most 5000 characters; a template that needs more "
                "work than this is a mistake or an attack: simplify it",
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
        except RecursionError:
            return _raise(
                "template error: a macro or a recursive loop calls itself without end",
                hint="give the recursion a condition that stops it",
            )
        except (TypeError, ValueError, ArithmeticError) as exc:
            # Errors raised by filters and operators on user data (e.g. `{{ 1 / 0 }}`).
            return _raise(f"template error: {exc}")
        except MemoryError:
            return _raise(
                "template error: the template needs more memory than is available",
                hint="simplify the template",
            )
        finally:
            self._steps_left = max(0, self._steps_left - _state.steps)
            _state.steps = 0


def _bounded_output(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render by streaming, stopping at :data:`MAX_OUTPUT` characters."""
    pieces: list[str] = []
    size = 0
    stream = template.generate(context)
    assert isinstance(stream, Generator)
    for piece in stream:
        size += len(piece)
        if size > MAX_OUTPUT:
            # Thrown into the template so that the error carries the line that crossed.
            stream.throw(_Limit(f"the template produces more than {MAX_OUTPUT} characters"))
        pieces.append(piece)
    return "".join(pieces)


def _raise(message: str, *, lineno: int | None = None, hint: str | None = None) -> str:
    raise TemplateProblem(message, lineno=lineno, hint=hint)


def _undefined_hint(message: str, variables: Mapping[str, Any]) -> str:
    # jinja's message reads "'x' is undefined" or "'dict object' has no attribute 'x'".
    known = ", ".join(sorted(variables)) or "none"
    if "has no attribute" in message:
        return f"check the name after the dot; variables defined: {known}"
    return f"define it under vars: or pass --set NAME=VALUE (variables defined: {known})"


_SCOPE_NAMES = frozenset({"vars", "shot", "storyboard"})
_MAX_SCANNED_INCLUDES = 256


def unread_overrides(
    templater: Templater, overrides: Mapping[str, Any], defined: Iterable[str], data: Any
) -> tuple[list[str], set[str]]:
    """The ``--set`` names nothing in the storyboard reads, and the names that are read.

    A name is read when ``vars:`` defines it or a template names it (``{{ hero }}``,
    ``{{ vars.hero }}``), in the document or in a file it includes. A ``--set`` of any other
    name would be silently ignored (a typo), so the caller reports it. The templates are
    parsed only when some override is not in ``vars:``.
    """
    known = set(defined)
    if all(name in known for name in overrides):
        return [], known
    from jinja2 import meta

    env = templater.env
    ignored = _SCOPE_NAMES | set(env.globals)
    sources: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if is_template(value):
                sources.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    read: set[str] = set()
    seen: set[str] = set()
    while sources:
        try:
            tree = env.parse(sources.pop())
        except jinja2.TemplateError:
            continue  # reported where it is rendered
        read |= meta.find_undeclared_variables(tree) - ignored
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            base: Any = None
            key: Any = None
            if isinstance(node, nodes.Getattr):
                base, key = node.node, node.attr
            elif isinstance(node, nodes.Getitem):
                base, key = node.node, getattr(node.arg, "value", None)
            if isinstance(base, nodes.Name) and base.name == "vars" and isinstance(key, str):
                read.add(key)  # {{ vars.hero }}, {{ vars["hero"] }}
        for name in meta.find_referenced_templates(tree):
            if name is None or name in seen or len(seen) >= _MAX_SCANNED_INCLUDES:
                continue
            seen.add(name)
            try:
                source = env.loader.get_source(env, name)[0] if env.loader else None
            except (jinja2.TemplateNotFound, OSError, UnicodeDecodeError):
                source = None
            if source is not None and len(source) <= MAX_INCLUDE_BYTES:
                sources.append(source)
    known |= read
    return [name for name in overrides if name not in known], known
