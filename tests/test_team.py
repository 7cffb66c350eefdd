"""A team never pays twice (issue 12 items 3 and 4): two machines, one remote, one provider.

Two "machines" are two working copies in separate folders, each its own ``git init`` and
local store, with the same ``storyboard.toml`` naming one remote: a real moto S3 server on
loopback (through s3fs) or a shared folder (every scenario runs on both). They render
``--live`` against ONE provider emulator on loopback, whose records say what was POSTed for
which generation key. Each machine names itself in claims through ``$STORYBOARD_HOST``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import s3server
from conftest import PAIR_BOARD, ROOT, Emulators, Result, git_tree, run_cli, write_image
from s3server import AWS_KEY_ID, AWS_SECRET, RemoteSpot

from storyboard.testing.emulator import Emulator, EmulatorServer, Fault

pytestmark = pytest.mark.slow

# The remote fixtures (see tests/s3server.py), made visible to this module's tests.
s3_service, aws_env, s3_remote = s3server.s3_service, s3server.aws_env, s3server.s3_remote
folder_remote, remote_spot = s3server.folder_remote, s3server.remote_spot

WS_KEY = "ws-team-test-key-Hq27Lm04Xc"
QB_KEY = "qb-team-test-key-Pz91Ka38Wd"
V1 = "wavespeed-ai/SkyReels-V1"
SECRETS = (WS_KEY, QB_KEY, AWS_SECRET, AWS_KEY_ID)


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


@dataclass
class Provider:
    """One emulator of both providers, served on loopback."""

    emu: Emulator
    server: EmulatorServer

    def submits(self) -> list[Any]:
        return list(self.emu.submissions)

    def posts_since(self, mark: int) -> list[Any]:
        return [r for r in self.emu.requests[mark:] if r.method == "POST"]

    def mark(self) -> int:
        return len(self.emu.requests)


@pytest.fixture
def provider(emulators: Emulators) -> Iterator[Callable[..., Provider]]:
    """``emulators`` closes each server and checks its internal errors; here, its auth leaks."""
    started: list[Provider] = []

    def start(**options: Any) -> Provider:
        options.setdefault("polls_to_start", 1)
        options.setdefault("polls_to_finish", 2)
        handle = Provider(*emulators(keys=(WS_KEY, QB_KEY), poll="0.05", **options))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.server.close()  # idempotent: ``emulators`` closes it again
        assert handle.emu.auth_leaks == []


@dataclass
class Machine:
    """A working copy of the project on one machine: its own git, store and host name."""

    name: str
    root: Path

    @property
    def file(self) -> Path:
        return self.root / "storyboard.yaml"

    @property
    def cut(self) -> Path:
        return self.root / "renders" / "storyboard.mp4"

    @property
    def lock(self) -> Path:
        return self.root / "storyboard.lock"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "STORYBOARD_HOST": self.name,
            **extra,
        }

    def render(self, *extra: str, **env: str) -> Result:
        """``storyboard render --live`` on this machine, in this process."""
        with _chdir(self.root), _environ(STORYBOARD_HOST=self.name, **env):
            return run_cli("render", "--live", *extra, "storyboard.yaml")

    def spawn(self, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        """The same as a separate process (stdout/stderr piped)."""
        return subprocess.Popen(
            [sys.executable, "-m", "storyboard", "render", "--live", *extra, "storyboard.yaml"],
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def files(self) -> dict[str, bytes]:
        """Every file of the working copy (its store included), by relative path."""
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        }


@contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _machine(base: Path, name: str, toml: str, board: str = PAIR_BOARD) -> Machine:
    root = git_tree(base / name / "project")
    write_image(root / "refs" / "a.png", (200, 60, 40))
    write_image(root / "refs" / "b.png", (40, 90, 200))
    (root / "storyboard.yaml").write_text(board, encoding="utf-8")
    (root / "storyboard.toml").write_text(toml, encoding="utf-8")
    return Machine(name, root)


@pytest.fixture
def machines(tmp_path: Path, remote_spot: RemoteSpot) -> tuple[Machine, Machine]:
    toml = remote_spot.toml()
    return _machine(tmp_path, "machine-a", toml), _machine(tmp_path, "machine-b", toml)


def _keys(machine: Machine) -> dict[str, str]:
    """Shot id -> generation key of its one take (``plan --live --json``)."""
    with _chdir(machine.root):
        result = run_cli("plan", "--live", "--json", "storyboard.yaml")
    assert result.code == 0, result.err
    return {s["id"]: s["keys"][0] for s in result.json()["shots"] if s["keys"]}


def _assert_each_key_bought_once(provider: Provider, keys: dict[str, str]) -> None:
    """One created task per generation key, in all: kite once at WaveSpeed, sea once at
    Qingbo (under its own idempotency key)."""
    emu = provider.emu
    assert len(emu.tasks()) == len(keys) == 2
    assert set(emu.tasks_per_body_hash.values()) == {1}
    assert Counter(s.endpoint for s in provider.submits()) == Counter({V1: 1, "/v1/tasks": 1})
    created = Counter(s.idempotency_key for s in provider.submits() if s.provider == "qingbo")
    assert created == Counter({f"storyboard-{keys['sea']}": 1})


def _assert_no_secret(*texts: str | bytes, where: str = "") -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in data, f"a credential in {where}"


def _claims(spot: RemoteSpot) -> dict[str, dict[str, Any]]:
    """The claims on the remote (not the temp files of one being written on a folder)."""
    return {
        name: json.loads(data)
        for name, data in spot.files().items()
        if name.startswith("claims/") and not name.rsplit("/", 1)[-1].startswith(".")
    }


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def test_a_teammate_renders_what_was_rendered_for_nothing(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    a, b = machines
    emu = provider()
    first = a.render()
    assert first.code == 0, first.err
    keys = _keys(a)
    _assert_each_key_bought_once(emu, keys)
    held = remote_spot.files()
    assert {n.split("/")[0] for n in held} == {"objects", "keys"}  # no claim left behind
    assert {f"keys/{k[:2]}/{k}.json" for k in keys.values()} <= set(held)

    mark = emu.mark()
    second = b.render("--json")
    assert second.code == 0, second.err
    assert emu.emu.requests[mark:] == []  # not a POST, not even a GET: $0
    assert b.cut.read_bytes() == a.cut.read_bytes()
    assert b.lock.read_text() == a.lock.read_text()
    data = second.json()
    assert data["spent"] == {"usd": 0.0, "takes": 0}
    _assert_each_key_bought_once(emu, keys)
    for machine in (a, b):
        for name, content in machine.files().items():
            _assert_no_secret(content, where=f"{machine.name}:{name}")
    for name, content in remote_spot.files().items():
        _assert_no_secret(content, where=f"the remote: {name}")
    _assert_no_secret(first.out, first.err, second.out, second.err, where="the output")


def test_two_machines_rendering_at_once_buy_every_key_once(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    a, b = machines
    emu = provider()
    # Both uploads of a.png (kite's first frame) are held a moment: both machines reach the
    # claim of kite while the other is there too; sea (no upload) races from the start.
    # Qingbo's first submit (sea) is held too: its claim is there while the other arrives.
    emu.emu.script(Fault(on="media", delay=4.0, times=2))
    emu.emu.script(Fault(on="submit", provider="qingbo", delay=4.0))
    procs = [a.spawn(), b.spawn()]
    outcomes = [(p.wait(timeout=120), *(x.decode() for x in p.communicate())) for p in procs]
    for code, out, err in outcomes:
        assert code == 0, err
        _assert_no_secret(out, err, where="the output")
    _assert_each_key_bought_once(emu, _keys(a))
    assert a.cut.read_bytes() == b.cut.read_bytes()
    assert _claims(remote_spot) == {}
    # Whoever lost a claim waited for the other machine and pulled its clip.
    waited = "".join(err for _, _, err in outcomes)
    assert "rendering on machine-" in waited


def _dead_port() -> int:
    """A loopback port nothing listens on (the socket that had it is closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_for(ready: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def test_a_machine_killed_after_its_submits_is_waited_for_then_taken_over(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    a, b = machines
    emu = provider(polls_to_finish=10_000)  # the tasks run until the test says so
    proc = a.spawn(STORYBOARD_TASK_DEADLINE="6")  # its claims are stale 6 s after its submits

    def both_claims_have_task_ids() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                "machine A ended before its claims were made: " + proc.communicate()[1].decode()
            )
        claims = _claims(remote_spot)
        return len(claims) == 2 and all(c["task_id"] for c in claims.values())

    _wait_for(both_claims_have_task_ids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    claims = {c["shot"]: c for c in _claims(remote_spot).values()}
    assert {c["host"] for c in claims.values()} == {"machine-a"}
    assert len(emu.submits()) == 2

    # B waits for A's claims (A is on another host: its pid says nothing here) until their
    # deadline, then reports them stale, each with the one command that takes it over.
    mark = emu.mark()
    started = time.monotonic()
    waiting = b.spawn()
    code = waiting.wait(timeout=120)
    out, err = (x.decode() for x in waiting.communicate())
    assert code == 1, err
    assert time.monotonic() - started > 3  # it waited
    assert "rendering on machine-a since" in err
    for shot, claim in claims.items():
        assert f"claimed on the remote by machine-a (pid {claim['pid']})" in err
        assert f"task {claim['task_id']}" in err
        assert f"storyboard render --live storyboard.yaml --force {shot}" in err
    assert emu.posts_since(mark) == []
    _assert_no_secret(out, err, where="the output")

    # With --force, B takes the claims over and resumes A's tasks: nothing is bought again.
    emu.emu.polls_to_finish = 2
    mark = emu.mark()
    taken = b.render("--force", "kite,sea", "--json")
    assert taken.code == 0, taken.err
    assert [r for r in emu.emu.requests[mark:] if r.kind == "submit"] == []
    assert taken.json()["spent"] == {"usd": 0.0, "takes": 0}
    _assert_each_key_bought_once(emu, _keys(a))
    assert b.cut.is_file()
    assert _claims(remote_spot) == {}  # pushed, then released
    keys = _keys(b)
    assert {f"keys/{k[:2]}/{k}.json" for k in keys.values()} <= set(remote_spot.files())
    # And A, back on its feet, finds the clips on the remote: nothing more is bought.
    mark = emu.mark()
    again = a.render()
    assert again.code == 0, again.err
    assert emu.posts_since(mark) == []
    assert a.cut.read_bytes() == b.cut.read_bytes()


def test_plan_live_counts_nothing_for_what_the_remote_holds(
    machines: tuple[Machine, Machine], remote_spot: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    a, b = machines

    def plan(machine: Machine, *extra: str) -> Result:
        with _chdir(machine.root), _environ(STORYBOARD_HOST=machine.name):
            return run_cli("plan", "--live", *extra, "storyboard.yaml")

    emu = provider()
    before = plan(b, "--json")
    assert before.code == 0, before.err
    price = before.json()["cost"]
    assert price > 0
    assert not any(t["on_remote"] for s in before.json()["shots"] for t in s["take_plan"])
    assert a.render().code == 0
    mark = emu.mark()

    after = plan(b, "--json")
    assert after.code == 0, after.err
    data = after.json()
    assert data["cost"] == 0 and data["remote_problem"] is None
    stale = [t for s in data["shots"] for t in s["take_plan"] if t["will_render"]]
    assert stale and all(t["on_remote"] for t in stale)
    assert all("on the project's remote" in s["reason"] for s in data["shots"] if s["will_render"])
    table = plan(b)
    assert "on the project's remote: pulled, not paid" in table.out
    alone = plan(b, "--no-remote", "--json")  # working alone, it would pay for them again
    assert alone.json()["cost"] == price
    forced = plan(b, "--force", "kite", "--json").json()  # --force renders (and pays) anew
    assert {s["id"]: s["cost"] > 0 for s in forced["shots"]} == {"kite": True, "sea": False}
    assert emu.emu.requests[mark:] == []  # a plan asks no provider anything
    assert b.render("--budget", "0").code == 0  # and the render agrees: it costs nothing


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_plan_live_with_a_remote_it_cannot_reach_warns_and_counts_every_take(
    tmp_path: Path, provider: Callable[..., Provider], aws_env: None, where: str
) -> None:
    spot = RemoteSpot("folder", str(tmp_path / "not-mounted" / "renders"))
    if where == "s3":
        spot = RemoteSpot(
            "s3", "s3://team-bucket/dawn", {"endpoint_url": f"http://127.0.0.1:{_dead_port()}"}
        )
    a = _machine(tmp_path, "machine-a", spot.toml())
    provider()
    with _chdir(a.root):
        result = run_cli("plan", "--live", "--json", "storyboard.yaml")
        alone = run_cli("plan", "--live", "--json", "--no-remote", "storyboard.yaml")
    assert result.code == 0, result.err
    assert "warning:" in result.err and spot.url in result.err
    assert result.json()["remote_problem"] and result.json()["cost"] == alone.json()["cost"] > 0
    _assert_no_secret(result.out, result.err, where="the output")


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_a_remote_that_cannot_be_reached_stops_the_run_before_any_post(
    tmp_path: Path, provider: Callable[..., Provider], aws_env: None, where: str
) -> None:
    if where == "s3":
        spot = RemoteSpot(
            "s3", "s3://team-bucket/dawn", {"endpoint_url": f"http://127.0.0.1:{_dead_port()}"}
        )
    else:
        spot = RemoteSpot("folder", str(tmp_path / "not-mounted" / "renders"))
    a = _machine(tmp_path, "machine-a", spot.toml())
    emu = provider()
    result = a.render()
    assert result.code == 2, result.err
    assert spot.url in result.err
    assert emu.emu.requests == []
    _assert_no_secret(result.out, result.err, where="the output")
    assert not a.cut.exists()
    # Working alone is one switch away (and pays).
    alone = a.render("--no-remote")
    assert alone.code == 0, alone.err
    assert len(emu.submits()) == 2


def test_a_run_that_died_on_this_host_is_reported_at_once_and_resumed_by_force(
    tmp_path: Path, folder_remote: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    """A claim made on this host by a process that is gone is stale now, not at its deadline."""
    here = _machine(tmp_path, "machine-a", folder_remote.toml())
    there = _machine(tmp_path, "machine-b", folder_remote.toml())
    there.name = here.name = "workstation"  # two working copies on one machine
    emu = provider(polls_to_finish=10_000)
    proc = here.spawn()

    def both_submitted() -> bool:
        claims = _claims(folder_remote)
        return len(claims) == 2 and all(c["task_id"] for c in claims.values())

    _wait_for(both_submitted)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    started = time.monotonic()
    result = there.render()
    assert result.code == 1, result.err
    assert time.monotonic() - started < 20  # its deadline is hours away: no wait for it
    assert "that run's process is gone" in result.err
    assert "storyboard render --live storyboard.yaml --force kite" in result.err

    emu.emu.polls_to_finish = 2
    forced = there.render("--force", "kite,sea")
    assert forced.code == 0, forced.err
    assert "taken over from workstation" in forced.err
    _assert_each_key_bought_once(emu, _keys(there))


def test_pull_and_push_switches_turn_their_part_off(
    tmp_path: Path, folder_remote: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    emu = provider()
    quiet = _machine(tmp_path, "machine-a", folder_remote.toml(push=False))
    assert quiet.render().code == 0
    assert folder_remote.files() == {}  # nothing pushed, nothing claimed
    assert len(emu.submits()) == 2

    # A machine that does not look in the remote pays again, and (pushing) shares its clips.
    blind = _machine(tmp_path, "machine-b", folder_remote.toml(pull=False))
    assert blind.render().code == 0
    assert len(emu.submits()) == 4
    assert {n.split("/")[0] for n in folder_remote.files()} == {"objects", "keys"}
    # --no-remote leaves the remote alone: a third copy pays again and sends nothing.
    before = folder_remote.files()
    alone = _machine(tmp_path, "machine-c", folder_remote.toml())
    assert alone.render("--no-remote").code == 0
    assert len(emu.submits()) == 6
    assert folder_remote.files() == before


OTHER_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: sea
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
  - id: harbour
    model: skyreels-v4-fast
    prompt: boats in a harbour at dawn
    resolution: 480p
    duration: 3
"""


def test_a_batch_sharing_a_shot_buys_it_once_and_shares_everything(
    tmp_path: Path, folder_remote: RemoteSpot, provider: Callable[..., Provider]
) -> None:
    """Two storyboards of one project render in one run: the shot they share is bought once,
    and every clip reaches the remote, so a teammate renders both for nothing."""
    a = _machine(tmp_path, "machine-a", folder_remote.toml())
    b = _machine(tmp_path, "machine-b", folder_remote.toml())
    for machine in (a, b):
        (machine.root / "other.yaml").write_text(OTHER_BOARD, encoding="utf-8")
    emu = provider()
    with _chdir(a.root), _environ(STORYBOARD_HOST=a.name):
        first = run_cli("render", "--live", "storyboard.yaml", "other.yaml")
    assert first.code == 0, first.err
    assert Counter(s.model for s in emu.submits()) == Counter(
        {V1: 1, "skyreels-v4-fast": 2}  # kite, sea once, harbour
    )
    assert len(folder_remote.names("keys/")) == 3 and _claims(folder_remote) == {}

    mark = emu.mark()
    with _chdir(b.root), _environ(STORYBOARD_HOST=b.name):
        second = run_cli("render", "--live", "storyboard.yaml", "other.yaml")
    assert second.code == 0, second.err
    assert emu.emu.requests[mark:] == []
    for name in ("storyboard.mp4", "other.mp4"):
        assert (b.root / "renders" / name).read_bytes() == (a.root / "renders" / name).read_bytes()
