"""Write a large synthetic storyboard (N shots over every model) for the benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

MODELS = ["skyreels-v4-fast", "skyreels-v1", "skyreels-v3-reference", "skyreels-v4-std"]


def make_board(folder: Path, shots: int = 200) -> Path:
    """Create ``folder/storyboard.yaml`` with ``shots`` shots and a few tiny images."""
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        Image.new("RGB", (32, 18), (40 * i, 100, 200 - 40 * i)).save(folder / "refs" / f"r{i}.png")
    lines = [
        "storyboard: 1",
        "title: benchmark",
        "vars: {hero: a fox, light: dawn light, mood: calm}",
        "defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3, seed: 7}",
        "output: {resolution: 480p, transition: {type: crossfade, duration: 0.3}}",
        "shots:",
    ]
    for i in range(shots):
        model = MODELS[i % len(MODELS)]
        lines.append(f"  - id: s{i:03d}")
        lines.append(f"    model: {model}")
        lines.append(
            f'    prompt: "{{{{ hero }}}} in {{{{ light }}}}, beat {i}, {{{{ mood }}}} mood, push-in"'
        )
        if model == "skyreels-v1":
            lines.append(f"    first_frame: refs/r{i % 4}.png")
        elif model == "skyreels-v3-reference":
            lines.append(f"    refs: [refs/r{i % 4}.png, refs/r{(i + 1) % 4}.png]")
            lines.append("    duration: 5")
        elif model == "skyreels-v4-std":
            lines.append(f"    first_frame: refs/r{i % 4}.png")
            lines.append(f"    last_frame: refs/r{(i + 2) % 4}.png")
            lines.append(f"    keyframes: [{{at: 1.5, image: refs/r{(i + 3) % 4}.png}}]")
        if i % 10 == 9:
            lines.append("    takes: 2")
            lines.append("    select: 2")
    path = folder / "storyboard.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--shots", type=int, default=200)
    args = parser.parse_args()
    print(make_board(args.folder, args.shots))
