"""No-op `storyboard render` of a 1000-shot storyboard, next to loading its YAML with libyaml.

The floor: ``yaml.load(open(FILE), Loader=yaml.CSafeLoader)`` in a fresh interpreter (start-up,
``import yaml`` and the parse of the very same file). The tool: ``storyboard render -q FILE``
when nothing changed, which must find the storyboard checked, plan every take, find every
clip in the store and the cut up to date, and exit. Both run as fresh subprocesses,
alternated A B A B so that the load of a shared machine falls on both; the script prints the
medians and the ratio (goal: at most 3x).

Setting up (not timed): one real preview clip is rendered, and the store is filled with it
under the key of every take of the storyboard (as ``render`` files a clip: ``Store.put``, and
the material each shot was rendered from), then one ``render`` stitches the cut and a second
one keeps the checked storyboard. A no-op never reads a clip's bytes (``lookup`` is stat-only),
so one object under every key costs the no-op what a thousand would; ``--render`` renders
every take with the preview backend instead (minutes for 1000 shots).

Both commands run with bytecode caching on (in a temporary ``PYTHONPYCACHEPREFIX``), as an
installed tool runs; ``--profile`` prints where the no-op's time goes (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, print_table, python

GOAL = 3.0


def _board(folder: Path, shots: int) -> Path:
    from PIL import Image

    (folder / "refs").mkdir(parents=True)
    (folder / ".git").mkdir()  # the project root: its store is folder/.storyboard
    for i in range(4):
        Image.new("RGB", (32, 18), (60 * i, 90, 160)).save(folder / "refs" / f"r{i}.png")
    lines = [
        "storyboard: 1",
        "vars: {hero: a fox}",
        "defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}",
        "output: {resolution: 480p, fps: 12}",
        "shots:",
    ]
    for i in range(shots):
        lines += [f"  - id: s{i:04d}", f'    prompt: "{{{{ hero }}}} beat {i}"']
        if i % 3 == 0:
            lines.append(f"    first_frame: refs/r{i % 4}.png")
        if i % 5 == 4:
            lines.append(f"    extends: s{i - 1:04d}")
    path = folder / "storyboard.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    old = time.time() - 3600  # inputs made an hour ago, as a project's files are
    for file in (path, *(folder / "refs").iterdir()):
        os.utime(file, (old, old))
    return path


def _fill_store(board: Path, env: dict[str, str]) -> None:
    """Every take of ``board`` in its store, from one real preview clip."""
    from storyboard.cache import Store
    from storyboard.plan import make_plan
    from storyboard.validate import load_storyboard

    one = board.parent / "one" / "storyboard.yaml"
    one.parent.mkdir()
    one.write_text(
        "storyboard: 1\ndefaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}\n"
        "output: {resolution: 480p, fps: 12}\nshots:\n  - id: a\n    prompt: a fox\n",
        encoding="utf-8",
    )
    _run([python(), "-m", "storyboard", "render", "-q", str(one)], env)
    checked = load_storyboard(board)
    store = Store.for_storyboard(checked.path)
    clip = next(store.root.glob("objects/*/*.mp4"))
    tmp = store.tmp_dir() / "clip.mp4"
    for sp in make_plan(checked, store).shots:
        for take in sp.takes:
            shutil.copyfile(clip, tmp)
            store.put(take.key, tmp, seconds=sp.seconds, shot=sp.id, take=take.take)
            store.record_material("preview", sp.id, take.material)
    store.save()


def _run(argv: Sequence[str], env: dict[str, str]) -> float:
    return _timed(argv, env)[0]


def _timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of the process) of one run of ``argv``."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, list(argv))
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=11, help="runs of each, alternated")
    parser.add_argument("--render", action="store_true", help="render every take (slow)")
    parser.add_argument("--profile", action="store_true", help="cProfile one no-op in-process")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="storyboard-bench-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env.pop("STORYBOARD_CACHE", None)
    try:
        board = _board(tmp / "board", args.shots)
        print(f"setting up {args.shots} shots (not timed)...", flush=True)
        render = [python(), "-m", "storyboard", "render", "-q", str(board)]
        if args.render:
            _run([*render, "--jobs", "2"], env)
        else:
            _fill_store(board, env)
        _run(render, env)  # stitches the cut
        _run(render, env)  # keeps the checked storyboard; the no-op starts here
        plan = subprocess.run(
            [python(), "-m", "storyboard", "plan", "--json", str(board)],
            check=True, capture_output=True, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        data = json.loads(plan.stdout)
        assert all(s["status"] == "fresh" for s in data["shots"]) and data["stitch"] == "fresh"
        floor = [
            python(), "-c",
            "import sys, yaml; yaml.load(open(sys.argv[1], 'rb'), Loader=yaml.CSafeLoader)",
            str(board),
        ]  # fmt: skip
        _run(floor, env)  # warm-up: both have their bytecode cached
        _run(render, env)
        t_floor: list[float] = []
        t_noop: list[float] = []
        cpu_floor: list[float] = []
        cpu_noop: list[float] = []
        for _ in range(args.repeat):
            for times, cpus, argv in ((t_floor, cpu_floor, floor), (t_noop, cpu_noop, render)):
                wall, cpu = _timed(argv, env)
                times.append(wall)
                cpus.append(cpu)
        if args.profile:
            _profile(board)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor_s, noop_s = statistics.median(t_floor), statistics.median(t_noop)
    pairs = sorted(n / f for n, f in zip(t_noop, t_floor, strict=True))
    print_table(
        [
            (f"yaml.load(CSafeLoader), fresh interpreter ({args.shots} shots)", floor_s),
            (f"no-op storyboard render ({args.shots} shots)", noop_s),
        ]
    )
    ratio = noop_s / floor_s
    print(
        f"ratio: {ratio:.2f}x (pairs A B: {pairs[0]:.2f}-{pairs[-1]:.2f}, median "
        f"{statistics.median(pairs):.2f}); {1000 * (noop_s - floor_s) / args.shots:.3f} ms a "
        f"shot beyond the floor; goal <= {GOAL:g}x -> {'met' if ratio <= GOAL else 'NOT met'}"
    )
    cpu_f, cpu_n = statistics.median(cpu_floor), statistics.median(cpu_noop)
    print(f"CPU (user + system): floor {cpu_f:.3f} s, no-op {cpu_n:.3f} s, {cpu_n / cpu_f:.2f}x")
    print(
        f"fastest runs (least disturbed by other work): floor {min(t_floor):.3f} s, no-op "
        f"{min(t_noop):.3f} s, {min(t_noop) / min(t_floor):.2f}x; CPU "
        f"{min(cpu_noop) / min(cpu_floor):.2f}x"
    )


def _profile(board: Path) -> None:
    from storyboard.cli import main as cli

    profile = cProfile.Profile()
    profile.enable()
    cli(["render", "-q", str(board)])
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
