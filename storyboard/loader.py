"""Stage 1, load: read a storyboard's YAML safely and remember where every value came from.

PyYAML silently keeps the last of two equal mapping keys; a storyboard author loses work
that way, so duplicates are errors here. Every value's position (and every mapping key's) is
kept by JSON path so later stages can report ``FILE:LINE:COL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from storyboard.errors import InvalidStoryboard, Problem

__all__ = ["Document", "JsonPath", "Mark", "json_path", "load", "load_text"]

JsonPath = tuple[str | int, ...]

# libyaml's parser is an order of magnitude faster than the pure-Python one; positions and
# node styles are the same.
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Mark:
    """A 1-based position in the source file, and the YAML style of the scalar there."""

    line: int
    col: int
    style: str | None = None  # '|' or '>' for block scalars, quotes for quoted ones


@dataclass
class Document:
    """A parsed storyboard file: plain data plus the source position of every node."""

    file: str  # the name to show in messages (as the user wrote it)
    path: Path  # absolute path
    data: Any
    values: dict[JsonPath, Mark] = field(default_factory=dict)
    keys: dict[JsonPath, Mark] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def mark(self, path: JsonPath, *, key: bool = False) -> Mark:
        """Position of the value (or with ``key=True`` its key) at ``path``.

        Falls back to the nearest ancestor that exists, so a problem about a missing
        field points at the mapping that lacks it.
        """
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        for end in range(len(path) - 1, -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return Mark(1, 1)

    def _indent(self, line: int) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return len(text) - len(text.lstrip()) + 1

    def problem(
        self,
        path: JsonPath,
        message: str,
        *,
        hint: str | None = None,
        key: bool = False,
        shot: str | None = None,
        line_offset: int = 0,
    ) -> Problem:
        """A :class:`Problem` located at ``path`` in this document."""
        mark = self.mark(path, key=key)
        return Problem(
            file=self.file,
            line=mark.line + line_offset,
            col=self._indent(mark.line + line_offset) if line_offset else mark.col,
            path=json_path(path),
            message=message,
            hint=hint,
            shot=shot,
        )


def json_path(path: JsonPath) -> str:
    """Render a path as JSONPath, e.g. ``$.shots[2].duration``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Builder:
    """Turn a composed node graph into plain Python data while recording positions."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.constructor = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        # An alias may point at one of its own ancestors (`a: &x [*x]`): refuse the loop.
        if id(node) in self._active:
            self._add(node, path, "recursive alias: this value contains itself", "remove the alias")
            return None
        self._active.add(id(node))
        try:
            return self._build(node, path)
        finally:
            self._active.discard(id(node))

    def _build(self, node: yaml.Node, path: JsonPath) -> Any:
        mark = node.start_mark
        style = node.style if isinstance(node, yaml.ScalarNode) else None
        self.doc.values[path] = Mark(mark.line + 1, mark.column + 1, style)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            # Our own builder ignores tags on collections; refuse them rather than pretend.
            self._add(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: JsonPath) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        if node.tag not in self.constructor.yaml_constructors:
            self._add(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag")
            return None
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, IndexError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            self._add(
                node,
                path,
                f"{node.value!r} is not a valid !!{kind}",
                "remove the tag or fix the value",
            )
            return None

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._add(key_node, path, "mapping keys must be plain text")
                continue
            # Keys are taken as written: YAML 1.1 would turn `on:` or `yes:` into booleans.
            name = str(key_node.value)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self._add(
                    key_node,
                    (*path, name),
                    f"duplicate key {name!r} (first defined on line {first})",
                    hint="YAML keeps only one of them: merge the two or delete one",
                )
            else:
                seen[name] = key_node
        # Resolve `<<: *anchor` merges the way PyYAML does; explicit keys win over merged ones.
        self.constructor.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            name = str(key_node.value)
            child = (*path, name)
            km = key_node.start_mark
            self.doc.keys[child] = Mark(km.line + 1, km.column + 1)
            out[name] = self.build(value_node, child)
        return out

    def _add(self, node: yaml.Node, path: JsonPath, message: str, hint: str | None = None) -> None:
        mark = node.start_mark
        self.problems.append(
            Problem(self.doc.file, mark.line + 1, mark.column + 1, json_path(path), message, hint)
        )


def _yaml_problem(file: str, exc: yaml.YAMLError, text: str = "") -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}"
    if context:
        message += f" ({context}"
        cmark = getattr(exc, "context_mark", None)
        if cmark is not None and mark is not None and cmark.line != mark.line:
            message += f" on line {cmark.line + 1}"
        message += ")"
    hint = None
    lines = text.splitlines()
    bad_line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    if "tab" in problem.lower() or "\t" in bad_line[: mark.column + 1 if mark else 0]:
        hint = "YAML indents with spaces only; replace the tab characters"
    elif "mapping values are not allowed" in problem:
        hint = "quote a value that contains ': ', or fix the indentation of this line"
    if mark is None:
        return Problem(file, 0, 0, "$", message, hint)
    return Problem(file, mark.line + 1, mark.column + 1, "$", message, hint)


def load_text(text: str, *, file: str, path: Path) -> Document:
    """Parse storyboard YAML text.

    Raises:
        InvalidStoryboard: the text is not well-formed YAML, has duplicate keys or unsafe
            tags, or is empty.
    """
    doc = Document(file=file, path=path, data=None, lines=text.splitlines())
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InvalidStoryboard([_yaml_problem(file, exc, text)]) from None
    if node is None:
        raise InvalidStoryboard(
            [Problem(file, 0, 0, "$", "the file is empty", "start with `storyboard: 1`")]
        )
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, ())
    except yaml.YAMLError as exc:  # e.g. an unsafe `!!python/object` tag
        raise InvalidStoryboard([*builder.problems, _yaml_problem(file, exc, text)]) from None
    if builder.problems:
        raise InvalidStoryboard(builder.problems)
    return doc


def load(file: str | Path) -> Document:
    """Read and parse a storyboard file.

    Raises:
        InvalidStoryboard: the file cannot be read or parsed.
    """
    shown = str(file)
    path = Path(file).absolute()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidStoryboard([Problem(shown, 0, 0, "$", "no such file")]) from None
    except IsADirectoryError:
        hint = f"did you mean {shown.rstrip('/')}/storyboard.yaml?"
        raise InvalidStoryboard([Problem(shown, 0, 0, "$", "is a folder", hint)]) from None
    except OSError as exc:
        raise InvalidStoryboard(
            [Problem(shown, 0, 0, "$", f"cannot read: {exc.strerror}")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidStoryboard(
            [Problem(shown, line, 1, "$", "the file is not UTF-8 text", "save it as UTF-8")]
        ) from None
    return load_text(text, file=shown, path=path)


def walk(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Yield ``(path, value)`` for every node of plain data, depth first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk(value, (*path, i))
