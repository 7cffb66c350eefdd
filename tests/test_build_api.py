"""The pipeline as a library call (issue 10 items 1-3): storyboard.build and its async twin,
planning that only reads and takes facts, and the typed records that cross modules."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import EXAMPLES, ROOT, Project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import storyboard
from storyboard.cache import Charge, Provenance, Store
from storyboard.errors import RenderFailed
from storyboard.events import Event
from storyboard.keys import generation_key
from storyboard.lockfile import LockRecord, lock_index, lock_path, write_lock
from storyboard.pipeline import (
    BuildEvent,
    BuildFailed,
    Planned,
    Started,
    Stitching,
    build,
    build_async,
    known_facts,
    plan_build,
)
from storyboard.plan import make_plan
from storyboard.validate import load_storyboard

PACKAGE = ROOT / "storyboard"

# Two 3 s shots and a card, tiny and quick to render as a preview.
BOARD = """\
storyboard: 1
title: build api
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 12
shots:
  - id: a
    prompt: a red kite over a field
  - id: b
    extends: a
    prompt: the kite climbs higher
  - id: card
    card: {text: "The end", duration: 1.0}
"""


def _minimal(tmp_path: Path) -> Path:
    target = tmp_path / "minimal"
    shutil.copytree(EXAMPLES / "minimal", target, ignore=shutil.ignore_patterns(".storyboard"))
    return target / "storyboard.yaml"


# -- build: the three-line use --------------------------------------------------------------


@pytest.mark.slow
def test_the_readme_three_lines_render_the_preview_cut(tmp_path: Path) -> None:
    board = _minimal(tmp_path)
    code = "import storyboard; r = storyboard.build('storyboard.yaml'); print(r.cut)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=board.parent, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    cut = Path(out.stdout.strip())
    assert cut == board.parent / "renders" / "storyboard.preview.mp4"
    assert cut.stat().st_size > 0
    assert out.stderr == ""  # the library prints nothing; only the CLI does


@pytest.mark.slow
def test_build_reports_what_it_did_and_a_rerun_does_nothing(project: Project) -> None:
    project.write(BOARD)
    events: list[BuildEvent] = []
    first = build(project.file, on_event=events.append)
    assert first.ok and first.backend == "preview"
    assert first.rendered == (("a", 1), ("b", 1))
    assert first.up_to_date == ()
    assert first.cut == project.root / "renders" / "storyboard.preview.mp4"
    assert first.seconds == pytest.approx(3 + 3 + 1.0, abs=0.2)
    assert not first.reused and first.missing == () and first.spent.usd == 0
    assert plan_build(project.file).stitch == "fresh"
    # The events: the plan, the start, every take, and the cut last.
    assert isinstance(events[0], Planned) and events[0].plan is first.plan
    assert isinstance(events[1], Started)
    takes = {(e.shot, e.take) for e in events if isinstance(e, Event)}
    assert takes == {("a", 1), ("b", 1)}
    assert isinstance(events[-1], Stitching) and events[-1].state == "written"
    mtime = first.cut.stat().st_mtime_ns

    again = build(str(project.file))
    assert again.rendered == () and again.up_to_date == (("a", 1), ("b", 1))
    assert again.reused and again.cut == first.cut
    assert first.cut.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_build_async_is_the_same_run_in_the_callers_loop(project: Project) -> None:
    project.write(BOARD)
    threads: set[int] = set()

    async def main() -> Any:
        loop_thread = threading.get_ident()

        def on_event(event: BuildEvent) -> None:
            threads.add(threading.get_ident())

        report = await build_async(project.file, only=["a"], on_event=on_event)
        return report, loop_thread

    report, loop_thread = anyio.run(main)
    assert threads == {loop_thread}  # every event in the loop's thread, even the plan's
    assert report.rendered == (("a", 1),)
    assert report.cut is None and report.missing == ("b",)
    assert report.plan.only == frozenset({"a"})
    assert report.outside_only == ("b",)
    synced = build(project.file)
    assert synced.rendered == (("b", 1),) and synced.up_to_date == (("a", 1),)


@pytest.mark.slow
def test_a_failed_take_raises_a_render_failure_carrying_the_report(project: Project) -> None:
    (project.root / "refs").mkdir(exist_ok=True)
    (project.root / "refs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    project.write(BOARD.replace("    prompt: a red kite", "    first_frame: refs/broken.png\n"
                                "    prompt: a red kite"))  # fmt: skip
    with pytest.raises(RenderFailed) as caught:
        build(project.file, keep_going=True)
    assert isinstance(caught.value, BuildFailed)
    report = caught.value.report
    assert {f.shot for f in report.failures} == {"a", "b"}
    assert report.rendered == () and report.cut is None and not report.ok
    assert report.missing == ("a", "b")


def test_a_bad_argument_is_refused_before_anything_runs(project: Project) -> None:
    project.write(BOARD)
    with pytest.raises(storyboard.StoryboardError, match="--only names no shot 'nope'"):
        build(project.file, only=["nope"])
    with pytest.raises(storyboard.StoryboardError, match=r"does not name a \.mp4"):
        build(project.file, output=project.root / "cut.txt")
    assert not (project.root / ".storyboard").exists()


def test_the_public_api_names_the_pipeline() -> None:
    for name in ("build", "build_async", "BuildReport", "BuildFailed"):
        assert name in storyboard.__all__
    assert storyboard.build is build and storyboard.build_async is build_async


# -- planning only reads --------------------------------------------------------------------


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _live_project(project: Project) -> tuple[Any, Store]:
    """A live plan whose takes are in the store and the lock, as after a live render."""
    project.write(BOARD)
    board = load_storyboard(project.file)
    store = Store.for_storyboard(board.path)
    plan = make_plan(board, store, backend="live")
    for sp in plan.to_render:
        for take in sp.takes:
            clip = store.tmp_dir() / f"{take.key}.mp4"
            clip.write_bytes(take.key.encode())
            info = Provenance(provider="qingbo", task_id=f"task-{sp.id}", seed=None)
            store.put(take.key, clip, seconds=3.0, shot=sp.id, take=take.take, provenance=info)
    write_lock(plan, store, None)
    store.save()
    return board, store


def test_make_plan_writes_nothing_and_hands_back_the_clips_the_lock_names(
    project: Project,
) -> None:
    board, store = _live_project(project)
    shutil.rmtree(store.root / "keys")  # another checkout: the index lacks the lock's keys
    before = _files(project.root)
    facts = known_facts(board, store, "live")
    plan = make_plan(board, store, backend="live", facts=facts)
    assert _files(project.root) == before  # nothing written, not even the index
    assert {e.shot for e in plan.adopted} == {"a", "b"}
    assert plan.cost == 0 and all(sp.status == "fresh" for sp in plan.shots)
    assert plan.shot("a").selected is not None
    clip = plan.shot("a").selected.clip  # type: ignore[union-attr]
    assert clip is not None and clip.provenance.task_id == "task-a"
    # Without the facts the same store plans both shots as not rendered.
    blind = make_plan(board, store, backend="live")
    assert blind.adopted == () and {sp.status for sp in blind.shots if sp.takes} == {"stale"}
    # The pipeline records what the plan found: the next plan finds it in the index.
    plan_build(project.file, live=True)
    assert store.knows(plan.shot("a").takes[0].key)
    assert make_plan(board, store, backend="live").cost == 0


def test_plan_imports_neither_the_lock_nor_the_journal() -> None:
    tree = ast.parse((PACKAGE / "plan.py").read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert "storyboard.lockfile" not in imported
    assert "storyboard.journal" not in imported
    assert "storyboard.keys" in imported
    keys = ast.parse((PACKAGE / "keys.py").read_text(encoding="utf-8"))
    inside = {n.module for n in ast.walk(keys) if isinstance(n, ast.ImportFrom) and n.module}
    assert inside <= {"__future__", "collections.abc", "dataclasses", "pathlib", "typing",
                      "storyboard.catalog", "storyboard.hashing", "storyboard.model"}  # fmt: skip


# -- typed records --------------------------------------------------------------------------


def test_generation_keys_are_those_of_earlier_versions(tmp_path: Path) -> None:
    """Stores and locks made before the material became a record still hit: the key of a
    take is the sha256 of the same JSON."""
    board = load_storyboard(_minimal(tmp_path))
    store = Store(tmp_path / "store", board.path)
    preview, live = make_plan(board, store), make_plan(board, store, backend="live")
    assert preview.shot("river").takes[0].key == (
        "d854743cb792abc796550e3b1e5be1a98fc65c539725c5a33b9f20f2108cc058"
    )
    assert live.shot("drain").takes[0].key == (
        "a8181c6548da72c4669a8ceed46da1b5bcc2c226e80d2c11bfd1390291ddaffa"
    )
    take = preview.shot("river").takes[0]
    assert generation_key(take.material) == take.key
    assert take.material.to_json()["caption"] == "river"
    assert "caption" not in live.shot("river").takes[0].material.to_json()


def test_a_clip_keeps_its_provenance_in_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", tmp_path / "storyboard.yaml")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not really a video")
    made = Provenance(
        provider="qingbo", model="skyreels-v4-fast", task_id="t1", seed=7,
        reported_cost=Charge(102000, "quota"),
    )  # fmt: skip
    entry = store.put("k" * 64, clip, seconds=1.5, shot="a", take=2, provenance=made)
    found = store.lookup("k" * 64)
    assert found is not None and found.digest == entry.digest
    assert found.provenance.time is not None
    assert found.provenance == Provenance(**{**made.__dict__, "time": found.provenance.time})


_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_ é", min_size=1, max_size=12)
_DIGEST = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_TAKE = st.fixed_dictionaries(
    {
        "take": st.integers(1, 9),
        "key": _DIGEST,
        "prompt": _TEXT,
        "model": st.sampled_from(["skyreels-v1", "skyreels-v4-fast"]),
        "seed": st.one_of(st.none(), st.integers(0, 2**31 - 1)),
        "inputs": st.dictionaries(st.sampled_from(["first_frame", "audio"]), _DIGEST, max_size=2),
        "upstream": st.one_of(
            st.none(), st.fixed_dictionaries({"mode": st.just("extends"), "key": _DIGEST})
        ),
        "output": _DIGEST,
        "duration": st.one_of(st.integers(1, 30), st.floats(0.5, 30, allow_nan=False)),
        "provider": st.one_of(st.none(), st.sampled_from(["wavespeed", "qingbo"])),
        "task_id": st.one_of(st.none(), _TEXT),
        "cost": st.one_of(st.integers(0, 3), st.floats(0, 5, allow_nan=False)),
        "time": st.one_of(st.none(), st.just("2026-01-02T03:04:05Z")),
    },
    optional={
        "reported_cost": st.fixed_dictionaries(
            {"amount": st.one_of(st.integers(0, 10**6), st.floats(0, 9)), "unit": _TEXT}
        )
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(takes=st.lists(_TAKE, min_size=1, max_size=4, unique_by=lambda t: t["key"]))
def test_a_lock_record_is_the_lock_files_take_unchanged(
    tmp_path: Path, takes: list[dict[str, Any]]
) -> None:
    """Read into LockRecords and written back, every take of a lock is the same JSON (so a
    rewritten lock is the same bytes; integers stay integers)."""
    board = tmp_path / "storyboard.yaml"
    data = {"lock": 1, "storyboard": board.name, "cost": 0, "shots": {"s": {"takes": takes}}}
    lock_path(board).write_text(json.dumps(data), encoding="utf-8")
    records = lock_index(board)
    assert set(records) == {t["key"] for t in takes}
    for take in takes:
        record = records[take["key"]]
        assert isinstance(record, LockRecord) and record.shot == "s"
        again = json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)
        assert again == json.dumps(take, sort_keys=True, ensure_ascii=False)
        assert record.provenance.task_id == take["task_id"]
