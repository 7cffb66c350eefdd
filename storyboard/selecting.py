"""Choosing a take: write ``select: N`` into a storyboard file and change nothing else.

A choice made while looking at the review page must come back as a change a person can
read in ``git diff``: exactly one changed line (the shot's ``select:``), or exactly one added
line when the shot had no ``select:`` of its own (it came from a merge key, or was the
default 1; ``defaults:`` cannot carry ``select``: a choice is per shot). Comments, key
order, quoting, blank lines, indentation, line endings (CRLF stays CRLF), a UTF-8 BOM,
anchors, aliases and merge keys are all kept.

So the file is never re-dumped (a round-trip dump still reflows and requotes): ruamel.yaml's
round-trip composer (``YAML(typ="rt").compose``) finds where the shot's ``select`` value is,
or which sibling key of the shot to add a line after, and the text is spliced at that
position. The composer is used rather than ``.lc`` of a loaded map because nodes carry
their end as well as their start: a value must end on its key's line for a line to be
added after it, and a flow mapping (``- {id: a, takes: 2}``) gets ``, select: N`` right
after its last value.

Nothing is written unless it is safe:

* the storyboard is valid, the shot exists and is a model shot (a title card has no takes),
  and ``1 <= take <= takes`` (defaults honoured: read with
  :func:`storyboard.validate.load_storyboard`). A skipped shot may be chosen for: ``skip``
  leaves it out of the cut, and the choice holds when it comes back;
* the edited text is validated as a storyboard again, at a temporary file beside the
  original (so relative paths, includes and the default cut name resolve the same way), and
  must differ from the original only in that shot's ``select`` (a ``select: &n 2`` whose
  anchor other values alias would change them too: refused as ``cannot-edit``);
* the file on disk is still the one that was read (else ``changed-on-disk``; an editor may
  have saved it meanwhile).

The new text then replaces the file atomically (the temporary file keeps the original's
permission bits and is renamed over it); a storyboard that is a symbolic link has its target
edited, as :func:`storyboard.loader.storyboard_path` reads it. Choosing the take that is
already selected writes nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from storyboard.errors import InvalidStoryboard, UsageError
from storyboard.loader import storyboard_path
from storyboard.model import Shot, Storyboard

if TYPE_CHECKING:
    from storyboard.cache import Store
    from storyboard.plan import Plan

__all__ = ["RefusedReason", "SelectChange", "SelectRefused", "missing_after", "set_select"]

#: Why :func:`set_select` refused (:attr:`SelectRefused.reason`).
RefusedReason = Literal[
    "unknown-shot", "not-a-model-shot", "take-out-of-range", "changed-on-disk", "cannot-edit"
]

_BOM = b"\xef\xbb\xbf"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# A scalar's properties before its text: an anchor (``&n``) and/or a tag (``!!int``).
_PROPERTIES = re.compile(r"(?:[&!][^\s]*\s+)*")
# ``: *alias`` after a key (the composer gives an alias the anchored node's position).
_ALIAS_AFTER_KEY = re.compile(r"\s*:\s*(\*[^\s,\[\]{}#]+)")


@dataclass(frozen=True)
class SelectChange:
    """What :func:`set_select` did: ``shot``'s choice went from take ``old`` to ``new``.

    ``line`` is the 1-based line of the shot's ``select:`` in the file as it now is; when
    nothing was written (``old == new``) and the shot has no ``select:`` of its own, it is
    the shot's first line.
    """

    shot: str
    old: int
    new: int
    line: int

    @property
    def changed(self) -> bool:
        """Whether the file was written."""
        return self.old != self.new


class SelectRefused(UsageError):
    """The choice cannot be written; the file was not touched.

    ``reason`` says why: ``unknown-shot``, ``not-a-model-shot`` (a title card),
    ``take-out-of-range``, ``changed-on-disk`` (the file changed while it was being edited)
    or ``cannot-edit`` (the change cannot be made as one line of this file).
    """

    def __init__(
        self,
        message: str,
        *,
        shot: str,
        take: int,
        reason: RefusedReason,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.shot = shot
        self.take = take
        self.reason: RefusedReason = reason


@dataclass(frozen=True)
class _Splice:
    """Replace ``text[start:end]`` with ``new``; the change lands on 1-based ``line``."""

    start: int
    end: int
    new: str
    line: int

    def apply(self, text: str) -> str:
        return text[: self.start] + self.new + text[self.end :]


def set_select(
    path: Path, shot_id: str, take: int, *, variables: Mapping[str, Any] | None = None
) -> SelectChange:
    """Make ``take`` the selected take of shot ``shot_id``, editing one line of ``path``.

    ``variables`` are ``--set`` values, needed only for a storyboard whose templates read a
    variable it does not define.

    Raises:
        SelectRefused: the shot or take cannot be chosen, or the edit cannot be made safely
            (nothing was written).
        InvalidStoryboard: the storyboard has problems (nothing was written).
    """
    from storyboard.validate import load_storyboard

    real = storyboard_path(path)
    shown = str(path)
    try:
        before = os.stat(real)
        raw = real.read_bytes()
    except OSError as exc:
        raise SelectRefused(
            f"{shown}: cannot read the storyboard: {exc.strerror}",
            shot=shot_id,
            take=take,
            reason="cannot-edit",
        ) from None
    board = load_storyboard(path, overrides=variables)
    shot = _model_shot(board, shot_id, take, shown)
    if take == shot.select:
        line = _select_line(raw, shot.index)
        return SelectChange(shot_id, shot.select, take, line or shot.line)

    bom = _BOM if raw.startswith(_BOM) else b""
    text = raw[len(bom) :].decode("utf-8")
    splice = _splice(text, shot.index, take)
    if splice is None:
        raise _cannot_edit(shown, shot_id, take, "its place in the file could not be found")
    new = bom + splice.apply(text).encode("utf-8")

    try:
        _replace_checked(real, raw, new, before, (shown, shot_id, take), shot.index, variables)
    except OSError as exc:
        why = f"{real.parent} cannot be written ({exc.strerror or exc})"
        raise _cannot_edit(shown, shot_id, take, why) from None
    return SelectChange(shot_id, shot.select, take, splice.line)


def missing_after(plan: Plan, store: Store, shot_id: str, take: int) -> tuple[str, ...]:
    """The shots of the cut that would have no clip if ``shot_id`` used ``take`` instead:
    shots built on it (``extends``, ``continues``) continue the selected take, so each needs
    a clip made from the new one; and any shot of the cut not rendered anyway. Empty: the cut
    can be re-stitched at once (no render, no cost). Read-only: nothing is written.

    Raises:
        KeyError: ``plan`` has no shot ``shot_id``.
        ValueError: the shot has no take ``take``.
    """
    from storyboard.pipeline import known_facts
    from storyboard.plan import make_plan

    board = plan.board
    shot = board.shot(shot_id)
    if not 1 <= take <= shot.takes:
        raise ValueError(f"shot {shot_id!r} has {shot.takes} take(s), not a take {take}")
    if take == shot.select:
        return plan.missing
    shots = tuple(replace(s, select=take) if s.id == shot_id else s for s in board.shots)
    chosen = replace(board, shots=shots)
    facts = known_facts(chosen, store, plan.backend)
    after = make_plan(chosen, store, backend=plan.backend, output=plan.cut, facts=facts)
    return after.missing


# -- checks ------------------------------------------------------------------------------------


def _replace_checked(
    real: Path,
    raw: bytes,
    new: bytes,
    before: os.stat_result,
    asked: tuple[str, str, int],
    index: int,
    variables: Mapping[str, Any] | None,
) -> None:
    """Validate ``new`` beside ``real`` against ``raw`` and rename it over ``real`` when it
    differs only in the shot's ``select`` and ``real`` still holds ``raw``."""
    shown, shot_id, take = asked
    fd, name = tempfile.mkstemp(prefix=f".{real.name}.select-", suffix=".tmp", dir=real.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        old_board = _reload(tmp, variables, shown, shot_id, take)
        _write(tmp, new)
        new_board = _reload(tmp, variables, shown, shot_id, take)
        if _without_select(new_board, index) != _without_select(old_board, index) or (
            new_board.shots[index].select != take
        ):
            raise _cannot_edit(shown, shot_id, take, "the edit would change more than `select`")
        tmp.chmod(before.st_mode & 0o7777)
        _unchanged_since(real, before, raw, shown, shot_id, take)
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)


def _model_shot(board: Storyboard, shot_id: str, take: int, shown: str) -> Shot:
    try:
        shot = board.shot(shot_id)
    except KeyError:
        from storyboard.suggest import did_you_mean

        hint = did_you_mean(shot_id, [s.id for s in board.shots])
        raise SelectRefused(
            f"{shown}: there is no shot {shot_id!r}",
            shot=shot_id,
            take=take,
            reason="unknown-shot",
            hint=hint or f"run `storyboard plan {shown}` to list the shots",
        ) from None
    if shot.card is not None or shot.spec is None:
        raise SelectRefused(
            f"{shown}: shot {shot_id!r} is a title card: it has no takes to choose from",
            shot=shot_id,
            take=take,
            reason="not-a-model-shot",
        )
    if isinstance(take, bool) or not isinstance(take, int) or not 1 <= take <= shot.takes:
        raise SelectRefused(
            f"{shown}: shot {shot_id!r} has {shot.takes} take(s); take {take!r} does not exist",
            shot=shot_id,
            take=take,
            reason="take-out-of-range",
            hint=f"choose a take from 1 to {shot.takes}, or raise `takes:` and run "
            f"`storyboard render {shown}`",
        )
    return shot


def _cannot_edit(shown: str, shot_id: str, take: int, why: str) -> SelectRefused:
    return SelectRefused(
        f"{shown}: cannot write `select: {take}` on shot {shot_id!r}: {why}; nothing was written",
        shot=shot_id,
        take=take,
        reason="cannot-edit",
        hint=f"write `select: {take}` on shot {shot_id!r} by hand",
    )


def _reload(
    tmp: Path, variables: Mapping[str, Any] | None, shown: str, shot_id: str, take: int
) -> Storyboard:
    from storyboard.validate import load_storyboard

    try:
        return load_storyboard(tmp, overrides=variables)
    except InvalidStoryboard as exc:
        first = exc.problems[0].message if exc.problems else str(exc)
        raise _cannot_edit(
            shown, shot_id, take, f"the edited file would not load ({first})"
        ) from None


def _without_select(board: Storyboard, index: int) -> Storyboard:
    """``board`` with the shot's choice and every shot's line number blanked: what must not
    change (lines after an added ``select:`` move down by one)."""
    shots = tuple(
        replace(s, line=0, select=0 if i == index else s.select) for i, s in enumerate(board.shots)
    )
    return replace(board, shots=shots)


def _unchanged_since(
    real: Path, before: os.stat_result, raw: bytes, shown: str, shot_id: str, take: int
) -> None:
    try:
        now = os.stat(real)
        same = (now.st_mtime_ns, now.st_size, now.st_ino) == (
            before.st_mtime_ns,
            before.st_size,
            before.st_ino,
        ) and real.read_bytes() == raw
    except OSError:
        same = False
    if not same:
        raise SelectRefused(
            f"{shown} changed on disk while `select: {take}` was being written on shot "
            f"{shot_id!r}; nothing was written",
            shot=shot_id,
            take=take,
            reason="changed-on-disk",
            hint="save the file in your editor, then choose the take again",
        )


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# -- where the choice goes ---------------------------------------------------------------------


def _shot_node(text: str, index: int) -> Any:
    """The composed node of ``shots[index]`` (``None`` when the document has no such node)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    try:
        root = YAML(typ="rt").compose(text)
    except YAMLError:
        return None
    if not isinstance(root, MappingNode):
        return None
    for key, value in root.value:
        if key.value == "shots" and isinstance(value, SequenceNode):
            if 0 <= index < len(value.value) and isinstance(value.value[index], MappingNode):
                return value.value[index]
            return None
    return None


def _own_pairs(node: Any) -> list[tuple[Any, Any, bool]]:
    """The shot's own ``(key, value, local)`` pairs; ``local``: the value is written right
    there (an alias's node is the anchored value, written elsewhere)."""
    pairs = []
    for key, value in node.value:
        local = value.start_mark.index >= key.end_mark.index
        pairs.append((key, value, local))
    return pairs


def _select_line(raw: bytes, index: int) -> int | None:
    """The 1-based line of the shot's own ``select:`` key, if it has one."""
    bom = _BOM if raw.startswith(_BOM) else b""
    node = _shot_node(raw[len(bom) :].decode("utf-8", "replace"), index)
    if node is None:
        return None
    for key, _value, _local in _own_pairs(node):
        if key.tag != _MERGE_TAG and key.value == "select":
            return int(key.start_mark.line) + 1
    return None


def _splice(text: str, index: int, take: int) -> _Splice | None:
    """Where ``select: take`` goes in ``text`` for ``shots[index]`` (``None``: nowhere safe)."""
    from ruamel.yaml.nodes import ScalarNode

    node = _shot_node(text, index)
    if node is None:
        return None
    pairs = [(k, v, local) for k, v, local in _own_pairs(node) if k.tag != _MERGE_TAG]
    for key, value, local in pairs:
        if key.value != "select":
            continue
        if not local:  # `select: *alias`: the alias token is replaced by the number
            found = _ALIAS_AFTER_KEY.match(text, key.end_mark.index)
            if found is None:
                return None
            return _Splice(found.start(1), found.end(1), str(take), _line_of(text, found.start(1)))
        if not isinstance(value, ScalarNode):
            return None
        start, end = value.start_mark.index, value.end_mark.index
        props = _PROPERTIES.match(text, start, end)
        if props is not None:
            start = props.end()  # an anchor or tag stays; only the number changes
        return _Splice(start, end, str(take), int(value.start_mark.line) + 1)
    if node.flow_style:
        return _flow_insert(node, take)
    return _block_insert(text, node, take)


def _flow_insert(node: Any, take: int) -> _Splice | None:
    """``, select: N`` right after the last value written in ``{...}``."""
    local = [(k, v) for k, v, here in _own_pairs(node) if here]
    if not local:
        return None
    _key, value = local[-1]
    at = value.end_mark.index
    return _Splice(at, at, f", select: {take}", int(value.end_mark.line) + 1)


def _block_insert(text: str, node: Any, take: int) -> _Splice | None:
    """A new ``select: N`` line after ``takes:`` (else after the last key whose value ends on
    its own line), at the keys' indentation, with the file's own line ending."""
    candidates = [
        (k, v)
        for k, v, here in _own_pairs(node)
        if here
        and k.tag != _MERGE_TAG
        and k.start_mark.line == v.start_mark.line == v.end_mark.line
    ]
    if not candidates:
        return None
    takes = [(k, v) for k, v in candidates if k.value == "takes"]
    key, value = (takes or candidates)[-1]
    indent = " " * int(key.start_mark.column)
    line_start = text.rfind("\n", 0, key.start_mark.index) + 1
    line_start = max(line_start, text.rfind("\r", 0, key.start_mark.index) + 1)
    eol = re.compile(r"\r\n|\n|\r").search(text, value.end_mark.index)
    if eol is not None:
        new = f"{indent}select: {take}{eol.group()}"
        return _Splice(eol.end(), eol.end(), new, int(key.start_mark.line) + 2)
    # The key is on the file's last line, which has no line break: add the line before the
    # key when nothing but indentation precedes it, so that line stays as it is.
    newline = _dominant_eol(text)
    if text[line_start : key.start_mark.index].strip() == "":
        new = f"{indent}select: {take}{newline}"
        return _Splice(line_start, line_start, new, int(key.start_mark.line) + 1)
    end = len(text)
    return _Splice(end, end, f"{newline}{indent}select: {take}", int(key.start_mark.line) + 2)


def _dominant_eol(text: str) -> str:
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    best = max((crlf, "\r\n"), (lf, "\n"), (cr, "\r"))
    return best[1] if best[0] else "\n"


def _line_of(text: str, index: int) -> int:
    """1-based line of ``text[index]`` (any of ``\\r\\n``, ``\\n``, ``\\r`` ends a line)."""
    head = text[:index]
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1
