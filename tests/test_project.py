"""One store per project (issue 12 item 1): where the project is, what ``storyboard.toml``
may say, and how the store an earlier version kept beside a storyboard is adopted.

The root rules are checked on real folder trees (and over generated ones with Hypothesis);
config errors at their line; a credential in the config is refused and never echoed. The
adoption of an old store is checked on hand-made stores (fast: a failure midway, across
file systems, through links, two adopters at once) and end to end: two storyboards sharing
a shot in one repository (the preview backend), and a live render against the emulator
whose store beside it holds paid clips and a task in flight (zero POSTs after the move).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PAIR_BOARD, ROOT, run_cli, write_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyboard.cache import ADOPT_LOCK, Store
from storyboard.errors import StoreError
from storyboard.journal import Journal, merge_journal, read_states
from storyboard.paths import store_root
from storyboard.project import (
    CONFIG_FILE,
    MOVED_NOTE,
    AdoptionError,
    ProjectConfigError,
    find_project,
)
from storyboard.testing.emulator import Emulator, EmulatorServer

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def _board(folder: Path, name: str = "storyboard.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("storyboard: 1\nshots: []\n", encoding="utf-8")
    return path


def _config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A folder with no project marker above it (checked, so the tests mean something)."""
    for parent in tmp_path.parents:
        assert not (parent / ".git").exists() and not (parent / CONFIG_FILE).exists(), parent
    return tmp_path


# -- the root ---------------------------------------------------------------------------------


def test_no_marker_keeps_the_store_beside_the_storyboard(base: Path) -> None:
    board = _board(base / "films" / "fox")
    project = find_project(board)
    assert project.root == board.parent
    assert project.config is None and project.remote is None
    assert project.store == board.parent / ".storyboard"
    assert store_root(board) == project.store


@pytest.mark.parametrize("kind", ["folder", "worktree file"])
def test_git_marks_the_root(base: Path, kind: str) -> None:
    repo = base / "repo"
    repo.mkdir()
    if kind == "folder":
        (repo / ".git").mkdir()
    else:  # a worktree or submodule: .git is a file naming the real git folder
        (repo / ".git").write_text("gitdir: /elsewhere/.git/worktrees/repo\n", encoding="utf-8")
    board = _board(repo / "films" / "fox")
    project = find_project(board)
    assert (project.root, project.config) == (repo, None)
    assert project.store == repo / ".storyboard"


def test_the_nearest_marker_wins(base: Path) -> None:
    outer = base / "studio"
    (outer / ".git").mkdir(parents=True)
    config = _config(outer / "films", "")
    board = _board(outer / "films" / "fox")
    assert (find_project(board).root, find_project(board).config) == (outer / "films", config)
    # A nested repository below the config is nearer still (a submodule is its own project).
    (outer / "films" / "fox" / ".git").mkdir()
    project = find_project(board)
    assert (project.root, project.config) == (board.parent, None)


def test_a_folder_named_like_the_config_is_no_marker(base: Path) -> None:
    (base / "repo" / ".git").mkdir(parents=True)
    (base / "repo" / "films" / CONFIG_FILE).mkdir(parents=True)
    board = _board(base / "repo" / "films")
    assert find_project(board).root == base / "repo"


def test_storyboard_cache_overrides_the_store_not_the_project(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(base / "repo", '[store]\npath = "cache"\n')
    board = _board(base / "repo" / "fox")
    assert find_project(board).store == base / "repo" / "cache"
    monkeypatch.setenv("STORYBOARD_CACHE", str(base / "mine"))
    project = find_project(board)
    assert project.store == base / "mine"
    assert project.root == base / "repo"


def test_every_spelling_of_the_path_finds_one_project(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (base / "repo" / ".git").mkdir(parents=True)
    board = _board(base / "repo" / "films" / "fox")
    (base / "link").symlink_to(base / "repo" / "films")
    (base / "fox.yaml").symlink_to(board)
    monkeypatch.chdir(base / "repo" / "films")
    spellings = [
        board,
        Path("fox/storyboard.yaml"),
        Path("../films/fox/../fox/storyboard.yaml"),
        base / "link" / "fox" / "storyboard.yaml",
        base / "fox.yaml",
    ]
    assert {find_project(p) for p in spellings} == {find_project(board)}
    assert find_project(board).root == base / "repo"


LEVEL = st.sets(st.sampled_from(["toml", "gitdir", "gitfile", "tomldir"]), max_size=2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LEVEL, min_size=1, max_size=6))
def test_find_project_picks_the_nearest_marker(levels: list[set[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp).resolve()
        expected: tuple[Path, Path | None] | None = None
        for index, markers in enumerate(levels):
            folder = folder / f"l{index}"
            folder.mkdir()
            if "toml" in markers:
                _config(folder, "")
            elif "tomldir" in markers:
                (folder / CONFIG_FILE).mkdir()  # not a config: no marker
            if "gitdir" in markers:
                (folder / ".git").mkdir()
            elif "gitfile" in markers:
                (folder / ".git").write_text("gitdir: x\n", encoding="utf-8")
            if markers & {"toml", "gitdir", "gitfile"}:
                expected = (folder, folder / CONFIG_FILE if "toml" in markers else None)
        board = _board(folder)
        project = find_project(board)
        root, config = expected if expected is not None else (board.parent, None)
        assert (project.root, project.config) == (root, config)
        assert project.store == root / ".storyboard"


# -- the config -------------------------------------------------------------------------------


def test_a_full_config_is_read(base: Path) -> None:
    _config(
        base / "repo",
        """\
# the studio's project
[store]
path = "cache/clips"

[remote]
url = "s3://studio-renders/films"
endpoint_url = "http://127.0.0.1:9000"
profile = "studio"
anon = false
pull = false

[remote.client_kwargs]
region_name = "eu-west-1"
""",
    )
    board = _board(base / "repo" / "fox")
    project = find_project(board)
    assert project.store == base / "repo" / "cache" / "clips"
    remote = project.remote
    assert remote is not None
    assert remote.url == "s3://studio-renders/films"
    assert (remote.pull, remote.push) == (False, True)
    assert dict(remote.options) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "profile": "studio",
        "anon": False,
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    # Each caller gets its own options: a backend that changes them changes nothing here.
    remote.options["client_kwargs"]["region_name"] = "changed"
    again = find_project(board).remote
    assert again is not None and again.options["client_kwargs"] == {"region_name": "eu-west-1"}
    with pytest.raises(TypeError):
        remote.options["profile"] = "other"  # type: ignore[index]


def test_a_folder_remote_is_relative_to_the_project(base: Path) -> None:
    _config(base / "repo", '[remote]\nurl = "../shared/renders"\n')
    project = find_project(_board(base / "repo" / "fox"))
    assert project.remote is not None
    assert project.remote.url == str(base / "shared" / "renders")


def test_an_absolute_store_may_be_anywhere(base: Path) -> None:
    _config(base / "repo", f'[store]\npath = "{base / "big-disk" / "store"}"\n')
    assert find_project(_board(base / "repo")).store == base / "big-disk" / "store"


def test_the_config_is_read_again_when_it_changes(base: Path) -> None:
    config = _config(base / "repo", '[store]\npath = "one"\n')
    board = _board(base / "repo")
    assert find_project(board).store == base / "repo" / "one"
    config.write_text('[store]\npath = "two-two"\n', encoding="utf-8")
    assert find_project(board).store == base / "repo" / "two-two"
    config.unlink()
    (base / "repo" / ".git").mkdir()
    assert find_project(board).store == base / "repo" / ".storyboard"


BAD_CONFIGS = [
    # (config text, line, in the message, in the hint)
    ("[store]\npath = 'x'\n\n[remot]\nurl = 's3://b'\n", 4, "unknown table 'remot'", "'remote'"),
    ("title = 'films'\n", 1, "unknown key 'title'", "[store] and a [remote]"),
    ("[store]\n# where\npth = 'x'\n", 3, "unknown key 'pth' in [store]", "'path'"),
    ("[remote]\nurl = 's3://b'\nendpoint_url = 'http://h'\npul = false\n", 4, "'pul'", "'pull'"),
    ("[remote]\nurl = 's3://b'\npush = 'yes'\n", 3, "push must be true or false", None),
    ("[remote]\nendpoint_url = 'http://h'\n", 1, "[remote] has no url", "url = "),
    ("[remote]\nurl = ''\n", 2, "url must be a non-empty string", None),
    ("[remote]\nurl = 's3://b'\nregions = ['a', 'b']\n", 3, "'regions' is a list", None),
    ("\n[remote]\nurl = 's3://b'\nwhen = 1979-05-27\n", 4, "'when' is a date", None),
    ("[store]\npath = '../elsewhere'\n", 2, "leaves the project", "inside the project"),
    ("[store]\n\npath = 'a/../..'\n", 3, "leaves the project", None),
    ("[store]\npath = '.'\n", 2, "is the project root itself", None),
    ("[store]\npath = 3\n", 2, "must be a folder name", None),
    ("store = 'x'\n", 1, "'store' must be a table", None),
    ("[store]\npath = 'x'\n[store]\n", 3, "not valid TOML", "toml.io"),
    ('[remote]\nurl = "s3://b\n', 2, "not valid TOML", None),
    ("[remote]\nurl = 's3://b'\n'pull' = false\npush = true\n", None, None, None),  # fine
]


@pytest.mark.parametrize(("text", "line", "message", "hint"), BAD_CONFIGS)
def test_config_errors_are_reported_at_their_line(
    base: Path, text: str, line: int | None, message: str | None, hint: str | None
) -> None:
    config = _config(base / "repo", text)
    board = _board(base / "repo" / "fox")
    if line is None:
        assert find_project(board).remote is not None
        return
    with pytest.raises(ProjectConfigError) as caught:
        find_project(board)
    error = caught.value
    assert (error.path, error.line) == (config, line)
    assert str(error).startswith(f"{config}:{line}: ")
    assert message is not None and message in error.problem
    if hint is not None:
        assert hint in (error.hint() or "")
    assert error.exit_code == 2


def test_a_store_path_naming_someone_elses_folder_is_refused(base: Path) -> None:
    """The store cleans its tmp/ and gc removes from it: never a folder of other files."""
    (base / "repo" / "src" / "tmp").mkdir(parents=True)
    (base / "home" / "tmp").mkdir(parents=True)
    (base / "repo" / "notes.txt").write_text("mine", encoding="utf-8")
    board = _board(base / "repo")
    for raw, line in (("src", 3), (str(base / "home"), 3), ("notes.txt", 3)):
        _config(base / "repo", f'[store]\n# here\npath = "{raw}"\n')
        with pytest.raises(ProjectConfigError) as caught:
            find_project(board)
        assert caught.value.line == line and "not" in caught.value.problem
    store = base / "repo" / "old-store"
    (store / "objects").mkdir(parents=True)
    (base / "empty").mkdir()
    for raw in ("old-store", str(base / "empty"), "not-yet"):
        _config(base / "repo", f'[store]\npath = "{raw}"\n')
        assert find_project(board).store.name == Path(raw).name


def test_a_store_path_through_a_link_out_is_refused(base: Path) -> None:
    (base / "outside").mkdir()
    (base / "repo").mkdir()
    (base / "repo" / "cache").symlink_to(base / "outside")
    _config(base / "repo", '[store]\npath = "cache/clips"\n')
    with pytest.raises(ProjectConfigError, match=r"storyboard.toml:2: .*through a link"):
        find_project(_board(base / "repo"))


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
CREDENTIALS = [
    "key",
    "secret",
    "token",
    "password",
    "aws_secret_access_key",
    "aws_access_key_id",
    "AWS-Session-Token",
    "account_key",
    "sas_token",
    "connection_string",
    "client_secret",
    "storage_password",
]


@pytest.mark.parametrize("name", CREDENTIALS)
def test_a_credential_in_the_config_is_refused_and_never_echoed(base: Path, name: str) -> None:
    config = _config(
        base / "repo",
        f'[remote]\nurl = "s3://studio"\nendpoint_url = "http://h"\n{name} = "{SECRET}"\n',
    )
    with pytest.raises(ProjectConfigError) as caught:
        find_project(_board(base / "repo"))
    error = caught.value
    assert (error.path, error.line) == (config, 4)
    assert "credential" in error.problem
    assert "AWS_ACCESS_KEY_ID" in (error.hint() or "") and "profile" in (error.hint() or "")
    assert SECRET not in str(error) and SECRET not in (error.hint() or "")


def test_a_credential_in_a_nested_option_or_the_url_is_refused(base: Path) -> None:
    _config(
        base / "repo",
        f'[remote]\nurl = "s3://studio"\n\n[remote.client_kwargs]\naws_secret_access_key = "{SECRET}"\n',
    )
    board = _board(base / "repo")
    with pytest.raises(ProjectConfigError, match=r":5: 'client_kwargs.aws_secret_access_key' is a"):
        find_project(board)
    _config(base / "repo", f'[remote]\nurl = "s3://AKIDEXAMPLE:{SECRET}@studio/films"\n')
    with pytest.raises(ProjectConfigError, match=r":2: \[remote\] url holds a password") as caught:
        find_project(board)
    assert SECRET not in str(caught.value)


def test_a_bad_config_stops_plan_with_exit_2_before_anything(base: Path) -> None:
    _config(base / "repo", "[store]\npath = '../x'\n")
    board = base / "repo" / "storyboard.yaml"
    board.write_text(
        "storyboard: 1\nshots:\n  - id: end\n    card: {text: The end, duration: 1.0}\n",
        encoding="utf-8",
    )
    result = run_cli("plan", str(board))
    assert result.code == 2
    assert "storyboard.toml:2:" in result.err and "leaves the project" in result.err
    assert not (base / "x").exists() and not (base / "repo" / ".storyboard").exists()


# -- the journal merge ------------------------------------------------------------------------

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


def _claim(journal: Journal, key: str, shot: str) -> None:
    journal.claim(key, shot=shot, take=1, provider="wavespeed", model="m", seed=7)


def test_merge_journal_keeps_in_flight_tasks_and_the_projects_own_rows(tmp_path: Path) -> None:
    old = Journal(tmp_path / "old.sqlite")
    _claim(old, KEY_A, "in-flight")
    old.submitted(KEY_A, "task-a")
    old.record_output(KEY_A, "https://cdn.example/a.mp4", time.time() + 86400)
    _claim(old, KEY_B, "theirs")
    old.done(KEY_B, "d" * 64, 0.1)
    old.close()
    new = Journal(tmp_path / "new.sqlite")
    _claim(new, KEY_B, "ours")
    _claim(new, KEY_C, "only-ours")
    new.close()

    assert merge_journal(tmp_path / "new.sqlite", tmp_path / "old.sqlite") == 1
    assert merge_journal(tmp_path / "new.sqlite", tmp_path / "old.sqlite") == 0  # idempotent
    merged = Journal(tmp_path / "new.sqlite")
    a, b = merged.get(KEY_A), merged.get(KEY_B)
    assert a is not None and (a.state, a.task_id, a.shot, a.seed) == (
        "submitted",
        "task-a",
        "in-flight",
        7,
    )
    assert merged.output_url(KEY_A) == "https://cdn.example/a.mp4"
    assert b is not None and (b.shot, b.state) == ("ours", "intent")
    assert merged.task_ids("wavespeed") == frozenset({"task-a"})
    assert merged.take_over(KEY_A)  # its owner (this process's old journal) may go on
    merged.close()
    assert read_states(tmp_path / "new.sqlite")[KEY_A] == "submitted"


# -- adopting a store of an earlier version (hand-made stores) --------------------------------


class _Material:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt}


@dataclass
class Legacy:
    """A storyboard at ``repo/films/fox`` with a store beside it as an earlier version left it."""

    repo: Path
    board: Path
    keys: dict[str, bytes]  # generation key -> the clip's bytes

    @property
    def folder(self) -> Path:
        return self.board.parent / ".storyboard"


def _legacy(repo: Path, clips: int = 3) -> Legacy:
    board = _board(repo / "films" / "fox")
    old = Store(board.parent / ".storyboard", board)
    keys: dict[str, bytes] = {}
    for index in range(clips):
        data = f"clip {index} ".encode() * 50
        clip = repo / f"clip{index}.mp4"
        clip.write_bytes(data)
        key = f"{index:x}" * 64
        old.put(key, clip, seconds=1.0, shot=f"s{index}", take=1)
        old.record_material("live", f"s{index}", _Material(f"prompt {index}"))
        keys[key[:64]] = data
    old.save_cut_record("storyboard", {"path": str(board.parent / "cut.mp4"), "edit_key": "e"})
    work = old.cuts_dir() / "work" / "piece.ts"
    work.parent.mkdir(parents=True, exist_ok=True)
    work.write_bytes(b"piece")
    old.save()
    journal = Journal(old.root / "journal.sqlite")
    _claim(journal, KEY_A, "in-flight")
    journal.submitted(KEY_A, "task-in-flight")
    journal.close()
    return Legacy(repo, board, keys)


def _assert_adopted(legacy: Legacy, store: Store) -> None:
    """Every clip, record and task of the old store is in ``store``; the old one says so."""
    for key, data in legacy.keys.items():
        entry = store.lookup(key)
        assert entry is not None and entry.path.read_bytes() == data, key
        assert store.verify(key) is not None
    assert store.last_material("live", "s0") == {"prompt": "prompt 0"}
    assert store.cut_record("storyboard") is not None
    assert (store.cuts_dir() / "work" / "piece.ts").read_bytes() == b"piece"
    journal = Journal(store.root / "journal.sqlite")
    task = journal.get(KEY_A)
    journal.close()
    assert task is not None and (task.state, task.task_id) == ("submitted", "task-in-flight")
    note = (legacy.folder / MOVED_NOTE).read_text(encoding="utf-8")
    assert str(store.root) in note
    assert list((legacy.folder / "objects").rglob("*.mp4")) == []


def test_an_old_store_is_adopted_once_with_everything_in_it(base: Path) -> None:
    legacy = _legacy(base / "repo")
    (legacy.repo / ".git").mkdir()
    store = Store.for_storyboard(legacy.board)
    assert store.root == legacy.repo / ".storyboard"
    assert store.adopted is not None
    assert (store.adopted.objects, store.adopted.keys, store.adopted.tasks) == (3, 3, 1)
    assert store.adopted.left == 0 and store.adopted.files == 5  # 3 materials, a cut, its work
    _assert_adopted(legacy, store)
    # The namespace is the storyboard's: the project store separates storyboards as before.
    assert store.namespace == Store(legacy.folder, legacy.board).namespace
    again = Store.for_storyboard(legacy.board)
    assert again.adopted is None  # the MOVED note: nothing is looked at again


def test_an_adoption_cut_short_goes_on_at_the_next_run(base: Path) -> None:
    legacy = _legacy(base / "repo")
    (legacy.repo / ".git").mkdir()
    # The project store cannot take one of the objects (a file where its folder must go).
    first = sorted(legacy.keys)[1]
    digest = Store(legacy.folder, legacy.board).lookup(first)
    assert digest is not None
    blocker = legacy.repo / ".storyboard" / "objects" / digest.digest[:2]
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"in the way")
    with pytest.raises(AdoptionError) as caught:
        Store.for_storyboard(legacy.board)
    assert caught.value.legacy == legacy.folder and "still there" in str(caught.value)
    assert caught.value.hint()
    assert not (legacy.folder / MOVED_NOTE).exists()
    assert digest.path.is_file()  # not moved: still in the old store, nothing lost
    blocker.unlink()
    store = Store.for_storyboard(legacy.board)
    assert store.adopted is not None and store.adopted.tasks == 1
    _assert_adopted(legacy, store)


def test_a_clip_the_project_already_has_is_not_kept_twice(base: Path) -> None:
    legacy = _legacy(base / "repo", clips=1)
    (legacy.repo / ".git").mkdir()
    key, data = next(iter(legacy.keys.items()))
    project = Store(legacy.repo / ".storyboard", legacy.board)
    clip = legacy.repo / "same.mp4"
    clip.write_bytes(data)
    project.put(key, clip, seconds=1.0, shot="s0", take=1)
    store = Store.for_storyboard(legacy.board)
    assert store.adopted is not None and store.adopted.objects == 0
    _assert_adopted(legacy, store)


def test_a_damaged_copy_in_the_project_is_replaced_by_the_old_good_one(base: Path) -> None:
    legacy = _legacy(base / "repo", clips=1)
    (legacy.repo / ".git").mkdir()
    key = next(iter(legacy.keys))
    entry = Store(legacy.folder, legacy.board).lookup(key)
    assert entry is not None
    damaged = legacy.repo / ".storyboard" / "objects" / entry.digest[:2] / f"{entry.digest}.mp4"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"truncated")
    store = Store.for_storyboard(legacy.board)
    assert store.adopted is not None and store.adopted.objects == 1
    _assert_adopted(legacy, store)


def test_adoption_across_file_systems_copies_verifies_then_removes(base: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == base.stat().st_dev:
        pytest.skip("needs a second file system at /dev/shm")
    legacy = _legacy(base / "repo")
    # One old object is damaged: its bytes are not what its name says. It is left behind.
    keys = sorted(legacy.keys)
    bad = Store(legacy.folder, legacy.board).lookup(keys[2])
    assert bad is not None
    bad.path.write_bytes(b"rotten bytes")
    legacy.keys.pop(keys[2])
    elsewhere = Path(tempfile.mkdtemp(dir=shm))
    try:
        _config(legacy.repo, f'[store]\npath = "{elsewhere / "store"}"\n')
        store = Store.for_storyboard(legacy.board)
        assert store.root == elsewhere / "store"
        assert store.adopted is not None
        assert (store.adopted.objects, store.adopted.left) == (2, 1)
        assert store.lookup(keys[2]) is None  # a cache miss, never a wrong clip
        assert bad.path.read_bytes() == b"rotten bytes"  # left where it was
        bad.path.unlink()  # (so the helper's "no object left behind" holds for the rest)
        _assert_adopted(legacy, store)
        assert not list((store.root / "tmp").iterdir())
    finally:
        shutil.rmtree(elsewhere)


def test_links_in_or_as_an_old_store_are_never_followed(base: Path) -> None:
    victim = base / "victim"
    victim_objects = victim / "objects" / "ab"
    victim_objects.mkdir(parents=True)
    (victim_objects / f"{'ab' * 32}.mp4").write_bytes(b"not yours")
    (base / "repo" / ".git").mkdir(parents=True)
    board = _board(base / "repo" / "films")
    (board.parent / ".storyboard").symlink_to(victim)  # a pull request may add links too
    store = Store.for_storyboard(board)
    assert store.adopted is None
    assert (victim_objects / f"{'ab' * 32}.mp4").read_bytes() == b"not yours"
    (board.parent / ".storyboard").unlink()
    (board.parent / ".storyboard" / "objects").mkdir(parents=True)
    (board.parent / ".storyboard" / "objects" / "ab").symlink_to(victim_objects)
    (board.parent / ".storyboard" / "keys").symlink_to(victim / "objects")
    store = Store.for_storyboard(board)
    assert store.adopted is not None and store.adopted.objects == store.adopted.keys == 0
    assert (victim_objects / f"{'ab' * 32}.mp4").read_bytes() == b"not yours"
    assert not (store.root / "objects" / "ab").exists()


def test_a_store_chosen_for_one_run_adopts_nothing(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = _legacy(base / "repo", clips=1)
    (legacy.repo / ".git").mkdir()
    monkeypatch.setenv("STORYBOARD_CACHE", str(base / "throwaway"))
    store = Store.for_storyboard(legacy.board)
    assert store.adopted is None
    assert not (legacy.folder / MOVED_NOTE).exists()
    assert list((legacy.folder / "objects").rglob("*.mp4"))


def test_two_adopters_at_once_move_everything_once(base: Path) -> None:
    legacy = _legacy(base / "repo", clips=6)
    (legacy.repo / ".git").mkdir()
    stores: list[Store] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            stores.append(Store.for_storyboard(legacy.board))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(stores) == 4
    adoptions = [s.adopted for s in stores if s.adopted is not None and not s.adopted.done_before]
    assert len(adoptions) == 1 and adoptions[0].objects == 6
    _assert_adopted(legacy, stores[0])
    assert (legacy.repo / ".storyboard" / ADOPT_LOCK).exists()


def test_an_unwritable_journal_stops_the_adoption_before_the_note(base: Path) -> None:
    legacy = _legacy(base / "repo", clips=1)
    (legacy.repo / ".git").mkdir()
    (legacy.repo / ".storyboard" / "journal.sqlite").mkdir(parents=True)  # cannot be opened
    with pytest.raises(StoreError):
        Store.for_storyboard(legacy.board)
    assert not (legacy.folder / MOVED_NOTE).exists()
    (legacy.repo / ".storyboard" / "journal.sqlite").rmdir()
    _assert_adopted(legacy, Store.for_storyboard(legacy.board))


def test_a_damaged_old_journal_stops_the_adoption_and_says_what_to_do(base: Path) -> None:
    legacy = _legacy(base / "repo", clips=1)
    (legacy.repo / ".git").mkdir()
    old = legacy.folder / "journal.sqlite"
    for extra in ("-wal", "-shm"):
        Path(f"{old}{extra}").unlink(missing_ok=True)
    old.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AdoptionError) as caught:
        Store.for_storyboard(legacy.board)
    assert not (legacy.folder / MOVED_NOTE).exists()  # its tasks are not given up silently
    hint = caught.value.hint() or ""
    assert hint.startswith(f"if it is damaged beyond repair, mv {old} ")
    old.rename(old.with_name("journal.sqlite.damaged"))
    store = Store.for_storyboard(legacy.board)
    assert store.adopted is not None and store.adopted.tasks == 0
    assert store.lookup(next(iter(legacy.keys))) is not None


# -- end to end: the preview backend ----------------------------------------------------------

SHARED = """\
storyboard: 1
title: {title}
defaults: {{model: skyreels-v4-fast, resolution: 480p, duration: 3}}
output: {{resolution: 480p, fps: 8}}
shots:
  - id: harbour
    prompt: a harbour at dawn, gulls over the water
  - id: {own}
    prompt: {prompt}
"""


@pytest.mark.slow
@needs_git
def test_two_storyboards_in_a_repository_share_one_store(base: Path) -> None:
    import storyboard

    repo = base / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    one = repo / "films" / "one" / "storyboard.yaml"
    two = repo / "films" / "two" / "storyboard.yaml"
    for path, own, prompt in ((one, "boat", "a red boat"), (two, "lamp", "a lamp at night")):
        path.parent.mkdir(parents=True)
        path.write_text(SHARED.format(title=own, own=own, prompt=prompt), encoding="utf-8")
    first = storyboard.build(one)
    assert sorted(shot for shot, _ in first.rendered) == ["boat", "harbour"]
    second = storyboard.build(two)
    assert [shot for shot, _ in second.rendered] == ["lamp"]  # the harbour was paid for once
    assert [shot for shot, _ in second.up_to_date] == ["harbour"]
    store = repo / ".storyboard"
    assert len(list((store / "objects").rglob("*.mp4"))) == 3
    assert not (one.parent / ".storyboard").exists() and not (two.parent / ".storyboard").exists()
    # Each storyboard keeps its own cut records and materials (its namespace).
    spaces = {p.name for p in (store / "cuts").iterdir()}
    assert spaces == {Store.for_storyboard(p).namespace for p in (one, two)}
    assert len({p.name for p in (store / "shots").iterdir()}) == 2
    status = _git(repo, "status", "--porcelain", "--untracked-files=all")
    assert ".storyboard" not in status and "films/one/storyboard.yaml" in status


@pytest.mark.slow
@needs_git
def test_a_preview_store_beside_a_storyboard_is_adopted_for_free(base: Path) -> None:
    import storyboard

    board = base / "repo" / "films" / "one" / "storyboard.yaml"
    board.parent.mkdir(parents=True)
    board.write_text(SHARED.format(title="one", own="boat", prompt="a boat"), encoding="utf-8")
    before = storyboard.build(board)  # no project yet: the store is beside the storyboard
    assert len(before.rendered) == 2 and (board.parent / ".storyboard" / "objects").is_dir()
    assert before.cut is not None
    cut = before.cut.read_bytes()
    _git(base / "repo", "init", "-q")
    after = storyboard.build(board)
    assert after.rendered == () and after.reused
    assert after.cut is not None and after.cut.read_bytes() == cut
    assert (board.parent / ".storyboard" / MOVED_NOTE).is_file()
    assert len(list((base / "repo" / ".storyboard" / "objects").rglob("*.mp4"))) == 2


# -- end to end: live, against the emulator ---------------------------------------------------

WS_KEY = "ws-project-test-key-R4v8Nq2"
QB_KEY = "qb-project-test-key-Lp0Xe7w"
# A second storyboard in the same folder, one WaveSpeed shot: left in flight by a killed run.
LONE_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: gull
    model: skyreels-v1
    first_frame: refs/b.png
    prompt: a gull over the harbour
    seed: 3
"""


@dataclass
class Live:
    emu: Emulator
    server: EmulatorServer

    def posts_since(self, mark: int) -> list[str]:
        return [r.path for r in self.emu.requests[mark:] if r.method == "POST"]


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """An emulator on loopback with the environment pointing at it (fake keys)."""
    emu = Emulator(
        wavespeed_keys=(WS_KEY,),
        qingbo_keys=(QB_KEY,),
        scale=1 / 16,
        max_seconds=1.0,
        polls_to_start=1,
        polls_to_finish=2,
    )
    server = EmulatorServer(emu)
    for name, value in {
        "WAVESPEED_API_KEY": WS_KEY,
        "QINGBO_API_KEY": QB_KEY,
        "WAVESPEED_BASE_URL": server.url,
        "QINGBO_BASE_URL": server.url,
        "STORYBOARD_POLL_INTERVAL": "0.05",
        "STORYBOARD_MIN_OUTPUT_SHARE": "0",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield Live(emu, server)
    finally:
        server.close()
    assert emu.internal_errors == []


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the render ended first: {proc.communicate()[1].decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("the kill point was never reached")
        time.sleep(0.005)
    proc.kill()  # SIGKILL
    proc.communicate(timeout=30)


@pytest.mark.slow
@needs_git
def test_a_live_store_beside_a_storyboard_moves_into_the_project_and_nothing_is_paid_again(
    base: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = base / "repo" / "films"
    write_image(folder / "refs" / "a.png", (200, 60, 40))
    write_image(folder / "refs" / "b.png", (40, 90, 200))
    pair, lone = folder / "pair.yaml", folder / "lone.yaml"
    pair.write_text(PAIR_BOARD, encoding="utf-8")
    lone.write_text(LONE_BOARD, encoding="utf-8")
    beside = folder / ".storyboard"
    # The old layout: the store beside the storyboards (as an earlier version made it).
    monkeypatch.setenv("STORYBOARD_CACHE", str(beside))
    rendered = run_cli("render", "--live", str(pair))
    assert rendered.code == 0, rendered.err
    cut = (folder / "renders" / "pair.mp4").read_bytes()
    assert len(live.emu.tasks()) == 2
    # lone.yaml: submitted, then killed while the provider still renders it.
    live.emu.polls_to_finish = 10_000
    mark = len(live.emu.requests)
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "render", "--live", str(lone)],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _kill_when(proc, lambda: any(r.kind == "poll" for r in live.emu.requests[mark:]))
    in_flight = live.emu.tasks()[-1]
    assert len(live.emu.tasks()) == 3 and in_flight.status != "completed"
    assert "submitted" in read_states(beside / "journal.sqlite").values()
    live.emu.polls_to_finish = 2

    # Now: the folder is in a git repository, and STORYBOARD_CACHE is not set.
    monkeypatch.delenv("STORYBOARD_CACHE")
    _git(base / "repo", "init", "-q")
    mark = len(live.emu.requests)
    again = run_cli("render", "--live", str(pair))
    assert again.code == 0, again.err
    assert live.posts_since(mark) == []  # zero POSTs: every paid clip was found
    assert (folder / "renders" / "pair.mp4").read_bytes() == cut  # the same cut
    assert (beside / MOVED_NOTE).is_file()
    resumed = run_cli("render", "--live", str(lone))
    assert resumed.code == 0, resumed.err
    assert live.posts_since(mark) == []  # the task in flight was resumed, not bought again
    polled = [r for r in live.emu.requests[mark:] if r.kind == "poll"]
    assert polled and all(in_flight.task_id in r.path for r in polled)
    assert len(live.emu.tasks()) == 3
    assert set(live.emu.tasks_per_body_hash.values()) == {1}
    assert (folder / "renders" / "lone.mp4").is_file()
    store = base / "repo" / ".storyboard"
    assert len(list((store / "objects").rglob("*.mp4"))) == 3
    assert ".storyboard" not in _git(base / "repo", "status", "--porcelain", "-uall")


# -- validate checks the project's store, not a folder beside the storyboard ------------------


def test_validate_refuses_a_project_store_that_links_out(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "films").mkdir()
    board = root / "films" / "storyboard.yaml"
    board.write_text(
        "storyboard: 1\nshots:\n  - id: a\n    card: {text: hi, duration: 1}\n", encoding="utf-8"
    )
    assert run_cli("validate", str(board)).code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / ".storyboard").symlink_to(elsewhere, target_is_directory=True)
    result = run_cli("validate", str(board))
    assert result.code == 2
    assert "store folder" in result.err and "[store] path" in result.err


def test_validate_stops_at_a_broken_storyboard_toml(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    root = tmp_path / "repo"
    root.mkdir()
    (root / "storyboard.toml").write_text('[store]\npath = ".sb"\n\n[remot]\nurl = "x"\n')
    board = root / "storyboard.yaml"
    board.write_text(
        "storyboard: 1\nshots:\n  - id: a\n    card: {text: hi, duration: 1}\n", encoding="utf-8"
    )
    result = run_cli("validate", str(board))
    assert result.code == 2
    assert "storyboard.toml:4" in result.err
