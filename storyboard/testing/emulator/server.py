"""The emulator behind a stdlib ``ThreadingHTTPServer`` on loopback (``storyboard emulate``)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from storyboard.testing.emulator.core import _configure
from storyboard.testing.emulator.host import Emulator
from storyboard.testing.emulator.records import QingboCostUnit, QingboStatusNames

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "storyboard-emulator"
    emulator: Emulator  # set on the per-server subclass
    stopping: threading.Event  # set on the per-server subclass; ends held replies

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log: tests read :attr:`Emulator.requests` instead."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            headers = dict(self.headers.items())
            response = self.emulator.handle(self.command, self.path, headers, body)
            if response.delay > 0:
                time.sleep(response.delay)
            if response.hold is not None:
                self._hold(response.hold)
                self.close_connection = True  # nothing was sent: the reply never comes
                return
            if response.drop_connection:
                self.close_connection = True  # no status line at all: the reply is lost
                return
            self.send_response(response.status)
            names = {name.lower() for name in response.headers}
            for name, value in response.headers.items():
                self.send_header(name, value)
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                if response.truncate_after is not None:
                    self.wfile.write(response.body[: response.truncate_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout beat a slow reply): nothing left to tell it.
            self.close_connection = True

    def _hold(self, seconds: float) -> None:
        """Send nothing until the client hangs up, ``seconds`` pass or the server stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return  # end of stream: the client closed its side
            except OSError:
                return
            time.sleep(min(left, 0.05))  # bytes we do not read: keep holding


class EmulatorServer:
    """An :class:`Emulator` served over HTTP on a loopback address, in a daemon thread.

    Binding happens in the constructor; ``url`` is ready at once. The emulator's
    ``base_url`` is set to ``url`` so every URL it hands out points back here. Usable as a
    context manager; :meth:`close` stops it.

    Args:
        emulator: The core to serve (a fresh :class:`Emulator` if ``None``).
        host: A loopback address; anything else is refused (never 0.0.0.0).
        port: 0 (default) for an ephemeral port.
        qingbo_status_names: If given, the emulator's ``qingbo_status_names``.
        qingbo_cost_unit: If given, the emulator's ``qingbo_cost_unit``.

    Raises:
        ValueError: ``host`` is not a loopback address, or an option is unknown.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        qingbo_status_names: QingboStatusNames | None = None,
        qingbo_cost_unit: QingboCostUnit | None = None,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(
                f"the emulator only listens on loopback (127.0.0.1, ::1), not {host!r}"
            )
        self.emulator = emulator if emulator is not None else Emulator()
        _configure(self.emulator, qingbo_status_names, qingbo_cost_unit)
        self._stopping = threading.Event()
        handler = type(
            "EmulatorHandler", (_Handler,), {"emulator": self.emulator, "stopping": self._stopping}
        )
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if ":" in host:
            server_class = type(
                "IPv6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}
            )
        self._httpd = server_class((host, port), handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.emulator.base_url = self.url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="storyboard-emulator",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def serve(
    emulator: Emulator | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    qingbo_status_names: QingboStatusNames | None = None,
    qingbo_cost_unit: QingboCostUnit | None = None,
) -> Iterator[EmulatorServer]:
    """Serve an emulator on loopback for the duration of a ``with`` block.

    ``qingbo_status_names`` and ``qingbo_cost_unit``, if given, are set on the emulator.
    """
    server = EmulatorServer(
        emulator,
        host,
        port,
        qingbo_status_names=qingbo_status_names,
        qingbo_cost_unit=qingbo_cost_unit,
    )
    try:
        yield server
    finally:
        server.close()


def banner_lines(server: EmulatorServer) -> list[str]:
    """What ``storyboard emulate`` prints: where it listens and what to export."""
    emulator = server.emulator
    ws_key = emulator.wavespeed_keys[0] if emulator.wavespeed_keys else ""
    qb_key = emulator.qingbo_keys[0] if emulator.qingbo_keys else ""
    return [
        f"storyboard provider emulator listening on {server.url}",
        "  WaveSpeed API /api/v3, Qingbo API /v1, files /files, uploads /upload",
        "Export these in the shell that runs `storyboard render --live`:",
        f"  export WAVESPEED_BASE_URL={server.url}",
        f"  export WAVESPEED_API_KEY={ws_key}",
        f"  export QINGBO_BASE_URL={server.url}",
        f"  export QINGBO_API_KEY={qb_key}",
        "Press Ctrl-C to stop.",
    ]


def run_forever(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    emulator: Emulator | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    stop: threading.Event | None = None,
    qingbo_status_names: QingboStatusNames | None = None,
    qingbo_cost_unit: QingboCostUnit | None = None,
) -> None:
    """Serve until Ctrl-C (or until ``stop`` is set); for ``storyboard emulate``.

    The default emulator advances tasks by time (start after 1 s, finish after 5 s) so a
    client polling at any pace sees realistic progress, and serves files at 1/4 size.

    Args:
        port: Port to bind (0: ephemeral; the banner names the one chosen).
        host: Loopback address.
        emulator: The core to serve.
        on_ready: Receives :func:`banner_lines` once listening (the CLI prints them).
        stop: An event that ends serving when set (tests).
        qingbo_status_names: Qingbo status vocabulary, ``task`` or ``events`` (see
            :class:`Emulator`); ``None`` keeps the emulator's.
        qingbo_cost_unit: ``quota``, ``usd`` or ``none``; ``None`` keeps the emulator's.
    """
    if emulator is None:
        emulator = Emulator(
            polls_to_start=None,
            polls_to_finish=None,
            seconds_to_start=1.0,
            seconds_to_finish=5.0,
            scale=0.25,
        )
    stop = stop or threading.Event()
    with serve(
        emulator,
        host,
        port,
        qingbo_status_names=qingbo_status_names,
        qingbo_cost_unit=qingbo_cost_unit,
    ) as server:
        if on_ready is not None:
            on_ready(banner_lines(server))
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.2):
                pass
