"""``<stem>.lock``: which clip every shot and take of a live render is, for git.

Written by ``render --live`` after each finished shot, atomically; deterministic, sorted and
one fact per line so that ``git diff`` shows what changed. Per take: generation key, rendered
prompt, model, resolved seed, input digests, output sha256, duration, provider, task id,
cost and time. A clip that is in the store and named by the lock is never rendered again,
so checking out an old commit of a storyboard rebuilds its cut for $0.

Money in the lock: every take's ``cost`` is its list price in USD, computed from the model
catalogue exactly as ``plan --live`` estimates it (:func:`storyboard.plan.take_price`), so
the lock's top-level ``cost`` (their sum) of a fresh run equals that run's estimate. What a
provider reported it charged, in its own unit (Qingbo quota, for example), is kept beside
it as ``reported_cost: {amount, unit}`` and never converted into dollars.

A lock that exists but cannot be read (git merge-conflict markers, bad JSON, a wrong shape)
is an error naming the file and line, raised while planning: ignoring it would make the
render pay again for every take it names. A missing lock is fine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storyboard.cache import Charge, Provenance, Store
from storyboard.errors import LockUnreadable
from storyboard.hashing import atomic_write
from storyboard.journal import Journal
from storyboard.paths import safe_output_path
from storyboard.plan import Plan, take_price

__all__ = [
    "LOCK_FORMAT",
    "LockRecord",
    "lock_index",
    "lock_path",
    "new_takes",
    "read_lock",
    "spent",
    "write_lock",
]

LOCK_FORMAT = 1
_CONFLICT = re.compile(r"^(<{7}|={7}|>{7}|\|{7})(\s|$)")
# A take submitted by this run has cost money unless its task failed (Qingbo refunds failed
# tasks; a failed take is reported, not billed at list price).
_PAID_STATES = frozenset({"submitted", "done"})
# Journal states of a key with nothing sent for its current attempt (``--force`` resets a key
# to "new"): this run buys it.
_UNSENT_STATES: frozenset[str] = frozenset({"new"})


@dataclass(frozen=True)
class LockRecord:
    """One take in the lock: which clip a generation key produced, and what it was made from.

    ``duration`` and ``cost`` keep the numbers as the lock wrote them (an integer stays an
    integer), so a lock rewritten from its own records is the same bytes.
    """

    shot: str
    key: str
    output: str  # the clip's sha256 (the store's object name)
    duration: float  # seconds of the clip
    take: int | None = None
    prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    upstream: Mapping[str, Any] | None = None
    provider: str | None = None
    task_id: str | None = None
    cost: float | None = None  # list price in USD
    time: str | None = None
    reported_cost: Charge | None = None

    @property
    def provenance(self) -> Provenance:
        """Where the clip came from, as the store keeps it."""
        return Provenance(
            provider=self.provider,
            task_id=self.task_id,
            seed=self.seed,
            reported_cost=self.reported_cost,
            cost=self.cost,
            time=self.time,
        )

    def to_json(self) -> dict[str, Any]:
        """The take as the lock file holds it."""
        data: dict[str, Any] = {
            "take": self.take,
            "key": self.key,
            "prompt": self.prompt,
            "model": self.model,
            "seed": self.seed,
            "inputs": dict(self.inputs),
            "upstream": dict(self.upstream) if self.upstream is not None else None,
            "output": self.output,
            "duration": self.duration,
            "provider": self.provider,
            "task_id": self.task_id,
            "cost": self.cost,
            "time": self.time,
        }
        if self.reported_cost is not None:
            data["reported_cost"] = self.reported_cost.to_json()
        return data

    @classmethod
    def from_json(cls, shot: str, take: Mapping[str, Any]) -> LockRecord:
        """A take of a lock whose shape :func:`read_lock` checked (key, output, duration)."""

        def text(name: str) -> str | None:
            value = take.get(name)
            return value if isinstance(value, str) else None

        def number(name: str) -> Any:
            value = take.get(name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return value if ok else None

        inputs, upstream = take.get("inputs"), take.get("upstream")
        return cls(
            shot=shot,
            key=str(take["key"]),
            output=str(take["output"]),
            duration=take["duration"],
            take=number("take"),
            prompt=text("prompt"),
            model=text("model"),
            seed=number("seed"),
            inputs=dict(inputs) if isinstance(inputs, Mapping) else {},
            upstream=dict(upstream) if isinstance(upstream, Mapping) else None,
            provider=text("provider"),
            task_id=text("task_id"),
            cost=number("cost"),
            time=text("time"),
            reported_cost=Charge.from_json(take.get("reported_cost")),
        )


def lock_path(storyboard: Path) -> Path:
    """``<stem>.lock`` beside the storyboard.

    Raises:
        UnsafePath: it is a link that leads outside the storyboard's folder.
    """
    path = storyboard.with_suffix(".lock")
    safe_output_path(storyboard.parent, path.name, what="lock")
    return path


def _line_of(text: str, needle: str) -> int:
    """The 1-based line of the first ``needle`` in ``text`` (1 when it is not there)."""
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def read_lock(storyboard: Path) -> dict[str, Any] | None:
    """The lock of ``storyboard`` as data, ``None`` when there is none.

    Raises:
        LockUnreadable: it exists but holds merge-conflict markers, is not JSON, or does not
            have the lock's shape; the error names the file and the line.
    """
    path = lock_path(storyboard)
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockUnreadable(name, 0, exc.strerror or str(exc)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise LockUnreadable(name, line, "not UTF-8 text") from exc
    for number, line_text in enumerate(text.splitlines(), 1):
        match = _CONFLICT.match(line_text)
        if match:
            raise LockUnreadable(
                name, number, f"git merge-conflict marker {match.group(1)!r}", conflict=True
            )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockUnreadable(name, exc.lineno, f"not valid JSON ({exc.msg})") from exc
    _check_shape(data, text, name)
    return data  # type: ignore[no-any-return]


def _check_shape(data: Any, text: str, name: str) -> None:
    if not isinstance(data, dict):
        raise LockUnreadable(name, 1, "expected a JSON object")
    if data.get("lock") != LOCK_FORMAT:
        raise LockUnreadable(
            name,
            _line_of(text, '"lock"'),
            f"lock format {data.get('lock')!r}, this storyboard reads format {LOCK_FORMAT}",
        )
    shots = data.get("shots")
    if not isinstance(shots, dict):
        raise LockUnreadable(name, _line_of(text, '"shots"'), "'shots' is not an object")
    for shot_id, shot in shots.items():
        where = _line_of(text, json.dumps(shot_id, ensure_ascii=False) + ":")
        takes = shot.get("takes") if isinstance(shot, dict) else None
        if not isinstance(takes, list):
            raise LockUnreadable(name, where, f"shot {shot_id!r} has no list of takes")
        for take in takes:
            ok = (
                isinstance(take, dict)
                and isinstance(take.get("key"), str)
                and isinstance(take.get("output"), str)
                and isinstance(take.get("duration"), int | float)
                and isinstance(take.get("cost", 0), int | float | None)
            )
            if not ok:
                key = take.get("key") if isinstance(take, dict) else None
                line = _line_of(text, key) if isinstance(key, str) and key else where
                raise LockUnreadable(
                    name,
                    line,
                    f"a take of shot {shot_id!r} lacks a key, output, duration or numeric cost",
                )


def lock_index(storyboard: Path) -> dict[str, LockRecord]:
    """Generation key -> the lock's record of that take (empty when there is no lock).

    Raises:
        LockUnreadable: the lock exists but cannot be read.
        UnsafePath: the lock is a link that leads outside the storyboard's folder.
    """
    data = read_lock(storyboard)
    out: dict[str, LockRecord] = {}
    if data is None:
        return out
    for shot_id, shot in data["shots"].items():
        for take in shot["takes"]:
            out[take["key"]] = LockRecord.from_json(shot_id, take)
    return out


def write_lock(plan: Plan, store: Store, journal: Journal | None) -> Path:
    """Write the lock of ``plan`` (live renders), keeping takes rendered in earlier runs."""
    path = lock_path(plan.board.path)
    previous = lock_index(plan.board.path)
    shots: dict[str, Any] = {}
    for sp in plan.shots:
        spec = sp.shot.spec
        if sp.kind != "model" or spec is None:
            continue
        price = take_price(sp.shot, spec)
        takes: list[LockRecord] = []
        for take in sp.takes:
            entry = store.lookup(take.key)
            old = previous.get(take.key)
            if entry is not None:
                info = entry.provenance
                output, duration = entry.digest, round(entry.seconds, 3)
            elif old is not None:
                info = Provenance()
                output, duration = old.output, old.duration
            else:
                continue
            known = journal.get(take.key) if journal is not None else None
            seed = info.seed if info.seed is not None else take.seed
            upstream = take.material.upstream
            takes.append(
                LockRecord(
                    shot=sp.id,
                    key=take.key,
                    output=output,
                    duration=duration,
                    take=take.take,
                    prompt=sp.shot.prompt,
                    model=sp.shot.model,
                    seed=known.seed if known is not None else seed,
                    inputs=take.material.inputs,
                    upstream=upstream.to_json() if upstream is not None else None,
                    provider=_first(info.provider, old.provider if old else None),
                    task_id=_first(info.task_id, old.task_id if old else None),
                    cost=price,
                    time=info.time or (old.time if old else None),
                    reported_cost=info.reported_cost or (old.reported_cost if old else None),
                )
            )
        if takes:
            shots[sp.id] = {
                "model": sp.shot.model,
                "select": sp.shot.select,
                "takes": [t.to_json() for t in takes],
            }
    data = {
        "lock": LOCK_FORMAT,
        "storyboard": plan.board.path.name,
        "cost": round(sum(t["cost"] for s in shots.values() for t in s["takes"]), 6),
        "shots": shots,
    }
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(path, text.encode("utf-8"))
    return path


def _first(value: str | None, fallback: str | None) -> str | None:
    """``value`` when the clip's provenance knows it, else what the lock said before."""
    return value if value is not None else fallback


# -- what a run spent ------------------------------------------------------------------------


def new_takes(plan: Plan, journal: Journal) -> dict[str, float]:
    """Generation key -> list price of every take this run submits for the first time.

    Called after :func:`storyboard.live.start_live` (which resets forced takes to a new
    attempt) and before the render: the stale takes in scope that the journal does not know
    or knows as unsent.
    Takes an earlier run submitted (resumed, or resent under the same idempotency key) were
    paid for, or not, by that run, and are left out, exactly as ``plan --live`` leaves them
    out of its estimate.
    """
    prices: dict[str, float] = {}
    for sp in plan.to_render:
        spec = sp.shot.spec
        if spec is None:
            continue
        price = take_price(sp.shot, spec)
        for take in sp.stale_takes:
            known = journal.get(take.key)
            if known is None or known.state in _UNSENT_STATES:
                prices[take.key] = price
    return prices


def spent(prices: Mapping[str, float], journal: Journal) -> tuple[int, float]:
    """How many of the takes in ``prices`` this run submitted, and their list price in USD.

    A take counts once the provider gave it a task id and it did not fail (failed tasks are
    refunded); a take still running when the run stopped counts here, and not again in the
    run that resumes it.
    """
    count, total = 0, 0.0
    for key, price in prices.items():
        known = journal.get(key)
        if known is not None and known.task_id and known.state in _PAID_STATES:
            count += 1
            total += price
    return count, round(total, 6)
