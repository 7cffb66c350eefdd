"""Store hygiene (issue 9 item 5): the store ignores itself in git, and the stitcher's work
files that no current cut uses are pruned after a stitch, never another cut's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Project, run_cli

from storyboard.cache import GITIGNORE, Store
from storyboard.validate import load_storyboard
from storyboard.workfolder import prune, work_lock

BOARD = """\
storyboard: 1
defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}
output:
  resolution: 480p
  fps: 12
  transition: {type: crossfade, duration: 0.5}
shots:
  - id: a
    first_frame: refs/a.png
    prompt: a red kite
  - id: b
    first_frame: refs/b.png
    prompt: a blue door
  - id: end
    card: {text: "The end", duration: 1.0}
"""


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


# -- the store ignores itself ---------------------------------------------------------------


@needs_git
def test_a_new_store_ignores_itself_in_git(project: Project) -> None:
    _git(project.root, "init", "-q")
    project.write(BOARD)
    result = run_cli("plan", str(project.file))  # reads the inputs: makes the store
    assert result.code == 0, result.err
    store = project.root / ".storyboard"
    assert store.is_dir()
    assert (store / ".gitignore").read_text(encoding="utf-8") == GITIGNORE
    status = _git(project.root, "status", "--porcelain", "--untracked-files=all")
    assert ".storyboard" not in status
    assert "storyboard.yaml" in status  # git does see the rest of the folder


@needs_git
def test_a_store_made_by_an_older_version_is_marked_on_its_next_write(project: Project) -> None:
    _git(project.root, "init", "-q")
    project.write(BOARD)
    (project.root / ".storyboard" / "keys").mkdir(parents=True)
    (project.root / ".storyboard" / "keys" / "old.json").write_text("{}", encoding="utf-8")
    assert ".storyboard" in _git(project.root, "status", "--porcelain", "--untracked-files=all")
    assert run_cli("plan", str(project.file)).code == 0
    assert ".storyboard" not in _git(project.root, "status", "--porcelain", "--untracked-files=all")


def test_a_shared_cache_folder_made_by_storyboard_is_ignored_too(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = project.root / "shared-cache"
    monkeypatch.setenv("STORYBOARD_CACHE", str(cache))
    project.write(BOARD)
    assert run_cli("plan", str(project.file)).code == 0
    assert (cache / ".gitignore").read_text(encoding="utf-8") == GITIGNORE
    assert not (project.root / ".storyboard").exists()


def test_a_cache_folder_the_user_made_is_left_as_it_is(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = project.root / "mine"
    cache.mkdir()
    monkeypatch.setenv("STORYBOARD_CACHE", str(cache))
    project.write(BOARD)
    assert run_cli("plan", str(project.file)).code == 0
    assert (cache / "digests.json").is_file()
    assert not (cache / ".gitignore").exists()


# -- pruning: units over real files ----------------------------------------------------------


def _touch(path: Path, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_prune_keeps_what_is_kept_and_waits_for_no_running_cut(tmp_path: Path) -> None:
    work = tmp_path / "work"
    kept = _touch(work / "pieces" / "kept.body.mov")
    old = _touch(work / "pieces" / "old.body.mov", 100)
    seam = _touch(work / "seams" / "old.mov", 50)
    leftover = _touch(work / "tmp" / "list-1.txt")
    other = _touch(work / "notes.txt")  # not a folder a cut fills: never touched
    with work_lock(work) as shared:  # a cut is running
        assert shared
        pruned = prune(work, {kept})
        assert pruned.skipped and pruned.files == 0
        assert old.exists() and seam.exists()
    pruned = prune(work, {kept})
    assert not pruned.skipped
    assert (pruned.files, pruned.bytes) == (3, 100 + 50 + 10)
    assert kept.exists() and other.exists()
    assert not old.exists() and not seam.exists() and not leftover.exists()


def test_files_in_use_are_those_of_cuts_that_still_exist(tmp_path: Path) -> None:
    root = tmp_path / "store"
    one = Store(root, tmp_path / "one.yaml")
    two = Store(root, tmp_path / "two.yaml")
    cut_one, cut_two = _touch(tmp_path / "one.mp4"), tmp_path / "two.mp4"  # two: deleted
    piece_one = _touch(one.cuts_dir() / "work" / "pieces" / "p1.body.mov")
    piece_two = _touch(two.cuts_dir() / "work" / "pieces" / "p2.body.mov")
    one.save_cut_record("c1", {"path": str(cut_one)}, files=[piece_one])
    two.save_cut_record("c2", {"path": str(cut_two)}, files=[piece_two])
    record = json.loads((one.cuts_dir() / "c1.json").read_text(encoding="utf-8"))
    assert record["files"] == [piece_one.relative_to(root).as_posix()]
    # Both storyboards' stores see the same: the cut of one exists, that of two is gone.
    assert one.cut_files_in_use() == two.cut_files_in_use() == {piece_one}


# -- pruning through the CLI (renders the preview) -----------------------------------------


def _work(root: Path) -> Path:
    (work,) = (root / ".storyboard" / "cuts").glob("*/work")
    return work


def _work_files(work: Path) -> dict[str, int]:
    """Every work file a cut makes, by path relative to the work folder: its mtime."""
    return {
        p.relative_to(work).as_posix(): p.stat().st_mtime_ns
        for p in work.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def _recorded(work: Path) -> set[str]:
    """The work files the cut records of this storyboard name, for cuts that exist."""
    names: set[str] = set()
    store = work.parent.parent.parent
    for record in work.parent.glob("*.json"):
        data = json.loads(record.read_text(encoding="utf-8"))
        if Path(data["path"]).exists():
            names.update((store / n).relative_to(work).as_posix() for n in data["files"])
    return names


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _ok(*argv: str) -> None:
    result = run_cli(*argv)
    assert result.code == 0, result.err


@pytest.mark.slow
@needs_git
def test_pieces_no_cut_uses_are_pruned_and_a_warm_restitch_reuses_the_rest(
    project: Project,
) -> None:
    _git(project.root, "init", "-q")
    project.write(BOARD)
    _ok("render", "-q", str(project.file))
    cut = project.root / "renders" / "storyboard.preview.mp4"
    work = _work(project.root)
    first = _work_files(work)
    assert set(first) == _recorded(work)
    largest = _size(work.parent)
    transition = "{type: crossfade, duration: 0.5}"
    for new in (
        "{type: fade, duration: 0.5}",
        "{type: wipe-left, duration: 1.0}",
        "{type: slide-up, duration: 0.5}",
    ):
        before = _work_files(work)
        project.edit(f"transition: {transition}", f"transition: {new}")
        transition = new
        _ok("stitch", str(project.file))
        now = _work_files(work)
        assert set(now) == _recorded(work)  # exactly what the cut uses: the rest is gone
        gone = set(before) - set(now)
        assert gone, "an edited transition makes new seams and pieces"
        assert all(not (work / name).exists() for name in gone)
        # Bounded: one cut's worth, not one more set of pieces per edit.
        assert _size(work.parent) < 1.5 * largest
        largest = max(largest, _size(work.parent))
    # A warm re-stitch of the current cut re-encodes nothing: every piece is reused.
    kept = _work_files(work)
    cut.unlink()
    _ok("stitch", str(project.file))
    assert cut.is_file()
    assert _work_files(work) == kept
    # And nothing of it shows in git.
    assert ".storyboard" not in _git(project.root, "status", "--porcelain")


@pytest.mark.slow
def test_another_cut_of_the_same_storyboard_keeps_its_pieces(project: Project) -> None:
    """``-o`` makes a second cut with its own record: a stitch of the first keeps its pieces
    while that cut exists, and prunes them once it is deleted."""
    project.write(BOARD)
    _ok("render", "-q", str(project.file))
    other = project.root / "renders" / "other.mp4"
    _ok("stitch", "-o", str(other), str(project.file))
    work = _work(project.root)
    crossfade = _work_files(work)
    project.edit("type: crossfade", "type: fade")
    _ok("stitch", str(project.file))
    now = _work_files(work)
    assert set(crossfade) <= set(now)  # the other cut still uses them
    assert {k: now[k] for k in crossfade} == crossfade
    fade = set(now) - set(crossfade)
    assert fade
    other.unlink()  # that cut is gone: its pieces are no longer in use
    project.edit("type: fade", "type: wipe-up")
    _ok("stitch", str(project.file))
    now = _work_files(work)
    assert not (set(crossfade) | fade) & set(now) - _recorded(work)
    assert set(now) == _recorded(work)


@pytest.mark.slow
@pytest.mark.parametrize("shared", ["folder", "cache"])
def test_storyboards_sharing_a_store_never_prune_each_others_pieces(
    project: Project, monkeypatch: pytest.MonkeyPatch, shared: str
) -> None:
    """Two storyboards in one folder share its ``.storyboard/``; two folders may share one
    ``$STORYBOARD_CACHE``. Edits and stitches of one leave the other's cut warm."""
    first = project.root / "storyboard.yaml"
    second_root = project.root if shared == "folder" else project.root / "elsewhere"
    second = second_root / "second.yaml"
    if shared == "cache":
        monkeypatch.setenv("STORYBOARD_CACHE", str(project.root.parent / "cache"))
        shutil.copytree(project.root / "refs", second_root / "refs")
    project.write(BOARD)
    second.write_text(BOARD.replace("a red kite", "a green kite"), encoding="utf-8")
    _ok("render", "-q", str(first))
    _ok("render", "-q", str(second))
    ours = Store.for_storyboard(load_storyboard(first).path).cuts_dir()
    theirs = Store.for_storyboard(load_storyboard(second).path).cuts_dir()
    assert ours.parent == theirs.parent and ours != theirs  # one store, two namespaces
    before = _files(theirs)
    assert any(name.startswith("work/pieces/") for name in before)
    for old, new in (("crossfade", "fade"), ("fade", "wipe-left")):
        project.edit(f"type: {old}", f"type: {new}")
        _ok("stitch", str(first))
        assert _files(theirs) == before  # not one file of the other storyboard touched
    # Its warm re-stitch still re-encodes nothing.
    (second_root / "renders" / "second.preview.mp4").unlink()
    _ok("stitch", str(second))
    assert {k: v for k, v in _files(theirs).items() if k.startswith("work/")} == {
        k: v for k, v in before.items() if k.startswith("work/")
    }


def _files(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".lock"
    }
