"""A no-op does no work (issue 13 item 6): the checked storyboard is kept in the store and
used while nothing it reads changed; the key records are read through one index file.

Every kind of input a check reads is changed here once, and each change is seen: the YAML
(even at the same size, at once), an included file (and an include that was missing), a
reference image (replaced, or replaced by a link out), a ``--set`` value, the tool's
version, and a link on the way to the cut. The key index is compared with the per-key files,
which stay the truth for every other reader and writer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storyboard import boardcache, keyindex
from storyboard.cache import Store
from storyboard.errors import InvalidStoryboard
from storyboard.hashing import sha256_bytes
from storyboard.keyindex import INDEX_FOLDER, KeyIndex
from storyboard.loader import storyboard_path
from storyboard.model import Storyboard
from storyboard.plan import make_plan
from storyboard.validate import load_storyboard
from tests.conftest import EXAMPLES, ROOT, Project, write_image

BOARD = """\
storyboard: 1
title: cache
vars: {hero: a fox, n: 2}
defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}
output:
  resolution: 480p
  fps: 24
  transition: {type: crossfade, duration: 0.25}
shots:
  - id: a
    prompt: "{{ hero }} runs, {% include 'style.txt' %}"
    first_frame: refs/a.png
    params: {camera: [1, 2.5, null], flag: true}
  - id: b
    model: skyreels-v4-std
    prompt: "{{ hero }} {{ n * 2 }}{% include 'extra.txt' ignore missing %}"
    refs: [{tag: hero, image: refs/b.png}]
    keyframes: [{at: 1.5, image: refs/a.png}]
    trim: {start: 0.5}
    transition: cut
  - id: card
    card: {text: "The end", duration: 1.0}
"""


def _load(file: Path, overrides: dict[str, object] | None = None) -> Storyboard:
    """Load as the pipeline does: the checked board is kept in the store."""
    return load_storyboard(file, overrides=overrides, remember=True)


OLD = time.time_ns() - 3600 * 10**9  # an hour ago: older than any racy window


def _age(*paths: Path) -> None:
    """Date files an hour back, as files made before this run are (stamps are trusted)."""
    for path in paths:
        os.utime(path, ns=(OLD, OLD))


@pytest.fixture
def board(project: Project) -> Project:
    project.write(BOARD)
    (project.root / "style.txt").write_text("soft light", encoding="utf-8")
    (project.root / ".storyboard").mkdir()  # the store exists (validate creates none)
    _age(project.root / "refs" / "a.png", project.root / "refs" / "b.png")
    return project


def _entry(project: Project) -> Path:
    path = storyboard_path(project.file)
    return project.root / ".storyboard" / "boards" / f"{sha256_bytes(str(path).encode())[:16]}.json"


def _hit(project: Project, overrides: dict[str, object] | None = None) -> bool:
    path = storyboard_path(project.file)
    return boardcache.lookup(path, overrides or {}, path.read_bytes()) is not None


# -- the checked board is kept and is the same -------------------------------------------------


def test_an_unchanged_storyboard_is_not_checked_again(board: Project) -> None:
    assert not _hit(board)
    first = _load(board.file)
    assert _entry(board).is_file()
    assert _hit(board)
    again = _load(board.file)
    assert again == first
    assert again.shots[1].prompt == "a fox 4"
    assert again.shots[0].prompt == "a fox runs, soft light"


def _fresh(path: Path) -> Storyboard:
    """The board as a full check makes it (no cache entry is read)."""
    _entry(Project(path.parent)).unlink(missing_ok=True)
    return _load(path)


@pytest.mark.parametrize("name", ["dawn", "templated", "minimal"])
def test_a_cached_board_plans_to_the_same_keys(name: str, tmp_path: Path) -> None:
    """The board from the cache is equal to a checked one, down to the types its keys are
    made of (0 is not 0.0 in a generation key)."""
    folder = tmp_path / name
    shutil.copytree(
        EXAMPLES / name, folder, ignore=shutil.ignore_patterns("renders", ".storyboard")
    )
    (folder / ".git").mkdir()
    (folder / ".storyboard").mkdir()
    for path in folder.rglob("*"):
        if path.is_file():
            _age(path)
    file = folder / "storyboard.yaml"
    checked = _fresh(file)
    project = Project(folder)
    assert _hit(project)
    cached = _load(file)
    assert cached == checked
    store = Store.for_storyboard(checked.path)
    for backend in ("preview", "live"):
        fresh_plan = make_plan(checked, store, backend=backend)  # type: ignore[arg-type]
        cached_plan = make_plan(cached, store, backend=backend)  # type: ignore[arg-type]
        assert [t.key for s in cached_plan.shots for t in s.takes] == [
            t.key for s in fresh_plan.shots for t in s.takes
        ]
        assert cached_plan.edit_key == fresh_plan.edit_key


def test_a_hit_loads_neither_jinja_nor_jsonschema(board: Project) -> None:
    _load(board.file)
    probe = (
        "import sys; from storyboard.validate import load_storyboard; "
        "load_storyboard(sys.argv[1]); "
        "print(sorted(m for m in ('jinja2', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(board.file)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


# -- every input invalidates it ------------------------------------------------------------------


def test_the_yaml_changed_at_the_same_size_at_once(board: Project) -> None:
    _load(board.file)
    size = board.file.stat().st_size
    board.edit("duration: 3", "duration: 4")
    assert board.file.stat().st_size == size
    assert not _hit(board)
    assert _load(board.file).shots[0].duration == 4


def test_an_included_file_changed(board: Project) -> None:
    _load(board.file)
    (board.root / "style.txt").write_text("hard rain", encoding="utf-8")
    assert not _hit(board)
    assert _load(board.file).shots[0].prompt == "a fox runs, hard rain"


def test_an_include_that_was_missing_appears(board: Project) -> None:
    _load(board.file)
    (board.root / "extra.txt").write_text(", at night", encoding="utf-8")
    assert not _hit(board)
    assert _load(board.file).shots[1].prompt == "a fox 4, at night"


def test_a_reference_image_changed(board: Project) -> None:
    _load(board.file)
    assert _hit(board)
    (board.root / "refs" / "b.png").write_bytes(b"not an image at all")
    assert not _hit(board)
    with pytest.raises(InvalidStoryboard) as caught:
        _load(board.file)
    assert any("refs/b.png" in p.message for p in caught.value.problems)


def test_a_reference_replaced_by_a_link_out_of_the_folder(board: Project, tmp_path: Path) -> None:
    _load(board.file)
    ref = board.root / "refs" / "b.png"
    outside = tmp_path / "elsewhere.png"
    os.link(ref, outside)  # the very same file (inode, size, mtime): only the link is new
    ref.unlink()
    ref.symlink_to(outside)
    assert not _hit(board)
    with pytest.raises(InvalidStoryboard, match="outside"):
        _load(board.file)


def test_a_file_changed_just_before_its_check_is_not_trusted_by_its_stamp(
    board: Project,
) -> None:
    """Git's racy-clean rule: a file rewritten in the tick it was checked, same size, same
    mtime, same inode, is compared by content, not by its stamp."""
    ref = board.root / "refs" / "b.png"
    write_image(ref, (10, 20, 30))  # changed just now
    _load(board.file)
    st = ref.stat()
    data = bytearray(ref.read_bytes())
    data[-20:] = bytes(20)  # damage the picture in place, keeping size and inode
    with ref.open("r+b") as handle:
        handle.write(data)
    os.utime(ref, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [ref.stat().st_size, ref.stat().st_mtime_ns, ref.stat().st_ino] == [
        st.st_size, st.st_mtime_ns, st.st_ino,
    ]  # fmt: skip
    assert not _hit(board)


def test_a_touched_file_with_the_same_bytes_is_confirmed_by_its_digest(board: Project) -> None:
    from storyboard.pipeline import plan_build

    plan_build(board.file)  # the store's memo learns the inputs' digests
    board.edit("n: 2", "n: 3")  # a new check, recording the digests the memo knows
    _load(board.file)
    ref = board.root / "refs" / "a.png"
    later = OLD + 60 * 10**9
    os.utime(ref, ns=(later, later))  # a checkout rewrote it: another stamp, the same bytes
    path = storyboard_path(board.file)
    checked = boardcache.lookup(path, {}, path.read_bytes())
    assert checked is not None and checked.refresh is not None  # confirmed, to be rewritten
    _load(board.file)
    again = boardcache.lookup(path, {}, path.read_bytes())
    assert again is not None and again.refresh is None


def test_a_set_value_changed(board: Project) -> None:
    assert _load(board.file, overrides={"hero": "a hare"}).shots[1].prompt == "a hare 4"
    assert _hit(board, {"hero": "a hare"})
    assert not _hit(board, {"hero": "a cat"})
    assert not _hit(board)
    assert _load(board.file, overrides={"hero": "a cat"}).shots[1].prompt == "a cat 4"


def test_the_environment_names_another_store(
    board: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(board.file)
    assert _hit(board)
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("STORYBOARD_CACHE", str(shared))
    assert not _hit(board)  # another store: its own entries
    _load(board.file)
    assert _hit(board) and any((shared / "boards").iterdir())
    monkeypatch.delenv("STORYBOARD_CACHE")
    assert _hit(board)


def test_another_version_of_the_tool(board: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _load(board.file)
    assert _hit(board)
    monkeypatch.setattr(boardcache, "__version__", "99.0.0")
    assert not _hit(board)


def test_a_link_out_on_the_way_to_the_cut_is_reported(board: Project, tmp_path: Path) -> None:
    _load(board.file)
    outside = tmp_path / "outside"
    outside.mkdir()
    (board.root / "renders").symlink_to(outside)  # appears after the check: no digest sees it
    assert _hit(board)  # the entry itself is intact ...
    with pytest.raises(InvalidStoryboard, match="link"):
        _load(board.file)  # ... but validate checks the paths it writes every time


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # cut short
        lambda raw: b"0" * 64 + raw[64:],  # the checksum does not match
        lambda raw: sha256_bytes(b"[1, 2]").encode() + b"\n[1, 2]",  # not an entry
        lambda raw: b"",
    ],
)
def test_a_damaged_entry_is_a_miss(board: Project, damage: object) -> None:
    first = _load(board.file)
    entry = _entry(board)
    entry.write_bytes(damage(entry.read_bytes()))  # type: ignore[operator]
    assert not _hit(board)
    assert _load(board.file) == first


def test_an_entry_that_names_a_file_outside_is_refused(board: Project, tmp_path: Path) -> None:
    """A store may come from someone else: a well-formed entry whose board names a file
    outside the storyboard's folder is not used."""
    _load(board.file)
    entry = _entry(board)
    _check, _, body = entry.read_bytes().partition(b"\n")
    data = json.loads(body)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"private")
    _age(secret)
    st = secret.stat()
    data["board"]["shots"][0]["first_frame"]["path"] = str(secret)
    data["media"][str(secret)] = [st.st_size, st.st_mtime_ns, st.st_ino, None]
    body = json.dumps(data).encode()
    entry.write_bytes(sha256_bytes(body).encode() + b"\n" + body)
    assert not _hit(board)
    assert _load(board.file).shots[0].first_frame.path == (  # type: ignore[union-attr]
        board.root / "refs" / "a.png"
    )


def test_values_keep_their_types(board: Project) -> None:
    """A value equal to its field's default but of another type (0 for 0.0) is kept as it
    is: generation keys are made from these values' JSON."""
    from dataclasses import replace

    from storyboard.model import Trim

    checked = _load(board.file)
    shot = replace(checked.shots[0], trim=Trim(start=0, end=2))
    odd = replace(checked, shots=(shot, *checked.shots[1:]))
    source = board.file.read_bytes()
    assert boardcache.save(odd, {}, boardcache.Inputs(sha256_bytes(source), time.time_ns()))
    found = boardcache.lookup(odd.path, {}, source)
    assert found is not None and found.board == odd
    trim = found.board.shots[0].trim
    assert trim is not None and type(trim.start) is int and type(trim.end) is int


def test_a_read_only_caller_uses_the_entry_and_writes_nothing(board: Project) -> None:
    """gc loads every storyboard: it finds the kept board, and a dry run changes no byte."""
    load_storyboard(board.file)
    assert not _entry(board).exists()  # only the pipeline keeps what it checked
    kept = _load(board.file)
    store = board.root / ".storyboard"

    def files() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}

    before = files()
    assert _hit(board)
    assert load_storyboard(board.file) == kept
    ref = board.root / "refs" / "a.png"
    os.utime(ref, ns=(OLD + 10**9, OLD + 10**9))  # another stamp: checked again, not kept
    assert load_storyboard(board.file) == kept
    assert files() == before


def test_the_cache_reads_and_names_a_file_as_the_loader_does(
    board: Project, tmp_path: Path
) -> None:
    from storyboard.loader import MAX_FILE_BYTES

    assert boardcache.MAX_SOURCE_BYTES == MAX_FILE_BYTES
    linked = tmp_path / "linked"
    linked.symlink_to(board.root)
    for spelling in (
        board.file,
        Path("storyboard.yaml"),
        Path("refs/../storyboard.yaml"),
        linked / "storyboard.yaml",
    ):
        assert boardcache.resolve(spelling) == storyboard_path(spelling)


def test_no_store_no_entry(project: Project) -> None:
    project.write(BOARD.replace("{% include 'style.txt' %}", "x"))
    _load(project.file)
    assert not (project.root / ".storyboard").exists()  # validate creates no store


def test_values_json_would_change_are_not_kept(board: Project) -> None:
    board.edit("n: 2", "n: 2, when: !!binary aGk=")
    _load(board.file)
    assert not _entry(board).exists()


# -- the generation keys of the last plan ----------------------------------------------------


def _filled(project: Project) -> list[str]:
    """Every take of the board in its store (stand-in bytes: a plan reads no clip), aged;
    the keys in plan order."""
    from storyboard.pipeline import plan_build

    plan = plan_build(project.file)
    store = Store.for_storyboard(plan.board.path)
    for sp in plan.shots:
        for take in sp.takes:
            clip = project.root / "clip.mp4"
            clip.write_bytes(f"clip of {take.key}".encode())
            store.put(take.key, clip, seconds=sp.seconds, shot=sp.id, take=take.take)
    store.save()
    for folder in (store.root / "keys").iterdir():
        _age(folder)
    return [t.key for sp in plan.shots for t in sp.takes]


def _hashes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every material the plan hashes from now on."""
    from storyboard import plan as plan_module

    made: list[object] = []
    real = plan_module.generation_key

    def counting(material: object) -> str:
        made.append(material)
        return real(material)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_module, "generation_key", counting)
    return made


def test_a_noop_plan_hashes_no_material(board: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from storyboard.pipeline import plan_build

    keys = _filled(board)
    plan_build(board.file)  # remembers the keys of this board
    hashed = _hashes(monkeypatch)
    plan = plan_build(board.file)
    assert hashed == []
    assert [t.key for sp in plan.shots for t in sp.takes] == keys
    assert all(t.fresh for sp in plan.shots for t in sp.takes) and plan.stitch == "stale"


def test_keys_are_made_again_when_an_input_changed(
    board: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storyboard.pipeline import plan_build

    before = _filled(board)
    plan_build(board.file)
    write_image(board.root / "refs" / "b.png", (1, 2, 3))
    _age(board.root / "refs" / "b.png")
    hashed = _hashes(monkeypatch)
    plan = plan_build(board.file)
    assert len(hashed) == len(before)  # every key made from its material
    b = plan.shot("b")
    assert b.status == "stale" and b.takes[0].key != before[1]
    assert plan.shot("a").takes[0].key == before[0]
    checked = load_storyboard(board.file)
    fresh = make_plan(checked, Store.for_storyboard(checked.path))
    assert [t.key for sp in plan.shots for t in sp.takes] == [
        t.key for sp in fresh.shots for t in sp.takes
    ]


def test_remembered_keys_are_for_the_digests_they_were_made_with(board: Project) -> None:
    """The same checked board (a file rewritten in place, size and mtime kept) whose input
    digests are not the remembered ones (the digest memo was deleted): keys are made again."""
    from storyboard.pipeline import plan_build

    before = _filled(board)
    plan_build(board.file)
    ref = board.root / "refs" / "b.png"
    st = ref.stat()
    data = bytearray(ref.read_bytes())
    data[-30:-20] = bytes(10)
    with ref.open("r+b") as handle:
        handle.write(data)
    os.utime(ref, ns=(st.st_atime_ns, st.st_mtime_ns))
    (board.root / ".storyboard" / "digests.json").unlink()
    plan = plan_build(board.file)
    assert plan.shot("b").takes[0].key != before[1] and plan.shot("b").status == "stale"


def test_a_wrong_remembered_key_is_never_used_for_a_take_to_render(board: Project) -> None:
    """The remembered keys only ever name takes found in the store: a take to render gets
    the key of its material, and one key that is not its material's drops them all."""
    from storyboard.pipeline import plan_build

    keys = _filled(board)
    plan_build(board.file)
    store = Store.for_storyboard(storyboard_path(board.file))
    index = _index_file(store)
    data = json.loads(index.read_text())
    data["plans"]["preview"]["takes"]["b"] = ["0" * 64]  # no such take in the store
    index.write_text(json.dumps(data))
    plan = plan_build(board.file)
    assert [t.key for sp in plan.shots for t in sp.takes] == keys
    assert all(t.fresh for sp in plan.shots for t in sp.takes)
    remembered = json.loads(index.read_text())["plans"]["preview"]["takes"]
    assert [k for sp in plan.shots for k in remembered.get(sp.id, [])] == keys  # put right


# -- the key index -------------------------------------------------------------------------------


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", tmp_path / "storyboard.yaml")


def _put(store: Store, tmp_path: Path, key: str, data: bytes, shot: str = "a") -> None:
    clip = tmp_path / f"{key}.mp4"
    clip.write_bytes(data)
    store.put(key, clip, seconds=1.0, shot=shot, take=1)


def _age_folders(store: Store) -> None:
    for folder in (store.root / "keys").iterdir():
        _age(folder)


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key record file the index reads from now on."""
    reads: list[str] = []
    real = keyindex._read

    def counting(path: str) -> object:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(keyindex, "_read", counting)
    return reads


def _index_file(store: Store) -> Path:
    return store.root / INDEX_FOLDER / f"{store.namespace}.json"


KEYS = [f"{i:02x}" * 32 for i in range(6)]


def test_a_noop_reads_the_index_not_one_file_per_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    for i, key in enumerate(KEYS):
        _put(store, tmp_path, key, f"clip {i}".encode())
    store.save()
    reads = _reads(monkeypatch)
    fresh = _store(tmp_path)  # a later process, while the folders just written are recent:
    assert all(fresh.lookup(k) is not None for k in KEYS)
    fresh.save()
    assert len(reads) == len(KEYS)  # ... every record is read from its file
    _age_folders(store)  # as folders that changed more than a moment ago
    settled = _store(tmp_path)
    assert [settled.lookup(k).shot for k in KEYS] == ["a"] * len(KEYS)  # type: ignore[union-attr]
    settled.save()
    assert len(reads) == 2 * len(KEYS)
    folders = json.loads(_index_file(store).read_text())["folders"]
    assert sorted(folders) == sorted(k[:2] for k in KEYS)
    noop = _store(tmp_path)
    assert all(noop.lookup(k) is not None for k in KEYS)
    assert noop.lookup("ff" * 32) is None
    assert len(reads) == 2 * len(KEYS) + 1  # the unknown key's file, and nothing else


def test_the_index_is_the_storyboards_own(tmp_path: Path) -> None:
    """A store is shared by every storyboard of a project: each indexes only its own keys."""
    one = _store(tmp_path)
    other = Store(tmp_path / "store", tmp_path / "other.yaml")
    for i, key in enumerate(KEYS):
        _put(one, tmp_path, key, f"clip {i}".encode())
    _age_folders(one)
    assert other.lookup(KEYS[0]) is not None
    other.save()
    mine = json.loads(_index_file(other).read_text())["folders"]
    assert [list(answers) for _, answers in mine.values()] == [[KEYS[0]]]


def test_a_recent_folder_is_not_trusted_by_its_mtime(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _put(store, tmp_path, KEYS[0], b"one")
    _put(store, tmp_path, KEYS[1], b"two")
    _age(store.root / "keys" / KEYS[1][:2])
    later = _store(tmp_path)
    assert later.lookup(KEYS[0]) is not None and later.lookup(KEYS[1]) is not None
    later.save()
    folders = json.loads(_index_file(store).read_text())["folders"]
    assert list(folders) == [KEYS[1][:2]]  # the folder changed just now is not kept


def test_what_other_writers_do_is_seen(tmp_path: Path) -> None:
    """Records added, rewritten and removed by another process (an older version, a
    teammate's pull, gc) after the index was written: the per-key files win."""
    store = _store(tmp_path)
    for i, key in enumerate(KEYS[:3]):
        _put(store, tmp_path, key, f"clip {i}".encode())
    added = KEYS[1][:2] + "ee" * 31  # not there yet, in a folder the index trusts
    _age_folders(store)
    warm = _store(tmp_path)
    assert all(warm.lookup(k) is not None for k in KEYS[:3])
    assert warm.lookup(added) is None
    warm.save()
    assert _index_file(store).is_file()

    # Another writer, straight to the per-key files (as any version writes them).
    keys = store.root / "keys"
    record = json.loads((keys / KEYS[1][:2] / f"{KEYS[1]}.json").read_text())
    (keys / KEYS[0][:2] / f"{KEYS[0]}.json").unlink()  # gc removed it
    target = keys / KEYS[1][:2] / f"{KEYS[1]}.json"
    tmp = target.with_name(".tmp")
    tmp.write_text(json.dumps({**record, "shot": "moved"}))
    os.replace(tmp, target)  # rewritten by rename
    (keys / added[:2] / f"{added}.json").write_text(json.dumps({**record, "key": added}))

    later = _store(tmp_path)
    assert later.lookup(KEYS[0]) is None and not later.knows(KEYS[0])
    assert later.lookup(KEYS[1]).shot == "moved"  # type: ignore[union-attr]
    assert later.lookup(KEYS[2]) is not None
    assert later.lookup(added) is not None and later.knows(added)


def test_a_damaged_or_missing_index_is_an_empty_one(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _put(store, tmp_path, KEYS[0], b"one")
    _age_folders(store)
    warm = _store(tmp_path)
    assert warm.lookup(KEYS[0]) is not None
    warm.save()
    index = _index_file(store)
    wrong_record = b'{"format": 1, "folders": {"00": [1, {"x": [1]}]}}'
    for damage in (b"{", b"[]", wrong_record, None):
        if damage is None:
            index.unlink()
        else:
            index.write_bytes(damage)
        again = _store(tmp_path)
        assert again.lookup(KEYS[0]) is not None
        assert again.lookup(KEYS[1]) is None


def test_the_keys_folder_removed_forgets_every_key(tmp_path: Path) -> None:
    """Another checkout's view (the lock knows the clips, the store's records are gone)."""
    store = _store(tmp_path)
    _put(store, tmp_path, KEYS[0], b"one")
    store.save()
    shutil.rmtree(store.root / "keys")
    later = _store(tmp_path)
    assert later.lookup(KEYS[0]) is None and not later.knows(KEYS[0])


def test_a_corrupt_clip_dropped_is_dropped_from_the_index(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _put(store, tmp_path, KEYS[0], b"one" * 100)
    entry = store.lookup(KEYS[0])
    assert entry is not None
    entry.path.write_bytes(b"two" * 100)
    assert not store.verified(entry)
    assert store.lookup(KEYS[0]) is None and not store.knows(KEYS[0])
    store.save()
    assert _store(tmp_path).lookup(KEYS[0]) is None


def test_two_stores_of_one_root_in_one_process_see_each_others_writes(tmp_path: Path) -> None:
    """A batch opens a store per storyboard: a clip one stored is found by the other."""
    one, two = _store(tmp_path), Store(tmp_path / "store", tmp_path / "other.yaml")
    assert two.lookup(KEYS[0]) is None
    _put(one, tmp_path, KEYS[0], b"shared")
    assert two.lookup(KEYS[0]) is not None


def test_reading_creates_no_store(tmp_path: Path) -> None:
    index = KeyIndex(tmp_path / "store", "ns")
    assert index.record(KEYS[0]) is None and not index.knows(KEYS[0])
    index.save()
    assert not (tmp_path / "store").exists()
