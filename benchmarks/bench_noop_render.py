"""No-op `storyboard render` of a 200-shot storyboard, next to `python -c "import yaml"`.

The storyboard is rendered once with the preview backend at a tiny stand-in size (the
render itself is not what is measured), then `render` is timed when nothing changed: it
must plan, find every clip fresh and the cut up to date, and exit. Both commands run as
fresh subprocesses in the same run; medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, print_table, python, time_command


def _board(folder: Path, shots: int) -> Path:
    from PIL import Image

    (folder / "refs").mkdir(parents=True)
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
        lines += [f"  - id: s{i:03d}", f'    prompt: "{{{{ hero }}}} beat {i}"']
        if i % 3 == 0:
            lines.append(f"    first_frame: refs/r{i % 4}.png")
        if i % 5 == 4:
            lines.append(f"    extends: s{i - 1:03d}")
    path = folder / "storyboard.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="storyboard-bench-"))
    try:
        board = _board(tmp, args.shots)
        print(f"rendering {args.shots} preview shots once (not timed)...", flush=True)
        subprocess.run(
            [python(), "-m", "storyboard", "render", "-q", "--jobs", "2", str(board)],
            check=True, cwd=ROOT,
        )  # fmt: skip
        plan = subprocess.run(
            [python(), "-m", "storyboard", "plan", "--json", str(board)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        data = json.loads(plan.stdout)
        assert all(s["status"] == "fresh" for s in data["shots"]) and data["stitch"] == "fresh"
        t_base = time_command([python(), "-c", "import yaml"], repeat=args.repeat, cwd=ROOT)
        noop = [python(), "-m", "storyboard", "render", "-q", str(board)]
        t_noop = time_command(noop, repeat=args.repeat, cwd=ROOT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(
        [
            ('python -c "import yaml"', t_base),
            (f"no-op storyboard render ({args.shots} shots)", t_noop),
        ]
    )
    print(
        f"ratio: {t_noop / t_base:.2f}x; goal: under 0.5 s -> {'met' if t_noop < 0.5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
