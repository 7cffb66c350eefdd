"""Benchmark: stitching N clips with hard cuts (issue 3, "Benchmarks").

Generates ``--clips`` test clips with audio, then times in the same run:

(a) ffmpeg's concat demuxer with stream copy of the same clips, and ``python -c pass``
    (the interpreter start-up a CLI pays before doing anything);
(b) ``storyboard.cutter.cut`` with all hard cuts, cold (empty work folder) and warm
    (normalised pieces and audio track cached), each in a fresh interpreter so start-up
    and imports are included;
(c) plain moviepy: ``concatenate_videoclips`` + ``write_videofile`` (slow, so only
    ``--moviepy-clips`` clips are joined and the time is scaled linearly to ``--clips``).

Goals: warm cut within 2x of (stream copy + interpreter start-up); at least 10x faster than
plain moviepy.

Run from the project root::

    python benchmarks/bench_stitch.py [--clips 40] [--width 640 --height 360 --fps 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storyboard.media.probe import probe  # noqa: E402  (after the sys.path insert)

# Runs in a fresh interpreter: read the manifest, cut, print the duration.
CUT_SNIPPET = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from storyboard.cutter import CutSpec, Segment, cut
m = json.loads(Path(sys.argv[2]).read_text())
segments = [Segment(Path(c), None, key=k) for c, k in zip(m["clips"], m["keys"])]
spec = CutSpec(m["width"], m["height"], m["fps"])
print(cut(segments, spec, Path(m["out"]), Path(m["work"])))
"""

MOVIEPY_SNIPPET = """
import json, sys
from pathlib import Path
from moviepy import VideoFileClip, concatenate_videoclips
m = json.loads(Path(sys.argv[1]).read_text())
clips = [VideoFileClip(c) for c in m["clips"]]
final = concatenate_videoclips(clips)
final.write_videofile(m["out"], fps=m["fps"], codec="libx264", audio_codec="aac", logger=None)
for c in clips:
    c.close()
"""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def timed(command: Sequence[str], *, timeout: float = 3600) -> float:
    """Wall time of one run of ``command``; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def median_of(command: Sequence[str], repeat: int) -> float:
    return statistics.median(timed(command) for _ in range(repeat))


def make_clips(folder: Path, args: argparse.Namespace) -> list[Path]:
    """``args.clips`` distinct test clips with a tone each, encoded like a provider would."""
    ffmpeg = ffmpeg_exe()
    size = f"{args.width}x{args.height}"

    def one(i: int) -> Path:
        path = folder / f"clip{i:03d}.mp4"
        command = [
            ffmpeg, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=s={size}:r={args.fps}:d={args.seconds}",
            "-f", "lavfi", "-i", f"sine=f={220 + 10 * i}:r=44100:d={args.seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(path),
        ]  # fmt: skip
        subprocess.run(command, check=True, timeout=600)
        return path

    with ThreadPoolExecutor() as pool:
        return list(pool.map(one, range(args.clips)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=40, help="number of clips (default 40)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    parser.add_argument(
        "--moviepy-clips",
        type=int,
        default=10,
        help="clips joined by the moviepy baseline; its time is scaled to --clips (0 = skip)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of the fast measurements")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="bench_stitch_"))
    try:
        return run(folder, args)
    finally:
        if args.keep:
            print(f"\nfiles kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, args: argparse.Namespace) -> int:
    python = sys.executable
    ffmpeg = ffmpeg_exe()
    print(
        f"{args.clips} clips, {args.width}x{args.height}, {args.fps} fps, {args.seconds:g} s each"
        " (testsrc2 + tone, H.264/AAC)"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (timings assume an otherwise idle box)")
    t0 = time.perf_counter()
    clips = make_clips(folder, args)
    print(f"generated in {time.perf_counter() - t0:.1f} s\n")

    # (a) stream copy with the concat demuxer, and bare interpreter start-up
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{c}'\n" for c in clips), encoding="utf-8")
    copy_out = folder / "copy.mp4"
    copy_cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0"]
    copy_cmd += ["-i", str(listing), "-c", "copy", str(copy_out)]
    t_copy = median_of(copy_cmd, args.repeat)
    t_python = median_of([python, "-c", "pass"], args.repeat)

    # (b) our cut: cold once (fresh work folder), then warm
    manifest = folder / "cut.json"
    cut_out = folder / "cut.mp4"
    work = folder / "work"
    manifest.write_text(
        json.dumps(
            {
                "clips": [str(c) for c in clips],
                "keys": [f"bench-{c.name}" for c in clips],
                "width": args.width,
                "height": args.height,
                "fps": args.fps,
                "out": str(cut_out),
                "work": str(work),
            }
        ),
        encoding="utf-8",
    )
    cut_cmd = [python, "-c", CUT_SNIPPET, str(ROOT), str(manifest)]
    t_cold = timed(cut_cmd)
    t_warm = median_of(cut_cmd, args.repeat)

    # (c) plain moviepy on a subset, scaled
    t_moviepy = t_moviepy_scaled = None
    n_moviepy = min(args.moviepy_clips, args.clips)
    if n_moviepy > 0:
        mp_manifest = folder / "moviepy.json"
        mp_out = folder / "moviepy.mp4"
        mp_manifest.write_text(
            json.dumps(
                {"clips": [str(c) for c in clips[:n_moviepy]], "out": str(mp_out), "fps": args.fps}
            ),
            encoding="utf-8",
        )
        t_moviepy = timed([python, "-c", MOVIEPY_SNIPPET, str(mp_manifest)])
        t_moviepy_scaled = t_moviepy * args.clips / n_moviepy

    expected = args.clips * round(args.seconds * args.fps) / args.fps
    d_copy, d_cut = probe(copy_out).duration, probe(cut_out).duration
    baseline = t_copy + t_python
    rows: list[tuple[str, float, str]] = [
        ("python -c pass (interpreter start-up)", t_python, ""),
        ("ffmpeg concat demuxer, -c copy", t_copy, ""),
        ("  copy + start-up (baseline)", baseline, "1.00x"),
        ("cut(), warm (pieces cached)", t_warm, f"{t_warm / baseline:.2f}x baseline"),
        ("cut(), cold (normalise everything)", t_cold, f"{t_cold / baseline:.2f}x baseline"),
    ]
    if t_moviepy is not None and t_moviepy_scaled is not None:
        rows.append((f"moviepy, {n_moviepy} clips (measured)", t_moviepy, ""))
        rows.append(
            (
                f"moviepy, scaled to {args.clips} clips",
                t_moviepy_scaled,
                f"{t_moviepy_scaled / t_warm:.0f}x warm cut, "
                f"{t_moviepy_scaled / t_cold:.1f}x cold cut",
            )
        )
    print(f"{'measurement':<42}{'seconds':>9}  ratio")
    print("-" * 78)
    for name, seconds, ratio in rows:
        print(f"{name:<42}{seconds:>9.3f}  {ratio}")
    print(
        f"\nmedian of {args.repeat} runs for the fast rows; cold and moviepy ran once."
        f"\noutput durations: copy {d_copy:.3f} s, cut {d_cut:.3f} s, expected {expected:.3f} s"
    )
    ok_copy = t_warm <= 2 * baseline
    print(f"goal: warm cut within 2x of copy + start-up: {'met' if ok_copy else 'NOT met'}")
    if t_moviepy_scaled is not None:
        ok_moviepy = t_moviepy_scaled >= 10 * t_warm
        print(
            f"goal: at least 10x faster than moviepy (warm): {'met' if ok_moviepy else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
