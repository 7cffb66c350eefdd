"""The codebase's own rules: lint, types, layering, public API, packaging."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from storyboard.catalog import MODELS, RESOLUTIONS, TRANSITIONS, V4_ACTIONS
from storyboard.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "storyboard"


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    shot = schema["$defs"]["shot"]["properties"]
    assert shot["model"]["enum"] == list(MODELS)
    assert shot["resolution"]["enum"] == list(RESOLUTIONS)
    assert shot["action"]["enum"] == list(V4_ACTIONS)
    assert schema["$defs"]["transition"]["anyOf"][0]["enum"] == list(TRANSITIONS)


def test_every_example_validates(cli) -> None:  # type: ignore[no-untyped-def]
    examples = sorted((ROOT / "examples").glob("*/storyboard.yaml"))
    assert len(examples) >= 3
    result = cli("validate", *map(str, examples))
    assert result.code == 0, result.err


# The public API (``__all__`` against what the package really exports) is checked in
# tests/test_shape.py, with the import graph.


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_layers_point_one_way() -> None:
    """Nothing imports the CLI; only the CLI layer prints; the kernel imports no stage."""
    kernel = {"errors", "catalog", "model", "hashing", "events", "paths", "project", "suggest"}
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        imports = _imports(path)
        if name not in ("cli", "__main__"):
            assert "storyboard.cli" not in imports, name
            assert "storyboard._progress" not in imports, name
        if name in kernel:
            stages = {i for i in imports if i.startswith("storyboard.")}
            assert stages <= {f"storyboard.{k}" for k in kernel}, (name, stages)
        if not (name in ("_progress", "cli") or name.startswith("cli_")):
            calls = [
                n for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
            ]  # fmt: skip
            assert not calls, f"{name} prints; only the CLI layer may"


def test_validate_imports_no_media_or_network_modules(tmp_path: Path) -> None:
    code = (
        "import sys; from storyboard.cli import main;"
        f"main(['validate', '-q', {str(ROOT / 'examples/dawn/storyboard.yaml')!r}]);"
        "print(sorted(m for m in ('moviepy', 'httpx', 'numpy', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_wheel_contains_the_schema(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("storyboard-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "storyboard/_schemas/storyboard.schema.json" in names
        packaged = json.loads(zf.read("storyboard/_schemas/storyboard.schema.json"))
    assert packaged == json.loads((ROOT / "schemas" / "storyboard.schema.json").read_text())


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "storyboard", "tests", "benchmarks"],
            check=False, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
