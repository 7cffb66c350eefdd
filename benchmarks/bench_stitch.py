"""Benchmark: the cut, cold and warm, each against its floor in the same run (issues 3, 13).

Clips are made once, as a provider of the cut's format would return them: H.264 High
without B-frames, BT.709 tags, the cut's size and rate, keyframes every ``--gop`` frames,
AAC-LC 48 kHz stereo (testsrc2 and a tone). Each case times its baseline (A) and
storyboard (B) alternately, A B A B, ``--repeat`` times, each run a fresh process, and
reports medians, their ratio and the peak RSS of the whole process tree (sampled from /proc
every few milliseconds while it runs). The cases:

``warm``    hard cuts of ``--clips`` clips, every work file cached, against ffmpeg's concat
            demuxer with ``-c copy`` plus the interpreter's start-up (``python -c pass``);
            and plain moviepy on ``--moviepy-clips`` clips, scaled (ran once).
``cold``    the same cut with an empty work folder, against the same floor. Goal <= 1.5x.
``xfade``   ``--clips`` clips of ``--xfade-seconds`` joined by 0.5 s crossfades, cold,
            against one ffmpeg run that re-encodes the whole cut with ``xfade`` and
            ``acrossfade`` (libx264 veryfast crf 18, AAC 192k). Goal <= 0.3x.
``seam``    one crossfade seam of two 1280x720 clips: the seam's ffmpeg process (picture
            and sound), timed inside a cold cut. Goal <= 0.3 s.
``rss``     a ten-minute 1920x1080 cut (``--rss-distinct`` clips of 5 s, repeated, joined
            by crossfades), cold: peak RSS of the process tree. Goal < 300 MB.

Run from the project root::

    python benchmarks/bench_stitch.py [--cases warm,cold,xfade,seam,rss] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Runs in a fresh interpreter: read the manifest, cut, print the duration.
CUT_SNIPPET = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from storyboard.cutter import CutSpec, Segment, cut
m = json.loads(Path(sys.argv[2]).read_text())
segments = [
    Segment(Path(c), None, key=k, transition=m["transition"], transition_seconds=m["overlap"])
    for c, k in zip(m["clips"], m["keys"])
]
spec = CutSpec(m["width"], m["height"], m["fps"])
print(cut(segments, spec, Path(m["out"]), Path(m["work"])))
"""

# Cuts in a fresh interpreter and prints how long each ffmpeg run took, by what it made.
TIMED_SNIPPET = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from storyboard.cutter import CutSpec, Segment, cut
from storyboard.media import ffmpeg
runs = []
real = ffmpeg.run
def timed(args, **kw):
    start = time.perf_counter()
    try:
        return real(args, **kw)
    finally:
        runs.append([kw.get("what", ""), time.perf_counter() - start])
ffmpeg.run = timed
m = json.loads(Path(sys.argv[2]).read_text())
segments = [
    Segment(Path(c), None, key=k, transition=m["transition"], transition_seconds=m["overlap"])
    for c, k in zip(m["clips"], m["keys"])
]
start = time.perf_counter()
cut(segments, CutSpec(m["width"], m["height"], m["fps"]), Path(m["out"]), Path(m["work"]))
print(json.dumps({"total": time.perf_counter() - start, "runs": runs}))
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

TAGS = "format=yuv420p,setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


# --------------------------------------------------------------------------------------------
# measuring


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/<pid>/task/<tid>/children)."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text(encoding="ascii")
                stack.extend(int(c) for c in children.split())
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a command: wall seconds, CPU seconds of its whole tree, peak RSS (MB)."""

    wall: float
    cpu: float
    rss: float


def measure(command: Sequence[str], *, timeout: float = 3600) -> tuple[Run, str]:
    """Time one run of ``command``; what it printed. CPU time counts every process of its
    tree (they are all waited for), RSS is the tree's sum, sampled every 5 ms."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sum(_rss_kb(p) for p in _tree(proc.pid)))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)[:300]}\n{err.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(elapsed, cpu, peak / 1024), out.decode()


@dataclasses.dataclass(frozen=True)
class Pair:
    """Medians of the baseline's runs (``a``) and storyboard's (``b``); the peak RSS of each."""

    a: Run
    b: Run

    def line(self, case: str, floor: str, goal: float) -> str:
        ratio = self.b.wall / self.a.wall
        return (
            f"{case} | {floor} {self.a.wall:.3f} s, CPU {self.a.cpu:.2f} s, {self.a.rss:.0f} MB | "
            f"{self.b.wall:.3f} s, CPU {self.b.cpu:.2f} s, {self.b.rss:.0f} MB | "
            f"{ratio:.2f}x (CPU {self.b.cpu / self.a.cpu:.2f}x) | <= {goal:g}x: "
            f"{'met' if ratio <= goal else 'NOT met'}"
        )


def alternate(label: str, a: Callable[[], Run], b: Callable[[], Run], repeat: int) -> Pair:
    """Run ``a`` then ``b``, ``repeat`` times: their medians (peak RSS: the largest)."""
    runs_a, runs_b = [], []
    for i in range(repeat):
        runs_a.append(a())
        runs_b.append(b())
        print(f"  {label} round {i + 1}: A {runs_a[-1].wall:.3f} s  B {runs_b[-1].wall:.3f} s")

    def median(runs: list[Run]) -> Run:
        return Run(
            statistics.median(r.wall for r in runs),
            statistics.median(r.cpu for r in runs),
            max(r.rss for r in runs),
        )

    return Pair(median(runs_a), median(runs_b))


# --------------------------------------------------------------------------------------------
# media


def make_clips(
    folder: Path, count: int, size: str, fps: int, seconds: float, gop: int, distinct: int = 0
) -> list[Path]:
    """``count`` conforming clips (or ``distinct`` ones repeated to ``count``)."""
    ffmpeg = ffmpeg_exe()
    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        path = folder / f"clip{i:03d}.mp4"
        command = [
            ffmpeg, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={seconds}",
            "-f", "lavfi", "-i", f"sine=f={220 + 10 * i}:r=48000:d={seconds}",
            "-vf", f"{TAGS},setsar=1",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-profile:v", "high",
            "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(gop),
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2", "-shortest", str(path),
        ]  # fmt: skip
        subprocess.run(command, check=True, timeout=1800)
        return path

    made = distinct or count
    with ThreadPoolExecutor() as pool:
        paths = list(pool.map(one, range(made)))
    return [paths[i % made] for i in range(count)]


def manifest(
    folder: Path, name: str, clips: Sequence[Path], size: tuple[int, int], fps: int, **kw: object
) -> Path:
    path = folder / f"{name}.json"
    data = {
        "clips": [str(c) for c in clips],
        "keys": [f"bench-{c.name}" for c in clips],
        "width": size[0],
        "height": size[1],
        "fps": fps,
        "out": str(folder / f"{name}.mp4"),
        "work": str(folder / f"{name}-work"),
        "transition": "cut",
        "overlap": 0.0,
        **kw,
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def cold(command: Sequence[str], work: Path) -> Run:
    shutil.rmtree(work, ignore_errors=True)
    return measure(command)[0]


def warm(command: Sequence[str]) -> Run:
    return measure(command)[0]


def full_reencode(clips: Sequence[Path], seconds: float, overlap: float, out: Path) -> list[str]:
    """One ffmpeg run: the whole cut re-encoded through chained xfade and acrossfade."""
    args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    for c in clips:
        args += ["-i", str(c)]
    graph, video, sound, length = [], "0:v", "0:a", seconds
    for i in range(1, len(clips)):
        offset = length - overlap
        graph.append(
            f"[{video}][{i}:v]xfade=transition=fade:duration={overlap}:offset={offset:.6f}[v{i}]"
        )
        graph.append(f"[{sound}][{i}:a]acrossfade=d={overlap}[a{i}]")
        video, sound, length = f"v{i}", f"a{i}", length + seconds - overlap
    args += ["-filter_complex", ";".join(graph), "-map", f"[{video}]", "-map", f"[{sound}]"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "192k", str(out)]
    return args


# --------------------------------------------------------------------------------------------
# cases


def case_warm_and_cold(folder: Path, args: argparse.Namespace, cases: set[str]) -> list[str]:
    python, ffmpeg = sys.executable, ffmpeg_exe()
    size = (args.width, args.height)
    clips = make_clips(
        folder / "clips", args.clips, f"{args.width}x{args.height}", args.fps, args.seconds,
        args.gop,
    )  # fmt: skip
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{c}'\n" for c in clips), encoding="utf-8")
    copy_cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0"]
    copy_cmd += ["-i", str(listing), "-c", "copy", str(folder / "copy.mp4")]
    start_cmd = [python, "-c", "pass"]

    def floor() -> Run:
        copy, start = measure(copy_cmd)[0], measure(start_cmd)[0]
        return Run(copy.wall + start.wall, copy.cpu + start.cpu, copy.rss)

    m = manifest(folder, "hard", clips, size, args.fps)
    work = folder / "hard-work"
    cut_cmd = [python, "-c", CUT_SNIPPET, str(ROOT), str(m)]
    lines = []
    floor_name = "concat -c copy + start-up"
    if "cold" in cases:
        pair = alternate("cold hard cut", floor, lambda: cold(cut_cmd, work), args.repeat)
        lines.append(pair.line(f"cold hard cut, {args.clips} clips", floor_name, 1.5))
    if "warm" in cases:
        cold(cut_cmd, work)  # fill the work folder
        pair = alternate("warm hard cut", floor, lambda: warm(cut_cmd), args.repeat)
        lines.append(pair.line(f"warm hard cut, {args.clips} clips", floor_name, 2.0))
        n = min(args.moviepy_clips, args.clips)
        if n > 0:
            mp = folder / "moviepy.json"
            mp.write_text(
                json.dumps(
                    {"clips": [str(c) for c in clips[:n]], "out": str(folder / "mp.mp4"),
                     "fps": args.fps}
                ),
                encoding="utf-8",
            )  # fmt: skip
            moviepy = measure([python, "-c", MOVIEPY_SNIPPET, str(mp)])[0]
            scaled = moviepy.wall * args.clips / n
            lines.append(
                f"plain moviepy, {n} clips scaled to {args.clips} | {scaled:.1f} s "
                f"({moviepy.rss:.0f} MB) | warm cut {pair.b.wall:.3f} s | "
                f"{scaled / pair.b.wall:.0f}x faster"
            )
    return lines


def case_xfade(folder: Path, args: argparse.Namespace) -> list[str]:
    python = sys.executable
    size = (args.width, args.height)
    clips = make_clips(
        folder / "xclips", args.clips, f"{args.width}x{args.height}", args.fps,
        args.xfade_seconds, args.gop,
    )  # fmt: skip
    overlap = 0.5
    m = manifest(folder, "xfade", clips, size, args.fps, transition="crossfade", overlap=overlap)
    cut_cmd = [python, "-c", CUT_SNIPPET, str(ROOT), str(m)]
    full = full_reencode(clips, args.xfade_seconds, overlap, folder / "full.mp4")
    pair = alternate(
        "cold crossfade cut", lambda: warm(full), lambda: cold(cut_cmd, folder / "xfade-work"),
        args.repeat,
    )  # fmt: skip
    share = overlap / (args.xfade_seconds - overlap)
    case = (
        f"cold crossfade cut, {args.clips} x {args.xfade_seconds:g} s, keyframes every "
        f"{args.gop} frames (seams {share:.0%} of the footage)"
    )
    return [pair.line(case, "full xfade re-encode", 0.3)]


def case_seam(folder: Path, args: argparse.Namespace) -> list[str]:
    python = sys.executable
    # Keyframes every 12 frames: the seam's process draws the seam alone (no partial GOP).
    clips = make_clips(folder / "hd", 2, "1280x720", args.fps, 4, 12)
    m = manifest(folder, "seam", clips, (1280, 720), args.fps, transition="crossfade", overlap=0.5)
    seams, others, totals = [], [], []
    for _ in range(args.repeat):
        shutil.rmtree(folder / "seam-work", ignore_errors=True)
        out = measure([python, "-c", TIMED_SNIPPET, str(ROOT), str(m)])[1]
        report = json.loads(out)
        totals.append(report["total"])
        seams += [t for what, t in report["runs"] if "seam" in what]
        others += [t for what, t in report["runs"] if "seam" not in what]
    seam = statistics.median(seams)
    return [
        f"one crossfade seam at 1280x720 (12 frames, picture and sound in one ffmpeg run) | "
        f"{seam:.3f} s (median of {args.repeat}; other ffmpeg runs: {len(others)}) | whole "
        f"cold cut of 2 clips {statistics.median(totals):.3f} s | <= 0.3 s: "
        f"{'met' if seam <= 0.3 else 'NOT met'}"
    ]


def case_rss(folder: Path, args: argparse.Namespace) -> list[str]:
    python = sys.executable
    count = 134  # 134 x 5 s, minus 133 crossfades of 0.5 s: 10.06 minutes
    clips = make_clips(
        folder / "fullhd", count, "1920x1080", args.fps, 5, 24, distinct=args.rss_distinct
    )
    m = manifest(folder, "rss", clips, (1920, 1080), args.fps, transition="crossfade", overlap=0.5)
    run, out = measure([python, "-c", CUT_SNIPPET, str(ROOT), str(m)])
    length = float(out.strip())
    return [
        f"cold {length / 60:.1f}-minute 1920x1080 cut, {args.rss_distinct} distinct clips, "
        f"crossfades | {run.wall:.1f} s, CPU {run.cpu:.1f} s | peak RSS of the tree "
        f"{run.rss:.0f} MB | < 300 MB: {'met' if run.rss < 300 else 'NOT met'}"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="warm,cold,xfade,seam,rss")
    parser.add_argument("--clips", type=int, default=40, help="number of clips (default 40)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length, hard cuts")
    parser.add_argument("--xfade-seconds", type=float, default=4.0, help="clip length, xfade")
    parser.add_argument("--gop", type=int, default=24, help="keyframe interval of the clips")
    parser.add_argument("--moviepy-clips", type=int, default=10, help="0 = skip moviepy")
    parser.add_argument("--rss-distinct", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of A B per case")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load}; clips keyframed every {args.gop} frames")
    folder = Path(tempfile.mkdtemp(prefix="bench_stitch_"))
    lines: list[str] = []
    try:
        if cases & {"warm", "cold"}:
            lines += case_warm_and_cold(folder, args, cases)
        if "xfade" in cases:
            lines += case_xfade(folder, args)
        if "seam" in cases:
            lines += case_seam(folder, args)
        if "rss" in cases:
            lines += case_rss(folder, args)
    finally:
        if args.keep:
            print(f"\nfiles kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\ncase | baseline (A) | storyboard (B) | B/A | goal   (medians of {args.repeat} runs)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
