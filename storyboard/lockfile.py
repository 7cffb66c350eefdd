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
from pathlib import Path
from typing import Any

from storyboard.cache import Store
from storyboard.errors import LockUnreadable
from storyboard.hashing import atomic_write
from storyboard.journal import Journal
from storyboard.paths import safe_output_path
from storyboard.plan import Plan, take_price

__all__ = [
    "LOCK_FORMAT",
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


def lock_index(storyboard: Path) -> dict[str, dict[str, Any]]:
    """Generation key -> the lock's record of that take (empty when there is no lock).

    Raises:
        LockUnreadable: the lock exists but cannot be read.
    """
    data = read_lock(storyboard)
    out: dict[str, dict[str, Any]] = {}
    if data is None:
        return out
    for shot_id, shot in data["shots"].items():
        for take in shot["takes"]:
            out[take["key"]] = {**take, "shot": shot_id}
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
        takes = []
        for take in sp.takes:
            entry = store.lookup(take.key)
            old = previous.get(take.key)
            if entry is None and old is None:
                continue
            info = entry.info if entry is not None else {}
            known = journal.get(take.key) if journal is not None else None
            record = {
                "take": take.take,
                "key": take.key,
                "prompt": sp.shot.prompt,
                "model": sp.shot.model,
                "seed": known.seed if known is not None else info.get("seed", take.seed),
                "inputs": take.material.get("inputs", {}),
                "upstream": take.material.get("upstream"),
                "output": entry.digest if entry is not None else old["output"],  # type: ignore[index]
                "duration": round(entry.seconds, 3) if entry is not None else old["duration"],  # type: ignore[index]
                "provider": info.get("provider", old.get("provider") if old else None),
                "task_id": info.get("task_id", old.get("task_id") if old else None),
                "cost": price,
                "time": info.get("time") or (old.get("time") if old else None),
            }
            reported = _reported(info.get("reported_cost")) or _reported(
                old.get("reported_cost") if old else None
            )
            if reported is not None:
                record["reported_cost"] = reported
            takes.append(record)
        if takes:
            shots[sp.id] = {"model": sp.shot.model, "select": sp.shot.select, "takes": takes}
    data = {
        "lock": LOCK_FORMAT,
        "storyboard": plan.board.path.name,
        "cost": round(sum(t["cost"] for s in shots.values() for t in s["takes"]), 6),
        "shots": shots,
    }
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(path, text.encode("utf-8"))
    return path


def _reported(value: Any) -> dict[str, Any] | None:
    """A provider's reported charge ``{amount, unit}`` as stored, or ``None``."""
    if not isinstance(value, Mapping):
        return None
    amount, unit = value.get("amount"), value.get("unit")
    if isinstance(amount, int | float) and not isinstance(amount, bool) and isinstance(unit, str):
        return {"amount": amount, "unit": unit}
    return None


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
