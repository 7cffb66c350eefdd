"""The shape of the code (issue 10 item 8): one direction of imports, no cycle, no huge room.

The import graph is read from the source (the AST of every module under ``storyboard/``,
function-level and ``TYPE_CHECKING`` imports included), not from what a test run happened
to import, so a lazy import that closes a cycle or reaches a later stage fails here too.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import storyboard
from storyboard.errors import InvalidStoryboard
from storyboard.loader import json_path
from storyboard.validate import load_storyboard

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "storyboard"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# -- the import graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``lazy``: inside a function body."""

    source: str
    target: str
    line: int
    lazy: bool
    names: tuple[str, ...] = ()


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module that ``name`` lives in (``storyboard.cache.Store`` -> ``storyboard.cache``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> Iterator[Edge]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _owner(alias.name)
                    if target is not None:
                        yield Edge(module, target, child.lineno, lazy)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*up, *([base] if base else [])])
                if not base.startswith("storyboard"):
                    continue
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in MODULES else _owner(base)
                    if target is not None:
                        yield Edge(module, target, child.lineno, lazy, (alias.name,))
            yield from visit(child, inner)

    yield from visit(tree, False)


EDGES: list[Edge] = [
    edge
    for module, path in MODULES.items()
    for edge in _imports(module, path)
    if edge.target != module
]


def _is_lazy_own_module(edge: Edge) -> bool:
    """A package naming one of its own modules inside a function (the provider table's lazy
    factories). Python imports a package before any module in it, so when that module then
    imports the package's table it always finds the table complete: no cycle at run time.
    A package importing its own module at the top of ``__init__`` is still an edge."""
    return edge.lazy and edge.target.startswith(edge.source + ".")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    """The reader finds module-level, function-level, relative and package imports."""
    by_source = {(e.source, e.target, e.lazy) for e in EDGES}
    assert ("storyboard.validate", "storyboard.rules", False) in by_source
    assert ("storyboard.__main__", "storyboard.cli", False) in by_source
    # cli imports the validate stage only when a command needs it.
    assert ("storyboard.cli", "storyboard.validate", True) in by_source
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_the_package() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in EDGES:
        if not _is_lazy_own_module(edge) and _short(edge) not in KNOWN_BACKWARD:
            graph[edge.source].add(edge.target)
    cycle = _cycle(graph)
    if cycle is not None:
        lines = [
            f"  {e.source} -> {e.target} (line {e.line}{', in a function' if e.lazy else ''})"
            for a, b in itertools.pairwise(cycle)
            for e in EDGES
            if (e.source, e.target) == (a, b)
        ]
        pytest.fail("import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(lines))


# -- stages import only earlier stages ------------------------------------------------------


def _short(edge: Edge) -> tuple[str, str]:
    return edge.source.removeprefix("storyboard."), edge.target.removeprefix("storyboard.")


# The pipeline's order (ARCHITECTURE.md, adapted to the real modules): a module may import
# modules of its own rank or an earlier one, never a later one.
STAGES: tuple[tuple[str, ...], ...] = (
    # kernel: imported by all, imports nothing above it
    ("errors", "model", "hashing", "events", "paths", "project", "catalog", "suggest"),
    ("locks",),  # file locks whose waits end: the store's and the work folders'
    ("overrides",),  # --set values, read first by the command line (issue 13)
    ("loader",),
    ("schema",),
    ("templating",),
    ("rules",),
    ("boardcache",),  # checked storyboards kept in the store (issue 13)
    ("validate",),
    # The clip store before the plan: planning reads which clips exist (a fact, read-only);
    # what the lock and the journal know is passed into the plan (issue 10 item 2).
    # The journal before the store: adopting a store of an earlier version merges its
    # journal (issue 12); the journal itself imports only the kernel.
    ("journal",),
    ("keyindex",),  # the key records a storyboard reads, in one file (issue 13)
    ("cache",),
    ("keys", "plan"),
    ("lockfile",),
    ("remote_base", "remote", "teamwork"),  # the project's remote store and claims (issue 12)
    ("polling", "scheduler", "render", "live", "preflight"),
    ("stitcher", "cutter", "seams", "workfolder", "timeline", "takecheck"),
    ("pipeline",),
    ("batch",),  # many storyboards in one run, one scheduler (issue 12)
    ("sharing", "gc"),  # the project's store: push, pull, gc (issue 12)
    # After a render: looking at the cut, choosing takes, handing it on (issue 11).
    ("selecting", "review", "sheet", "export"),
    ("cli", "cli_batch", "cli_handoff", "cli_options", "cli_team", "_progress", "__main__"),
)
# Services any stage may use; they import only the kernel and other services. The emulator
# (``testing``) is an independent oracle: only the CLI's ``emulate`` and the tests use it.
SERVICES: tuple[str, ...] = ("media", "mediainfo", "providers", "testing")

# Known edges against the order (they also close the one known cycle), each with the work
# that removes it. The cycle test and the order test skip them; a test fails when an entry
# is no longer in the code, so the list only shrinks. Nothing may be added without an issue.
KNOWN_BACKWARD: dict[tuple[str, str], str] = {}


def test_known_exceptions_are_still_needed() -> None:
    present = {_short(edge) for edge in EDGES}
    stale = sorted(set(KNOWN_BACKWARD) - present)
    assert not stale, f"these imports are gone: remove them from KNOWN_BACKWARD: {stale}"


def _rank(module: str) -> tuple[str, int | None]:
    """``("stage", rank)``, ``("service", None)``, or ``("api", None)`` for the package."""
    if module == "storyboard":
        return "api", None
    short = module.removeprefix("storyboard.")
    top = short.split(".")[0]
    if top in SERVICES:
        return "service", None
    for rank, names in enumerate(STAGES):
        if short in names or top in names:  # a stage may be a package (review/...)
            return "stage", rank
    raise AssertionError(f"{module} has no place in STAGES or SERVICES: add it to the order")


def test_every_module_has_a_place_in_the_order() -> None:
    for module in MODULES:
        _rank(module)


def test_a_stage_never_imports_a_later_stage() -> None:
    kernel = set(STAGES[0])
    wrong: list[str] = []
    for edge in EDGES:
        source_kind, source_rank = _rank(edge.source)
        target_kind, target_rank = _rank(edge.target)
        short = _short(edge)
        if short in KNOWN_BACKWARD or source_kind == "api":
            continue  # the public API re-exports every stage (lazily)
        if target_kind == "api":
            # The package itself is the public API on top of everything; only its version
            # (a constant defined before anything is imported) may be read from below.
            if edge.names != ("__version__",):
                wrong.append(f"{edge.source} imports the package root (line {edge.line})")
            continue
        if source_kind == "service":
            same_service = edge.target.split(".")[1] == edge.source.split(".")[1]
            ok = target_kind == "service" or same_service or short[1] in kernel
            if not ok:
                wrong.append(f"service {edge.source} imports stage {edge.target} ({edge.line})")
            continue
        if target_kind == "service":
            continue
        assert source_rank is not None and target_rank is not None
        if target_rank > source_rank:
            wrong.append(f"{edge.source} imports the later stage {edge.target} (line {edge.line})")
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_cli_imports_the_cli() -> None:
    for edge in EDGES:
        if edge.target in ("storyboard.cli", "storyboard._progress"):
            assert edge.source in ("storyboard.cli", "storyboard.__main__"), edge


# -- the public API -----------------------------------------------------------------------


def _root_exports() -> set[str]:
    """What ``storyboard/__init__.py`` really makes public, read from its source: names it
    defines or takes from its own modules, and names its module ``__getattr__`` serves
    (found as the string constants of the file that resolve on the package; the ``__all__``
    list itself is not counted, or the test would compare ``__all__`` with itself)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    bound: set[str] = set()
    strings: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("storyboard"):
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if "__all__" in names:
                continue
            bound.update(names)
            value = node.value
            if value is not None:
                strings.update(
                    c.value
                    for c in ast.walk(value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
    served = {s for s in strings if s.isidentifier() and hasattr(storyboard, s)}
    return {n for n in bound | served if not n.startswith("_") or n == "__version__"}


def test_public_api_is_what_the_package_exports() -> None:
    declared = list(storyboard.__all__)
    assert len(declared) == len(set(declared)), "a name is listed twice in __all__"
    exported = _root_exports()
    assert set(declared) == exported, (
        f"in __all__ but not exported: {sorted(set(declared) - exported)}; "
        f"exported but not in __all__: {sorted(exported - set(declared))}"
    )
    # What dir() shows (the package's own __dir__) is the API too.
    public = {n for n in dir(storyboard) if not n.startswith("_")} | {"__version__"}
    assert public == set(declared)
    for name in declared:
        value = getattr(storyboard, name)
        assert value is not None, name
        home = getattr(value, "__module__", None)
        if home is None or name == "__version__" or isinstance(value, types.ModuleType):
            continue  # a module in place of a name: test_api_names_survive_importing_...
        # Each export is the object its own module defines and lists as public.
        module = importlib.import_module(home)
        assert getattr(module, name) is value, name
        assert name in getattr(module, "__all__", ()), f"{home} does not list {name} in __all__"


def test_a_name_not_in_the_api_is_not_served() -> None:
    with pytest.raises(AttributeError):
        _ = storyboard.no_such_name


def test_api_names_survive_importing_every_module() -> None:
    """Importing a submodule binds it on the package under its own name (Python's import
    system does that after the module runs): an API name equal to a module's name would then
    be the module, not the function. The CLI imports every stage, so this is the real case."""
    for module in MODULES:
        if not module.startswith("storyboard.testing"):
            importlib.import_module(module)
    shadowed = [
        n for n in storyboard.__all__ if isinstance(getattr(storyboard, n), types.ModuleType)
    ]
    assert not shadowed, f"the submodule of the same name shadows these API names: {shadowed}"


# -- sizes ----------------------------------------------------------------------------------

MAX_LINES = 800
# Modules still over the limit while issue 10 splits them. Delete an entry when its split
# lands; the test fails on an entry that is no longer needed, so the list only shrinks.
KNOWN_LARGE: dict[str, str] = {
    "storyboard/live.py": "issue 10 item 4: provider facts move to the provider table",
    "storyboard/templating.py": "no owner yet in issue 10: 813 lines",
}


def test_no_module_is_over_800_lines() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in MODULES.values()
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in KNOWN_LARGE}
    assert not over, f"over {MAX_LINES} lines: {over}"
    stale = [name for name in KNOWN_LARGE if sizes.get(name, 0) <= MAX_LINES]
    assert not stale, f"no longer over {MAX_LINES} lines, remove from KNOWN_LARGE: {stale}"


# -- problem places stay tuples -------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", sorted(p.name for p in (FIXTURES / "invalid").glob("*.yaml")) or ["none"]
)
def test_every_problem_knows_its_place_as_a_tuple(fixture: str) -> None:
    """``validate`` reads a problem's place as keys and indexes (``Problem.where``), and
    that place is the one the message shows: never a string parsed back apart."""
    if fixture == "none":
        pytest.skip("no invalid fixtures")
    with pytest.raises(InvalidStoryboard) as caught:
        load_storyboard(FIXTURES / "invalid" / fixture)
    for problem in caught.value.problems:
        if problem.line > 0 and problem.path != "$":
            assert problem.where, problem
        assert json_path(problem.where) == problem.path, problem
