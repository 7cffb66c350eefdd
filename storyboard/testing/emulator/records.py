"""The emulator's records: what it answers, what tests script (faults) and what it saw.

Plain frozen dataclasses with no behaviour beyond checking themselves; every other room of
the emulator imports them, and they import nothing of the emulator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Provider = Literal["wavespeed", "qingbo"]
RequestKind = Literal["submit", "poll", "cancel", "list", "media", "upload", "download", "other"]
FaultOn = Literal["submit", "poll", "cancel", "list", "media", "upload", "download", "any"]
QingboStatusNames = Literal["task", "events"]
QingboCostUnit = Literal["quota", "usd", "none"]
JSONDict = dict[str, Any]
_FAULT_KINDS = ("submit", "poll", "cancel", "list", "media", "upload", "download", "any")
MAX_HOLD = 60.0  # longest a held reply keeps its connection open (seconds)


@dataclass(frozen=True)
class EmulatorResponse:
    """What the emulator answers to one request.

    Attributes:
        status: HTTP status code.
        headers: Response headers (``Content-Length`` is added by the adapters if absent).
        body: Response body bytes.
        drop_connection: The request was applied but the client never gets a reply: the
            server closes the socket, the mock transport raises ``httpx.RemoteProtocolError``.
        delay: Seconds to wait before replying (a slow reply).
        truncate_after: Send only this many body bytes, then close the connection.
        hold: The request was applied but nothing is sent: the server waits until the client
            hangs up (at most this many seconds), then closes; the mock transport raises
            ``httpx.ReadTimeout`` if the client's read timeout is at most ``hold``, else
            ``httpx.RemoteProtocolError``.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop_connection: bool = False
    delay: float = 0.0
    truncate_after: int | None = None
    hold: float | None = None

    def json(self) -> Any:
        """The body parsed as JSON (a convenience for tests)."""
        return json.loads(self.body)


@dataclass(frozen=True)
class VideoSpec:
    """Geometry of a video: frame size, frame rate, frame count and whether it has audio."""

    width: int
    height: int
    fps: int
    frames: int
    audio: bool = False

    @property
    def seconds(self) -> float:
        """Length in seconds (``frames / fps``)."""
        return self.frames / self.fps


@dataclass(frozen=True)
class VideoProbe:
    """What ffmpeg reports about a video file."""

    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool
    frames: int | None = None


@dataclass(frozen=True)
class QuotaWindow:
    """The extra fields of a Qingbo 429 ``quota_window_exceeded`` (PROVIDERS §3.6).

    ``reset_in`` is seconds from the moment the fault fires; ``reset_at`` is derived from it.
    """

    window: str = "5h"
    used: int = 1_000_000
    cap: int = 1_000_000
    reset_in: float = 60.0


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to the next matching request(s).

    Faults are consumed in the order they were scripted: a request is matched against the
    first fault (in order) whose ``on``/``provider`` fit and that has uses left.

    Attributes:
        on: Which requests: ``submit`` (WaveSpeed model POST, Qingbo ``POST /v1/tasks``),
            ``poll`` (status GETs), ``cancel`` (Qingbo cancel), ``list`` (WaveSpeed
            prediction listing), ``media`` (WaveSpeed upload ticket or legacy binary
            upload), ``upload`` (the PUT to the bucket), ``download`` (GET of a file), or
            ``any``.
        provider: Only this provider's requests (files and uploads belong to the provider
            whose path they are on); ``None`` for both.
        times: How many matching requests the fault applies to.
        skip: Let this many matching requests through untouched first.
        status: Answer with this HTTP status and an error body; the request is NOT applied
            (no task created, no poll counted) unless ``apply`` is set.
        apply: With a 5xx ``status``: apply the request first (the task IS created and
            billed, the poll counted), then answer with the error: "a task created behind a
            5xx reply".
        retry_after: ``Retry-After`` seconds sent with ``status``.
        code: Error code in the default error body (Qingbo ``error.code``).
        message: Error message in the default error body.
        body: Raw body instead of the default error body (e.g. an HTML gateway page).
        content_type: Content type of ``body``.
        quota: Makes the reply a Qingbo 429 ``quota_window_exceeded`` with these fields.
        drop: Apply the request, then drop the connection without a reply.
        hold: Apply the request, then send nothing until the client gives up and hangs up;
            the connection is closed after ``delay`` seconds (or :data:`MAX_HOLD`, and never
            later than that) if the client waits longer.
        delay: Seconds before the reply (a slow reply; the request is applied); with
            ``hold``, the longest the reply is held.
        truncate: Serve only this many bytes of the body, then close (downloads).
        fail_task_code: On ``submit``, the new task fails with this code when it would have
            finished; on ``poll``, the polled task fails now. WaveSpeed takes ints (1401,
            5000, ...), Qingbo strings (``upstream_bad_request``, ``upstream_unavailable``);
            the other kind is mapped (1xxx <-> upstream_bad_request, 5xxx <->
            upstream_unavailable).
        fail_message: Text of that failure (default: the code's documented meaning).
        task_status: On ``poll`` (or ``submit``), the reply reports this status string
            instead of the task's real one (a status the client may not know, e.g.
            ``paused``); the request is applied as usual.
    """

    on: FaultOn
    provider: Provider | None = None
    times: int = 1
    skip: int = 0
    status: int | None = None
    retry_after: float | None = None
    code: str | None = None
    message: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    quota: QuotaWindow | None = None
    drop: bool = False
    delay: float = 0.0
    truncate: int | None = None
    fail_task_code: int | str | None = None
    fail_message: str | None = None
    apply: bool = False
    hold: bool = False
    task_status: str | None = None

    def __post_init__(self) -> None:
        if self.on not in _FAULT_KINDS:
            raise ValueError(f"Fault.on: unknown request kind {self.on!r}")
        if self.provider not in (None, "wavespeed", "qingbo"):
            raise ValueError(f"Fault.provider: unknown provider {self.provider!r}")
        if self.times < 1 or self.skip < 0:
            raise ValueError("Fault.times must be >= 1 and Fault.skip >= 0")
        if self.delay < 0 or (self.truncate is not None and self.truncate < 0):
            raise ValueError("Fault.delay and Fault.truncate must not be negative")
        if self.rejects and (self.drop or self.truncate is not None or self.hold):
            raise ValueError("Fault: a status reply cannot also drop, hold or truncate")
        if self.hold and (self.drop or self.truncate is not None):
            raise ValueError("Fault: a hold cannot also drop or truncate")
        if self.apply and not (
            self.status is not None and 500 <= self.status <= 599 and self.quota is None
        ):
            raise ValueError("Fault.apply needs a 5xx status (a request applied behind a 5xx)")
        if self.task_status is not None and (
            self.on not in ("poll", "submit") or not self.task_status or self.rejects
        ):
            raise ValueError(
                "Fault.task_status is a non-empty status for on='poll' or 'submit' replies"
            )
        effects = (
            self.rejects,
            self.drop,
            self.hold,
            self.delay > 0,
            self.truncate is not None,
            self.fail_task_code is not None,
            self.task_status is not None,
        )
        if not any(effects):
            raise ValueError(
                "Fault: give at least one of status, quota, drop, hold, delay, truncate, "
                "fail_task_code, task_status"
            )

    @property
    def hold_seconds(self) -> float:
        """How long a held reply keeps the connection open at most."""
        return min(self.delay, MAX_HOLD) if self.delay > 0 else MAX_HOLD

    @property
    def rejects(self) -> bool:
        """Whether the fault answers with an error status instead of applying the request."""
        return self.status is not None or self.quota is not None


@dataclass(frozen=True)
class FaultHit:
    """A scripted fault that fired: its position in the script and the request it hit."""

    index: int
    fault: Fault
    method: str
    path: str
    kind: RequestKind
    provider: Provider | None


@dataclass(frozen=True)
class Submission:
    """One submit request that passed authentication, as received.

    Attributes:
        provider: ``wavespeed`` or ``qingbo``.
        endpoint: WaveSpeed model path (``skywork-ai/skyreels-v3/extend-video``) or
            ``/v1/tasks``.
        model: The model: the WaveSpeed model path, or the Qingbo body's ``model``.
        body: The JSON body exactly as parsed (an empty dict if it was not a JSON object).
        raw_body: The body bytes.
        headers: Request headers (lower-case names) without ``authorization``.
        query: Query parameters (first value of each), e.g. WaveSpeed ``webhook``.
        idempotency_key: Qingbo ``Idempotency-Key`` header, if any.
        task_id: The task the reply named (the original one for an idempotent replay), or
            ``None`` when the submit was rejected.
        created: Whether a new (billable) task was created.
        http_status: Status of the reply the emulator produced (even if it was then dropped).
        body_hash: :func:`body_hash` of ``body``.
        at: Emulator clock time of the request.
    """

    provider: Provider
    endpoint: str
    model: str | None
    body: Mapping[str, Any]
    raw_body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    idempotency_key: str | None
    task_id: str | None
    created: bool
    http_status: int
    body_hash: str
    at: float


@dataclass(frozen=True)
class RequestRecord:
    """Every request the emulator saw, in order."""

    method: str
    path: str
    kind: RequestKind
    provider: Provider | None
    status: int
    dropped: bool
    delay: float
    has_authorization: bool
    fault_index: int | None
    held: bool = False


@dataclass(frozen=True)
class AuthLeak:
    """A credential seen where it must never go.

    ``where`` is ``authorization`` (the header on a file/upload request), ``header:<name>``
    or ``query`` (a configured key found there), or ``cross-provider`` (one provider's key
    sent to the other provider's API).
    """

    method: str
    path: str
    kind: RequestKind
    where: str
    value: str


@dataclass(frozen=True)
class Callback:
    """A webhook/callback the provider would have POSTed (recorded, never sent).

    ``event`` is ``queued``/``running``/``completed``/``failed``/``cancelled`` (Qingbo with
    ``qingbo_status_names="events"``: ``succeeded`` instead of ``completed``).
    """

    provider: Provider
    task_id: str
    url: str
    event: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class TaskInfo:
    """A snapshot of one emulated task, for assertions.

    Attributes:
        status: In the provider's own vocabulary as the wire speaks it (WaveSpeed
            ``created``/``processing``/..., Qingbo ``queued``/``processing``/... or, with
            ``qingbo_status_names="events"``, ``queued``/``running``/``succeeded``/...).
        output: Real geometry of the output the provider would return.
        file_spec: Geometry of the file the emulator serves (``output`` scaled).
        output_url: Download URL once completed.
        price_usd: What the task costs when it succeeds.
        charged_usd: What is charged now (0 while refunded: failed or cancelled).
    """

    provider: Provider
    task_id: str
    model: str
    action: str | None
    status: str
    polls: int
    body: Mapping[str, Any]
    owner: str
    idempotency_key: str | None
    output: VideoSpec
    file_spec: VideoSpec
    output_url: str | None
    price_usd: float
    charged_usd: float
    error_code: int | str | None
    error_message: str | None


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> EmulatorResponse:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return EmulatorResponse(status, {"Content-Type": "application/json", **(headers or {})}, body)


def body_hash(body: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of a request body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Request:
    """One parsed request, as every room of the emulator sees it."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    kind: RequestKind
    provider: Provider | None
