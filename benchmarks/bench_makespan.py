"""The makespan of `render --live` on a DAG with chains and caps, against its lower bound.

A 20-shot storyboard: chain A of four SkyReels V4 shots (each `extends` the one before),
chain B of two, ten V4 shots nothing depends on, and four V1 shots (WaveSpeed); the chains
sit among the other shots in the file, as a story's scenes do. Caps: Qingbo 5, WaveSpeed 5.
Every emulated task takes the same time T from its submit to its finish (the emulator's
latency settings: running after 5% of T, done at T, progress reported on the way; its
outputs are served as encoded, without the per-task remux that keeps test outputs apart,
because that is the emulator's own ffmpeg work, not a provider's latency). The
issue measured with T = 6 s; the default here is 3 s to keep a run short (``--task-seconds``;
the client's own work per take, about 0.1-0.3 s of download, verifying and journalling on a
loaded machine, weighs more the shorter T is).

The floor is the DAG's lower bound: max(critical path, work / capacity per provider) =
max(4 T, 16 T / 5, 4 T / 5) = 4 T. The makespan is measured where the emulator sees it: from
the first submit it receives to the last output it serves (start-up, planning and the stitch
are outside; uploads, polling, downloads and verifying inside). Each round renders the
storyboard from an empty store twice, as fresh ``storyboard render --live`` processes against
an emulator served on 127.0.0.1 by this process, alternating A B A B so that load on the
machine falls on both:

* A: critical path first (this code);
* B: first come, first served (``STORYBOARD_SCHEDULE=fifo``: the order before issue 13; the
  polling is this code's in both).

Prints each run, the medians and the ratios to the bound (goal: A <= 1.10x) and to B.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, python

sys.path.insert(0, str(ROOT))

from storyboard.testing.emulator import Emulator, EmulatorResponse, EmulatorServer

GOAL = 1.10
WS_KEY = "ws-bench-makespan-key-0001"
QB_KEY = "qb-bench-makespan-key-0001"
CHAIN_A = 4
CHAIN_B = 2
LONE_V4 = 10
LONE_V1 = 4
CAP = 5


class TimedEmulator(Emulator):
    """The emulator, noting when it answered each request (for the makespan)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.log: list[tuple[float, str, str]] = []
        self._log_lock = threading.Lock()

    def handle(
        self, method: str, url_path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> EmulatorResponse:
        response = super().handle(method, url_path_with_query, headers, body)
        with self._log_lock:
            self.log.append((time.monotonic(), method, url_path_with_query))
        return response


def board_text() -> str:
    """Six lone V4 shots, chain A, four lone V4 shots, chain B, four V1 shots."""
    lines = [
        "storyboard: 1",
        "output: {resolution: 480p, fps: 24}",
        f"render:\n  concurrency: {{qingbo: {CAP}, wavespeed: {CAP}}}",
        "shots:",
    ]

    def v4(shot: str, extends: str | None = None) -> None:
        lines.extend([f"  - id: {shot}", "    model: skyreels-v4-fast", f"    prompt: {shot}"])
        lines.extend([f"    extends: {extends}"] if extends else [])
        lines.extend(["    resolution: 480p", "    duration: 3"])

    lone = iter(range(1, LONE_V4 + 1))
    for _ in range(6):
        v4(f"x{next(lone)}")
    for i in range(1, CHAIN_A + 1):
        v4(f"a{i}", f"a{i - 1}" if i > 1 else None)
    for _ in range(LONE_V4 - 6):
        v4(f"x{next(lone)}")
    for i in range(1, CHAIN_B + 1):
        v4(f"b{i}", f"b{i - 1}" if i > 1 else None)
    for i in range(1, LONE_V1 + 1):
        lines.extend([f"  - id: k{i}", "    model: skyreels-v1", "    first_frame: refs/a.png"])
        lines.extend([f"    prompt: kite {i}", f"    seed: {i}"])
    return "\n".join(lines) + "\n"


def lower_bound(task: float) -> float:
    qingbo = LONE_V4 + CHAIN_A + CHAIN_B
    return max(CHAIN_A * task, qingbo * task / CAP, LONE_V1 * task / CAP)


def run_once(task: float, order: str, poll: float) -> tuple[float, float]:
    """One render from an empty store: (makespan, wall time of the whole command)."""
    from PIL import Image

    emu = TimedEmulator(
        wavespeed_keys=(WS_KEY,), qingbo_keys=(QB_KEY,), scale=1 / 16, max_seconds=1.0,
        stamp_outputs=False,
        polls_to_start=None, polls_to_finish=None, seconds_to_start=0.05 * task,
        seconds_to_finish=task,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="bench-makespan-"))
    server = EmulatorServer(emu)
    try:
        (folder / ".git").mkdir()  # the project root: its store is folder/.storyboard
        (folder / "refs").mkdir()
        Image.new("RGB", (64, 36), (200, 60, 40)).save(folder / "refs" / "a.png")
        (folder / "storyboard.yaml").write_text(board_text(), encoding="utf-8")
        env = {
            **os.environ,
            "WAVESPEED_API_KEY": WS_KEY,
            "QINGBO_API_KEY": QB_KEY,
            "WAVESPEED_BASE_URL": server.url,
            "QINGBO_BASE_URL": server.url,
            "STORYBOARD_POLL_INTERVAL": str(poll),
            "STORYBOARD_MIN_OUTPUT_SHARE": "0",  # the emulator serves 1 s clips
            "STORYBOARD_SCHEDULE": order,
            "PYTHONPATH": str(ROOT),
        }
        started = time.perf_counter()
        done = subprocess.run(
            [python(), "-m", "storyboard", "render", "--live", "-q", "storyboard.yaml"],
            cwd=folder, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"render failed ({done.returncode}):\n{done.stderr}")
        submits = [s.at for s in emu.submissions if s.created]
        outputs = [t for t, method, path in emu.log if method == "GET" and "/output/" in path]
        if len(submits) != CHAIN_A + CHAIN_B + LONE_V4 + LONE_V1 or not outputs:
            raise RuntimeError(f"expected 20 tasks, the emulator made {len(submits)}")
        return max(outputs) - min(submits), wall
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-seconds", type=float, default=3.0, help="emulated task time T")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds")
    parser.add_argument("--poll", type=float, default=0.02, help="STORYBOARD_POLL_INTERVAL")
    args = parser.parse_args()
    task = args.task_seconds
    bound = lower_bound(task)
    print(
        f"20 shots: chain A {CHAIN_A}, chain B {CHAIN_B}, {LONE_V4} lone V4, {LONE_V1} V1; "
        f"caps qingbo {CAP}, wavespeed {CAP}; T = {task:g} s; lower bound {bound:.2f} s"
    )
    results: dict[str, list[tuple[float, float]]] = {"critical-path": [], "fifo": []}
    for round_ in range(1, args.rounds + 1):
        for order in ("critical-path", "fifo"):
            makespan, wall = run_once(task, order, args.poll)
            results[order].append((makespan, wall))
            print(
                f"round {round_} {order:<13} makespan {makespan:7.2f} s "
                f"({makespan / bound:.2f}x bound), whole command {wall:6.2f} s"
            )
    new = statistics.median(m for m, _ in results["critical-path"])
    old = statistics.median(m for m, _ in results["fifo"])
    print()
    print(f"{'what':<34} {'median s':>9} {'x bound':>8}")
    print(f"{'DAG lower bound (4 T)':<34} {bound:9.2f} {1.0:8.2f}")
    print(f"{'A: critical path first':<34} {new:9.2f} {new / bound:8.2f}")
    print(f"{'B: first come, first served':<34} {old:9.2f} {old / bound:8.2f}")
    print(
        f"A/B {new / old:.2f}; goal A <= {GOAL:.2f}x bound: {'met' if new <= GOAL * bound else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
