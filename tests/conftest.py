"""Shared fixtures: tiny real projects on disk, a CLI runner, and a clean environment."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storyboard.cli import main

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
