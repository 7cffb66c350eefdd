"""The emulator's core: configuration, the pure :meth:`EmulatorCore.handle`, faults and tasks.

One entry point maps ``(method, path?query, headers, body)`` to an :class:`EmulatorResponse`:
it parses and classifies the request, scans it for leaked keys, consumes scripted faults and
hands it to the provider rooms (:mod:`.wavespeed`, :mod:`.qingbo`) or the media host. Tasks
are state machines advanced by polls and by elapsed clock time; every request, submit, fault
hit and callback is recorded for assertions. No sockets, no threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
import traceback
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard
from urllib.parse import parse_qs, unquote, urlsplit

from storyboard.testing.emulator.faults import FaultScript, _FaultState
from storyboard.testing.emulator.media import (
    FILES_PREFIX,
    UPLOAD_PREFIX,
    MediaHost,
    _StoredFile,
    _Ticket,
)
from storyboard.testing.emulator.records import (
    AuthLeak,
    Callback,
    EmulatorResponse,
    FaultHit,
    JSONDict,
    Provider,
    QingboCostUnit,
    QingboStatusNames,
    RequestKind,
    RequestRecord,
    Submission,
    TaskInfo,
    VideoSpec,
    _Request,
    body_hash,
)

DEFAULT_WAVESPEED_KEY = "ws-emulator-key"
DEFAULT_QINGBO_KEY = "qb-emulator-key"

WAVESPEED_PREFIX = "/api/v3/"
QINGBO_PREFIX = "/v1/"

V1 = "wavespeed-ai/SkyReels-V1"
V3_REFERENCE = "skywork-ai/skyreels-v3/reference-to-video"
V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"
V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"
WAVESPEED_MODELS: tuple[str, ...] = (V1, V3_REFERENCE, V3_EXTEND, V3_CUTSHOT)
QINGBO_MODELS: tuple[str, ...] = ("skyreels-v4-fast", "skyreels-v4-std")

# WaveSpeed task codes and their texts (https://wavespeed.ai/docs/error-codes, PROVIDERS §1.3).
WAVESPEED_TASK_CODES: dict[int, str] = {
    1200: "content moderation: the input or output was flagged",
    1400: "missing parameter",
    1401: "invalid parameter",
    1402: "media URL not accessible",
    1403: "task execution failed",
    1405: "task failed",
    5000: "internal server error",
    5003: "service unavailable",
    5004: "timeout",
}
QINGBO_TASK_CODES: dict[str, str] = {
    "upstream_unavailable": "upstream service unavailable",
    "upstream_bad_request": "invalid request",
    "upstream_rate_limited": "upstream rate limited",
    "task_failed": "task failed",
}

DAY = 86_400.0
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _Invalid(Exception):
    """A request field failed validation; ``missing`` picks WaveSpeed code 1400 over 1401."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


@dataclass
class _Task:
    provider: Provider
    id: str
    owner: str
    model: str
    action: str | None
    body: JSONDict
    created_clock: float
    created_wall: float
    output: VideoSpec
    price_usd: float
    idempotency_key: str | None = None
    phase: str = "waiting"  # waiting | running | completed | failed | cancelled
    polls: int = 0
    pending_failure: tuple[int | str, str] | None = None
    error_code: int | str | None = None
    error_message: str | None = None
    finished_clock: float | None = None
    finished_wall: float | None = None
    output_path: str | None = None
    callback_url: str | None = None
    callback_events: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.phase in ("completed", "failed", "cancelled")


_WS_STATUS = {"waiting": "created", "running": "processing"}
_QB_STATUS = {"waiting": "queued", "running": "processing"}
_QB_EVENT_STATUS = {"waiting": "queued", "running": "running", "completed": "succeeded"}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


class EmulatorCore(MediaHost, FaultScript):
    """The provider-independent core of :class:`~storyboard.testing.emulator.Emulator`."""

    def __init__(
        self,
        *,
        wavespeed_keys: Iterable[str] = (DEFAULT_WAVESPEED_KEY,),
        qingbo_keys: Iterable[str] = (DEFAULT_QINGBO_KEY,),
        base_url: str = "http://emulator.test",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        polls_to_start: int | None = 1,
        polls_to_finish: int | None = 2,
        seconds_to_start: float | None = None,
        seconds_to_finish: float | None = None,
        scale: float = 1 / 8,
        max_seconds: float | None = None,
        min_short_side: int = 36,
        stamp_outputs: bool = True,
        max_queued: int = 5,
        idempotency_ttl: float = DAY,
        qingbo_timestamps: Literal["ms", "s"] = "ms",
        qingbo_url_list: bool = True,
        qingbo_cost_unit: QingboCostUnit = "quota",
        qingbo_status_names: QingboStatusNames = "task",
        qingbo_submit_status: int = 200,
        wavespeed_invalid: Literal["task", "http"] = "task",
        wavespeed_balance: float = 100.0,
        reject_authorization_on_upload: bool = False,
        seed: int | None = None,
    ) -> None:
        self.wavespeed_keys = tuple(wavespeed_keys)
        self.qingbo_keys = tuple(qingbo_keys)
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.wall_clock = wall_clock
        self.polls_to_start = polls_to_start
        self.polls_to_finish = polls_to_finish
        self.seconds_to_start = seconds_to_start
        self.seconds_to_finish = seconds_to_finish
        self.scale = scale
        self.max_seconds = max_seconds
        self.min_short_side = min_short_side
        self.stamp_outputs = stamp_outputs
        self.max_queued = max_queued
        self.idempotency_ttl = idempotency_ttl
        self.qingbo_timestamps = qingbo_timestamps
        self.qingbo_url_list = qingbo_url_list
        self.qingbo_cost_unit: QingboCostUnit = "quota"
        self.qingbo_status_names: QingboStatusNames = "task"
        _configure(self, qingbo_status_names, qingbo_cost_unit)
        self.qingbo_submit_status = qingbo_submit_status
        self.wavespeed_invalid = wavespeed_invalid
        self.wavespeed_balance = wavespeed_balance
        self.reject_authorization_on_upload = reject_authorization_on_upload
        self.ticket_ttl = 3600.0
        self.upload_ttl = 7 * DAY
        self.wavespeed_output_ttl = 7 * DAY
        self.qingbo_output_ttl = DAY
        self.list_window = 7 * DAY  # the prediction listing shows the last 7 days

        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        self._files: dict[str, _StoredFile] = {}
        self._tickets: dict[str, _Ticket] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self._generated_by_digest: dict[str, VideoSpec] = {}
        self._faults: list[_FaultState] = []
        self._current_fault: int | None = None  # index of the fault hitting this request
        self.webhook_secret = "whsec_" + self._hex(32)

        self.submissions: list[Submission] = []
        self.requests: list[RequestRecord] = []
        self.auth_leaks: list[AuthLeak] = []
        self.fault_hits: list[FaultHit] = []
        self.callbacks: list[Callback] = []
        self.internal_errors: list[str] = []

    # ---- accounts -----------------------------------------------------------------------------

    def total_charged_usd(self, provider: Provider | None = None) -> float:
        """What the accounts are charged now (refunds applied), in USD."""
        with self._lock:
            return round(
                sum(
                    self._charged(t) for t in self._tasks.values() if provider in (None, t.provider)
                ),
                6,
            )

    # ---- the entry point ----------------------------------------------------------------------

    def handle(
        self, method: str, url_path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> EmulatorResponse:
        """Answer one HTTP request.

        Args:
            method: HTTP method.
            url_path_with_query: Request target, e.g. ``/v1/tasks/task_01...?x=1``.
            headers: Request headers (any case).
            body: Request body bytes.

        Returns:
            The response; its ``drop_connection``/``delay``/``truncate_after`` tell the
            adapter how to (mis)deliver it.
        """
        with self._lock:
            request = self._parse(method, url_path_with_query, headers, body)
            self._scan_leaks(request)
            self._current_fault = None
            try:
                response = self._dispatch(request)
            except Exception as exc:  # an emulator bug must not pass for a provider answer
                self.internal_errors.append(traceback.format_exc())
                response = EmulatorResponse(
                    500, {"Content-Type": "text/plain"}, f"emulator bug: {exc!r}".encode()
                )
            self.requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.target,
                    kind=request.kind,
                    provider=request.provider,
                    status=response.status,
                    dropped=response.drop_connection,
                    delay=response.delay,
                    has_authorization="authorization" in request.headers,
                    fault_index=self._current_fault,
                    held=response.hold is not None,
                )
            )
            return response

    # ---- request parsing, leaks, faults -------------------------------------------------------

    def _parse(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Request:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        method = method.upper()
        kind: RequestKind = "other"
        provider: Provider | None = None
        if path.startswith(FILES_PREFIX):
            kind = "download"
            provider = "qingbo" if path.startswith(FILES_PREFIX + "qingbo/") else "wavespeed"
        elif path.startswith(UPLOAD_PREFIX):
            kind, provider = "upload", "wavespeed"
        elif path.startswith(WAVESPEED_PREFIX):
            provider = "wavespeed"
            rest = path[len(WAVESPEED_PREFIX) :]
            if rest == "predictions" and method in ("GET", "POST"):
                kind = "list"
            elif rest.startswith("predictions/") and method == "GET":
                kind = "poll"
            elif rest in ("media/uploads", "media/upload/binary"):
                kind = "media"
            elif rest in WAVESPEED_MODELS and method == "POST":
                kind = "submit"
        elif path.startswith(QINGBO_PREFIX):
            provider = "qingbo"
            if path == "/v1/tasks" and method == "POST":
                kind = "submit"
            elif path.startswith("/v1/tasks/") and path.endswith("/cancel") and method == "POST":
                kind = "cancel"
            elif path.startswith("/v1/tasks/") and method == "GET":
                kind = "poll"
        return _Request(method, target, path, query, lower, body, kind, provider)

    def _scan_leaks(self, request: _Request) -> None:
        def leak(where: str, value: str) -> None:
            self.auth_leaks.append(
                AuthLeak(request.method, request.target, request.kind, where, value)
            )

        keys = self.wavespeed_keys + self.qingbo_keys
        if request.kind in ("download", "upload"):
            if "authorization" in request.headers:
                leak("authorization", request.headers["authorization"])
            for name, value in request.headers.items():
                if name != "authorization" and any(k and k in value for k in keys):
                    leak(f"header:{name}", value)
            if any(k and k in request.target for k in keys):
                leak("query", request.target)
        elif request.provider is not None:
            # A client juggling two keys must never send one provider's key to the other.
            token = self._bearer(request)
            foreign = self.qingbo_keys if request.provider == "wavespeed" else self.wavespeed_keys
            own = self.wavespeed_keys if request.provider == "wavespeed" else self.qingbo_keys
            if token and token in foreign and token not in own:
                leak("cross-provider", token)

    # ---- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, request: _Request) -> EmulatorResponse:
        if request.kind == "download":
            return self._with_faults(request, lambda _f: self._serve_file(request))
        if request.kind == "upload":
            return self._with_faults(request, lambda _f: self._accept_upload(request))
        if request.provider == "wavespeed":
            return self._wavespeed(request)
        if request.provider == "qingbo":
            return self._qingbo(request)
        return EmulatorResponse(404, {"Content-Type": "text/plain"}, b"not found")

    def _bearer(self, request: _Request) -> str | None:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    # ---- what the provider rooms supply (wavespeed.py, qingbo.py) ----------------------------

    @abstractmethod
    def _wavespeed(self, request: _Request) -> EmulatorResponse:
        """Answer a request to the WaveSpeed API."""

    @abstractmethod
    def _qingbo(self, request: _Request) -> EmulatorResponse:
        """Answer a request to the Qingbo API."""

    @abstractmethod
    def _ws_callback(self, task: _Task, event: str, url: str) -> Callback | None:
        """The webhook WaveSpeed would POST for this event, if any."""

    @abstractmethod
    def _qb_callback(self, task: _Task, event: str, url: str) -> Callback | None:
        """The callback Qingbo would POST for this event, if any."""

    # ---- tasks --------------------------------------------------------------------------------

    def _new_task(
        self,
        provider: Provider,
        owner: str,
        *,
        model: str,
        action: str | None,
        body: JSONDict,
        output: VideoSpec,
        price: float,
    ) -> _Task:
        wall = self.wall_clock()
        task_id = self._hex(32) if provider == "wavespeed" else "task_" + self._ulid(wall)
        task = _Task(
            provider, task_id, owner, model, action, body, self.clock(), wall, output, price
        )
        self._tasks[task_id] = task
        return task

    def _advance(self, task: _Task, *, polled: bool) -> None:
        """Move a task along by polls and elapsed clock time (never backwards)."""
        if task.terminal:
            return
        if polled:
            task.polls += 1
        elapsed = self.clock() - task.created_clock
        finished = (self.polls_to_finish is not None and task.polls >= self.polls_to_finish) or (
            self.seconds_to_finish is not None and elapsed >= self.seconds_to_finish
        )
        started = (
            finished
            or (self.polls_to_start is not None and task.polls >= self.polls_to_start)
            or (self.seconds_to_start is not None and elapsed >= self.seconds_to_start)
        )
        if started and task.phase == "waiting":
            task.phase = "running"
            self._emit_callback(task, "running")
        if finished:
            self._finish(task)

    def _finish(self, task: _Task) -> None:
        task.finished_clock, task.finished_wall = self.clock(), self.wall_clock()
        if task.pending_failure is not None:
            task.phase = "failed"
            task.error_code, task.error_message = task.pending_failure
            self._emit_callback(task, "failed")
            return
        task.phase = "completed"
        if task.provider == "wavespeed":
            path, ttl = f"{FILES_PREFIX}wavespeed/output/{task.id}.mp4", self.wavespeed_output_ttl
        else:
            path, ttl = f"{FILES_PREFIX}qingbo/output/{task.id}.mp4", self.qingbo_output_ttl
        self._files[path] = _StoredFile(
            path,
            task.provider,
            "video/mp4",
            task.finished_wall + ttl,
            spec=task.output,
            stamp=f"storyboard-emulator {task.provider} {task.id}",
            dims=(task.output.width, task.output.height),
            seconds=task.output.seconds,
        )
        task.output_path = path
        self._emit_callback(task, "completed")

    def _failure(
        self, provider: Provider, code: int | str, message: str | None
    ) -> tuple[int | str, str]:
        if provider == "wavespeed":
            if isinstance(code, str):
                code = 5003 if code in ("upstream_unavailable", "upstream_rate_limited") else 1401
            return code, message or WAVESPEED_TASK_CODES.get(code, "task failed")
        if isinstance(code, int):
            code = "upstream_unavailable" if code >= 5000 else "upstream_bad_request"
        text = message or QINGBO_TASK_CODES.get(code, "task failed")
        return code, f"[{code}] Upstream returned: {text}"

    def _media_failure(self, task: _Task) -> tuple[int | str, str] | None:
        """A failure for media the provider could not fetch or would refuse, else ``None``."""
        for url in self._media_urls(task.body):
            problem: str | None = None
            if not _is_http_url(url):
                problem = f"media URL not accessible: {url!r} is not an http(s) URL"
            elif self._own_path(url) is not None and self._lookup(url) is None:
                problem = f"media URL not accessible: {url}"
            if problem is not None:
                return self._failure(task.provider, 1402, problem)
        return None

    @staticmethod
    def _media_urls(body: JSONDict) -> Iterator[object]:
        for name in ("image", "video", "first_frame_image", "last_frame_image"):
            if body.get(name):
                yield body[name]
        for name in ("images", "image_urls", "video_urls", "audio_urls"):
            yield from body.get(name) or []
        for ref in body.get("ref_images") or []:
            yield from ref.get("image_urls") or []
            if ref.get("audio_url"):
                yield ref["audio_url"]
        for ref in body.get("ref_videos") or []:
            yield ref.get("video_url")
        for frame in body.get("mid_frame_images") or []:
            yield frame.get("image_url")

    def _charged(self, task: _Task) -> float:
        if task.phase in ("failed", "cancelled"):
            return 0.0  # refunded in full (PROVIDERS §3.5); WaveSpeed failures assumed free
        return task.price_usd

    def _emit_callback(self, task: _Task, event: str) -> None:
        if not task.callback_url:
            return
        if task.provider == "wavespeed":
            callback = self._ws_callback(task, event, task.callback_url)
        else:
            callback = self._qb_callback(task, event, task.callback_url)
        if callback is not None:
            self.callbacks.append(callback)

    def _status(self, task: _Task) -> str:
        """The task's status in its provider's (configured) vocabulary."""
        if task.provider == "wavespeed":
            names = _WS_STATUS
        else:
            names = _QB_EVENT_STATUS if self.qingbo_status_names == "events" else _QB_STATUS
        return names.get(task.phase, task.phase)

    def _info(self, task: _Task) -> TaskInfo:
        return TaskInfo(
            provider=task.provider,
            task_id=task.id,
            model=task.model,
            action=task.action,
            status=self._status(task),
            polls=task.polls,
            body=task.body,
            owner=task.owner,
            idempotency_key=task.idempotency_key,
            output=task.output,
            file_spec=self._file_spec(task.output),
            output_url=self._url(task.output_path) if task.output_path else None,
            price_usd=task.price_usd,
            charged_usd=self._charged(task),
            error_code=task.error_code,
            error_message=task.error_message,
        )

    # ---- records and small helpers ------------------------------------------------------------

    def _record_submission(
        self,
        request: _Request,
        *,
        provider: Provider,
        endpoint: str,
        model: str | None,
        body: JSONDict,
        idempotency_key: str | None,
        task_id: str | None,
        created: bool,
        status: int,
    ) -> None:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        digest = body_hash(body) if body else hashlib.sha256(request.body).hexdigest()
        self.submissions.append(
            Submission(
                provider=provider,
                endpoint=endpoint,
                model=model,
                body=body,
                raw_body=request.body,
                headers=headers,
                query=dict(request.query),
                idempotency_key=idempotency_key,
                task_id=task_id,
                created=created,
                http_status=status,
                body_hash=digest,
                at=self.clock(),
            )
        )

    def _record_rejected_submit(self, request: _Request, provider: Provider, status: int) -> None:
        parsed = self._parse_json(request.body)
        body = parsed if isinstance(parsed, dict) else {}
        if provider == "wavespeed":
            endpoint = request.path[len(WAVESPEED_PREFIX) :]
            model: str | None = endpoint
            idem = None
        else:
            endpoint, idem = "/v1/tasks", request.headers.get("idempotency-key") or None
            model = body.get("model") if isinstance(body.get("model"), str) else None
        self._record_submission(
            request,
            provider=provider,
            endpoint=endpoint,
            model=model,
            body=body,
            idempotency_key=idem,
            task_id=None,
            created=False,
            status=status,
        )

    @staticmethod
    def _parse_json(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return None

    def _hex(self, length: int) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(length))

    def _ulid(self, wall: float) -> str:
        value = (int(wall * 1000) & (2**48 - 1)) << 80 | self._rng.getrandbits(80)
        return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _configure(
    emulator: EmulatorCore,
    qingbo_status_names: QingboStatusNames | None,
    qingbo_cost_unit: QingboCostUnit | None,
) -> None:
    """Set the wire-variant options that were given (checked as the constructor checks)."""
    if qingbo_status_names is not None:
        if qingbo_status_names not in ("task", "events"):
            raise ValueError(f"qingbo_status_names must be task or events: {qingbo_status_names!r}")
        emulator.qingbo_status_names = qingbo_status_names
    if qingbo_cost_unit is not None:
        if qingbo_cost_unit not in ("quota", "usd", "none"):
            raise ValueError(f"qingbo_cost_unit must be quota, usd or none: {qingbo_cost_unit!r}")
        emulator.qingbo_cost_unit = qingbo_cost_unit
