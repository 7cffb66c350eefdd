"""Choosing a take writes one line of the storyboard and nothing else (issue 11 item 2).

Every test edits a real file on disk and reads it back with the real loader; the diff is
checked line by line with the line endings (a CRLF file must stay CRLF), and with git where
the issue says "git diff shows exactly the changed line".
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.errors import InvalidStoryboard
from storyboard.model import Storyboard
from storyboard.selecting import SelectChange, SelectRefused, set_select
from storyboard.validate import load_storyboard

# -- helpers -----------------------------------------------------------------------------------


def _lines(data: bytes) -> list[bytes]:
    """Lines with their endings (``\\r\\n``, ``\\n`` or ``\\r``), so an ending change shows."""
    return data.splitlines(keepends=True)


def one_line_changed(before: bytes, after: bytes) -> tuple[str, bytes | None, bytes, int]:
    """``("changed", old, new, line)`` or ``("added", None, new, line)`` (``line``: 1-based,
    in ``after``); fails on anything else."""
    a, b = _lines(before), _lines(after)
    edits = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()]
    changed = [op for op in edits if op[0] != "equal"]
    assert len(changed) == 1, list(difflib.unified_diff(a, b))
    tag, i1, i2, j1, j2 = changed[0]
    if tag == "replace":
        assert (i2 - i1, j2 - j1) == (1, 1), list(difflib.unified_diff(a, b))
        return "changed", a[i1], b[j1], j1 + 1
    assert tag == "insert" and j2 - j1 == 1, list(difflib.unified_diff(a, b))
    return "added", None, b[j1], j1 + 1


def without_select(board: Storyboard, shot_id: str) -> Storyboard:
    shots = tuple(
        replace(s, line=0, select=0 if s.id == shot_id else s.select) for s in board.shots
    )
    return replace(board, shots=shots)


def choose(file: Path, shot: str, take: int) -> tuple[SelectChange, bytes, bytes]:
    """Set the take and check the file differs in one line and the board only in select."""
    before = file.read_bytes()
    old = load_storyboard(file)
    change = set_select(file, shot, take)
    after = file.read_bytes()
    new = load_storyboard(file)
    assert new.shot(shot).select == take
    assert without_select(new, shot) == without_select(old, shot)
    _kind, _, line, number = one_line_changed(before, after)
    assert line.strip().startswith(b"select:") or b", select: " in line, line
    assert number == change.line
    assert change == SelectChange(shot, old.shot(shot).select, take, change.line)
    return change, before, after


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def board_text(shots: str, *, head: str = "") -> str:
    return (
        "storyboard: 1\n"
        f"{head}"
        "defaults:\n"
        "  model: skyreels-v4-fast\n"
        "  resolution: 480p\n"
        "  duration: 3\n"
        "shots:\n"
        f"{shots}"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "board"
    root.mkdir()
    return root


def write(folder: Path, text: str | bytes) -> Path:
    file = folder / "storyboard.yaml"
    file.write_bytes(text.encode() if isinstance(text, str) else text)
    return file


# -- the examples ------------------------------------------------------------------------------


def _example_choices() -> list[tuple[str, str, int]]:
    out = []
    for file in sorted(EXAMPLES.glob("*/storyboard.yaml")):
        board = load_storyboard(file)
        for shot in board.shots:
            if shot.takes > 1:
                out.extend((file.parent.name, shot.id, t) for t in range(1, shot.takes + 1))
    return out


EXAMPLE_CHOICES = _example_choices()


def test_the_examples_have_shots_with_takes_to_choose_from() -> None:
    assert ("dawn", "hover", 3) in EXAMPLE_CHOICES


@pytest.mark.parametrize(("example", "shot", "take"), EXAMPLE_CHOICES)
def test_choosing_in_an_example_changes_its_select_line_in_git(
    tmp_path: Path, example: str, shot: str, take: int
) -> None:
    root = tmp_path / example
    shutil.copytree(EXAMPLES / example, root, ignore=shutil.ignore_patterns("renders"))
    git(root, "init", "-q", ".")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "board")
    file = root / "storyboard.yaml"
    old = load_storyboard(file).shot(shot).select
    before = file.read_bytes()
    change = set_select(file, shot, take)
    if take == old:
        assert file.read_bytes() == before
        assert git(root, "status", "--porcelain") == ""
        assert not change.changed
        return
    own_select = re.search(rf"- id: {shot}\n(?:    .*\n)*?    select:", before.decode()) is not None
    stat = git(root, "diff", "--numstat").split()
    assert stat[:3] == ["1", "1" if own_select else "0", "storyboard.yaml"]
    diff = git(root, "diff", "-U0")
    removed = [x for x in diff.splitlines() if x.startswith("-") and not x.startswith("---")]
    added = [x for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")]
    assert added[0].split("#")[0].rstrip() == f"+    select: {take}"
    if own_select:
        assert removed[0].split("#")[0].rstrip() == f"-    select: {old}"
        # The trailing comment is kept, spaces and all.
        assert removed[0].partition("#")[2] == added[0].partition("#")[2] != ""
    else:  # the new line goes right after the shot's takes:
        lines = file.read_text().splitlines()
        assert lines[change.line - 2].startswith("    takes: ")
    hunk = re.search(r"^@@ -\d+(?:,\d+)? \+(\d+)", diff, re.MULTILINE)
    assert hunk is not None and change.changed and change.line == int(hunk.group(1))
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


# -- formatting kept -------------------------------------------------------------------------


def test_comments_quotes_and_blank_lines_are_kept(folder: Path) -> None:
    file = write(
        folder,
        "# the board\n"
        + board_text(
            "  # first\n"
            "  - id: 'a'   # quoted id\n"
            '    prompt: "a kite, over: a field"\n'
            "    takes: 3\n"
            "\n"
            "    # choose\n"
            "    select: 1    # the first one\n"
            "\n"
            "  - id: b\n"
            "    prompt: >-\n"
            "      folded\n"
            "      text\n",
            head="title: 'Quoted: title'  # c\n",
        ),
    )
    _, _, after = choose(file, "a", 3)
    assert b"    select: 3    # the first one\n" in after


def test_a_shot_without_select_gets_its_own_line_after_takes(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - id: a\n    takes: 2\n    prompt: one\n  - id: b\n    prompt: two\n    takes: 2\n"
        ),
    )
    change, before, after = choose(file, "a", 2)
    assert _lines(after)[change.line - 2 : change.line] == [b"    takes: 2\n", b"    select: 2\n"]
    assert one_line_changed(before, after)[0] == "added"
    assert load_storyboard(file).shot("b").select == 1


def test_defaults_cannot_carry_select(folder: Path) -> None:
    """The choice is per shot: `defaults:` takes `takes` but not `select` (the schema says so),
    so a shot's choice is its own `select:` line, or a merge key's, or 1."""
    file = write(
        folder,
        board_text("  - id: a\n    prompt: one\n").replace("  duration", "  select: 2\n  duration"),
    )
    with pytest.raises(InvalidStoryboard, match="unknown key 'select'"):
        load_storyboard(file)


def test_takes_from_defaults_and_no_select_anywhere(folder: Path) -> None:
    text = board_text("  - id: a\n    prompt: one\n    transition: cut\n").replace(
        "  duration: 3\n", "  duration: 3\n  takes: 3\n"
    )
    file = write(folder, text)
    change, _, after = choose(file, "a", 2)
    # After the last key whose value is on its own line.
    assert _lines(after)[change.line - 1] == b"    select: 2\n"
    assert _lines(after)[-1] == b"    select: 2\n"


def test_a_value_spanning_lines_is_not_split(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - id: a\n"
            "    prompt: |\n"
            "      line one\n"
            "      line two\n"
            "    takes: 2\n"
            "    trim:\n"
            "      start: 0.5\n"
            "  - id: b\n"
            "    takes: 2\n"
            "    prompt: |\n"
            "      after takes\n"
        ),
    )
    choose(file, "a", 2)
    change, _, after = choose(file, "b", 2)
    assert _lines(after)[change.line - 2 : change.line + 1] == [
        b"    takes: 2\n",
        b"    select: 2\n",
        b"    prompt: |\n",
    ]


def test_crlf_stays_crlf(folder: Path) -> None:
    text = board_text(
        "  - id: a\n    prompt: one\n    takes: 2\n  - id: b\n    prompt: two\n"
        "    takes: 3\n    select: 3  # keep\n"
    ).replace("\n", "\r\n")
    file = write(folder, text)
    _, _, after = choose(file, "a", 2)
    _, _, after = choose(file, "b", 1)
    assert after.count(b"\r\n") == after.count(b"\n") == text.count("\r\n") + 1
    assert b"    select: 2\r\n" in after and b"    select: 1  # keep\r\n" in after


def test_a_bom_is_kept(folder: Path) -> None:
    text = b"\xef\xbb\xbf" + board_text("  - id: a\n    prompt: one\n    takes: 2\n").encode()
    file = write(folder, text)
    _, _, after = choose(file, "a", 2)
    assert after.startswith(b"\xef\xbb\xbfstoryboard: 1\n")


def test_merge_keys_and_anchors_are_kept(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - &base\n"
            "    id: a\n"
            "    prompt: shared\n"
            "    takes: 3\n"
            "    select: 3\n"
            "  - <<: *base\n"
            "    id: b\n"
            "  - <<: *base\n"
            "    id: c\n"
            "    select: 1\n"
        ),
    )
    # b's select comes from the merge: b gets its own line, a and c keep theirs.
    change, _, after = choose(file, "b", 2)
    assert _lines(after)[change.line - 1] == b"    select: 2\n"
    board = load_storyboard(file)
    assert [s.select for s in board.shots] == [3, 2, 1]
    # Changing a's own select changes only a (b and c have their own now).
    choose(file, "a", 1)
    choose(file, "c", 3)
    assert b"  - <<: *base\n" in file.read_bytes()


def test_a_merge_that_would_carry_the_change_to_other_shots_is_refused(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - id: a\n    prompt: one\n    takes: 2\n    select: &pick 1\n"
            "  - id: b\n    prompt: two\n    takes: 2\n    select: *pick\n"
        ),
    )
    before = file.read_bytes()
    with pytest.raises(SelectRefused) as caught:
        set_select(file, "a", 2)
    assert caught.value.reason == "cannot-edit"
    assert "select" in (caught.value.hint() or "")
    assert file.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["storyboard.yaml"]
    # The alias on b is replaced by a number: b changes alone.
    choose(file, "b", 2)
    assert b"    select: &pick 1\n" in file.read_bytes()


def test_flow_mappings_get_the_key_before_the_closing_brace(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - {id: a, prompt: one, takes: 2}\n"
            "  - {id: b, prompt: two, takes: 3,}\n"
            "  - {id: c,\n"
            "     prompt: three, takes: 2  # why\n"
            "    }\n"
            "  - {id: d, prompt: four, takes: 2, select: 1}\n"
        ),
    )
    _, _, after = choose(file, "a", 2)
    assert b"  - {id: a, prompt: one, takes: 2, select: 2}\n" in after
    _, _, after = choose(file, "b", 3)
    assert b"  - {id: b, prompt: two, takes: 3, select: 3,}\n" in after
    _, _, after = choose(file, "c", 2)
    assert b"     prompt: three, takes: 2, select: 2  # why\n" in after
    _, _, after = choose(file, "d", 2)
    assert b"  - {id: d, prompt: four, takes: 2, select: 2}\n" in after


def test_the_last_line_without_a_line_break(folder: Path) -> None:
    file = write(folder, board_text("  - id: a\n    prompt: one\n    takes: 2"))
    change, _, after = choose(file, "a", 2)
    assert after.endswith(b"    select: 2\n    takes: 2")
    assert change.line == len(_lines(after)) - 1


def test_indentation_of_the_shot_is_followed(folder: Path) -> None:
    file = write(
        folder,
        "storyboard: 1\nshots:\n-   id: a\n    model: skyreels-v4-fast\n    prompt: x\n"
        "    takes: 2\n-      id: b\n       model: skyreels-v4-fast\n       prompt: y\n"
        "       takes: 2\n",
    )
    choose(file, "a", 2)
    _, _, after = choose(file, "b", 2)
    assert b"       takes: 2\n       select: 2\n" in after


# -- what is refused, and what is not written --------------------------------------------------


@pytest.mark.parametrize(
    ("shot", "take", "reason"),
    [
        ("nope", 1, "unknown-shot"),
        ("card", 1, "not-a-model-shot"),
        ("a", 0, "take-out-of-range"),
        ("a", 3, "take-out-of-range"),
        ("a", -1, "take-out-of-range"),
        ("a", True, "take-out-of-range"),
    ],
)
def test_refusals_write_nothing(folder: Path, shot: str, take: int, reason: str) -> None:
    file = write(
        folder,
        board_text("  - id: a\n    prompt: one\n    takes: 2\n  - id: card\n    card: {text: x}\n"),
    )
    before, mtime = file.read_bytes(), file.stat().st_mtime_ns
    with pytest.raises(SelectRefused) as caught:
        set_select(file, shot, take)
    error = caught.value
    assert (error.shot, error.take, error.reason, error.exit_code) == (shot, take, reason, 2)
    assert shot in str(error)
    assert file.read_bytes() == before and file.stat().st_mtime_ns == mtime
    assert [p.name for p in folder.iterdir()] == ["storyboard.yaml"]


def test_an_unknown_shot_hint_names_a_near_one(folder: Path) -> None:
    file = write(folder, board_text("  - id: hover\n    prompt: one\n    takes: 2\n"))
    with pytest.raises(SelectRefused) as caught:
        set_select(file, "hovr", 2)
    assert "hover" in (caught.value.hint() or "")


def test_choosing_the_selected_take_writes_nothing(folder: Path) -> None:
    file = write(
        folder,
        board_text(
            "  - id: a\n    prompt: one\n    takes: 2\n    select: 2\n"
            "  - id: b\n    prompt: two\n    takes: 2\n"
        ),
    )
    mtime = file.stat().st_mtime_ns
    assert set_select(file, "a", 2) == SelectChange("a", 2, 2, 10)
    same = set_select(file, "b", 1)
    assert same == SelectChange("b", 1, 1, load_storyboard(file).shot("b").line)
    assert not same.changed
    assert file.stat().st_mtime_ns == mtime


def test_an_invalid_storyboard_is_not_edited(folder: Path) -> None:
    file = write(folder, board_text("  - id: a\n    prompt: one\n    takes: 2\n    seed: x\n"))
    before = file.read_bytes()
    with pytest.raises(InvalidStoryboard):
        set_select(file, "a", 2)
    assert file.read_bytes() == before


def test_a_skipped_shot_may_be_chosen_for(folder: Path) -> None:
    file = write(folder, board_text("  - id: a\n    prompt: one\n    takes: 2\n    skip: true\n"))
    choose(file, "a", 2)


def test_a_file_changed_while_editing_is_left_to_the_editor(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor saves the file between the read and the write: its save wins."""
    from storyboard import selecting

    file = write(folder, board_text("  - id: a\n    prompt: one\n    takes: 2\n"))
    saved = file.read_bytes().replace(b"prompt: one", b"prompt: the editor's")
    real_reload = selecting._reload
    calls: list[Path] = []

    def reload_then_editor_saves(*args: object, **kwargs: object) -> Storyboard:
        board = real_reload(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(Path(str(args[0])))
        if len(calls) == 2:
            file.write_bytes(saved)
        return board

    monkeypatch.setattr(selecting, "_reload", reload_then_editor_saves)
    with pytest.raises(SelectRefused) as caught:
        set_select(file, "a", 2)
    assert caught.value.reason == "changed-on-disk"
    assert file.read_bytes() == saved
    assert [p.name for p in folder.iterdir()] == ["storyboard.yaml"]


def test_mode_is_kept_and_a_link_edits_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    file = write(real, board_text("  - id: a\n    prompt: one\n    takes: 2\n"))
    file.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(file)
    change = set_select(link, "a", 2)
    assert change.changed
    assert link.is_symlink() and link.readlink() == file
    assert b"    select: 2\n" in file.read_bytes()
    assert file.stat().st_mode & 0o777 == 0o640


def test_variables_reach_the_templates(folder: Path) -> None:
    file = write(folder, board_text('  - id: a\n    prompt: "{{ hero }}"\n    takes: 2\n'))
    with pytest.raises(InvalidStoryboard):
        set_select(file, "a", 2)
    change = set_select(file, "a", 2, variables={"hero": "a bird"})
    assert change.changed
    assert load_storyboard(file, overrides={"hero": "x"}).shot("a").select == 2


# -- any storyboard ------------------------------------------------------------------------------

_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null"}
_IDS = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(lambda s: s not in _YAML_WORDS)


@st.composite
def boards(draw: st.DrawFn) -> tuple[str, str, int]:
    """A storyboard written in one of many styles, a shot of it, and a take to choose
    (possibly out of range: the test reads the board to know)."""
    ids = draw(st.lists(_IDS, min_size=1, max_size=4, unique=True))
    indent = draw(st.sampled_from([0, 2, 4]))
    dash = draw(st.sampled_from(["- ", "-   "]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["storyboard: 1"]
    common = draw(st.sampled_from([None, (3, 2), (4, None)]))
    if common is not None:  # shots may merge shared settings, `select` among them
        shared = f"takes: {common[0]}" + (f", select: {common[1]}" if common[1] else "")
        lines += ["vars:", f"  common: &common {{{shared}}}"]
    lines += ["defaults:", "  model: skyreels-v4-fast", "  takes: 2", "shots:"]
    pad = " " * indent
    for shot_id in ids:
        quote = draw(st.sampled_from(["", "'", '"']))
        prompt = f"{quote}shot {shot_id}: go{quote}" if quote else f"shot {shot_id} goes"
        fields = [("id", shot_id), ("prompt", prompt)]
        merged = common is not None and draw(st.booleans())
        takes = 2
        if merged:
            assert common is not None
            fields.append(("<<", "*common"))
            takes = common[0]
        if draw(st.booleans()):
            takes = draw(st.integers(min_value=2 if merged else 1, max_value=4))
            fields.append(("takes", str(takes)))
        if draw(st.booleans()):
            fields.append(("select", str(draw(st.integers(min_value=1, max_value=takes)))))
        fields = [fields[0], *draw(st.permutations(fields[1:]))]
        if draw(st.booleans()):
            body = ", ".join(f"{k}: {v}" for k, v in fields)
            lines.append(f"{pad}{dash}{{{body}}}")
        else:
            inner = " " * (indent + len(dash))
            comments = draw(st.lists(st.sampled_from(["", "  # note", "   #x"]), min_size=5))
            written = [f"{k}: {v}{c}" for (k, v), c in zip(fields, comments, strict=False)]
            lines.append(f"{pad}{dash}{written[0]}")
            lines.extend(f"{inner}{f}" for f in written[1:])
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "  # between shots"])))
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    shot = draw(st.sampled_from(ids))
    take = draw(st.integers(min_value=1, max_value=4))
    return ("\ufeff" if draw(st.booleans()) else "") + text, shot, take


@pytest.mark.slow
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=boards())
def test_any_storyboard_changes_in_one_line(tmp_path: Path, case: tuple[str, str, int]) -> None:
    text, shot_id, take = case
    folder = tmp_path / "h"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    file = write(folder, text.encode("utf-8"))
    shot = load_storyboard(file).shot(shot_id)
    if take > shot.takes:
        with pytest.raises(SelectRefused) as caught:
            set_select(file, shot_id, take)
        assert caught.value.reason == "take-out-of-range"
        assert file.read_bytes() == text.encode("utf-8")
        return
    if shot.select == take:
        assert not set_select(file, shot_id, take).changed
        assert file.read_bytes() == text.encode("utf-8")
        return
    _, _, after = choose(file, shot_id, take)
    if "\r\n" in text:
        assert after.count(b"\n") == after.count(b"\r\n")
    assert after.startswith(b"\xef\xbb\xbf") == text.startswith("\ufeff")
    assert [p.name for p in folder.iterdir()] == ["storyboard.yaml"]
