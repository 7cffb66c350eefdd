"""``storyboard push`` / ``pull`` (issue 12 item 3): the clips the locks name, moved to and
from the project's remote, verified and resumable, on a real S3 server (moto on loopback,
through s3fs) and on a shared folder.

Machine A fills its store through the store's own API with a few KiB of distinct bytes for
every take of the storyboard's live plan and writes the real lock of that plan; machine B is
a copy of the working tree (storyboard, lock, refs, ``storyboard.toml``) with an empty store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3server
from conftest import ROOT, Result, run_cli, write_image
from s3server import AWS_KEY_ID, AWS_SECRET, RemoteSpot

from storyboard.cache import Store
from storyboard.lockfile import write_lock
from storyboard.pipeline import known_facts
from storyboard.plan import make_plan
from storyboard.validate import load_storyboard

# The remote fixtures (see tests/s3server.py), made visible to this module's tests.
s3_service, aws_env, s3_remote = s3server.s3_service, s3server.aws_env, s3server.s3_remote
folder_remote, remote_spot = s3server.folder_remote, s3server.remote_spot

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
"""


@dataclass
class Machine:
    """A working copy of the project: its root, its storyboard and its own store."""

    root: Path

    @property
    def board(self) -> Path:
        return self.root / "board.yaml"

    @property
    def store(self) -> Path:
        return self.root / ".storyboard"

    def objects(self) -> dict[str, bytes]:
        return {p.stem: p.read_bytes() for p in sorted((self.store / "objects").glob("*/*.mp4"))}

    def cli(self, *argv: str) -> Result:
        old = Path.cwd()
        os.chdir(self.root)
        try:
            return run_cli(*argv)
        finally:
            os.chdir(old)

    def plan(self) -> dict[str, object]:
        result = run_cli("plan", "--live", "--json", str(self.board))
        assert result.code == 0, result.err
        data: dict[str, object] = result.json()
        return data


def _machine(root: Path, spot: RemoteSpot) -> Machine:
    root.mkdir(parents=True)
    (root / "storyboard.toml").write_text(spot.toml(), encoding="utf-8")
    write_image(root / "refs" / "a.png", (200, 60, 40))
    (root / "board.yaml").write_text(BOARD, encoding="utf-8")
    return Machine(root)


def _render(machine: Machine, size: int = 3000) -> dict[str, str]:
    """Store distinct bytes as the clip of every take of the live plan; write the real lock.

    Returns key -> digest of what the lock names.
    """
    board = load_storyboard(machine.board)
    store = Store.for_storyboard(board.path)
    plan = make_plan(board, store, backend="live", facts=known_facts(board, store, "live"))
    for n, sp in enumerate(plan.shots):
        for take in sp.takes:
            part = store.tmp_dir() / f"{take.key}.mp4"
            part.write_bytes(os.urandom(size + n) + take.key.encode())
            store.put(take.key, part, seconds=1.0, shot=sp.id, take=take.take)
    store.save()
    plan = make_plan(board, store, backend="live", facts=known_facts(board, store, "live"))
    write_lock(plan, store, None)
    lock = json.loads(machine.board.with_suffix(".lock").read_text(encoding="utf-8"))
    return {t["key"]: t["output"] for s in lock["shots"].values() for t in s["takes"]}


def _copy(a: Machine, root: Path) -> Machine:
    """Machine B: a clone of A's working tree (no store)."""
    root.mkdir(parents=True)
    for name in ("storyboard.toml", "board.yaml", "board.lock"):
        shutil.copy2(a.root / name, root / name)
    shutil.copytree(a.root / "refs", root / "refs")
    return Machine(root)


@pytest.fixture
def machines(tmp_path: Path, remote_spot: RemoteSpot) -> Iterator[tuple[Machine, Machine]]:
    a = _machine(tmp_path / "a", remote_spot)
    locked = _render(a)
    assert len(locked) == 4
    yield a, _copy(a, tmp_path / "b")


def _fresh(plan: dict[str, object]) -> bool:
    shots = plan["shots"]
    assert isinstance(shots, list)
    return all(s["status"] == "fresh" for s in shots) and plan["cost"] == 0


# -- push, then pull into an empty store -------------------------------------------------------


@pytest.mark.slow
def test_push_then_pull_gives_the_same_bytes_and_fresh_plans(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot
) -> None:
    a, b = machines
    assert not _fresh(b.plan())

    pushed = a.cli("push", "--json")
    assert pushed.code == 0, pushed.err
    report = pushed.json()
    assert (report["clips"], report["sent"], report["skipped"]) == (4, 4, 0)
    assert report["bytes"] == sum(len(v) for v in a.objects().values())
    assert len(remote_spot.names("objects/")) == len(remote_spot.names("keys/")) == 4

    pulled = b.cli("pull")
    assert pulled.code == 0, pulled.err
    assert pulled.out.startswith("pulled 4 clips (")
    assert b.objects() == a.objects()  # byte for byte
    assert _fresh(b.plan())
    # Resumable: running either again moves nothing.
    again = b.cli("pull", "--json").json()
    assert (again["fetched"], again["skipped"]) == (0, 4)
    assert a.cli("push", "--json").json()["sent"] == 0


@pytest.mark.slow
def test_a_corrupt_object_on_the_remote_is_refused_and_a_rerun_completes(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot
) -> None:
    a, b = machines
    assert a.cli("push").code == 0
    victim = sorted(remote_spot.names("objects/"))[0]
    digest = Path(victim).stem
    remote_spot.write(victim, b"\0" * len(remote_spot.read(victim)))

    pulled = b.cli("pull")
    assert pulled.code == 1
    assert "not what its name says" in pulled.err
    assert "error: 1 clip not fetched" in pulled.err
    assert digest not in b.objects()  # nothing half, nothing wrong entered the store
    assert len(b.objects()) == 3
    for name, data in b.objects().items():
        assert hashlib.sha256(data).hexdigest() == name
    assert victim not in remote_spot.names("objects/")  # refused and removed

    assert a.cli("push", "--json").json()["sent"] == 1  # A puts it right
    again = b.cli("pull", "--json")
    assert again.code == 0, again.err
    assert again.json()["fetched"] == 1
    assert b.objects() == a.objects()
    assert _fresh(b.plan())


# -- an interrupted pull ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_pull_killed_mid_transfer_leaves_no_half_clip_and_a_rerun_completes(
    tmp_path: Path, s3_remote: RemoteSpot
) -> None:
    a = _machine(tmp_path / "a", s3_remote)
    _render(a, size=6_000_000)  # big enough that a download is caught in flight
    assert a.cli("push").code == 0
    b = _copy(a, tmp_path / "b")
    env = {**os.environ, **s3_remote.env, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "pull", "--jobs", "1"],
        cwd=b.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    folder = b.store / "tmp" / f"pull-{process.pid}"
    deadline = time.monotonic() + 60
    try:
        # Kill it once a download is under way and at least one clip is already in.
        while time.monotonic() < deadline:
            parts = [p for p in folder.glob("*") if p.is_file() and p.stat().st_size > 0]
            if parts and 1 <= len(b.objects()) <= 2:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        else:
            pytest.fail("the pull never got under way")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    # What the store holds is whole: every object is what its name says, every key record
    # names one of them.
    held = b.objects()
    assert 0 < len(held) < 4
    for name, data in held.items():
        assert hashlib.sha256(data).hexdigest() == name
    for record in (b.store / "keys").glob("*/*.json"):
        assert json.loads(record.read_text(encoding="utf-8"))["digest"] in held
    assert any(p.is_file() for p in folder.rglob("*"))  # the half download is only in tmp/

    again = b.cli("pull", "--json")
    assert again.code == 0, again.err
    assert again.json()["fetched"] == 4 - len(held)
    assert b.objects() == a.objects()
    assert not (b.store / "tmp").exists() or not any((b.store / "tmp").rglob("*.mp4"))
    assert _fresh(b.plan())


# -- what is refused ----------------------------------------------------------------------------


def test_a_project_without_a_remote_is_told_the_table_to_add(tmp_path: Path) -> None:
    root = tmp_path / "solo"
    root.mkdir()
    (root / ".git").mkdir()
    write_image(root / "refs" / "a.png", (1, 2, 3))
    (root / "board.yaml").write_text(BOARD, encoding="utf-8")
    machine = Machine(root)
    for command in ("push", "pull"):
        result = machine.cli(command)
        assert result.code == 2
        assert f"storyboard {command}: the project has no remote store" in result.err
        assert f"add a [remote] table to {root / 'storyboard.toml'}:" in result.err
        assert '    url = "s3://BUCKET/PREFIX"' in result.err


def test_a_lock_that_names_a_clip_nobody_has_is_a_failure_naming_it(
    tmp_path: Path, folder_remote: RemoteSpot
) -> None:
    a = _machine(tmp_path / "a", folder_remote)
    locked = _render(a)
    lost_key = sorted(locked)[0]
    lost = locked[lost_key]
    (a.store / "objects" / lost[:2] / f"{lost}.mp4").unlink()
    result = a.cli("push")
    assert result.code == 1
    assert f"({lost_key[:12]}): neither the local store nor the remote has this clip" in result.err
    assert "pushed 3 clips" in result.out
    b = _copy(a, tmp_path / "b")
    pulled = b.cli("pull", "--json")
    assert pulled.code == 1
    failed = pulled.json()["failed"]
    assert [f["key"] for f in failed] == [lost_key]
    assert "the remote does not have this clip" in failed[0]["error"]


def test_push_and_pull_of_named_folders_and_files(
    tmp_path: Path, folder_remote: RemoteSpot
) -> None:
    a = _machine(tmp_path / "a", folder_remote)
    _render(a)
    assert a.cli("push", "board.yaml", "--jobs", "2", "-q").out == ""
    b = _copy(a, tmp_path / "b")
    assert b.cli("pull", ".", "--json").json()["fetched"] == 4
    assert b.cli("pull", "nowhere").code == 2
    assert b.cli("pull", "--jobs", "0").code == 2


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_credentials_in_any_output_or_file(tmp_path: Path, s3_remote: RemoteSpot) -> None:
    a = _machine(tmp_path / "a", s3_remote)
    _render(a)
    outputs = [a.cli("push"), a.cli("push", "--json")]
    b = _copy(a, tmp_path / "b")
    outputs += [b.cli("pull"), b.cli("pull", "--json"), b.cli("gc", "--remote", "--dry-run")]
    # An object the remote holds wrong: the error it causes names no credential either.
    victim = sorted(s3_remote.names("objects/"))[0]
    s3_remote.write(victim, b"x")
    shutil.rmtree(b.store)
    outputs.append(b.cli("pull"))
    assert outputs[-1].code == 1
    secrets = [AWS_SECRET, AWS_KEY_ID]
    for result in outputs:
        for secret in secrets:
            assert secret not in result.out + result.err
    for machine in (a, b):
        for path in machine.root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for secret in secrets:
                    assert secret.encode() not in data, path
    for name, data in s3_remote.files().items():
        for secret in secrets:
            assert secret.encode() not in data, name
