"""Any spelling of a storyboard's path works from any working folder (issue 9 item 1).

The storyboard's folder is resolved once (``Path.resolve()``): ``..``, ``.``, a symbolic
link on the way to the file and the working folder change nothing about where its inputs,
its lock, its store and its cut are. Real escapes written *inside* the file (``../x``, a
link out of the tree) stay errors whatever the spelling, and messages name the file as the
user typed it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_cli, write_image

from storyboard.errors import InvalidStoryboard
from storyboard.validate import load_storyboard

BOARD = """\
storyboard: 1
title: paths
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  fps: 12
  audio: {path: music/tone.wav}
shots:
  - id: a
    first_frame: refs/a.png
    prompt: "{% include 'prompts/style.txt' %} a red kite"
  - id: b
    extends: a
    prompt: the kite climbs
  - id: c
    continues: b
    prompt: the kite lands
  - id: end
    card: {text: "The end", duration: 1.0}
"""


@dataclass
class Tree:
    """``base/work/repo/films/{fox,other}``, ``base/link -> films``, ``base/elsewhere``."""

    base: Path

    @property
    def films(self) -> Path:
        return self.base / "work" / "repo" / "films"

    @property
    def fox(self) -> Path:
        return self.films / "fox"

    @property
    def file(self) -> Path:
        return self.fox / "storyboard.yaml"


def _wav(path: Path, seconds: float = 1.0, rate: int = 1000) -> None:
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * round(seconds * rate))


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    t = Tree(tmp_path)
    write_image(t.fox / "refs" / "a.png", (200, 60, 40), size=(128, 72))
    _wav(t.fox / "music" / "tone.wav")
    (t.fox / "prompts").mkdir()
    (t.fox / "prompts" / "style.txt").write_text("cinematic,", encoding="utf-8")
    t.file.write_text(BOARD, encoding="utf-8")
    (t.films / "other").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(t.films, target_is_directory=True)
    old = Path.cwd()
    try:
        yield t
    finally:
        os.chdir(old)


def _spellings(t: Tree) -> list[tuple[Path, str]]:
    """(working folder, path as typed) pairs that all name ``t.file``."""
    fox, repo, away = t.fox, t.base / "work" / "repo", t.base / "elsewhere"
    return [
        (fox, "storyboard.yaml"),
        (fox, "./storyboard.yaml"),
        (fox, "../fox/storyboard.yaml"),
        (fox, "../other/../fox/storyboard.yaml"),
        (repo, "films/fox/storyboard.yaml"),
        (repo, "films/other/../fox/storyboard.yaml"),
        (repo, "./films/./fox//storyboard.yaml"),
        (away, str(t.file)),
        (away, "../work/repo/films/fox/storyboard.yaml"),
        (away, "../work/repo/films/other/../fox/storyboard.yaml"),
        (away, str(t.base / "link" / "fox" / "storyboard.yaml")),  # a symlinked parent
        (away, "../link/other/../fox/storyboard.yaml"),
        (t.base / "link" / "other", "../fox/storyboard.yaml"),  # cwd reached through a link
    ]


def test_validate_accepts_every_spelling_from_every_folder(tree: Tree) -> None:
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        result = run_cli("validate", typed)
        assert (result.code, result.err) == (0, ""), (str(cwd), typed, result.err)
        assert typed in result.out
        board = load_storyboard(typed)
        assert board.path == tree.file.resolve()
        assert board.root == tree.fox.resolve()
        assert board.output.path == tree.fox.resolve() / "renders" / "storyboard.mp4"
        assert board.shot("a").first_frame is not None
        assert board.shot("a").first_frame.path == tree.fox.resolve() / "refs" / "a.png"
        assert board.shot("a").prompt == "cinematic, a red kite"


def test_plan_is_the_same_for_every_spelling(tree: Tree) -> None:
    plans = []
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        result = run_cli("plan", "--json", typed)
        assert result.code == 0, (str(cwd), typed, result.err)
        data = result.json()
        plans.append({s["id"]: (s["status"], s["reason"]) for s in data["shots"]})
    assert all(p == plans[0] for p in plans)
    # Planning never creates the store; nothing was written anywhere but nowhere else either.
    assert not (tree.base / "elsewhere" / ".storyboard").exists()
    assert not (tree.films / "other" / ".storyboard").exists()


def test_problems_name_the_file_as_typed(tree: Tree) -> None:
    text = BOARD.replace("refs/a.png", "refs/nope.png")
    tree.file.write_text(text, encoding="utf-8")
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        result = run_cli("validate", typed)
        assert result.code == 2
        lines = [line for line in result.err.splitlines() if not line.startswith("    ")]
        assert lines[0] == (
            f"{typed}:12:18: $.shots[0].first_frame: no such file: 'refs/nope.png'"
        ), (str(cwd), typed, result.err)
        # The shots built on `a` say that `a` is invalid, never that it does not exist.
        assert "no such shot" not in result.err
        assert "outside the storyboard's folder" not in result.err


def test_escapes_inside_the_file_stay_errors_whatever_the_spelling(tree: Tree) -> None:
    outside = tree.films / "outside.png"
    write_image(outside, (0, 0, 0), size=(128, 72))
    (tree.fox / "refs" / "out.png").symlink_to(outside)
    (tree.fox / "refs" / "inside.png").symlink_to(tree.base / "link" / "fox" / "refs" / "a.png")
    text = (
        BOARD.replace("refs/a.png", "../outside.png")
        + "  - id: d\n    first_frame: refs/out.png\n    prompt: x\n"
        + "  - id: e\n    first_frame: refs/inside.png\n    prompt: y\n"
    )
    tree.file.write_text(text, encoding="utf-8")
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        with pytest.raises(InvalidStoryboard) as caught:
            load_storyboard(typed)
        got = {(p.path, p.file) for p in caught.value.problems if "outside" in p.message}
        assert got == {("$.shots[0].first_frame", typed), ("$.shots[4].first_frame", typed)}, (
            str(cwd),
            typed,
            [str(p) for p in caught.value.problems],
        )


def test_output_and_lock_links_out_stay_errors_whatever_the_spelling(tree: Tree) -> None:
    away = tree.base / "elsewhere"
    (tree.fox / "renders").symlink_to(away, target_is_directory=True)
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        with pytest.raises(InvalidStoryboard) as caught:
            load_storyboard(typed)
        assert [p.path for p in caught.value.problems] == ["$.output.path"]
        assert "through the link 'renders'" in caught.value.problems[0].message


def test_a_symlink_on_the_way_is_followed_before_dotdot(tree: Tree) -> None:
    """``films/jump/../fox`` is where the system goes (``jump``'s target's parent), not
    where the letters suggest: the folder is the one the file was read from."""
    deep = tree.films / "deep" / "inner"
    deep.mkdir(parents=True)
    (tree.films / "jump").symlink_to(deep, target_is_directory=True)
    other = tree.films / "deep" / "fox"
    write_image(other / "refs" / "a.png", (10, 200, 10), size=(128, 72))
    _wav(other / "music" / "tone.wav")
    (other / "prompts").mkdir()
    (other / "prompts" / "style.txt").write_text("noir,", encoding="utf-8")
    (other / "storyboard.yaml").write_text(BOARD, encoding="utf-8")
    os.chdir(tree.base / "work" / "repo")
    board = load_storyboard("films/jump/../fox/storyboard.yaml")
    assert board.root == other.resolve()
    assert board.shot("a").prompt == "noir, a red kite"


def test_a_symlinked_storyboard_file_lives_in_its_targets_folder(tree: Tree) -> None:
    """The documented choice: a link to a storyboard is another name for that file; its
    relative paths, lock, store and cut are those of the folder the file really is in."""
    alias = tree.base / "elsewhere" / "fox.yaml"
    alias.symlink_to(tree.file)
    os.chdir(tree.base / "elsewhere")
    result = run_cli("validate", "fox.yaml")
    assert (result.code, result.err) == (0, ""), result.err
    board = load_storyboard("fox.yaml")
    assert board.path == tree.file.resolve()
    assert board.output.path == tree.fox.resolve() / "renders" / "storyboard.mp4"
    result = run_cli("plan", "--json", "fox.yaml")
    assert result.code == 0, result.err
    assert json.loads(result.out)["shots"]


def test_a_storyboard_link_loop_is_an_error_not_a_traceback(tree: Tree) -> None:
    loop = tree.base / "elsewhere" / "loop.yaml"
    loop.symlink_to(loop)
    os.chdir(tree.base / "elsewhere")
    result = run_cli("validate", "loop.yaml")
    assert result.code == 2
    assert result.err.startswith("loop.yaml: $: cannot read")
    assert "Traceback" not in result.err


@pytest.mark.slow
def test_render_from_anywhere_writes_one_cut_and_shares_its_store(tree: Tree) -> None:
    """Rendered through one spelling, every other spelling sees the same clips and cut."""
    cwd, typed = _spellings(tree)[9]  # away, ../work/repo/films/other/../fox/storyboard.yaml
    assert ".." in typed
    os.chdir(cwd)
    first = run_cli("render", typed)
    assert first.code == 0, first.err
    cut = tree.fox / "renders" / "storyboard.preview.mp4"
    assert cut.is_file()
    assert (tree.fox / ".storyboard").is_dir()
    for folder in (tree.base / "elsewhere", tree.films / "other", tree.base / "link"):
        assert not (folder / ".storyboard").exists()
        assert not (folder / "renders").exists()
    mtime = cut.stat().st_mtime_ns
    for cwd, typed in _spellings(tree):
        os.chdir(cwd)
        plan = run_cli("plan", "--json", typed)
        assert plan.code == 0, plan.err
        data = plan.json()
        assert {s["status"] for s in data["shots"]} == {"fresh"}, (str(cwd), typed)
        assert data["stitch"] == "fresh", (str(cwd), typed)
    os.chdir(tree.base / "link")
    again = run_cli("render", "other/../fox/storyboard.yaml")
    assert again.code == 0, again.err
    assert cut.stat().st_mtime_ns == mtime
    shutil.rmtree(tree.fox / ".storyboard")
