"""Shared helpers for the benchmark scripts: timing subprocesses side by side."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_command(argv: Sequence[str], *, repeat: int, cwd: Path | None = None) -> float:
    """Median wall time of running ``argv`` ``repeat`` times (after one warm-up run)."""
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def python() -> str:
    return sys.executable


def print_table(rows: Sequence[tuple[str, float]]) -> None:
    """Print ``(what, seconds)`` rows under a header, names padded to one width."""
    width = max(len(name) for name, _ in rows) + 2
    print(f"{'what':<{width}} {'median s':>9}")
    for name, seconds in rows:
        print(f"{name:<{width}} {seconds:9.3f}")
