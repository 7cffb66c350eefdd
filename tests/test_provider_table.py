"""One provider table (issue 10 item 4): a provider is known by name only inside ``providers/``.

* The table is the one place a provider's facts live; importing it is light (no httpx, no
  provider module), and each hosted client agrees with its entry.
* A scan of ``storyboard/`` outside ``providers/`` finds no provider name as a string literal,
  no key variable of one, no ``getattr`` on a provider and no import of a provider's module
  (the model catalogue, which maps models to providers, and the emulator may name them).
* A third provider written here, registered in the table and given a model in the catalogue
  for the test, renders a storyboard live end to end through the journal: adding a provider
  touches only the table, the catalogue and its own module.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import anyio
import pytest
from conftest import ROOT, Project, run_cli

from storyboard import catalog
from storyboard.catalog import MODELS, ModelSpec, Price
from storyboard.journal import Journal
from storyboard.plan import Backend
from storyboard.providers import (
    PROVIDERS,
    ProviderEntry,
    ProviderSetup,
    Uploader,
    default_concurrency,
    entry,
    key_vars,
)
from storyboard.providers.base import Job, Provider, Running, Succeeded, TaskRef, TaskStatus
from storyboard.schema import schema_text

PACKAGE = ROOT / "storyboard"
# May name providers: the table and the clients, the catalogue (model -> provider), the emulator.
ALLOWED = (PACKAGE / "providers", PACKAGE / "testing", PACKAGE / "catalog.py")
# What a provider is asked through its table entry or protocol, never fished for by getattr.
PROVIDER_ATTRS = frozenset(
    {*ProviderEntry.__dataclass_fields__, "can_host_files", "output_lifetime_text"}
    | {"name", "submit", "poll", "download", "aclose", "upload", "find_task"}
)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def test_importing_the_table_imports_no_provider_module_and_no_httpx() -> None:
    code = (
        "import sys, storyboard.providers as p\n"
        "assert p.PROVIDERS\n"
        "heavy = [m for m in sys.modules if m.startswith('httpx') or "
        "m in {'storyboard.providers.wavespeed', 'storyboard.providers.qingbo', "
        "'storyboard.providers.preview', 'storyboard.providers._http'}]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", [n for n, e in PROVIDERS.items() if e.key_var])
def test_each_hosted_client_agrees_with_its_entry(name: str) -> None:
    from storyboard.testing.emulator import Emulator

    spec = PROVIDERS[name]
    assert spec.key_var is not None
    setup = ProviderSetup(
        environ={spec.key_var: "table-test-key-0123456789"},
        transport=Emulator().mock_transport(),
    )
    client = spec.factory(setup)
    try:
        assert client.name == name
        assert isinstance(client, Provider)
        # What the client says of itself in its messages is the table's.
        facts = ("label", "key_var", "output_lifetime", "output_lifetime_text")
        assert {f: getattr(client, f) for f in facts} == {f: getattr(spec, f) for f in facts}
        assert client.idempotent_submit is spec.idempotent_submit
        assert isinstance(client, Uploader) is spec.can_host_files
        if spec.uploader is not None:
            assert spec.uploader(client) is client
    finally:
        anyio.run(client.aclose)


def test_a_hosted_provider_without_its_key_names_the_variable() -> None:
    from storyboard.errors import MissingAPIKey

    for spec in PROVIDERS.values():
        if spec.key_var is None:
            continue
        with pytest.raises(MissingAPIKey, match=spec.key_var):
            spec.factory(ProviderSetup(environ={}))


def test_unknown_names_are_an_error_or_the_fallback() -> None:
    from storyboard.errors import ProviderError

    with pytest.raises(ProviderError, match="unknown provider 'nope'"):
        entry("nope")
    assert default_concurrency("nope") == 2
    for name, spec in PROVIDERS.items():
        assert default_concurrency(name) == spec.concurrency


def test_every_catalogue_provider_is_in_the_table_and_in_the_schema() -> None:
    assert {spec.provider for spec in MODELS.values()} <= set(PROVIDERS)
    assert catalog.PREVIEW_PROVIDER in PROVIDERS
    schema = json.loads(schema_text())
    concurrency = schema["properties"]["render"]["properties"]["concurrency"]["properties"]
    assert list(concurrency) == list(PROVIDERS)


# --------------------------------------------------------------------------------------------
# No provider by name outside providers/
# --------------------------------------------------------------------------------------------


def _about_a_backend(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits in a statement or a function about the backend (preview/live)."""
    at: ast.AST | None = node
    below: ast.AST = node
    while at is not None:
        if isinstance(at, ast.arg):  # an annotation: ``backend: Literal["preview", "live"]``
            return "backend" in at.arg.lower()
        if isinstance(at, ast.arguments):  # a default: ``backend: Backend = "preview"``
            positional = at.posonlyargs + at.args
            with_default = positional[len(positional) - len(at.defaults) :]
            pairs = [
                *zip(with_default, at.defaults, strict=True),
                *zip(at.kwonlyargs, at.kw_defaults, strict=True),
            ]
            return any(d is below and "backend" in a.arg.lower() for a, d in pairs)
        if isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef):
            return "backend" in at.name.lower()
        if isinstance(at, ast.stmt) and "backend" in ast.unparse(at).lower():
            return True
        below, at = at, parents.get(at)
    return False


def name_violations(source: str, where: str) -> list[str]:
    """Every place ``source`` tells a provider by its name, key variable, module or getattr."""
    names = {n.lower() for n in PROVIDERS}
    keys = set(key_vars())
    backends = set(get_args(Backend))  # "preview" is also the offline backend's name
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[str] = []
    for node in ast.walk(tree):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if value in backends and _about_a_backend(node, parents):
                continue  # the backend (preview or live), not a provider
            if value.lower() in names or value in keys:
                found.append(f"{at}: string {value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != "getattr" or not node.args:
                continue
            target = ast.unparse(node.args[0]).lower()
            attr = node.args[1] if len(node.args) > 1 else None
            asks = isinstance(attr, ast.Constant) and attr.value in PROVIDER_ATTRS
            if asks or any(w in target for w in ("provider", "uploader", "client")):
                found.append(f"{at}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom) else []) + [
                a.name for a in node.names if isinstance(node, ast.Import)
            ]
            for module in modules:
                leaf = module.removeprefix("storyboard.providers.")
                if leaf != module and leaf in names and leaf not in backends:
                    found.append(f"{at}: import {module}")
    return found


def _scanned() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if not any(path == a or a in path.parents for a in ALLOWED):
            yield path


def test_no_module_outside_providers_tells_a_provider_by_name() -> None:
    found = [
        v
        for path in _scanned()
        for v in name_violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert found == [], "ask storyboard.providers (the table) or the catalogue:\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "code",
    [
        'if spec.provider == "qingbo":\n    pass\n',
        'caps = {"preview": 2, "wavespeed": 2}\n',
        'def limits(self) -> dict[str, int]:\n    return {"preview": 2}\n',
        'def run(name: str = "preview", backend: str = "live") -> None: ...\n',
        'def run(backend: str, *, name: str = "qingbo") -> None: ...\n',
        'KEYS = ("WAVESPEED_API_KEY",)\n',
        'lifetime = getattr(provider, "output_lifetime", None)\n',
        'upload = getattr(client, "upload")\n',
        "from storyboard.providers.wavespeed import WaveSpeedProvider\n",
        "import storyboard.providers.qingbo\n",
    ],
)
def test_the_scan_finds_each_way_of_telling_a_provider_by_name(code: str) -> None:
    assert name_violations(code, "x.py") != []


@pytest.mark.parametrize(
    "code",
    [
        'backend = "live" if live else "preview"\n',
        'def backend(self) -> str:\n    return "live" if self.live else "preview"\n',
        'Backend = Literal["preview", "live"]\n',
        'def plan(board, *, backend: Literal["preview", "live"] = "preview") -> None: ...\n',
        'def cut(plan, backend="preview", /) -> None: ...\n',
        'if plan.backend == "preview":\n    pass\n',
        "from storyboard.providers.preview import PreviewProvider\n",
        'mark = getattr(exc, "problem_mark", None)\n',
        "cap = default_concurrency(job.spec.provider)\n",
    ],
)
def test_the_scan_lets_backends_and_plain_getattr_pass(code: str) -> None:
    assert name_violations(code, "x.py") == []


# --------------------------------------------------------------------------------------------
# A third provider, written here
# --------------------------------------------------------------------------------------------

THIRD = "loopback"
THIRD_KEY = "LOOPBACK_API_KEY"
THIRD_MODEL = "loopback-v1"
SIZE = (128, 72)
FPS = 24


@dataclass
class Ledger:
    """What the third provider saw: submits, the journal at each step, tasks in flight."""

    store: Path  # the store whose journal the double reads
    work: Path
    submits: list[str] = field(default_factory=list)  # generation keys
    states_at_submit: list[str | None] = field(default_factory=list)
    ids_journalled_at_poll: set[bool] = field(default_factory=set)
    in_flight: set[str] = field(default_factory=set)
    most_in_flight: int = 0
    polls: dict[str, int] = field(default_factory=dict)

    def journal(self) -> Journal:
        return Journal(self.store / "journal.sqlite")


def _encode(out: Path, seconds: float) -> None:
    import imageio_ffmpeg

    w, h = SIZE
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FPS}", "-t", f"{seconds}",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


class LoopbackProvider:
    """A provider that renders a test pattern locally, speaking the provider protocol only."""

    name = THIRD
    idempotent_submit = False

    def __init__(self, setup: ProviderSetup, ledger: Ledger) -> None:
        if not setup.environ.get(THIRD_KEY):
            from storyboard.errors import MissingAPIKey

            raise MissingAPIKey(f"{THIRD_KEY} is not set", provider=THIRD)
        self.ledger = ledger

    async def submit(self, job: Job) -> TaskRef:
        ledger = self.ledger
        journal = ledger.journal()
        try:
            known = journal.get(job.key)
        finally:
            journal.close()
        ledger.states_at_submit.append(known.state if known else None)
        ledger.submits.append(job.key)
        task_id = f"lb-{len(ledger.submits)}"
        await anyio.to_thread.run_sync(_encode, ledger.work / f"{task_id}.mp4", job.seconds)
        ledger.in_flight.add(task_id)
        ledger.most_in_flight = max(ledger.most_in_flight, len(ledger.in_flight))
        return TaskRef(THIRD, task_id, job.key)

    async def poll(self, task: TaskRef) -> TaskStatus:
        ledger = self.ledger
        journal = ledger.journal()
        try:
            known = journal.get(task.key)
        finally:
            journal.close()
        ledger.ids_journalled_at_poll.add(known is not None and known.task_id == task.task_id)
        n = ledger.polls[task.task_id] = ledger.polls.get(task.task_id, 0) + 1
        # Keep a task running a little while no two ran at once, so takes that may run
        # together do (polls wait longer each time). No progress: this provider's progress
        # would advance per poll, not with time, and the poll plan reads it as a rate.
        if n < 3 or (ledger.most_in_flight < 2 and n < 8):
            return Running()
        return Succeeded(outputs=(str(ledger.work / f"{task.task_id}.mp4"),))

    async def download(self, task: TaskRef, status: Succeeded, dest: Path) -> None:
        shutil.copyfile(status.outputs[0], dest)
        self.ledger.in_flight.discard(task.task_id)

    async def aclose(self) -> None:
        return None


BOARD = f"""\
storyboard: 1
title: a third provider
output:
  resolution: 480p
  fps: {FPS}
shots:
  - id: one
    model: {THIRD_MODEL}
    prompt: a test pattern
    duration: 1
  - id: two
    model: {THIRD_MODEL}
    prompt: another test pattern
    duration: 1
"""


@pytest.fixture
def third(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    """The third provider in the table and its model in the catalogue, for this test only."""
    work = tmp_path / "loopback"
    work.mkdir()
    ledger = Ledger(store=project.root / ".storyboard", work=work)
    monkeypatch.setitem(
        PROVIDERS,
        THIRD,
        ProviderEntry(
            name=THIRD,
            label="Loopback",
            factory=lambda setup: LoopbackProvider(setup, ledger),
            key_var=THIRD_KEY,
            concurrency=2,
            output_lifetime=3600.0,
            idempotent_submit=False,
        ),
    )
    monkeypatch.setitem(
        MODELS,
        THIRD_MODEL,
        ModelSpec(
            id=THIRD_MODEL,
            provider=THIRD,
            endpoint="/render",
            label="Loopback test pattern",
            accepts=frozenset(
                {"id", "model", "takes", "select", "trim", "transition", "skip", "params"}
                | {"prompt", "duration"}
            ),
            requires=frozenset({"prompt"}),
            durations=(1, 2),
            default_duration=1,
            aspect_ratios=(),
            default_aspect_ratio="16:9",
            resolutions=(),
            default_resolution="480p",
            fps=FPS,
            price=Price(per_run=0.01),
            fixed_size=SIZE,
        ),
    )
    monkeypatch.setenv(THIRD_KEY, "loopback-test-key-5Fq81Zr")
    monkeypatch.setenv("STORYBOARD_POLL_INTERVAL", "0.01")
    project.write(BOARD)
    yield ledger


@pytest.mark.slow
def test_a_third_provider_renders_live_through_the_journal(project: Project, third: Ledger) -> None:
    ok = run_cli("validate", str(project.file))
    assert ok.code == 0, ok.err
    plan = project.plan("--live")
    assert plan["cost"] == pytest.approx(0.02)

    first = run_cli("render", "--live", "--json", str(project.file))
    assert first.code == 0, first.err
    report = first.json()
    assert sorted(r["shot"] for r in report["rendered"]) == ["one", "two"]
    assert report["spent"] == {"usd": pytest.approx(0.02), "takes": 2}
    # Journal before submit; the task id is journalled before any wait.
    assert third.states_at_submit == ["intent", "intent"]
    assert third.ids_journalled_at_poll == {True}
    # The table's default concurrency (2) let both takes run at once.
    assert third.most_in_flight == 2
    journal = third.journal()
    try:
        entries = [journal.get(key) for key in third.submits]
    finally:
        journal.close()
    assert [(e.state, e.provider) for e in entries if e is not None] == [("done", THIRD)] * 2
    lock = project.file.with_suffix(".lock").read_text(encoding="utf-8")
    assert f'"provider": "{THIRD}"' in lock
    import imageio_ffmpeg

    cut = project.root / "renders" / "storyboard.mp4"
    _frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(cut))
    assert seconds == pytest.approx(2.0, abs=0.1)

    # A rerun buys nothing: the journal and the store know both takes.
    again = run_cli("render", "--live", str(project.file))
    assert again.code == 0, again.err
    assert len(third.submits) == 2

    # --jobs bounds the third provider like any other.
    third.most_in_flight = 0
    forced = run_cli("render", "--live", "--force-all", "--jobs", "1", str(project.file))
    assert forced.code == 0, forced.err
    assert len(third.submits) == 4
    assert third.most_in_flight == 1
