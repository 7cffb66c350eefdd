"""Benchmark: the preview backend against its floors, in the same run.

1. One preview animatic clip against ffmpeg encoding a test pattern. Renders a 5 s,
   1280x720, 24 fps animatic (two stills crossfaded, a caption, a push-in) with the preview
   backend's renderer, and in the same run has the ffmpeg binary of imageio-ffmpeg encode
   its ``testsrc2`` pattern of the same size, length and rate with the same encoder settings
   (libx264, same preset, CRF, thread count, yuv420p). The second figure is the floor:
   encoding alone, with frames drawn in C inside ffmpeg. Goal: the animatic within 3x of it.
2. A chain of 8 shots, each extending the one before (``skyreels-v4-fast``: the model returns
   source + new footage), against 8 independent shots of the same model and length, rendered
   by ``storyboard.build`` with the preview backend, one take at a time (``jobs=1``, so the
   figure is work, not parallelism), each in a fresh store, alternated A B A B. Timed up to
   the stitch, which is not made (the render stage alone); stored bytes are the clips in the
   store. Goal: the
   chain's render time linear in its footage (about 1x the independent shots); its clips
   hold their sources (what the provider returns), so its stored footage is 1+2+...+8 = 4.5x.
   Shots last 3 s: V4 extends a source of at most 30 s, so an 8-shot chain of 5 s shots is
   invalid.

Usage (from the project root)::

    python benchmarks/bench_preview.py [--repeat N] [--width W --height H --fps F --seconds S]
    python benchmarks/bench_preview.py --chain-only [--shots 8] [--resolution 720p]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Runnable as a plain script from a checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from storyboard.media import animatic

GOAL_RATIO = 3.0
CHAIN_GOAL = 1.25  # the chain's render time against the independent shots'
FFMPEG_TIMEOUT = 300.0


def _make_still(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A photo-like reference image: sky gradient, overlapping shapes, slight blur and grain.

    Saved as JPEG, as most reference images are. (Pure noise would be a worst case for the
    encoder rather than a preview of a storyboard.)
    """
    rng = np.random.default_rng(seed)
    width, height = size
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = np.array([90, 140, 230], np.float32) + np.array([120, 60, -80], np.float32) * rows
    image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(20, min(size) // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    for _ in range(10):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 300)), int(rng.integers(20, 300))
        draw.rectangle((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    softened = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
    grain = rng.normal(0.0, 4.0, softened.shape)
    Image.fromarray(np.clip(softened + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (e.g. ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(action: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), _cpu()
    action()
    return time.perf_counter() - wall, _cpu() - cpu


def _chain_board(shots: int, chained: bool, resolution: str, seconds: int) -> str:
    """A storyboard of ``shots`` V4 shots: a chain of extensions, or independent shots."""
    lines = [
        "storyboard: 1",
        "defaults:",
        "  model: skyreels-v4-fast",
        f"  resolution: {resolution}",
        f"  duration: {seconds}",
        "shots:",
    ]
    for i in range(shots):
        lines.append(f"  - id: s{i}")
        lines.append(f"    prompt: shot {i} of the kite over the field, slow push-in")
        if chained and i:
            lines.append(f"    extends: s{i - 1}")
    return "\n".join(lines) + "\n"


class _Rendered(Exception):
    """Raised from the build's events when the stitch begins: the render is what is timed."""


def _render_board(folder: Path, text: str) -> tuple[float, float, int, float]:
    """Render a storyboard with the preview in a fresh store: wall and CPU seconds until the
    stitch would start (it is not made), and the bytes and seconds of the clips stored."""
    import storyboard
    from storyboard.media.probe import probe
    from storyboard.pipeline import Stitching

    folder.mkdir()
    board = folder / "storyboard.yaml"
    board.write_text(text, encoding="utf-8")
    store = folder / "store"
    os.environ["STORYBOARD_CACHE"] = str(store)

    def on_event(event: Any) -> None:
        if isinstance(event, Stitching):
            raise _Rendered

    wall, cpu = time.perf_counter(), _cpu()
    try:
        storyboard.build(board, jobs=1, on_event=on_event)
    except _Rendered:
        pass
    else:
        raise RuntimeError("the build stitched nothing: was anything rendered?")
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    clips = list((store / "objects").rglob("*.mp4"))
    stored = sum(clip.stat().st_size for clip in clips)
    return wall, cpu, stored, sum(probe(clip).duration for clip in clips)


def bench_chain(args: argparse.Namespace) -> None:
    """The chain against independent shots, alternated, medians and ratios."""
    boards = {
        "chain": _chain_board(args.shots, True, args.resolution, args.shot_seconds),
        "independent": _chain_board(args.shots, False, args.resolution, args.shot_seconds),
    }
    runs: dict[str, list[tuple[float, float, int, float]]] = {name: [] for name in boards}
    with tempfile.TemporaryDirectory(prefix="bench-preview-chain-") as tmp:
        for round_ in range(args.repeat + 1):  # the first round warms caches: not counted
            for name, text in boards.items():
                result = _render_board(Path(tmp) / f"{name}-{round_}", text)
                if round_:
                    runs[name].append(result)
    chain, alone = runs["chain"], runs["independent"]
    wall = [c[0] / a[0] for c, a in zip(chain, alone, strict=True)]
    cpu = [c[1] / a[1] for c, a in zip(chain, alone, strict=True)]
    footage = args.shots * args.shot_seconds
    print(
        f"preview chain: {args.shots} shots of {args.shot_seconds} s, skyreels-v4-fast "
        f"{args.resolution}, jobs=1, {args.repeat} alternated runs each, medians"
    )
    for label, rows in (("chain of extensions", chain), ("independent shots", alone)):
        print(
            f"  {label:<20} {statistics.median(r[0] for r in rows):7.2f} s "
            f"(CPU {statistics.median(r[1] for r in rows):7.2f} s)  "
            f"stored {rows[0][2] / 2**20:5.1f} MiB, {rows[0][3]:6.1f} s of video"
        )
    ratio = statistics.median(wall)
    verdict = "ok" if ratio <= CHAIN_GOAL else "over the goal"
    print(
        f"  ratio {ratio:.2f}x wall (runs {', '.join(f'{r:.2f}' for r in wall)}), "
        f"{statistics.median(cpu):.2f}x CPU (goal <= {CHAIN_GOAL:g}x: {verdict})"
    )
    print(
        f"  stored {chain[0][2] / alone[0][2]:.2f}x the bytes, {chain[0][3] / alone[0][3]:.2f}x "
        f"the seconds (the chain's clips hold their sources: "
        f"{sum(range(1, args.shots + 1)) / args.shots:.2f}x the {footage} s of footage)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the medians and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--chain-only", action="store_true", help="only the chain benchmark")
    parser.add_argument("--clip-only", action="store_true", help="only the one-clip benchmark")
    parser.add_argument("--shots", type=int, default=8, help="shots of the chain (default 8)")
    parser.add_argument("--resolution", default="720p", help="of the chain's shots")
    parser.add_argument(
        "--shot-seconds",
        type=int,
        default=3,
        help="of each chain shot (V4: 3-15; a source may be at most 30 s)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not args.chain_only:
        bench_clip(args)
    if not args.clip_only:
        bench_chain(args)
    return 0


def bench_clip(args: argparse.Namespace) -> None:
    """One animatic against ffmpeg's test pattern, same encoder; medians and their ratio."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp:
        folder = Path(tmp)
        # Stills larger than the frame and of another aspect, as reference images usually are.
        first = _make_still(folder / "first.jpg", (1600, 1000), 1)
        last = _make_still(folder / "last.jpg", (1200, 1200), 2)
        spec = animatic.AnimaticSpec(
            width=args.width,
            height=args.height,
            fps=args.fps,
            seconds=args.seconds,
            stills=((0.0, first), (args.seconds, last)),
            motion="push-in",
            caption="hover · take 1\nA hummingbird hovers at a red flower, slow push-in, "
            "golden hour, shallow depth of field, 35 mm film look",
            seed=1,
        )
        clip = folder / "animatic.mp4"
        pattern = folder / "testsrc2.mp4"
        frames = spec.frames
        testsrc = [
            ffmpeg,
            *("-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"),
            f"testsrc2=size={args.width}x{args.height}:rate={args.fps}",
            *("-frames:v", str(frames), "-c:v", "libx264"),
            # The animatic's encoder settings, so only frame drawing differs.
            *("-preset", animatic._X264_PRESET, "-crf", str(animatic._X264_CRF)),
            *("-g", str(animatic._GOP_SECONDS * args.fps), "-bf", str(animatic._X264_BFRAMES)),
            *("-threads", str(animatic._X264_THREADS), "-pix_fmt", "yuv420p"),
            *("-movflags", "+faststart", "-f", "mp4", "-y", str(pattern)),
        ]

        def render() -> None:
            animatic.render_animatic(spec, clip)

        def encode_pattern() -> None:
            subprocess.run(testsrc, check=True, timeout=FFMPEG_TIMEOUT)

        # One untimed run of each warms the page cache and Pillow's font loading.
        render()
        encode_pattern()
        # Interleaved, so that a change in machine load affects both the same way.
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            ours.append(_measure(render))
            theirs.append(_measure(encode_pattern))
        size_kib = clip.stat().st_size / 1024

    ours_wall = statistics.median(wall for wall, _ in ours)
    theirs_wall = statistics.median(wall for wall, _ in theirs)
    ours_cpu = statistics.median(cpu for _, cpu in ours)
    theirs_cpu = statistics.median(cpu for _, cpu in theirs)
    ratio = ours_wall / theirs_wall
    geometry = f"{args.width}x{args.height} {args.fps} fps {args.seconds:g} s ({frames} frames)"
    print(f"preview clip, {geometry}, {args.repeat} runs each, medians")
    print(f"  animatic (2 stills, caption, push-in): {ours_wall:6.3f} s  (CPU {ours_cpu:.3f} s)")
    print(
        f"  ffmpeg testsrc2, same encoder:          {theirs_wall:6.3f} s  (CPU {theirs_cpu:.3f} s)"
    )
    verdict = "ok" if ratio <= GOAL_RATIO else "over the goal"
    print(
        f"  ratio {ratio:.2f}x wall, {ours_cpu / theirs_cpu:.2f}x CPU (goal <= {GOAL_RATIO:g}x: {verdict})"
    )
    print(f"  animatic file size {size_kib:.0f} KiB")


if __name__ == "__main__":
    raise SystemExit(main())
