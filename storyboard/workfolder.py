"""The cutter's work folder: its files named by digest, filled by ffmpeg runs side by side
(:func:`run_jobs`, within the cores and a memory budget), and kept bounded: a lock shared by
running cuts, and a prune.

:func:`storyboard.cutter.make_cut` says which work files a cut uses; :func:`prune` removes
every other one (the caller keeps the files of every cut it still has). Cuts hold a shared
lock on the folder while they run and :func:`prune` takes it exclusively without waiting,
so a prune never removes a piece a running cut is making or reading; when a cut is running
the prune is skipped (the next one catches up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from storyboard.locks import flock

__all__ = ["Pruned", "digest", "prune", "run_jobs", "work_lock", "write_json"]


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` removed (``skipped``: a cut was running, nothing was removed)."""

    files: int
    bytes: int
    skipped: bool = False


# --------------------------------------------------------------------------------------------


def digest(version: str, payload: dict[str, object]) -> str:
    """The name of a work file: a digest of everything its bytes depend on."""
    blob = json.dumps({"v": version, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def write_json(path: Path, data: dict[str, object]) -> None:
    """Write a small JSON file atomically (a temp file in the same folder, renamed)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run_jobs(
    jobs: Sequence[tuple[int, Callable[[], object]]], done: Callable[[], None], budget: int
) -> None:
    """Run ``jobs`` (``(memory in MB, work)``) side by side, at most one per core and with
    at most ``budget`` MB held at once (a job larger than that runs alone); ``done`` after
    each. The first failure cancels what has not started and raises."""
    if not jobs:
        return
    from concurrent.futures import ThreadPoolExecutor, as_completed

    cores = max(1, os.cpu_count() or 1)
    held = {"jobs": 0, "memory": 0}
    turn = threading.Condition()

    def run(memory: int, work: Callable[[], object]) -> None:
        memory = min(memory, budget)
        with turn:
            turn.wait_for(lambda: held["jobs"] < cores and held["memory"] + memory <= budget)
            held["jobs"] += 1
            held["memory"] += memory
        try:
            work()
        finally:
            with turn:
                held["jobs"] -= 1
                held["memory"] -= memory
                turn.notify_all()

    # A thread per waiting job (up to 32): a small job runs as soon as there is room for
    # it, even while a large one waits for memory.
    with ThreadPoolExecutor(max_workers=min(len(jobs), 32), thread_name_prefix="cut") as pool:
        futures = [pool.submit(run, memory, work) for memory, work in jobs]
        try:
            for future in as_completed(futures):
                future.result()
                done()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# The folders of a work folder that hold only files a cut makes (and so may be pruned).
_WORK_FOLDERS = ("lengths", "pieces", "seams", "audio", "tmp")


def work_lock(
    work_dir: Path, *, exclusive: bool = False
) -> contextlib.AbstractContextManager[bool]:
    """Hold the lock of a work folder; yields whether it was taken.

    Shared (the default) waits for it: cuts run side by side, and only wait while a prune
    runs (a prune is quick), at most :data:`~storyboard.locks.LOCK_DEADLINE` (then
    :class:`~storyboard.locks.LockTimeout`). Exclusive does not wait: it yields ``False`` at
    once when a cut holds the lock. Where there is no ``flock`` (not POSIX) or the file
    system refuses it, a shared lock yields ``False`` and the cut goes on; an exclusive one
    is never taken.
    """
    return flock(work_dir / ".lock", exclusive=exclusive, holder="a prune of the work folder")


def prune(work_dir: Path, keep: Collection[Path]) -> Pruned:
    """Remove every work file of ``work_dir`` that is not in ``keep``.

    ``keep`` holds the files of every cut still wanted (:attr:`CutResult.files`); leftovers
    of interrupted runs go too. Only the folders a cut fills are touched. Skipped, removing
    nothing, while a cut holds the folder's lock (:func:`work_lock`). Best effort: a file
    that cannot be removed stays.
    """
    wanted = {str(path.absolute()) for path in keep}
    removed = freed = 0
    with work_lock(work_dir, exclusive=True) as locked:
        if not locked:
            return Pruned(0, 0, skipped=True)
        for name in _WORK_FOLDERS:
            try:
                items = list((work_dir / name).iterdir())
            except OSError:
                continue
            for item in items:
                if str(item.absolute()) in wanted:
                    continue
                try:
                    st = item.lstat()
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    item.unlink()
                except OSError:
                    continue
                removed += 1
                freed += st.st_size
    return Pruned(removed, freed)
