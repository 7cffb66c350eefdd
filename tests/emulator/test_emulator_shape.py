"""The emulator package's shape: its public names, its rooms and what they may import.

The emulator is an independent oracle of the providers: it imports nothing of the storyboard
library, keeps httpx (and PIL) out of import time, and its rooms form a chain without
cycles, none of them over ~600 lines.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import storyboard.testing.emulator as emulator_package

PACKAGE = Path(emulator_package.__file__).parent
PREFIX = "storyboard.testing.emulator"
# What the single module exported before it became a package: every name must keep working.
PUBLIC = {
    "DEFAULT_QINGBO_KEY",
    "DEFAULT_WAVESPEED_KEY",
    "QINGBO_MODELS",
    "WAVESPEED_MODELS",
    "AuthLeak",
    "Callback",
    "Emulator",
    "EmulatorResponse",
    "EmulatorServer",
    "Fault",
    "FaultHit",
    "QuotaWindow",
    "RequestRecord",
    "Submission",
    "TaskInfo",
    "VideoProbe",
    "VideoSpec",
    "banner_lines",
    "body_hash",
    "encode_video",
    "probe_duration",
    "probe_video",
    "run_forever",
    "scaled_geometry",
    "serve",
}
LAZY = {"httpx", "PIL", "anyio", "imageio_ffmpeg"}


def rooms() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def imports(tree: ast.Module, *, module_level: bool) -> set[str]:
    """Modules a room imports (at import time only, with ``module_level``)."""
    nodes: list[ast.AST] = list(tree.body) if module_level else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_public_name_is_still_exported() -> None:
    assert set(emulator_package.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(emulator_package, name) is not None
    assert emulator_package.QUOTA_PER_USD == 500_000  # imported by tests, outside __all__
    assert emulator_package.Emulator().handle("GET", "/nowhere", {}, b"").status == 404


def test_rooms_are_small_and_import_no_storyboard_library() -> None:
    for name, tree in rooms().items():
        lines = len((PACKAGE / f"{name}.py").read_text().splitlines())
        assert lines <= 650, f"{name}.py has {lines} lines"
        for module in imports(tree, module_level=False):
            if module.startswith("storyboard"):
                assert module.startswith(PREFIX + "."), f"{name}.py imports {module}"


def test_heavy_modules_are_imported_lazily() -> None:
    for name, tree in rooms().items():
        eager = {m.split(".")[0] for m in imports(tree, module_level=True)}
        assert not eager & LAZY, f"{name}.py imports {eager & LAZY} at import time"


def test_rooms_import_each_other_without_a_cycle() -> None:
    graph = {
        name: {
            module.removeprefix(PREFIX + ".")
            for module in imports(tree, module_level=False)
            if module.startswith(PREFIX + ".")
        }
        for name, tree in rooms().items()
    }
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises on a cycle
    assert order.index("records") < order.index("core") < order.index("host")
    assert order.index("wavespeed") < order.index("host") < order.index("server")
    # The transport needs only the records: any object with handle() can be served by it.
    assert graph["transport"] == {"records"}
