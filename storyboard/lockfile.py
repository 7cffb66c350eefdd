"""``<stem>.lock``: which clip every shot and take of a live render is, for git.

Written by ``render --live`` after each finished shot, atomically; deterministic, sorted and
one fact per line so that ``git diff`` shows what changed. Per take: generation key, rendered
prompt, model, resolved seed, input digests, output sha256, duration, provider, task id,
cost and time. A clip that is in the store and named by the lock is never rendered again,
so checking out an old commit of a storyboard rebuilds its cut for $0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storyboard.cache import Store
from storyboard.hashing import atomic_write
from storyboard.journal import Journal
from storyboard.plan import Plan

__all__ = ["LOCK_FORMAT", "lock_index", "lock_path", "write_lock"]

LOCK_FORMAT = 1


def lock_path(storyboard: Path) -> Path:
    return storyboard.with_suffix(".lock")


def lock_index(storyboard: Path) -> dict[str, dict[str, Any]]:
    """Generation key -> the lock's record of that take (empty when there is no lock)."""
    try:
        data = json.loads(lock_path(storyboard).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    shots = data.get("shots") if isinstance(data, dict) else None
    if not isinstance(shots, dict):
        return {}
    for shot_id, shot in shots.items():
        for take in (shot or {}).get("takes") or []:
            if isinstance(take, dict) and isinstance(take.get("key"), str):
                out[take["key"]] = {**take, "shot": shot_id}
    return out


def write_lock(plan: Plan, store: Store, journal: Journal | None) -> Path:
    """Write the lock of ``plan`` (live renders), keeping takes rendered in earlier runs."""
    path = lock_path(plan.board.path)
    previous = lock_index(plan.board.path)
    shots: dict[str, Any] = {}
    for sp in plan.shots:
        if sp.kind != "model" or sp.shot.spec is None:
            continue
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
                "cost": known.cost
                if known is not None and known.cost is not None
                else info.get("cost"),
                "time": info.get("time") or (old.get("time") if old else None),
            }
            takes.append(record)
        if takes:
            shots[sp.id] = {"model": sp.shot.model, "select": sp.shot.select, "takes": takes}
    data = {
        "lock": LOCK_FORMAT,
        "storyboard": plan.board.path.name,
        "cost": round(sum(t["cost"] or 0 for s in shots.values() for t in s["takes"]), 6),
        "shots": shots,
    }
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(path, text.encode("utf-8"))
    return path
