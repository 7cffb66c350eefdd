"""`storyboard validate` of a 200-shot storyboard, next to importing its core libraries.

Both are timed in the same run as fresh subprocesses (median of --repeat runs), so the ratio
is meaningful on a noisy machine. Also checks that validate imports neither moviepy nor httpx.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, print_table, python, time_command
from make_board import make_board


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        board = make_board(Path(tmp), args.shots)
        validate = [python(), "-m", "storyboard", "validate", "-q", str(board)]
        baseline = [python(), "-c", "import yaml, jsonschema, jinja2"]
        t_base = time_command(baseline, repeat=args.repeat, cwd=ROOT)
        t_val = time_command(validate, repeat=args.repeat, cwd=ROOT)
        probe = subprocess.run(
            [
                python(),
                "-c",
                "import sys, json; from storyboard.cli import main; main(['validate', '-q', sys.argv[1]]);"
                "print(json.dumps({m: m in sys.modules for m in ('moviepy', 'httpx', 'numpy')}))",
                str(board),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        imported = json.loads(probe.stdout.strip().splitlines()[-1])
    print_table(
        [
            ('python -c "import yaml, jsonschema, jinja2"', t_base),
            (f"storyboard validate ({args.shots} shots)", t_val),
        ]
    )
    print(
        f"ratio validate / imports: {t_val / t_base:.2f}x; validate beyond imports: {t_val - t_base:.3f} s"
    )
    print(f"modules imported by validate: {imported}")


if __name__ == "__main__":
    main()
