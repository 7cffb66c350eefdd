"""Stage 1, load: read a storyboard's YAML safely and remember where every value came from.

PyYAML silently keeps the last of two equal mapping keys; a storyboard author loses work
that way, so duplicates are errors here. Every value's position (and every mapping key's) is
kept by JSON path so later stages can report ``FILE:LINE:COL``.

A storyboard may come from someone else's pull request, so reading one is bounded: the file
is at most :data:`MAX_FILE_BYTES` (checked before it is read), and the document is composed
here from libyaml's event stream (not by libyaml's recursive composer) with a budget: at most
:data:`MAX_NODES` values once every alias is expanded (an alias counts as the whole value it
names, so a 400-byte "billion laughs" stops at the alias that crosses the budget), at most
:data:`MAX_TEXT` characters of scalars after expansion, and at most :data:`MAX_DEPTH` levels
of nesting. Ordinary sharing (``defaults: &d {...}`` merged into hundreds of shots) is far
below these limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from storyboard.errors import InvalidStoryboard, Problem
from storyboard.hashing import sha256_bytes

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_TEXT",
    "Document",
    "JsonPath",
    "Mark",
    "json_path",
    "load",
    "load_text",
    "storyboard_path",
]

JsonPath = tuple[str | int, ...]

# libyaml's parser is an order of magnitude faster than the pure-Python one; positions and
# node styles are the same.
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest storyboard file read; a real one is a few KB."""
MAX_NODES = 100_000
"""Most values (mappings, sequences, scalars, keys) in a document, aliases expanded."""
MAX_TEXT = 2 * MAX_FILE_BYTES
"""Most characters of scalars in a document, aliases expanded."""
MAX_DEPTH = 64
"""Most levels of nested mappings and sequences; a storyboard needs fewer than ten."""

_ALIAS_HINT = (
    "anchors and aliases are for sharing a few settings; write the values out instead "
    "of aliasing aliases"
)


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
    path: Path  # real absolute path (see storyboard_path): its parent is the storyboard's folder
    data: Any
    values: dict[JsonPath, Mark] = field(default_factory=dict)
    keys: dict[JsonPath, Mark] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    digest: str | None = None  # sha256 of the file's bytes (load only, not load_text)

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
            where=path,
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
            Problem(
                self.doc.file,
                mark.line + 1,
                mark.column + 1,
                json_path(path),
                message,
                hint,
                where=path,
            )
        )


class _Budget(Exception):
    """The document went past a limit while composing; carries the problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _compose(text: str, file: str) -> yaml.Node | None:
    """Compose the single document of ``text`` like ``yaml.compose``, within the budgets.

    libyaml's own composer recurses in C (a deeply nested ``[[[...]]]`` crashes the
    interpreter) and expands nothing itself, but everything after it walks aliases as
    copies; here every alias is charged the full size of the value it names, so the
    document's expanded size is known before anything is built.

    Raises:
        yaml.YAMLError: malformed YAML (as ``yaml.compose`` would raise it).
        _Budget: a limit was crossed; the problem is at the event that crossed it.
    """
    loader = _Loader(text)
    try:
        return _Composer(loader, file).run()
    finally:
        loader.dispose()


class _Composer:
    """One pass over the events; nodes and marks are the same as PyYAML's composer's."""

    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.nodes = 0  # values so far, aliases expanded
        self.chars = 0  # scalar characters so far, aliases expanded
        # anchor -> (node, nodes and chars it expands to; None while it is being composed)
        self.anchors: dict[str, tuple[yaml.Node, tuple[int, int] | None]] = {}

    def _problem(self, mark: Any, message: str, hint: str) -> _Budget:
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return _Budget(Problem(self.file, line, col, "$", message, hint))

    def _charge(self, nodes: int, chars: int, mark: Any, alias: bool) -> None:
        self.nodes += nodes
        self.chars += chars
        what = "this alias expands the document" if alias else "the document has"
        if self.nodes > MAX_NODES:
            raise self._problem(
                mark,
                f"{what} to more than {MAX_NODES} values",
                _ALIAS_HINT if alias else "a storyboard has a few thousand values at most",
            )
        if self.chars > MAX_TEXT:
            raise self._problem(
                mark,
                f"{what} to more than {MAX_TEXT} characters of text",
                _ALIAS_HINT if alias else "a storyboard has a few KB of text",
            )

    def run(self) -> yaml.Node | None:
        get = self.loader.get_event
        get()  # StreamStartEvent
        start = get()
        if isinstance(start, yaml.StreamEndEvent):
            return None
        root = self._document()
        end = get()
        if not isinstance(end, yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                start.start_mark,
                "but found another document",
                end.start_mark,
            )
        return root

    def _anchor(self, event: Any, node: yaml.Node) -> None:
        anchor = event.anchor
        if anchor is None:
            return
        if anchor in self.anchors:
            raise yaml.composer.ComposerError(
                "found duplicate anchor; first occurrence",
                self.anchors[anchor][0].start_mark,
                "second occurrence",
                event.start_mark,
            )
        self.anchors[anchor] = (node, None)

    def _document(self) -> yaml.Node:
        get = self.loader.get_event
        resolve = self.loader.resolve
        # Open collections: [node, pending mapping key, anchor, nodes and chars at its start].
        stack: list[list[Any]] = []
        root: yaml.Node | None = None
        while True:
            event = get()
            kind = type(event)
            node: yaml.Node
            if kind is yaml.ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style
                )
                self._charge(1, len(event.value), event.start_mark, alias=False)
                if event.anchor is not None:
                    self._anchor(event, node)
                    self.anchors[event.anchor] = (node, (1, len(event.value)))
            elif kind is yaml.AliasEvent:
                if event.anchor not in self.anchors:
                    raise yaml.composer.ComposerError(
                        None, None, "found undefined alias", event.start_mark
                    )
                node, size = self.anchors[event.anchor]
                # An alias inside the value it names (`&x [*x]`) is refused when built.
                nodes, chars = size if size is not None else (1, 0)
                self._charge(nodes, chars, event.start_mark, alias=True)
            elif kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                node_class = (
                    yaml.SequenceNode if kind is yaml.SequenceStartEvent else yaml.MappingNode
                )
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(node_class, None, event.implicit)
                node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
                if len(stack) >= MAX_DEPTH:
                    raise self._problem(
                        event.start_mark,
                        f"nested more than {MAX_DEPTH} levels deep",
                        "a storyboard needs only a few levels; look for unclosed brackets",
                    )
                self._charge(1, 0, event.start_mark, alias=False)
                self._anchor(event, node)
                stack.append([node, None, event.anchor, self.nodes - 1, self.chars])
                continue
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                node, _, anchor, nodes_at, chars_at = stack.pop()
                node.end_mark = event.end_mark
                if anchor is not None:
                    self.anchors[anchor] = (node, (self.nodes - nodes_at, self.chars - chars_at))
            else:  # DocumentEndEvent: the root is complete
                assert root is not None
                return root
            if not stack:
                root = node
                continue
            top = stack[-1]
            parent = top[0]
            if isinstance(parent, yaml.SequenceNode):
                parent.value.append(node)
            elif top[1] is None:
                top[1] = node
            else:
                parent.value.append((top[1], node))
                top[1] = None


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
    if len(text) > MAX_FILE_BYTES:
        raise InvalidStoryboard([_too_large(file, len(text), "characters")])
    try:
        return _load_text(text, file=file, path=path)
    except (MemoryError, RecursionError) as exc:
        what = "memory" if isinstance(exc, MemoryError) else "nesting depth"
        raise InvalidStoryboard(
            [
                Problem(
                    file,
                    1,
                    1,
                    "$",
                    f"reading this file needs more {what} than is available",
                    "a storyboard is a few KB of plain settings; look for deep nesting or "
                    "aliases of aliases",
                )
            ]
        ) from None


def _too_large(file: str, size: int, unit: str) -> Problem:
    return Problem(
        file,
        0,
        0,
        "$",
        f"the file is {size} {unit}; a storyboard may be at most {MAX_FILE_BYTES} bytes",
        "is this the right file? a storyboard is a few KB of settings; keep long text in "
        "included template files",
    )


def _load_text(text: str, *, file: str, path: Path) -> Document:
    doc = Document(file=file, path=path, data=None, lines=text.splitlines())
    try:
        node = _compose(text, file)
    except yaml.YAMLError as exc:
        raise InvalidStoryboard([_yaml_problem(file, exc, text)]) from None
    except _Budget as exc:
        raise InvalidStoryboard([exc.problem]) from None
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


def storyboard_path(file: str | Path) -> Path:
    """The real absolute path of the storyboard file the user named, however it is spelled.

    ``Path.resolve()``: the working folder, ``.`` and ``..`` and every symbolic link on the
    way are followed the way the system follows them when it opens the file, so
    ``../repo/examples/dawn/storyboard.yaml``, ``examples/minimal/../dawn/storyboard.yaml``
    and a path through a linked folder all name one storyboard with one folder (its inputs,
    lock, store and cut). A link to the storyboard file itself is followed too: the file
    lives in its target's folder, where its relative paths were written (as Python does for
    a linked script). Messages keep naming the file as typed (:attr:`Document.file`).
    """
    try:
        return Path(file).resolve()
    except (OSError, RuntimeError):  # a link loop: opening the file reports it
        return Path(file).absolute()


def load(file: str | Path) -> Document:
    """Read and parse a storyboard file.

    Raises:
        InvalidStoryboard: the file cannot be read or parsed.
    """
    shown = str(file)
    path = storyboard_path(file)
    try:
        # The size is checked before reading, and the read itself stops past the cap (a
        # device or a file that grows reports a size that is no bound).
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidStoryboard([_too_large(shown, size, "bytes")])
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise InvalidStoryboard([_too_large(shown, len(raw), "bytes or more")])
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
    doc = load_text(text, file=shown, path=path)
    doc.digest = sha256_bytes(raw)
    return doc


def walk(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Yield ``(path, value)`` for every node of plain data, depth first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk(value, (*path, i))
