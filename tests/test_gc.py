"""``storyboard gc`` (issue 12 item 5): what no lock and no current plan names goes; nothing
else does, and the bytes it reports are the bytes the store lost.

Most tests fill a real project store through the store's own API (:meth:`Store.put`) with a
few KiB of distinct bytes for every take the real plans name (preview and live, every take),
so no video is encoded; the end-to-end test renders live against the provider emulator and
counts what the next render submits after gc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3server
from conftest import PAIR_BOARD, Emulators, Result, run_cli, write_image
from s3server import RemoteSpot

from storyboard.cache import Store
from storyboard.gc import STORE_LOCK, StoreBusy, collect, hold_store
from storyboard.hashing import canonical_json, sha256_bytes
from storyboard.journal import Journal, journal_path
from storyboard.lockfile import LOCK_FORMAT, write_lock
from storyboard.pipeline import known_facts
from storyboard.plan import Plan, make_plan
from storyboard.remote import Remote
from storyboard.testing.emulator import Emulator
from storyboard.validate import load_storyboard
from storyboard.workfolder import work_lock

BOARD = """\
storyboard: 1
shots:
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite
    seed: 7
  - id: sea
    model: skyreels-v4-fast
    prompt: a lighthouse
    resolution: 480p
    duration: 3
    takes: 2
  - id: tide
    extends: sea
    model: skyreels-v4-fast
    prompt: waves
    resolution: 480p
    duration: 3
  - id: end
    card: {text: "The end", duration: 1}
"""


class Tree:
    """A project: ``storyboard.toml`` at ``root``, storyboards in it, its store at
    ``root/.storyboard``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / ".storyboard"
        self.counter = 0

    def board(self, relative: str = "board.yaml", text: str = BOARD) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path.parent / "refs" / "a.png", (200, 60, 40))
        path.write_text(text, encoding="utf-8")
        return path

    def plans(self, board: Path) -> list[Plan]:
        loaded = load_storyboard(board)
        store = Store.for_storyboard(loaded.path)
        out = []
        for backend in ("preview", "live"):
            facts = known_facts(loaded, store, backend)
            out.append(make_plan(loaded, store, backend=backend, facts=facts))
        return out

    def clip(self, key: str, shot: str = "loose", take: int = 1, board: Path | None = None) -> str:
        """Put a few KiB of distinct bytes into the store as the clip of ``key``."""
        self.counter += 1
        store = Store.for_storyboard(board or self.root / "board.yaml")
        tmp = store.tmp_dir() / f"clip-{self.counter}.mp4"
        tmp.write_bytes(os.urandom(3000 + self.counter) + key.encode())
        entry = store.put(key, tmp, seconds=1.0, shot=shot, take=take)
        store.save()
        return entry.digest

    def render(self, board: Path) -> dict[str, str]:
        """Store a clip for every take of the board's preview and live plans: key -> digest."""
        made = {}
        for plan in self.plans(board):
            for sp in plan.shots:
                for take in sp.takes:
                    made[take.key] = self.clip(take.key, sp.id, take.take, board)
        return made

    def lock(self, board: Path, takes: dict[str, str], *, upstream: str | None = None) -> Path:
        """Write ``board``'s lock naming ``takes`` (key -> digest) as takes of one shot."""
        data = {
            "lock": LOCK_FORMAT,
            "storyboard": board.name,
            "cost": 0,
            "shots": {
                "locked": {
                    "model": "skyreels-v1",
                    "select": 1,
                    "takes": [
                        {
                            "take": n,
                            "key": key,
                            "output": digest,
                            "duration": 1.0,
                            "cost": 0.2,
                            "upstream": {"mode": "extends", "key": upstream} if upstream else None,
                        }
                        for n, (key, digest) in enumerate(sorted(takes.items()), 1)
                    ],
                }
            },
        }
        path = board.with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        return path

    def objects(self) -> set[str]:
        return {p.stem for p in (self.store / "objects").glob("*/*.mp4")}

    def records(self) -> set[str]:
        return {p.stem for p in (self.store / "keys").glob("*/*.json")}

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.store).as_posix(): p.read_bytes()
            for p in sorted(self.store.rglob("*"))
            # SQLite's shared-memory and WAL files appear when anyone reads the journal.
            if p.is_file() and p.name != STORE_LOCK and not p.name.startswith("journal.sqlite-")
        }

    def usage(self) -> int:
        """The store's bytes (SQLite's -wal/-shm files come and go with any journal reader)."""
        return sum(
            p.stat().st_size
            for p in self.store.rglob("*")
            if p.is_file() and not p.name.startswith("journal.sqlite-")
        )

    def gc(self, *argv: str) -> Result:
        return run_cli("gc", *argv)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    root = tmp_path / "studio"
    root.mkdir()
    (root / "storyboard.toml").write_text("", encoding="utf-8")
    old = Path.cwd()
    os.chdir(root)
    try:
        yield Tree(root)
    finally:
        os.chdir(old)


def _key(n: int) -> str:
    return sha256_bytes(f"unreferenced-{n}".encode())


# -- what goes, what stays --------------------------------------------------------------------


def test_gc_keeps_every_take_of_both_plans_and_frees_what_it_reports(tree: Tree) -> None:
    board = tree.board()
    planned = tree.render(board)
    # Preview and live plans, every take: kite 1, sea 2 (one not selected), tide 1, twice.
    assert len(planned) == 8
    loose = {_key(n): tree.clip(_key(n)) for n in range(3)}
    # A check record of a loose clip goes with it; one of a planned clip stays.
    for digest in [*loose.values(), next(iter(planned.values()))]:
        record = tree.store / "checks" / digest[:2] / f"{digest}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}", encoding="utf-8")
    memo = json.loads((tree.store / "digests.json").read_text(encoding="utf-8"))
    assert any(name.endswith(f"{next(iter(loose.values()))}.mp4") for name in memo)
    before = tree.usage()

    result = tree.gc("--json")
    assert result.code == 0, result.err
    report = result.json()

    after = tree.usage()
    assert report["removed"]["objects"] == 3
    assert report["removed"]["keys"] == 3
    assert report["removed"]["checks"] == 3
    assert report["removed"]["bytes"] == before - after > 9000
    assert report["kept"] == {
        "objects": 8,
        "keys": 8,
        "bytes": sum(
            (tree.store / "objects" / d[:2] / f"{d}.mp4").stat().st_size for d in planned.values()
        ),
    }
    assert tree.objects() == set(planned.values())
    assert tree.records() == set(planned)
    assert sorted(p.stem for p in (tree.store / "checks").glob("*/*.json")) == [
        next(iter(planned.values()))
    ]
    memo = json.loads((tree.store / "digests.json").read_text(encoding="utf-8"))
    assert not any(name.endswith(tuple(f"{d}.mp4" for d in loose.values())) for name in memo)
    # Both plans are as fresh as before: gc took nothing a plan names.
    for plan in tree.plans(board):
        assert all(t.fresh for sp in plan.shots for t in sp.takes)
    # A second gc finds nothing to do.
    again = tree.gc("--json").json()
    assert again["removed"]["objects"] == again["removed"]["keys"] == 0


def test_dry_run_removes_nothing_and_says_what_a_real_run_removes(tree: Tree) -> None:
    board = tree.board()
    tree.render(board)
    loose = {tree.clip(_key(n)) for n in range(2)}
    files = tree.files()

    dry = tree.gc("--dry-run")
    assert dry.code == 0, dry.err
    assert tree.files() == files  # not one byte changed
    assert "would remove 2 clips and 2 key records" in dry.out
    assert "dry run: nothing removed" in dry.out
    for digest in loose:
        assert digest[:16] in dry.out
    dry_json = tree.gc("--dry-run", "--json").json()
    assert tree.files() == files
    would = {(r["kind"], r["name"]) for r in dry_json["removals"]}

    real = tree.gc("--json").json()
    assert {(r["kind"], r["name"]) for r in real["removals"]} == would
    assert real["removed"]["objects"] == dry_json["removed"]["objects"] == 2
    # What the dry run said it would free is what went, give or take the memo's few bytes.
    assert abs(real["removed"]["bytes"] - dry_json["removed"]["bytes"]) < 1000
    assert tree.objects().isdisjoint(loose)


def test_a_lock_elsewhere_in_the_tree_protects_its_clips(tree: Tree) -> None:
    main = tree.board("main/board.yaml")
    other = tree.board("shots/other.yaml", BOARD.replace("a red kite", "a blue kite"))
    tree.render(main)
    kept = {_key(10): tree.clip(_key(10), board=main)}
    tree.lock(other, kept)
    # A lock file with no storyboard beside it still counts when it is a storyboard lock...
    orphan = {_key(11): tree.clip(_key(11), board=main)}
    (tree.root / "archive").mkdir()
    tree.lock(tree.root / "archive" / "old.yaml", orphan)
    # ...and other tools' lock files are not ours.
    (tree.root / "poetry.lock").write_text("[[package]]\nname = 'x'\n", encoding="utf-8")
    loose = tree.clip(_key(12), board=main)

    result = tree.gc("main/board.yaml", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert set(kept.values()) | set(orphan.values()) <= tree.objects()
    assert set(kept) | set(orphan) <= tree.records()
    assert loose not in tree.objects()
    assert {Path(p).name for p in report["locks"]} == {"other.lock", "old.lock"}


def test_an_unreadable_lock_in_the_tree_stops_gc_before_anything_goes(tree: Tree) -> None:
    main = tree.board()
    tree.render(main)
    tree.clip(_key(1))
    other = tree.board("b/other.yaml")
    other.with_suffix(".lock").write_text('<<<<<<< HEAD\n{"lock": 1}\n', encoding="utf-8")
    files = tree.files()
    result = tree.gc("board.yaml")
    assert result.code == 2
    assert "other.lock:1" in result.err and "merge-conflict" in result.err
    assert tree.files() == files


def test_the_upstream_of_an_unsettled_journalled_take_is_kept(tree: Tree) -> None:
    board = tree.board()
    tree.render(board)
    upstream_key = _key(20)
    upstream = tree.clip(upstream_key, shot="sea")
    # What the store recorded that shot "tide" was rendered from, in another version of the
    # storyboard: it extends upstream_key. A run submitted it and stopped before downloading.
    material = {"format": 1, "backend": "live", "shot": "tide", "upstream": {"key": upstream_key}}
    record = tree.store / "shots" / "0123456789abcdef" / "live" / "tide.json"
    record.parent.mkdir(parents=True)
    record.write_bytes(canonical_json(material))
    pending = sha256_bytes(canonical_json(material))
    journal = Journal(journal_path(tree.store))
    journal.claim(pending, shot="tide", take=1, provider="qingbo", model="m", seed=1)
    journal.submitted(pending, "task-1")
    journal.close()
    _disown(tree.store, pending)
    loose = tree.clip(_key(21))

    result = tree.gc()
    assert result.code == 0, result.err
    assert result.out.startswith(f"removed 1 clip and 1 key record from {tree.store}: freed ")
    assert "kept 9 clips and 9 key records" in result.out
    assert upstream in tree.objects()
    assert upstream_key in tree.records()
    assert loose not in tree.objects()


def _disown(store: Path, key: str, owner: str = "elsewhere:1") -> None:
    """Make ``key``'s journal row belong to a process that is not running here."""
    import sqlite3

    db = sqlite3.connect(journal_path(store))
    with db:
        db.execute("UPDATE tasks SET owner = ? WHERE key = ?", (owner, key))
    db.close()


# -- a store in use --------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_live_render_in_flight_keeps_gc_out(tree: Tree, sleeper: subprocess.Popen[bytes]) -> None:
    board = tree.board()
    tree.render(board)
    tree.clip(_key(30))
    journal = Journal(journal_path(tree.store))
    journal.claim(_key(31), shot="kite", take=1, provider="wavespeed", model="m", seed=1)
    journal.close()
    _disown(tree.store, _key(31), f"{os.uname().nodename}:{sleeper.pid}")
    files = tree.files()
    result = tree.gc()
    assert result.code == 1
    assert f"a live render ({os.uname().nodename}:{sleeper.pid})" in result.err
    assert "hint: let it finish, then run `storyboard gc` again" in result.err
    assert tree.files() == files
    # Once that process is gone, gc goes ahead.
    sleeper.kill()
    sleeper.wait()
    assert tree.gc().code == 0
    assert _key(30) not in tree.records()


def test_a_render_holding_the_store_or_a_running_stitch_keeps_gc_out(tree: Tree) -> None:
    board = tree.board()
    tree.render(board)
    tree.clip(_key(40))
    files = tree.files()
    with hold_store(tree.store) as held:
        assert held
        with pytest.raises(StoreBusy):
            collect(cwd=tree.root)
    work = tree.store / "cuts" / "0123456789abcdef" / "work"
    with work_lock(work) as held:
        assert held
        result = tree.gc()
        assert result.code == 1
        assert "a cut being stitched" in result.err
    files.pop("cuts/0123456789abcdef/work/.lock", None)
    now = tree.files()
    now.pop("cuts/0123456789abcdef/work/.lock", None)
    assert now == files
    assert tree.gc().code == 0
    assert _key(40) not in tree.records()


def test_a_store_outside_the_project_is_refused(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "shared-cache"
    monkeypatch.setenv("STORYBOARD_CACHE", str(cache))
    tree.store = cache
    board = tree.board()
    tree.render(board)
    tree.clip(_key(50))
    files = tree.files()
    result = tree.gc()
    assert result.code == 2
    assert "outside the project" in result.err
    assert tree.files() == files


# -- which storyboards -------------------------------------------------------------------------


def test_an_invalid_storyboard_found_by_searching_is_skipped_with_a_warning(tree: Tree) -> None:
    board = tree.board()
    planned = tree.render(board)
    broken = tree.board("drafts/broken.yaml", "storyboard: 1\nshots: 7\n")
    result = tree.gc()
    assert result.code == 0, result.err
    assert f"warning: {broken} was not planned" in result.err
    assert set(planned) <= tree.records()
    named = tree.gc("drafts/broken.yaml")
    assert named.code == 2


def test_no_storyboard_is_a_usage_error(tree: Tree) -> None:
    result = tree.gc()
    assert result.code == 2
    assert "no storyboard under" in result.err
    assert tree.gc("nowhere.yaml").code == 2


def test_gc_of_one_storyboard_keeps_the_plans_of_that_one_only(tree: Tree) -> None:
    first = tree.board("a/one.yaml")
    second = tree.board("b/two.yaml", BOARD.replace("a red kite", "a green kite"))
    one = tree.render(first)
    two = tree.render(second)
    shared = set(one) & set(two)  # the shots both storyboards have alike share their clips
    result = tree.gc("a", "--json")
    assert result.code == 0, result.err
    assert set(one) <= tree.records()
    assert tree.records().isdisjoint(set(two) - shared)
    assert result.json()["storyboards"] == [str(first.resolve())]


# -- end to end: gc, then a live render pays nothing ------------------------------------------

WS_KEY = "ws-gc-test-key-Rk27Tb9wQe"
QB_KEY = "qb-gc-test-key-Mn40Yc3vLs"
LIVE_BOARD = PAIR_BOARD


@pytest.fixture
def emulator(emulators: Emulators) -> Emulator:
    """The provider emulator on loopback, with the environment pointing at it."""
    emu, _ = emulators(keys=(WS_KEY, QB_KEY), polls_to_start=1, polls_to_finish=1)
    return emu


def _posts(emu: Emulator, since: int = 0) -> int:
    return sum(1 for r in emu.requests[since:] if r.method == "POST")


@pytest.mark.slow
def test_after_gc_a_live_render_pays_nothing_for_what_the_lock_names(
    tree: Tree, emulator: Emulator
) -> None:
    board = tree.board("board.yaml", LIVE_BOARD)
    first = run_cli("render", "--live", str(board))
    assert first.code == 0, first.err
    # The storyboard changes: the old sea clip (paid for) is named by nothing any more.
    board.write_text(LIVE_BOARD.replace("at dusk", "at dawn"), encoding="utf-8")
    old = tree.objects()
    second = run_cli("render", "--live", str(board))
    assert second.code == 0, second.err
    lock = json.loads(board.with_suffix(".lock").read_text(encoding="utf-8"))
    locked = {t["output"] for s in lock["shots"].values() for t in s["takes"]}
    assert len(locked) == 2
    unreferenced = (old | tree.objects()) - locked
    assert len(unreferenced) == 1
    before = tree.usage()

    result = tree.gc("--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["removed"]["objects"] == 1
    assert report["removed"]["bytes"] == before - tree.usage() > 0
    assert tree.objects() == locked
    assert (tree.root / "renders" / "board.mp4").is_file()

    # Another checkout's view: the store's index forgets every key; the lock still names the
    # clips, and the next render pays nothing for them.
    for record in (tree.store / "keys").glob("*/*.json"):
        record.unlink()
    mark = len(emulator.requests)
    third = run_cli("render", "--live", str(board))
    assert third.code == 0, third.err
    assert _posts(emulator, mark) == 0
    assert "spent $0.00 on 0 takes" in third.err
    assert unreferenced.isdisjoint(tree.objects())


# -- the remote ---------------------------------------------------------------------------------

# The remote fixtures (see tests/s3server.py), made visible to this module's tests.
s3_service, aws_env, s3_remote = s3server.s3_service, s3server.aws_env, s3server.s3_remote
folder_remote, remote_spot = s3server.folder_remote, s3server.remote_spot


def _share(tree: Tree, spot: RemoteSpot, board: Path) -> tuple[dict[str, str], str, str]:
    """Render ``board`` (fake clips), lock its live plan, add a loose clip, push them all.

    Returns the lock's key -> digest, and the loose clip's key and digest.
    """
    (tree.root / "storyboard.toml").write_text(spot.toml(), encoding="utf-8")
    planned = tree.render(board)
    loaded = load_storyboard(board)
    store = Store.for_storyboard(loaded.path)
    plan = make_plan(loaded, store, backend="live", facts=known_facts(loaded, store, "live"))
    write_lock(plan, store, None)
    lock = json.loads(board.with_suffix(".lock").read_text(encoding="utf-8"))
    locked = {t["key"]: t["output"] for s in lock["shots"].values() for t in s["takes"]}
    loose_key = _key(60)
    loose = tree.clip(loose_key, board=board)
    entries = [store.lookup(key) for key in [*planned, loose_key]]
    report = Remote.open(spot.config()).push_many(store, [e for e in entries if e is not None])
    assert report.failed == ()
    return locked, loose_key, loose


@pytest.mark.slow
def test_gc_remote_removes_from_the_remote_what_nothing_names(
    tree: Tree, remote_spot: RemoteSpot
) -> None:
    board = tree.board()
    locked, loose_key, loose = _share(tree, remote_spot, board)
    held = remote_spot.files()
    objects_before = len(remote_spot.names("objects/"))

    dry = collect(remote=True, dry_run=True, cwd=tree.root, grace=0)
    assert remote_spot.files() == held
    assert dry.remote is not None
    assert (dry.remote.removed.objects, dry.remote.removed.keys) == (1, 1)

    # Just pushed: within the grace period a teammate's push is never taken for garbage.
    young = tree.gc("--remote", "--json")
    assert young.code == 0, young.err
    assert young.json()["remote"]["removed"] == {"objects": 0, "keys": 0, "bytes": 0}
    assert remote_spot.files() == held

    done = collect(remote=True, cwd=tree.root, grace=0)
    assert done.remote is not None
    assert done.remote.removed.objects == 1
    assert done.remote.removed.bytes == len(held[f"objects/{loose[:2]}/{loose}.mp4"])
    names = remote_spot.names()
    assert f"objects/{loose[:2]}/{loose}.mp4" not in names
    assert f"keys/{loose_key[:2]}/{loose_key}.json" not in names
    for key, digest in locked.items():
        assert f"objects/{digest[:2]}/{digest}.mp4" in names
        assert f"keys/{key[:2]}/{key}.json" in names
    # The preview plan's clips were never pushed; the live plan's others (not locked, here
    # none) stay as long as the plan names them.
    assert len(remote_spot.names("objects/")) == objects_before - 1
    assert done.remote.kept.objects == objects_before - 1


def test_gc_remote_keeps_what_a_lock_of_another_git_branch_names(
    tree: Tree, folder_remote: RemoteSpot
) -> None:
    board = tree.board()
    _locked, loose_key, loose = _share(tree, folder_remote, board)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tree.root, check=True, capture_output=True,
        )  # fmt: skip

    git("init", "-q", "-b", "main")
    (tree.root / ".gitignore").write_text("renders/\n", encoding="utf-8")
    git("add", "-A")
    git("commit", "-q", "-m", "main")
    git("checkout", "-q", "-b", "feature")
    branch = tree.board("feature/shot.yaml", BOARD.replace("a red kite", "a kite at night"))
    tree.lock(branch, {loose_key: loose})
    git("add", "-A")
    git("commit", "-q", "-m", "a take on a branch")
    git("checkout", "-q", "main")
    assert not branch.exists()

    report = collect(remote=True, cwd=tree.root, grace=0)
    assert report.remote is not None
    assert report.remote.removed.objects == 0
    assert f"objects/{loose[:2]}/{loose}.mp4" in folder_remote.names()
    # The local store follows the working tree only: the branch's clip can be pulled back.
    assert loose not in tree.objects()


def test_gc_remote_without_a_remote_is_told_the_table_to_add(tree: Tree) -> None:
    tree.render(tree.board())
    result = tree.gc("--remote")
    assert result.code == 2
    assert "the project has no remote store" in result.err
    assert "[remote]" in result.err
