"""Shared fixtures: tiny real projects on disk, a CLI runner, a clean environment and the
provider emulator on loopback."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storyboard.cli import main

if TYPE_CHECKING:
    from storyboard.testing.emulator import Emulator, EmulatorServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a real key, a shared cache or a provider base URL from the machine."""
    for name in (
        "WAVESPEED_API_KEY",
        "QINGBO_API_KEY",
        "WAVESPEED_BASE_URL",
        "QINGBO_BASE_URL",
        "STORYBOARD_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)


def git_tree(root: Path) -> Path:
    """A new folder that is a git working tree (so a project root: one store for it)."""
    import subprocess

    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def serve_emulator(
    monkeypatch: pytest.MonkeyPatch,
    *,
    keys: tuple[str, str],
    poll: str = "0.02",
    min_output_share: str = "0",
    **options: Any,
) -> tuple[Emulator, EmulatorServer]:
    """Both providers' emulator on loopback, the environment pointing at it.

    ``keys`` is the (WaveSpeed, Qingbo) key pair the emulator accepts and the environment
    carries: each module passes its own, so a test can look for its key strings in output.
    ``options`` go to :class:`Emulator`; renders are fast by default (``scale=1/16``,
    ``max_seconds=1.0``). The caller closes the server (see the ``emulators`` fixture).
    """
    from storyboard.testing.emulator import Emulator, EmulatorServer

    options.setdefault("scale", 1 / 16)
    options.setdefault("max_seconds", 1.0)
    wavespeed_key, qingbo_key = keys
    emu = Emulator(wavespeed_keys=(wavespeed_key,), qingbo_keys=(qingbo_key,), **options)
    server = EmulatorServer(emu)
    for name, value in {
        "WAVESPEED_API_KEY": wavespeed_key,
        "QINGBO_API_KEY": qingbo_key,
        "WAVESPEED_BASE_URL": server.url,
        "QINGBO_BASE_URL": server.url,
        "STORYBOARD_POLL_INTERVAL": poll,
        # Served clips are cut to max_seconds: not a broken provider's short output.
        "STORYBOARD_MIN_OUTPUT_SHARE": min_output_share,
    }.items():
        monkeypatch.setenv(name, value)
    return emu, server


Emulators = Callable[..., "tuple[Emulator, EmulatorServer]"]


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """Starts emulators with :func:`serve_emulator`; at teardown closes each and checks that
    it met no bug of its own."""
    started: list[tuple[Emulator, EmulatorServer]] = []

    def start(**kwargs: Any) -> tuple[Emulator, EmulatorServer]:
        emu, server = serve_emulator(monkeypatch, **kwargs)
        started.append((emu, server))
        return emu, server

    yield start
    for emu, server in started:
        server.close()
        assert emu.internal_errors == []


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., Result]:
    return run_cli


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 36)) -> Path:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle([4, 4, size[0] // 2, size[1] // 2], fill=(255, 255, 255))
    image.save(path)
    return path


@dataclass
class Project:
    """A storyboard folder in tmp_path with helpers to edit it."""

    root: Path

    @property
    def file(self) -> Path:
        return self.root / "storyboard.yaml"

    def write(self, text: str) -> Path:
        self.file.write_text(text, encoding="utf-8")
        return self.file

    def edit(self, old: str, new: str) -> None:
        text = self.file.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in the storyboard"
        self.file.write_text(text.replace(old, new, 1), encoding="utf-8")

    def plan(self, *extra: str) -> dict[str, Any]:
        result = run_cli("plan", "--json", str(self.file), *extra)
        assert result.code == 0, result.err
        data: dict[str, Any] = result.json()
        return data

    def statuses(self) -> dict[str, tuple[str, str]]:
        return {s["id"]: (s["status"], s["reason"]) for s in self.plan()["shots"]}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    write_image(root / "refs" / "a.png", (200, 60, 40))
    write_image(root / "refs" / "b.png", (40, 90, 200))
    old = Path.cwd()
    os.chdir(root)
    try:
        yield Project(root)
    finally:
        os.chdir(old)


# A V1 shot from a local image and a V4 text-to-video shot: one take on each provider.
PAIR_BOARD = """\
storyboard: 1
output:
  resolution: 480p
  fps: 24
shots:
  - id: kite
    model: skyreels-v1
    first_frame: refs/a.png
    prompt: a red kite over a field
    seed: 7
  - id: sea
    model: skyreels-v4-fast
    prompt: a lighthouse at dusk
    resolution: 480p
    duration: 3
"""
