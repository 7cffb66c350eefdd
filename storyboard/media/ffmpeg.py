"""Locate the ffmpeg binary and run it with a deadline: the one place storyboard does.

There is no system ffmpeg to rely on: the binary is the one imageio-ffmpeg ships. Every run
has a deadline and no ffmpeg outlives the call that started it (on error, timeout or Ctrl-C
it is killed and reaped). Failures raise :class:`~storyboard.errors.MediaError` whose
message starts with what was being done and ends with the tail of ffmpeg's own words.

* :func:`run` runs ffmpeg on files and returns its stderr;
* :class:`Writer` feeds it raw frames on stdin (the animatic, the cut's seams).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, NamedTuple

from storyboard.errors import MediaError

__all__ = ["Done", "Writer", "exe", "run", "tail"]

_STDERR_TAIL = 2000
_REAP_TIMEOUT = 10.0
_PIPE_BUFFER = 1 << 20  # the default /proc/sys/fs/pipe-max-size for unprivileged processes


@functools.cache
def exe() -> str:
    """Path of the ffmpeg binary that imageio-ffmpeg ships.

    Raises:
        MediaError: imageio-ffmpeg is missing or has no binary for this platform.
    """
    try:
        import imageio_ffmpeg

        path: str = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MediaError(
            f"the ffmpeg binary of imageio-ffmpeg is not available: {exc}; "
            "reinstall it with `pip install --force-reinstall imageio-ffmpeg`"
        ) from exc
    return path


def tail(stderr: bytes | str) -> str:
    """The end of ffmpeg's stderr, where the reason for a failure is."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    return text[-_STDERR_TAIL:] if text else "(no output)"


def _command(args: Sequence[str], loglevel: str | None) -> list[str]:
    quiet = ["-loglevel", loglevel] if loglevel else []
    return [exe(), "-nostdin", "-hide_banner", *quiet, "-y", *args]


def _timed_out(what: str, timeout: float, stderr: bytes | str) -> MediaError:
    return MediaError(
        f"{what}: ffmpeg took longer than {timeout:.0f} s and was stopped; "
        f"its last output: {tail(stderr)}"
    )


def _failed(what: str, code: int | None, stderr: bytes | str) -> MediaError:
    return MediaError(f"{what}: ffmpeg failed (exit status {code}): {tail(stderr)}")


class Done(NamedTuple):
    """How a :func:`run` ended: ffmpeg's exit status and its stderr."""

    code: int
    stderr: bytes


def run(
    args: Sequence[str],
    *,
    what: str,
    timeout: float,
    check: bool = True,
    loglevel: str | None = "error",
) -> Done:
    """Run ``ffmpeg -nostdin -hide_banner -loglevel LEVEL -y ARGS``; its exit status, stderr.

    ``subprocess.run`` kills the child on timeout and on any exception (Ctrl-C included).
    ``check=False`` returns a failed run too (a probe: ffmpeg without an
    output file always exits 1); ``loglevel=None`` keeps ffmpeg's full report.

    Raises:
        MediaError: ffmpeg cannot be started, ran past ``timeout`` seconds, or (``check``)
            exited with an error. The message starts with ``what``.
    """
    try:
        done = subprocess.run(
            _command(args, loglevel),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _timed_out(what, timeout, exc.stderr or b"") from exc
    except OSError as exc:
        raise MediaError(f"{what}: cannot run ffmpeg ({exc})") from exc
    if check and done.returncode != 0:
        raise _failed(what, done.returncode, done.stderr)
    return Done(done.returncode, done.stderr)


class Writer:
    """ffmpeg reading raw frames on stdin, under a deadline; a context manager.

    ``args`` say what the input is (``-f rawvideo ... -i pipe:0``) and where the output
    goes. :meth:`write` sends a frame; leaving the block closes stdin and waits for ffmpeg.
    A watchdog kills ffmpeg at the deadline, which turns a write blocked on a full pipe into
    a broken pipe; ``on_timeout`` is called first (to stop whatever else the frames come
    from). Leaving the block on an exception kills ffmpeg and re-raises.

    Raises (on leaving the block):
        MediaError: ffmpeg could not start, ran past ``timeout`` or exited with an error.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        what: str,
        timeout: float,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self._args = list(args)
        self._on_timeout = on_timeout
        self._expired = threading.Event()
        self._gone = False
        self._stderr: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: threading.Timer | None = None
        self._started = 0.0

    def __enter__(self) -> Writer:
        # stderr goes to a file, not a pipe: nobody reads a pipe while frames are being
        # written, and a chatty ffmpeg would fill it and block both processes.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                _command(self._args, "error"),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
        except OSError as exc:
            self._stderr.close()
            raise MediaError(f"{self.what}: cannot run ffmpeg ({exc})") from exc
        if self._proc.stdin is not None:
            _widen_pipe(self._proc.stdin)
        self._started = time.monotonic()
        self._watchdog = threading.Timer(self.timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def _expire(self) -> None:
        self._expired.set()
        if self._on_timeout is not None:
            with contextlib.suppress(Exception):
                self._on_timeout()
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()

    def write(self, data: bytes) -> bool:
        """Send one frame; ``False`` once ffmpeg has gone away (leaving the block says why)."""
        assert self._proc is not None and self._proc.stdin is not None
        if self._gone:
            return False
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._gone = True
            return False
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, stderr = self._proc, self._stderr
        assert proc is not None and stderr is not None
        try:
            if exc_type is not None and issubclass(exc_type, Exception) and self._expired.is_set():
                # Whatever broke after the deadline struck (a killed reader, a broken pipe),
                # the deadline is the reason.
                stderr.seek(0)
                raise _timed_out(self.what, self.timeout, stderr.read()) from exc
            if exc_type is None:
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                left = self.timeout - (time.monotonic() - self._started)
                code: int | None = None
                try:
                    code = proc.wait(timeout=max(left, 0.0))
                except subprocess.TimeoutExpired:
                    self._expire()
                if self._expired.is_set() or code is None:
                    stderr.seek(0)
                    raise _timed_out(self.what, self.timeout, stderr.read())
                if code != 0:
                    stderr.seek(0)
                    raise _failed(self.what, code, stderr.read())
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            if proc.poll() is None:  # leaving on an exception, or at the deadline
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_REAP_TIMEOUT)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            stderr.close()


def _widen_pipe(stream: IO[bytes]) -> None:
    """Grow a pipe's kernel buffer (Linux), so a frame crosses in a few large writes.

    A 720p frame is 2.7 MB; through the default 64 KiB pipe buffer it takes some forty
    wake-ups of each process per frame. Best effort: a refusal changes only the speed.
    """
    if sys.platform != "linux":
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BUFFER)
