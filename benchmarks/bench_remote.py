"""`storyboard push` / `pull` of 200 small clips, next to copying the same files with s3fs.

A moto S3 server runs on 127.0.0.1 (an ephemeral port) in a process of its own, so the
server does not share this process's interpreter lock with what is measured. A project whose
lock names 200 clips of a few KiB each (distinct bytes) is made once; then, alternating A B
A B so that load on the machine cannot favour either side:

* push, A: :func:`storyboard.sharing.push` (the library call behind `storyboard push`,
  default --jobs 8) of every clip the lock names, with its key record, into a fresh prefix;
* push, B (the floor): s3fs ``fs.put(local_files, remote_paths)`` of the same 200 objects
  into a fresh prefix;
* pull, A: :func:`storyboard.sharing.pull` into an empty store (every object verified by
  sha256 before it enters the store, its key recorded in the store's index);
* pull, B (the floor): s3fs ``fs.get(remote_paths, local_files)`` into an empty folder.

Medians of --repeat rounds, and the ratios A/B. storyboard does more per clip than a plain
copy (a size check before and after each upload, the key record written and compared, the
sha256 of every download), so the ratio says what that safety costs.
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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, print_table, python

sys.path.insert(0, str(ROOT))

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench-key-id",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_SERVER = """
import logging, sys, time
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server on loopback in a child process; yields its endpoint URL."""
    child = subprocess.Popen(
        [python(), "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        endpoint = child.stdout.readline().strip()
        if not endpoint.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"moto did not start: {endpoint!r}")
        yield endpoint
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _board(folder: Path, clips: int) -> Path:
    lines = [
        "storyboard: 1",
        "defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}",
        "shots:",
    ]
    lines += [f"  - id: s{i:03d}\n    prompt: beat {i}" for i in range(clips)]
    path = folder / "storyboard.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _fill(board: Path, size: int) -> list[Path]:
    """Store distinct bytes as the clip of every take of the live plan; write the lock."""
    from storyboard.cache import Store
    from storyboard.lockfile import write_lock
    from storyboard.pipeline import known_facts
    from storyboard.plan import make_plan
    from storyboard.validate import load_storyboard

    loaded = load_storyboard(board)
    store = Store.for_storyboard(loaded.path)
    plan = make_plan(loaded, store, backend="live", facts=known_facts(loaded, store, "live"))
    paths = []
    for n, sp in enumerate(plan.shots):
        for take in sp.takes:
            part = store.tmp_dir() / f"{take.key}.mp4"
            part.write_bytes(os.urandom(size - 8) + n.to_bytes(8, "big"))
            paths.append(store.put(take.key, part, seconds=3.0, shot=sp.id, take=1).path)
    store.save()
    plan = make_plan(loaded, store, backend="live", facts=known_facts(loaded, store, "live"))
    write_lock(plan, store, None)
    return paths


def _remote_table(url: str, endpoint: str) -> str:
    return f'[remote]\nurl = "{url}"\nendpoint_url = "{endpoint}"\n'


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--size", type=int, default=4096, help="bytes per clip")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=8, help="storyboard's --jobs")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "STORYBOARD_CACHE"):
        os.environ.pop(name, None)

    import boto3
    import s3fs

    from storyboard.sharing import pull, push

    tmp = Path(tempfile.mkdtemp(prefix="storyboard-bench-"))
    try:
        with moto_server() as endpoint:
            bucket = "bench"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            project = tmp / "project"
            project.mkdir()
            config = project / "storyboard.toml"
            config.write_text(_remote_table(f"s3://{bucket}/warm", endpoint), encoding="utf-8")
            board = _board(project, args.clips)
            print(f"making {args.clips} clips of {args.size} bytes (not timed)...", flush=True)
            files = _fill(board, args.size)
            lock = json.loads(board.with_suffix(".lock").read_text(encoding="utf-8"))
            assert sum(len(s["takes"]) for s in lock["shots"].values()) == args.clips
            fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
            store = project / ".storyboard"
            store_copy = tmp / "store-copy"
            shutil.copytree(store, store_copy)
            # Warm both paths once (imports, connection set-up), not timed.
            push(cwd=project)
            fs.put([str(p) for p in files[:4]], [f"{bucket}/warm-b/{i}" for i in range(4)])

            times: dict[str, list[float]] = {k: [] for k in ("push", "put", "pull", "get")}
            for _ in range(args.repeat):
                prefix = uuid.uuid4().hex[:8]
                # A: storyboard push into a fresh prefix.
                config.write_text(
                    _remote_table(f"s3://{bucket}/{prefix}-a", endpoint), encoding="utf-8"
                )
                report = None

                def do_push() -> None:
                    nonlocal report
                    report = push(cwd=project, jobs=args.jobs)

                times["push"].append(_timed(do_push))
                assert report is not None and report.moved == args.clips and report.ok
                # B: s3fs put of the same files into a fresh prefix.
                targets = [f"{bucket}/{prefix}-b/{p.parent.name}/{p.name}" for p in files]
                sources = [str(p) for p in files]
                times["put"].append(_timed(lambda t=targets, f=sources: fs.put(f, t)))
                # A: storyboard pull into an empty store.
                shutil.rmtree(store)
                pulled = None

                def do_pull() -> None:
                    nonlocal pulled
                    pulled = pull(cwd=project, jobs=args.jobs)

                times["pull"].append(_timed(do_pull))
                assert pulled is not None and pulled.moved == args.clips and pulled.ok
                # B: s3fs get of the same objects into an empty folder.
                into = tmp / f"get-{prefix}"
                into.mkdir()
                local = [str(into / f"{i}.mp4") for i in range(len(targets))]
                times["get"].append(_timed(lambda t=targets, d=local: fs.get(t, d)))
                shutil.rmtree(into)
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(store_copy, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    print_table(
        [
            (f"storyboard push, {args.clips} clips (--jobs {args.jobs})", median["push"]),
            (f"s3fs fs.put, the same {args.clips} files", median["put"]),
            (f"storyboard pull, {args.clips} clips into an empty store", median["pull"]),
            (f"s3fs fs.get, the same {args.clips} objects", median["get"]),
        ]
    )
    for what, floor in (("push", "put"), ("pull", "get")):
        ratios = [a / b for a, b in zip(times[what], times[floor], strict=True)]
        print(
            f"{what}: {median[what] / median[floor]:.2f}x the s3fs floor "
            f"(per round {min(ratios):.2f}-{max(ratios):.2f}x, {args.repeat} rounds A B A B)"
        )


if __name__ == "__main__":
    main()
