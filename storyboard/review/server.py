"""``storyboard review --serve``: the review page on 127.0.0.1, where a reviewer picks takes.

:class:`ReviewServer` (re)builds the review folder (the cut re-stitched first when it is
stale and every shot is rendered; the takes' automatic checks; the page with its "select
take N" buttons) and serves that folder's files read-only: GET and HEAD, with byte ranges
(``<video>`` seeks with them), never a folder listing, never a file outside the folder.

One request changes anything: ``POST /api/select`` with ``{"shot": "<id>", "take": N}``. It
writes ``select: N`` on that shot (:func:`storyboard.selecting.set_select`: one line of the
storyboard, nothing else), re-stitches the cut from rendered clips (no render, no cost) and
rewrites the page; then it answers ``{"shot", "take", "old", "cut", "seconds"}``. A choice
the cut cannot follow without rendering (a take not rendered, or a shot that builds on the
chosen take and has no clip for it) is refused before the file is touched; if the re-stitch
fails all the same, the previous ``select:`` is put back.

Nobody else gets in, although any web page the reviewer has open can send requests to
127.0.0.1:

* the socket is bound to 127.0.0.1 only;
* every request whose ``Host`` is not ``127.0.0.1:PORT`` or ``localhost:PORT`` is refused
  (421) before anything else: a DNS-rebinding page reaches the port under its own name;
* ``/api/*`` needs the session's random token (``secrets.token_urlsafe(32)``, in the URL
  the command prints, sent by the page as ``X-Storyboard-Token``; compared in constant
  time), and a write with an ``Origin`` (or ``Sec-Fetch-Site``) of another site is refused;
  the custom header also means a browser never sends a cross-site write without a CORS
  preflight, which this server does not grant;
* a write's body is JSON of at most 4 KiB, exactly ``{"shot": str, "take": int}``: a shot id
  of the storyboard and a take number, never a path, never YAML;
* responses forbid framing and cross-site embedding and send no referrer (the page's URL
  holds the token); error messages are redacted of the token and the API keys.

The handler logs nothing (the command line prints); :attr:`ReviewServer.on_change` hears of
each choice written.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from storyboard.errors import StoryboardError, UsageError

if TYPE_CHECKING:
    from storyboard.plan import Plan

__all__ = ["MAX_BODY", "ChangeEvent", "PortUnavailable", "ReviewServer"]

MAX_BODY = 4096
"""The largest body a write may have, in bytes (a real one is under 100)."""
_HOST = "127.0.0.1"
_TOKEN_HEADER = "X-Storyboard-Token"
_CHUNK = 64 * 1024
_TIMEOUT = 30.0  # seconds a connection may sit idle or dribble its request
_SHOT_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class ChangeEvent:
    """A choice was written: ``shot`` went from take ``old`` to ``new`` and the cut at
    ``cut`` was re-stitched (``seconds`` long)."""

    shot: str
    old: int
    new: int
    cut: Path
    seconds: float


class PortUnavailable(UsageError):
    """The port asked for cannot be listened on (exit 2)."""

    def __init__(self, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {_HOST}:{port}: {reason}")
        self.port = port
        self.reason = reason

    def hint(self) -> str | None:
        return "storyboard review --serve --port 0 FILE  (0: any free port)"


class _Refused(Exception):
    """A request answered with a 4xx or 5xx and a JSON ``{"error", "hint"}`` body."""

    def __init__(self, status: HTTPStatus, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


class ReviewServer:
    """The review page of ``path`` served on 127.0.0.1, with takes to pick.

    Constructing it binds the port (0: a free one) and builds the review folder
    (``out_dir``, default ``renders/<cut stem>.review/`` beside the cut); serving starts with
    :meth:`serve_forever`, or on a background thread inside ``with ReviewServer(...) as
    server:``. :attr:`url` (with the token) is what the reviewer opens.

    Raises:
        PortUnavailable: the port is taken or cannot be bound.
        InvalidStoryboard: the storyboard has problems.
        StoryboardError: the review folder cannot be built (see
            :func:`storyboard.review.page.write_review`).
    """

    def __init__(
        self,
        path: Path,
        *,
        live: bool = False,
        variables: Mapping[str, Any] | None = None,
        out_dir: Path | None = None,
        port: int = 0,
        on_change: Callable[[ChangeEvent], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.live = live
        self.variables: dict[str, Any] = dict(variables or {})
        self.on_change = on_change
        self.token = secrets.token_urlsafe(32)
        self._lock = threading.Lock()  # one write at a time
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        try:
            self._httpd = _Server((_HOST, port), _Handler, self)
        except OSError as exc:
            raise PortUnavailable(port, exc.strerror or str(exc)) from None
        self.port: int = int(self._httpd.server_address[1])
        try:
            plan = self._plan()
            self.folder = (out_dir or _default_folder(plan)).absolute()
            self._publish()
        except BaseException:
            self._httpd.server_close()
            raise

    @property
    def url(self) -> str:
        """The page's address with the session's token: what the reviewer opens."""
        return f"http://{_HOST}:{self.port}/?token={self.token}"

    @property
    def origins(self) -> tuple[str, ...]:
        """The server's own origins (the page may be opened as 127.0.0.1 or localhost)."""
        return (f"http://{_HOST}:{self.port}", f"http://localhost:{self.port}")

    # -- running -----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or an exception such as ``KeyboardInterrupt``)."""
        self._serving = True
        self._httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._serving:
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReviewServer:
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"storyboard-review-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- the storyboard ----------------------------------------------------------------------

    def _plan(self) -> Plan:
        from storyboard.pipeline import plan_build

        return plan_build(self.path, live=self.live, variables=self.variables)

    def _publish(self) -> tuple[Plan, float | None]:
        """Re-stitch the cut when it is stale (and can be), then rewrite the page; the plan
        it shows and the cut's length (``None`` while shots are not rendered)."""
        from storyboard.cache import Store
        from storyboard.pipeline import restitch
        from storyboard.review.page import write_review
        from storyboard.takecheck import check_plan

        plan = self._plan()
        seconds = None
        if not plan.missing:
            report = restitch(self.path, live=self.live, variables=self.variables)
            seconds = report.seconds
            if not report.reused:
                plan = self._plan()
        store = Store.for_storyboard(plan.board.path)
        checks = check_plan(plan, store)
        write_review(plan, store, self.folder, checks=checks, selectable=True)
        return plan, seconds

    def _select(self, shot: str, take: int) -> dict[str, Any]:
        """Write ``take`` as ``shot``'s choice, re-stitch and rewrite the page (what ``POST
        /api/select`` does once the request is checked); the answer's JSON.

        Raises:
            _Refused: the choice cannot be made; nothing was changed.
        """
        from storyboard.selecting import SelectRefused, set_select

        with self._lock:
            plan = self._current_plan()
            self._check_choice(plan, shot, take)
            old = plan.shot(shot).shot.select
            if old == take:
                _plan, seconds = self._publish_or_500()
                return self._answer(shot, take, old, plan.cut, seconds)
            try:
                change = set_select(self.path, shot, take, variables=self.variables)
            except SelectRefused as exc:
                status = {
                    "unknown-shot": HTTPStatus.NOT_FOUND,
                    "not-a-model-shot": HTTPStatus.UNPROCESSABLE_ENTITY,
                    "take-out-of-range": HTTPStatus.UNPROCESSABLE_ENTITY,
                }.get(exc.reason, HTTPStatus.CONFLICT)
                raise _Refused(status, str(exc), exc.hint()) from None
            except StoryboardError as exc:
                raise _Refused(HTTPStatus.CONFLICT, str(exc), exc.hint()) from None
            try:
                new_plan, seconds = self._publish()
            except StoryboardError as exc:
                self._put_back(shot, change.old)
                raise _Refused(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    f"take {take} of {shot} was not kept: the cut could not be re-stitched "
                    f"({exc}); select: {change.old} is back",
                    exc.hint(),
                ) from None
            event = ChangeEvent(shot, change.old, take, new_plan.cut, seconds or 0.0)
            if self.on_change is not None:
                # A listener's failure (a closed terminal) is not the reviewer's: the
                # choice is written and the cut re-stitched either way.
                with contextlib.suppress(Exception):
                    self.on_change(event)
            return self._answer(shot, take, change.old, new_plan.cut, seconds)

    def _current_plan(self) -> Plan:
        """The storyboard as it is on disk now (it may have been edited while serving)."""
        try:
            return self._plan()
        except StoryboardError as exc:
            raise _Refused(HTTPStatus.CONFLICT, str(exc), exc.hint()) from None

    def _check_choice(self, plan: Plan, shot: str, take: int) -> None:
        """Refuse a choice the cut cannot follow with the clips it has."""
        from storyboard.cache import Store
        from storyboard.selecting import missing_after

        try:
            sp = plan.shot(shot)
        except KeyError:
            raise _Refused(HTTPStatus.NOT_FOUND, f"there is no shot {shot!r}") from None
        if sp.kind == "card":
            raise _Refused(
                HTTPStatus.UNPROCESSABLE_ENTITY, f"shot {shot!r} is a title card: it has no takes"
            )
        if sp.kind == "skipped":
            raise _Refused(HTTPStatus.CONFLICT, f"shot {shot!r} is skipped: it is not in the cut")
        if not 1 <= take <= len(sp.takes):
            raise _Refused(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"shot {shot!r} has {len(sp.takes)} take(s); take {take} does not exist",
            )
        live = " --live" if self.live else ""
        render = f"storyboard render{live} {self.path}"
        if sp.takes[take - 1].clip is None:
            raise _Refused(
                HTTPStatus.CONFLICT, f"take {take} of shot {shot!r} is not rendered", render
            )
        if take == sp.shot.select:
            return
        store = Store.for_storyboard(plan.board.path)
        lacking = missing_after(plan, store, shot, take)
        if lacking:
            built = [s for s in lacking if s not in plan.missing]
            if built:
                why = (
                    f"{', '.join(built)} build{'s' if len(built) == 1 else ''} on {shot} and "
                    f"{'has' if len(built) == 1 else 'have'} no clip made from its take {take}"
                )
            else:
                why = f"the cut lacks clips of {', '.join(lacking)}"
            raise _Refused(
                HTTPStatus.CONFLICT,
                f"take {take} of {shot} cannot go into the cut without a render: {why}",
                render,
            )

    def _publish_or_500(self) -> tuple[Plan, float | None]:
        try:
            return self._publish()
        except StoryboardError as exc:
            raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc), exc.hint()) from None

    def _put_back(self, shot: str, old: int) -> None:
        """Undo a choice whose cut failed; the page is rebuilt for the old choice if it can."""
        from storyboard.selecting import set_select

        try:
            set_select(self.path, shot, old, variables=self.variables)
            self._publish()
        except StoryboardError:
            pass  # the answer already says the choice was not kept; the file says the rest

    def _answer(
        self, shot: str, take: int, old: int, cut: Path, seconds: float | None
    ) -> dict[str, Any]:
        return {"shot": shot, "take": take, "old": old, "cut": str(cut), "seconds": seconds}

    def redact(self, text: str) -> str:
        """``text`` without the token or any API key of the environment."""
        from storyboard.errors import redact_secrets
        from storyboard.providers import key_vars

        keys = [os.environ.get(var, "") for var in key_vars()]
        return redact_secrets(text, [self.token, *(k for k in keys if k.strip())])


def _default_folder(plan: Plan) -> Path:
    from storyboard.paths import safe_output_path

    return safe_output_path(
        plan.board.path.parent, plan.cut.with_suffix(".review"), what="review folder", folder=True
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], review: ReviewServer
    ) -> None:
        self.review = review
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Nothing is printed: a client that hangs up mid-video is routine."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "storyboard-review"
    sys_version = ""
    timeout = _TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """The handler logs nothing; the command line prints what happened."""

    # -- dispatch ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_HEAD(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def do_PUT(self) -> None:
        self._dispatch(self._other)

    def do_PATCH(self) -> None:
        self._dispatch(self._other)

    def do_DELETE(self) -> None:
        self._dispatch(self._other)

    def do_OPTIONS(self) -> None:
        self._dispatch(self._other)

    def _dispatch(self, handle: Callable[[], None]) -> None:
        try:
            self._check_host()
            handle()
        except _Refused as refused:
            self._refuse(refused)
        except Exception as exc:  # the reviewer sees a 500; the server stays up
            self._refuse(_Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}"))

    def _check_host(self) -> None:
        port = self.server.review.port
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in (f"{_HOST}:{port}", f"localhost:{port}"):
            raise _Refused(
                HTTPStatus.MISDIRECTED_REQUEST,
                "this server answers only to 127.0.0.1 and localhost on its own port",
            )

    def _target(self) -> str:
        """The request's path (an absolute-form target names another server: refused)."""
        parts = urlsplit(self.path)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            raise _Refused(HTTPStatus.BAD_REQUEST, "give a path on this server")
        return parts.path

    def _other(self) -> None:
        if self._target().startswith("/api/"):
            self._check_token()
        raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed here")

    # -- the write ---------------------------------------------------------------------------

    def _post(self) -> None:
        path = self._target()
        self._check_origin()
        self._check_token()
        if path != "/api/select":
            raise _Refused(HTTPStatus.NOT_FOUND, "the only write is POST /api/select")
        shot, take = self._choice()
        answer = self.server.review._select(shot, take)
        self._send_json(HTTPStatus.OK, answer)

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.review.origins:
            raise _Refused(HTTPStatus.FORBIDDEN, "a write from another site is refused")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused(HTTPStatus.FORBIDDEN, "a write from another site is refused")

    def _check_token(self) -> None:
        given = (self.headers.get(_TOKEN_HEADER) or "").encode("utf-8", "surrogateescape")
        expected = self.server.review.token.encode("ascii")
        if not hmac.compare_digest(given, expected):
            raise _Refused(
                HTTPStatus.UNAUTHORIZED,
                f"this request needs the session's token in {_TOKEN_HEADER}",
                "open the URL that `storyboard review --serve` printed",
            )

    def _choice(self) -> tuple[str, int]:
        """``(shot, take)`` from the body: JSON ``{"shot": str, "take": int}`` and nothing else."""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the choice as application/json")
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        length = int(length_text)
        if length > MAX_BODY:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a choice is at most {MAX_BODY} bytes"
            )
        body = self.rfile.read(length)
        try:
            data = json.loads(
                body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_nan
            )
        except (UnicodeDecodeError, ValueError):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(data, dict) or set(data) != {"shot", "take"}:
            raise _Refused(
                HTTPStatus.BAD_REQUEST, 'send exactly {"shot": "<id>", "take": <number>}'
            )
        shot, take = data["shot"], data["take"]
        if not isinstance(shot, str) or not isinstance(take, int) or isinstance(take, bool):
            raise _Refused(
                HTTPStatus.BAD_REQUEST, '"shot" is a shot id (text) and "take" a whole number'
            )
        if not _SHOT_ID.fullmatch(shot) or len(shot) > 200:
            raise _Refused(HTTPStatus.NOT_FOUND, "there is no such shot")
        return shot, take

    # -- the files ---------------------------------------------------------------------------

    def _get(self) -> None:
        path = self._target()
        if path.startswith("/api/"):
            self._check_token()
            raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "the API takes POST /api/select")
        file = self._file(path)
        self._send_file(file)

    def _file(self, path: str) -> Path:
        """The file of the review folder that ``path`` names; traversal, hidden names, folders
        and links leading out are all "not found"."""
        not_found = _Refused(HTTPStatus.NOT_FOUND, "not found")
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise not_found from None
        if "\0" in decoded or "\\" in decoded:
            raise not_found
        parts = decoded.split("/")[1:]
        if parts == [""]:
            parts = ["index.html"]
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise not_found
        root = Path(os.path.realpath(self.server.review.folder))
        real = Path(os.path.realpath(root.joinpath(*parts)))
        if not real.is_relative_to(root) or real == root or not real.is_file():
            raise not_found
        return real

    def _send_file(self, file: Path) -> None:
        try:
            handle = file.open("rb")
        except OSError:
            raise _Refused(HTTPStatus.NOT_FOUND, "not found") from None
        with handle:
            st = os.fstat(handle.fileno())
            size = st.st_size
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            start, end, status = 0, size - 1, HTTPStatus.OK
            if self.headers.get("If-None-Match") == etag:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self._common_headers(file)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            asked = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if asked is not None and (if_range is None or if_range == etag):
                span = _byte_range(asked, size)
                if span == "unsatisfiable":
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self._common_headers(file)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(span, tuple):
                    start, end = span
                    status = HTTPStatus.PARTIAL_CONTENT
            length = end - start + 1
            self.send_response(status)
            self._common_headers(file)
            self.send_header(
                "Content-Type", _TYPES.get(file.suffix.lower(), "application/octet-stream")
            )
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            handle.seek(start)
            left = length
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    # -- answers -----------------------------------------------------------------------------

    def _common_headers(self, file: Path | None = None) -> None:
        page = file is None or file.suffix.lower() == ".html"
        self.send_header("Cache-Control", "no-store" if page else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Referrer-Policy", "no-referrer")

    def _send_json(self, status: HTTPStatus, data: Mapping[str, Any]) -> None:
        body = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, refused: _Refused) -> None:
        # A body the request may still carry is not read: the connection ends with the answer.
        self.close_connection = True
        review = self.server.review
        data: dict[str, Any] = {"error": review.redact(refused.message)}
        if refused.hint:
            data["hint"] = review.redact(refused.hint)
        self._send_json(refused.status, data)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_nan(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` (inclusive) of a single ``bytes=`` range; ``"unsatisfiable"``; or
    ``None`` when the header is not one range this server honours (then the whole file)."""
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        tail = int(last)
        if tail == 0:
            return "unsatisfiable"
        return max(size - tail, 0), size - 1
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = int(last) if last else size - 1
    if end < start:
        return None
    return start, min(end, size - 1)
