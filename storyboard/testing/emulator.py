"""Protocol-faithful emulator of the WaveSpeed v3 and Qingbo ``/v1/tasks`` APIs (test support).

Not a pipeline stage: the provider clients are written and tested against it, and
``storyboard emulate`` serves it so ``render --live`` can be tried offline. Every wire fact
comes from ``shared/design/PROVIDERS.md``; section numbers below refer to that file.

Three layers share one state:

* :class:`Emulator`, the pure core. One entry point, :meth:`Emulator.handle`, maps
  ``(method, path?query, headers, body)`` to an :class:`EmulatorResponse`. No sockets, no
  threads; time comes from injectable clocks; tasks advance by number of polls and/or by
  elapsed clock time.
* :meth:`Emulator.mock_transport`, the core as an ``httpx.MockTransport`` for unit tests.
* :class:`EmulatorServer` / :func:`serve`, the core behind a stdlib ``ThreadingHTTPServer``
  on 127.0.0.1 with an ephemeral port, for end-to-end tests and ``storyboard emulate``.

URL layout, all on one host, told apart by path::

    /api/v3/...   WaveSpeed API (Bearer auth)               PROVIDERS §1, §2
                  (``/api/v3/predictions``: the listing)
    /v1/...       Qingbo task API (Bearer auth)             PROVIDERS §3
    /files/...    output and uploaded files: "the CDN"      no auth
    /upload/...   presigned PUT targets: "the bucket"       no auth

Requests to ``/files`` and ``/upload`` never need the API key; any that carries an
``Authorization`` header (or a configured key anywhere else) is recorded in
:attr:`Emulator.auth_leaks`, so tests can assert the key never leaks there.

Output geometry. Tasks know the *real* geometry (:class:`VideoSpec`) of what the provider
would return; the file served is a real H.264 MP4 scaled down for speed:

========================================  ===========================  ===  =====================
endpoint / model                          size (w x h)                 fps  frames
========================================  ===========================  ===  =====================
``wavespeed-ai/SkyReels-V1``              960x544 (544x960 / 720x720    24  97 (~4.04 s)
                                          for a portrait / square
                                          emulator-hosted image)
``skyreels-v3/reference-to-video``        16:9 1280x720, 9:16           24  duration*24+1
                                          720x1280, 1:1 960x960
``skyreels-v3/extend-video``              720P bucket of the source     24  duration*24 (new only)
``skyreels-v3/extend-video-cutshot``      720P bucket of the source     24  duration*24+1 (new only)
Qingbo ``skyreels-v4-fast|std``           short side 480/720/1080,      32  duration*32; ``extend``
                                          long side by aspect ratio         adds the source first
========================================  ===========================  ===  =====================

The file has width and height multiplied by ``scale`` (default 1/8; short side at least
``min_short_side``; both rounded to even), the same fps, and at most ``max_seconds * fps``
frames (see :func:`scaled_geometry`). V4 files carry a sine audio track (V4 generates joint
audio, PROVIDERS §4.4); WaveSpeed files are silent like the open-source models. Encoded files
are cached per scaled geometry; each task's copy is re-muxed (stream copy) with its task id
in the ``comment`` tag, so two tasks never share bytes.

Choices made where PROVIDERS.md says UNCONFIRMED (or is silent):

* WaveSpeed invalid input: the submit is accepted (HTTP 200) and the task is already
  ``failed`` with task code 1400 (missing field) or 1401 (invalid value), because the
  documented error codes live in the prediction object (§1.3). ``wavespeed_invalid="http"``
  answers HTTP 400 ``{"code":400,"message":...,"data":null}`` instead. Unreachable media
  (an unknown emulator URL, a non-http(s) URL) fails the task with 1402 when it would finish.
* WaveSpeed HTTP errors use ``{"code":<status>,"message":...,"data":null}`` (§1.8); 401 says
  "invalid authentication" (§1.1). ``data.code`` appears only on failed tasks. Failed tasks
  are not billed. ``extend-video`` accepts duration 5-30 (open-source range) and bills
  $0.04/s; ``extend-video-cutshot`` bills $0.20 a run.
* Upload tickets expire after one hour (``upload.expires_at`` is an ISO string, as the JS SDK
  types it); uploaded files and WaveSpeed outputs live 7 days. The PUT must use the URL as
  given, the signed ``Content-Type`` and exactly ``size`` bytes with a Content-Length
  (chunked bodies get 411, as S3 presigned PUTs do).
* Qingbo: a successful submit is HTTP 200 (``qingbo_submit_status``); every 400 uses code
  ``invalid_request``; 401 uses ``invalid_api_key``; a 6th submit while 5 tasks of the same
  key are queued gets 429 ``too_many_queued_tasks`` (no Retry-After). ``cost`` and
  ``pre_consumed_cost`` are integer quota (docs: "quota, integer"; 500000 quota = $1, §3.5);
  ``qingbo_cost_unit="usd"`` emits USD floats instead. ``quota_window_exceeded`` puts
  ``window``, ``used``, ``cap`` and ``reset_at`` inside the ``error`` object, ``reset_at`` in
  the same unit as ``created_at``. Sending both ``image_urls`` and ``ref_images`` (or
  ``video_urls`` and ``ref_videos``, or ``audio_urls`` and a ``ref_images[].audio_url``), or
  ``last_frame_image`` without ``first_frame_image``, is a 400 (the seed says "one of"). Media URLs must be http(s).
  Auto-routing priority: extend > reference_video > reference_audio > reference >
  first_last_frame > image2video > generate. An idempotent replay returns the original task
  in the submit shape with its current status, whatever the new body says. ``Prefer: wait``
  is accepted and answered with the current state (the core never blocks).
* Qingbo status names: ``qingbo_status_names="task"`` (default) speaks the task pages'
  ``queued``/``processing``/``completed``/``failed``/``cancelled``; ``"events"`` speaks the
  SkyReels V4 page's ``callback_events`` vocabulary ``queued``/``running``/``succeeded``/
  ``failed`` (``cancelled`` unchanged) in submit and status replies, callback bodies and
  :attr:`Callback.event`. Either way ``callback_events`` accepts both vocabularies.
  ``qingbo_cost_unit="none"`` omits ``cost``, ``pre_consumed_cost`` and ``refunded_quota``
  (the task is billed all the same). WaveSpeed prediction objects never carry a cost.
* Seed limits are checked at submit and rejected the provider's way (Qingbo 400
  ``invalid_request``; WaveSpeed a failed task 1400/1401 or, with ``wavespeed_invalid="http"``,
  a 400). V4: ``ref_videos`` <= 1 item with ``tag``, ``type`` reference|extend and
  ``video_url``; ``ref_images`` <= 6 with ``tag``, ``type`` image|grid and 1 | 2-9
  ``image_urls``; ``mid_frame_images`` <= 6 with ``tag``, ``image_url`` and a ``time_stamp``
  strictly increasing inside (0, duration); a reference video (``ref_videos``,
  ``video_urls``) of 2-30 s and audio (``audio_urls``, ``ref_images[].audio_url``) of
  3-30 s, measured only where the emulator hosts the file (an upload is probed with ffmpeg,
  an output's length is known); URLs elsewhere are taken on trust. V1: ``prompt`` and
  ``image`` required, ``seed`` an integer in -1..2147483647 (seed 001; the older seed 000
  says 9999999999). V3 reference: ``prompt`` and 1-4 ``images`` required, ``duration``
  5-10, ``aspect_ratio`` 16:9 | 9:16 | 1:1.
* WaveSpeed listing (§1.3): ``POST /api/v3/predictions`` with a JSON body, and ``GET`` with
  the same fields as query parameters (one doc page shows GET). ``page`` >= 1 (default 1),
  ``page_size`` 1-100 (default 20, UNCONFIRMED), ``model`` (exact model path), ``status``
  (created|processing|completed|failed), ``created_after``/``created_before`` (ISO 8601, e.g.
  ``2026-11-29T08:00:00Z``, or Unix seconds; both bounds inclusive). Anything else is a 400.
  Only the caller's tasks of the last 7 days, newest first, in
  ``data.{page,page_size,total,items}``; each item is the prediction object the result
  endpoint returns plus ``input``, the submitted body. That list items carry ``input`` is
  UNCONFIRMED (the webhook body documents it). Tasks created behind a faulted 5xx appear.
* Faults the client cannot tell apart from a real outage: ``Fault(apply=True, status=5xx)``
  creates (and bills) the task, then answers the error; ``Fault(hold=True)`` applies the
  request and sends nothing until the client hangs up (at most ``delay`` s or 60 s);
  ``Fault(on="poll", task_status="paused")`` reports a status the client may not know.
* Callbacks and webhooks are recorded in :attr:`Emulator.callbacks` (never sent). WaveSpeed
  webhooks are signed as §1.5 describes; the secret is served at ``/api/v3/webhook/secret``
  as ``data.secret``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http
import json
import math
import mimetypes
import random
import re
import select
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeGuard, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_QINGBO_KEY",
    "DEFAULT_WAVESPEED_KEY",
    "QINGBO_MODELS",
    "WAVESPEED_MODELS",
    "AuthLeak",
    "Callback",
    "Emulator",
    "EmulatorResponse",
    "EmulatorServer",
    "Fault",
    "FaultHit",
    "QuotaWindow",
    "RequestRecord",
    "Submission",
    "TaskInfo",
    "VideoProbe",
    "VideoSpec",
    "banner_lines",
    "body_hash",
    "encode_video",
    "probe_duration",
    "probe_video",
    "run_forever",
    "scaled_geometry",
    "serve",
]

Provider = Literal["wavespeed", "qingbo"]
RequestKind = Literal["submit", "poll", "cancel", "list", "media", "upload", "download", "other"]
FaultOn = Literal["submit", "poll", "cancel", "list", "media", "upload", "download", "any"]
QingboStatusNames = Literal["task", "events"]
QingboCostUnit = Literal["quota", "usd", "none"]
JSONDict = dict[str, Any]
_FAULT_KINDS = ("submit", "poll", "cancel", "list", "media", "upload", "download", "any")
MAX_HOLD = 60.0  # longest a held reply keeps its connection open (seconds)

DEFAULT_WAVESPEED_KEY = "ws-emulator-key"
DEFAULT_QINGBO_KEY = "qb-emulator-key"

WAVESPEED_PREFIX = "/api/v3/"
QINGBO_PREFIX = "/v1/"
FILES_PREFIX = "/files/"
UPLOAD_PREFIX = "/upload/"

V1 = "wavespeed-ai/SkyReels-V1"
V3_REFERENCE = "skywork-ai/skyreels-v3/reference-to-video"
V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"
V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"
WAVESPEED_MODELS: tuple[str, ...] = (V1, V3_REFERENCE, V3_EXTEND, V3_CUTSHOT)
QINGBO_MODELS: tuple[str, ...] = ("skyreels-v4-fast", "skyreels-v4-std")

V4_ACTIONS: tuple[str, ...] = (
    "generate",
    "image2video",
    "first_last_frame",
    "reference",
    "reference_video",
    "reference_audio",
    "extend",
)
V4_ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "4:3", "3:4", "1:1")
V4_RESOLUTIONS: tuple[str, ...] = ("480p", "720p", "1080p")
# Both vocabularies: the SkyReels page says running/succeeded, other Qingbo pages and the
# task statuses say processing/completed (PROVIDERS §3.5). Which the server takes is
# UNCONFIRMED, so both are accepted.
V4_CALLBACK_EVENTS = frozenset(
    {"queued", "running", "succeeded", "failed", "processing", "completed", "cancelled"}
)

# PROVIDERS §3.3, USD per second: (standard, with a reference/extend video).
_V4_PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "skyreels-v4-fast": {
        "480p": (0.068, 0.1275),
        "720p": (0.0935, 0.17),
        "1080p": (0.23375, 0.425),
    },
    "skyreels-v4-std": {
        "480p": (0.0935, 0.153),
        "720p": (0.119, 0.2125),
        "1080p": (0.2975, 0.53125),
    },
}
QUOTA_PER_USD = 500_000  # vendor skill, UNCONFIRMED in the docs (PROVIDERS §3.5)

# Open-source V3 720P buckets, both sides floored to multiples of 16 (PROVIDERS §4.3).
_V3_BUCKETS: dict[str, tuple[int, int]] = {
    "16:9": (1280, 720),
    "9:16": (720, 1280),
    "1:1": (960, 960),
    "4:3": (1104, 832),
    "3:4": (832, 1104),
}
# Open-source V1 sizes (PROVIDERS §4.1).
_V1_SIZES: tuple[tuple[int, int], ...] = ((960, 544), (544, 960), (720, 720))

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
_QINGBO_HTTP_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

DAY = 86_400.0
LIST_PAGE_SIZE = 20  # default page_size of the prediction listing (UNCONFIRMED)
_MAX_UPLOAD_BYTES = 300 * 1024 * 1024  # "files >300 MB should be passed by URL" (§1.6)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


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


def body_hash(body: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of a request body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Media: ffmpeg encode (cached), stamp, probe
# --------------------------------------------------------------------------------------------

_ENCODE_CACHE: dict[VideoSpec, bytes] = {}
_ENCODE_LOCK = threading.Lock()


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return cast(str, imageio_ffmpeg.get_ffmpeg_exe())


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", *args],
        capture_output=True,
        check=False,
        timeout=120,
    )


def scaled_geometry(
    spec: VideoSpec, scale: float, max_seconds: float | None, min_short_side: int = 36
) -> VideoSpec:
    """The geometry of the file served for a real output geometry.

    Width and height are multiplied by ``scale``, raised so that the short side is at least
    ``min_short_side`` (never above the real size) and rounded to even numbers (H.264 with
    yuv420p needs that). The fps is kept; frames are capped at ``max_seconds * fps``.
    """
    short = min(spec.width, spec.height)
    factor = min(1.0, max(scale, min_short_side / short))
    width = max(2, round(spec.width * factor / 2) * 2)
    height = max(2, round(spec.height * factor / 2) * 2)
    frames = spec.frames
    if max_seconds is not None:
        frames = max(1, min(frames, round(max_seconds * spec.fps)))
    return VideoSpec(width, height, spec.fps, frames, spec.audio)


def encode_video(spec: VideoSpec) -> bytes:
    """An MP4 (H.264, yuv420p, AAC sine tone if ``spec.audio``) of exactly this geometry.

    Cached per geometry for the life of the process: repeated tasks never re-encode.
    """
    with _ENCODE_LOCK:
        cached = _ENCODE_CACHE.get(spec)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
            out = Path(tmp) / "out.mp4"
            args = [
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}",
            ]
            if spec.audio:
                seconds = f"{spec.seconds:.6f}"
                args += [
                    "-f",
                    "lavfi",
                    "-i",
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}",
                ]
            args += ["-frames:v", str(spec.frames), "-c:v", "libx264", "-preset", "ultrafast"]
            args += ["-crf", "35", "-pix_fmt", "yuv420p"]
            if spec.audio:
                args += ["-c:a", "aac", "-b:a", "32k"]
            args += ["-movflags", "+faststart", "-y", str(out)]
            done = _run_ffmpeg(args)
            if done.returncode != 0:
                raise RuntimeError(f"ffmpeg failed to encode {spec}: {done.stderr.decode()[-800:]}")
            data = out.read_bytes()
        _ENCODE_CACHE[spec] = data
        return data


def _stamp(data: bytes, comment: str) -> bytes:
    """Re-mux (stream copy, no re-encode) with a ``comment`` tag so each task's bytes differ."""
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        src, out = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        src.write_bytes(data)
        done = _run_ffmpeg(
            [
                *("-i", str(src), "-map", "0", "-c", "copy"),
                *("-metadata", f"comment={comment}", "-movflags", "+faststart", "-y", str(out)),
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to stamp a file: {done.stderr.decode()[-800:]}")
        return out.read_bytes()


_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_RE = re.compile(r"Stream #\S+.*?: Video: .*?, (\d{2,5})x(\d{2,5})[, \[]")
_FPS_RE = re.compile(r"([\d.]+) fps")
_FRAME_RE = re.compile(r"frame=\s*(\d+)")


def probe_video(data: bytes | Path, *, count_frames: bool = False) -> VideoProbe | None:
    """Read size, fps, duration and audio presence with ``ffmpeg -i``; ``None`` if not video.

    Args:
        data: File bytes or a path.
        count_frames: Also count the video frames (demux with stream copy; cheap).
    """
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        if isinstance(data, Path):
            path = data
        else:
            path = Path(tmp) / "probe.bin"
            path.write_bytes(data)
        stderr = _run_ffmpeg(["-i", str(path)]).stderr.decode(errors="replace")
        video = _VIDEO_RE.search(stderr)
        duration = _DURATION_RE.search(stderr)
        if video is None or duration is None:
            return None
        hours, minutes, seconds = duration.groups()
        video_line = stderr[video.start() : stderr.find("\n", video.start())]
        fps = _FPS_RE.search(video_line)
        frames: int | None = None
        if count_frames:
            counted = _run_ffmpeg(
                ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
            )
            found = _FRAME_RE.findall(counted.stderr.decode(errors="replace"))
            frames = int(found[-1]) if found else None
        return VideoProbe(
            width=int(video.group(1)),
            height=int(video.group(2)),
            fps=float(fps.group(1)) if fps else 0.0,
            duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
            has_audio=": Audio: " in stderr,
            frames=frames,
        )


def probe_duration(data: bytes | Path) -> float | None:
    """The length in seconds ffmpeg reads from any media file (audio too); ``None`` if none."""
    with tempfile.TemporaryDirectory(prefix="sb-emu-") as tmp:
        path = data if isinstance(data, Path) else Path(tmp) / "probe.bin"
        if not isinstance(data, Path):
            path.write_bytes(data)
        stderr = _run_ffmpeg(["-i", str(path)]).stderr.decode(errors="replace")
    found = _DURATION_RE.search(stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _image_size(data: bytes) -> tuple[int, int] | None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return (int(image.width), int(image.height))
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _nearest(size: tuple[int, int], candidates: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The candidate whose aspect ratio is closest to ``size``'s (log distance)."""
    ratio = math.log(size[0] / size[1])
    return min(candidates, key=lambda c: abs(math.log(c[0] / c[1]) - ratio))


def v4_frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """V4 frame size: the short side is the resolution, the long side follows the ratio (even)."""
    short = int(resolution.rstrip("p"))
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    if w_ratio >= h_ratio:
        width, height = short * w_ratio / h_ratio, float(short)
    else:
        width, height = float(short), short * h_ratio / w_ratio
    return (2 * math.ceil(width / 2 - 1e-9), 2 * math.ceil(height / 2 - 1e-9))


# --------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A request field failed validation; ``missing`` picks WaveSpeed code 1400 over 1401."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


@dataclass
class _Request:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    kind: RequestKind
    provider: Provider | None


@dataclass
class _FaultState:
    index: int
    fault: Fault
    seen: int = 0
    fired: int = 0


@dataclass
class _StoredFile:
    path: str
    provider: Provider
    content_type: str
    expires_at: float  # wall clock
    data: bytes | None = None  # None: generated lazily (outputs) or not uploaded yet
    spec: VideoSpec | None = None  # real geometry of a generated output
    stamp: str | None = None
    dims: tuple[int, int] | None = None  # real size, once known
    seconds: float | None = None  # real length, once known
    probed: bool = False


@dataclass
class _Ticket:
    token: str
    filename: str
    size: int
    content_type: str
    signature: str
    expires_at: float  # wall clock
    file_path: str


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


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> EmulatorResponse:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return EmulatorResponse(status, {"Content-Type": "application/json", **(headers or {})}, body)


def _s3_error(status: int, code: str, message: str) -> EmulatorResponse:
    # Storage and CDN errors look like S3's XML, not like either provider's JSON.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return EmulatorResponse(status, {"Content-Type": "application/xml"}, body.encode())


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _iso(wall: float, *, nanoseconds: bool = True) -> str:
    ns = round(wall * 1e9)
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z" if nanoseconds else f"{stamp}Z"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def _whole(value: object, name: str, low: int, high: int | None) -> int:
    """An integer parameter (a JSON number or, from a query string, digits) within bounds."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not _is_int(value) or value < low or (high is not None and value > high):
        limit = f"{low}..{high}" if high is not None else f">= {low}"
        raise _Invalid(f"{name} must be an integer {limit}, got {value!r}")
    return value


def _instant(value: object, name: str) -> float | None:
    """Unix seconds from an ISO 8601 string (``2026-11-29T08:00:00Z``) or a number."""
    if value is None or value == "":
        return None
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
            if math.isfinite(number):
                return number
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise _Invalid(f"{name} must be an ISO 8601 time or Unix seconds, got {value!r}")


def _retry_after(seconds: float) -> str:
    # Retry-After takes whole seconds (RFC 9110); round up so a client never retries early.
    return str(max(0, math.ceil(seconds)))


# --------------------------------------------------------------------------------------------
# The core
# --------------------------------------------------------------------------------------------


class Emulator:
    """In-memory WaveSpeed + Qingbo provider: tasks, uploads, files, faults and records.

    Args:
        wavespeed_keys: Valid WaveSpeed API keys (each is its own account).
        qingbo_keys: Valid Qingbo API keys (each is its own account: tasks, idempotency
            keys and the queued-task cap are per key).
        base_url: Scheme and host put into every URL the emulator returns. The loopback
            server replaces it with its own address.
        clock: Monotonic seconds; drives task progression, idempotency expiry.
        wall_clock: Unix seconds; drives timestamps and URL expiry.
        polls_to_start: Polls after which a task leaves ``created``/``queued`` (``None``:
            polls never start it).
        polls_to_finish: Polls after which a task finishes (``None``: polls never finish it).
        seconds_to_start: Clock seconds after submit at which a task starts running.
        seconds_to_finish: Clock seconds after submit at which a task finishes.
        scale: Frame-size factor of served files (see :func:`scaled_geometry`).
        max_seconds: Cap on the length of served files (``None``: real length).
        min_short_side: Smallest short side of a served file.
        stamp_outputs: Re-mux each output with its task id so no two tasks share bytes.
        max_queued: Qingbo's cap on queued tasks per account (PROVIDERS §3.3).
        idempotency_ttl: Seconds an ``Idempotency-Key`` is remembered (24 h).
        qingbo_timestamps: ``ms`` (documented) or ``s`` (the generic examples) for
            ``created_at``/``completed_at``/``reset_at``.
        qingbo_url_list: ``result.videos[].url`` as a list (current docs) or a plain string
            (older revision).
        qingbo_cost_unit: ``quota`` integers (documented) or ``usd`` floats for ``cost`` and
            ``pre_consumed_cost``; ``none`` leaves both fields (and the cancel reply's
            ``refunded_quota``) out, like a stand-in that reports no cost.
        qingbo_status_names: ``task`` (the task pages: ``queued``/``processing``/
            ``completed``/``failed``/``cancelled``) or ``events`` (the SkyReels V4 page's
            ``callback_events``: ``queued``/``running``/``succeeded``/``failed``, and
            ``cancelled``), in submit replies, status replies, callbacks and
            :attr:`TaskInfo.status`.
        qingbo_submit_status: HTTP status of a successful Qingbo submit (UNCONFIRMED: 200).
        wavespeed_invalid: ``task`` (a failed task with code 1400/1401) or ``http`` (a 400).
        wavespeed_balance: Starting WaveSpeed balance in USD (``GET /api/v3/balance``).
        reject_authorization_on_upload: Answer a PUT that carries ``Authorization`` with 400,
            as S3 does for presigned URLs (it is always recorded as a leak).
        seed: Seed for ids and tokens (``None``: fresh randomness, so restarted emulators
            never reuse ids).
    """

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

    # ---- scripting and inspection -----------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Append faults to the script; they fire in order on matching requests."""
        with self._lock:
            for fault in faults:
                self._faults.append(_FaultState(len(self._faults), fault))

    @property
    def pending_faults(self) -> list[Fault]:
        """Scripted faults that still have uses left, in script order."""
        with self._lock:
            return [s.fault for s in self._faults if s.fired < s.fault.times]

    def fault_count(self, index: int) -> int:
        """How many times the ``index``-th scripted fault fired."""
        with self._lock:
            return self._faults[index].fired

    @property
    def submits_per_idempotency_key(self) -> Counter[str]:
        """Submit requests per ``Idempotency-Key`` (replays included)."""
        return Counter(s.idempotency_key for s in self.submissions if s.idempotency_key)

    @property
    def submits_per_body_hash(self) -> Counter[str]:
        """Submit requests per :func:`body_hash`, whatever their outcome."""
        return Counter(s.body_hash for s in self.submissions)

    @property
    def tasks_per_body_hash(self) -> Counter[str]:
        """Tasks created (billed) per :func:`body_hash`."""
        return Counter(s.body_hash for s in self.submissions if s.created)

    def task(self, task_id: str) -> TaskInfo:
        """A snapshot of one task (``KeyError`` if unknown). Does not count as a poll."""
        with self._lock:
            task = self._tasks[task_id]
            self._advance(task, polled=False)
            return self._info(task)

    def tasks(self, provider: Provider | None = None) -> list[TaskInfo]:
        """Snapshots of all tasks (of one provider), in creation order."""
        with self._lock:
            found = [t for t in self._tasks.values() if provider in (None, t.provider)]
            for task in found:
                self._advance(task, polled=False)
            return [self._info(t) for t in found]

    def finish_task(
        self, task_id: str, *, fail_code: int | str | None = None, message: str | None = None
    ) -> None:
        """Drive a task to its end now: completed, or failed with ``fail_code``."""
        with self._lock:
            task = self._tasks[task_id]
            if task.terminal:
                return
            if fail_code is not None:
                task.pending_failure = self._failure(task.provider, fail_code, message)
            self._finish(task)

    def file_bytes(self, url: str) -> bytes:
        """The bytes an emulator URL serves (generating an output if needed); ``KeyError``."""
        with self._lock:
            stored = self._files[unquote(urlsplit(url).path)]
            return self._materialise(stored)

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

    def _take_fault(self, request: _Request) -> Fault | None:
        for state in self._faults:
            fault = state.fault
            if state.fired >= fault.times:
                continue
            if fault.on not in ("any", request.kind):
                continue
            if fault.provider not in (None, request.provider):
                continue
            state.seen += 1
            if state.seen <= fault.skip:
                return None  # the first matching fault owns the request, even while skipping
            state.fired += 1
            self._current_fault = state.index
            self.fault_hits.append(
                FaultHit(
                    state.index,
                    fault,
                    request.method,
                    request.target,
                    request.kind,
                    request.provider,
                )
            )
            return fault
        return None

    def _with_faults(
        self, request: _Request, apply: Callable[[Fault | None], EmulatorResponse]
    ) -> EmulatorResponse:
        fault = self._take_fault(request)
        if fault is not None and fault.rejects:
            response = replace(self._fault_response(request, fault), delay=fault.delay)
            if fault.apply:  # applied behind the error: the submit record says what was sent
                recorded = len(self.submissions)
                apply(fault)
                for i in range(recorded, len(self.submissions)):
                    self.submissions[i] = replace(self.submissions[i], http_status=response.status)
            elif request.kind == "submit" and request.provider is not None:
                self._record_rejected_submit(request, request.provider, response.status)
            return response
        response = apply(fault)
        if fault is None:
            return response
        if fault.task_status is not None and response.status < 300:
            response = self._restatus(response, fault.task_status)
        return replace(
            response,
            drop_connection=fault.drop,
            delay=0.0 if fault.hold else fault.delay,
            truncate_after=fault.truncate,
            hold=fault.hold_seconds if fault.hold else None,
        )

    @staticmethod
    def _restatus(response: EmulatorResponse, status: str) -> EmulatorResponse:
        """The same JSON reply with its task status (``status`` or ``data.status``) replaced."""
        payload = json.loads(response.body)
        target = payload.get("data") if isinstance(payload.get("data"), dict) else payload
        if isinstance(target, dict) and "status" in target:
            target["status"] = status
        return replace(response, body=_json_response(200, payload).body)

    def _fault_response(self, request: _Request, fault: Fault) -> EmulatorResponse:
        headers: dict[str, str] = {}
        status = fault.status if fault.status is not None else 429
        if fault.retry_after is not None:
            headers["Retry-After"] = _retry_after(fault.retry_after)
        if fault.body is not None:
            headers["Content-Type"] = fault.content_type or "text/plain"
            return EmulatorResponse(status, headers, fault.body)
        message = fault.message or _phrase(status).lower()
        if request.kind in ("download", "upload"):
            return replace(
                _s3_error(status, fault.code or _phrase(status).replace(" ", ""), message),
                headers={
                    "Content-Type": "application/xml",
                    **headers,
                },
            )
        if request.provider == "qingbo":
            error: JSONDict = {
                "message": message,
                "code": fault.code or _QINGBO_HTTP_CODES.get(status, f"http_{status}"),
            }
            if fault.quota is not None:
                reset_wall = self.wall_clock() + fault.quota.reset_in
                error.update(
                    code=fault.code or "quota_window_exceeded",
                    message=fault.message or f"quota window {fault.quota.window} exhausted",
                    window=fault.quota.window,
                    used=fault.quota.used,
                    cap=fault.quota.cap,
                    reset_at=self._qb_time(reset_wall),
                )
                headers.setdefault("Retry-After", _retry_after(fault.quota.reset_in))
            return _json_response(status, {"error": error}, headers)
        return _json_response(status, {"code": status, "message": message, "data": None}, headers)

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

    # ---- WaveSpeed ----------------------------------------------------------------------------

    def _ws_error(self, status: int, message: str) -> EmulatorResponse:
        return _json_response(status, {"code": status, "message": message, "data": None})

    def _wavespeed(self, request: _Request) -> EmulatorResponse:
        key = self._bearer(request)
        if key is None or key not in self.wavespeed_keys:
            return self._ws_error(401, "invalid authentication: missing or invalid API key")
        rest = request.path[len(WAVESPEED_PREFIX) :]
        if request.kind == "submit":
            return self._with_faults(request, lambda f: self._ws_submit(request, key, rest, f))
        if request.kind == "poll":
            return self._with_faults(request, lambda f: self._ws_poll(request, key, rest, f))
        if request.kind == "list":
            return self._with_faults(request, lambda _f: self._ws_list(request, key))
        if request.kind == "media":
            if request.method != "POST":
                return self._ws_error(405, "method not allowed")
            if rest == "media/uploads":
                return self._with_faults(request, lambda _f: self._ws_ticket(request))
            return self._with_faults(request, lambda _f: self._ws_binary_upload(request))
        if rest == "webhook/secret" and request.method == "GET":
            return _json_response(
                200, {"code": 200, "message": "success", "data": {"secret": self.webhook_secret}}
            )
        if rest == "balance" and request.method == "GET":
            spent = self.total_charged_usd("wavespeed")
            balance = round(self.wavespeed_balance - spent, 6)
            return _json_response(
                200, {"code": 200, "message": "success", "data": {"balance": balance}}
            )
        if rest in WAVESPEED_MODELS:
            return self._ws_error(405, "method not allowed")
        return self._ws_error(404, f"model or endpoint not found: {rest}")

    def _ws_submit(
        self, request: _Request, key: str, endpoint: str, fault: Fault | None
    ) -> EmulatorResponse:
        parsed = self._parse_json(request.body)
        body = parsed if isinstance(parsed, dict) else {}

        def record(status: int, task_id: str | None, created: bool) -> None:
            self._record_submission(
                request,
                provider="wavespeed",
                endpoint=endpoint,
                model=endpoint,
                body=body,
                idempotency_key=None,
                task_id=task_id,
                created=created,
                status=status,
            )

        if not isinstance(parsed, dict):
            record(400, None, False)
            return self._ws_error(400, "request body must be a JSON object")
        try:
            self._ws_validate(endpoint, body)
            invalid: _Invalid | None = None
        except _Invalid as exc:
            invalid = exc
        if invalid is not None and self.wavespeed_invalid == "http":
            record(400, None, False)
            return self._ws_error(400, invalid.message)

        output = (
            self._ws_output_spec(endpoint, body) if invalid is None else VideoSpec(960, 544, 24, 1)
        )
        task = self._new_task(
            "wavespeed",
            key,
            model=endpoint,
            action=None,
            body=body,
            output=output,
            price=self._ws_price(endpoint, body),
        )
        task.callback_url = request.query.get("webhook") or None
        if invalid is not None:
            code = 1400 if invalid.missing else 1401
            task.pending_failure = (code, f"{WAVESPEED_TASK_CODES[code]}: {invalid.message}")
            self._finish(task)
        else:
            task.pending_failure = self._media_failure(task)
            if fault is not None and fault.fail_task_code is not None:
                task.pending_failure = self._failure(
                    "wavespeed", fault.fail_task_code, fault.fail_message
                )
            if body.get("enable_sync_mode") is True:
                self._finish(task)
        record(200, task.id, True)
        return _json_response(200, {"code": 200, "message": "success", "data": self._ws_data(task)})

    def _ws_poll(
        self, request: _Request, key: str, rest: str, fault: Fault | None
    ) -> EmulatorResponse:
        parts = rest.split("/")
        if not (len(parts) == 2 or (len(parts) == 3 and parts[2] == "result")) or not parts[1]:
            return self._ws_error(404, "not found")
        task = self._tasks.get(parts[1])
        if task is None or task.provider != "wavespeed" or task.owner != key:
            return self._ws_error(404, f"prediction not found: {parts[1]}")
        self._advance(task, polled=True)
        if fault is not None and fault.fail_task_code is not None and not task.terminal:
            task.pending_failure = self._failure(
                "wavespeed", fault.fail_task_code, fault.fail_message
            )
            self._finish(task)
        return _json_response(200, {"code": 200, "message": "success", "data": self._ws_data(task)})

    def _ws_list(self, request: _Request, key: str) -> EmulatorResponse:
        """The account's predictions of the last 7 days, newest first (PROVIDERS §1.3)."""
        params: Any = dict(request.query)
        if request.method == "POST" and request.body.strip():
            params = self._parse_json(request.body)
            if not isinstance(params, dict):
                return self._ws_error(400, "request body must be a JSON object")
        try:
            page = _whole(params.get("page", 1), "page", 1, None)
            page_size = _whole(params.get("page_size", LIST_PAGE_SIZE), "page_size", 1, 100)
            after = _instant(params.get("created_after"), "created_after")
            before = _instant(params.get("created_before"), "created_before")
        except _Invalid as exc:
            return self._ws_error(400, exc.message)
        model, status = params.get("model") or None, params.get("status") or None
        if model is not None and not isinstance(model, str):
            return self._ws_error(400, "model must be a string (a model path)")
        if status is not None and status not in ("created", "processing", "completed", "failed"):
            return self._ws_error(
                400, f"status must be one of created, processing, completed, failed: {status!r}"
            )
        oldest = self.wall_clock() - self.list_window
        found = []
        for task in self._tasks.values():
            if task.provider != "wavespeed" or task.owner != key:
                continue
            self._advance(task, polled=False)
            if (
                task.created_wall >= oldest
                and (after is None or task.created_wall >= after)
                and (before is None or task.created_wall <= before)
                and model in (None, task.model)
                and status in (None, self._status(task))
            ):
                found.append(task)
        found.reverse()  # newest first; creation order breaks ties of equal timestamps
        found.sort(key=lambda t: t.created_wall, reverse=True)
        start = (page - 1) * page_size
        items = [{**self._ws_data(t), "input": t.body} for t in found[start : start + page_size]]
        data = {"page": page, "page_size": page_size, "total": len(found), "items": items}
        return _json_response(200, {"code": 200, "message": "success", "data": data})

    def _ws_validate(self, endpoint: str, body: JSONDict) -> None:
        def need_str(name: str) -> None:
            if name not in body or body[name] in (None, ""):
                raise _Invalid(f"{name} is required", missing=True)
            if not isinstance(body[name], str):
                raise _Invalid(f"{name} must be a string")

        def int_range(name: str, low: int, high: int) -> None:
            if name in body and not (_is_int(body[name]) and low <= body[name] <= high):
                raise _Invalid(f"{name} must be an integer in {low}..{high}, got {body[name]!r}")

        need_str("prompt")
        if endpoint == V1:
            need_str("image")
            int_range("seed", -1, 2_147_483_647)
        elif endpoint == V3_REFERENCE:
            images = body.get("images")
            if images is None or images == []:
                raise _Invalid("images is required (1-4 image URLs)", missing=True)
            if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
                raise _Invalid("images must be a list of URLs")
            if not 1 <= len(images) <= 4:
                raise _Invalid(f"images must hold 1 to 4 items, got {len(images)}")
            if "aspect_ratio" in body and body["aspect_ratio"] not in ("16:9", "9:16", "1:1"):
                raise _Invalid(
                    f"aspect_ratio must be one of 16:9, 9:16, 1:1, got {body['aspect_ratio']!r}"
                )
            int_range("duration", 5, 10)
        else:
            need_str("video")
            if endpoint == V3_EXTEND:
                int_range("duration", 5, 30)
            else:
                int_range("duration", 2, 5)
                if "cut_type" in body and not isinstance(body["cut_type"], str):
                    raise _Invalid("cut_type must be a string")

    def _ws_price(self, endpoint: str, body: JSONDict) -> float:
        duration = body.get("duration", 5)
        seconds = duration if _is_int(duration) else 5
        if endpoint in (V3_REFERENCE, V3_EXTEND):
            return round(0.04 * seconds, 6)
        return 0.20

    def _ws_output_spec(self, endpoint: str, body: JSONDict) -> VideoSpec:
        duration = int(body.get("duration", 5))
        if endpoint == V1:
            dims = self._media_dims(body.get("image"))
            width, height = _nearest(dims, _V1_SIZES) if dims else _V1_SIZES[0]
            return VideoSpec(width, height, 24, 97)
        if endpoint == V3_REFERENCE:
            width, height = _V3_BUCKETS[str(body.get("aspect_ratio", "16:9"))]
            return VideoSpec(width, height, 24, duration * 24 + 1)
        dims = self._media_dims(body.get("video"))
        width, height = _nearest(dims, _V3_BUCKETS.values()) if dims else _V3_BUCKETS["16:9"]
        # Open-source V3 extensions return only the new footage (PROVIDERS §4.3); the
        # shot-switching one decodes duration*24+1 frames.
        frames = duration * 24 if endpoint == V3_EXTEND else duration * 24 + 1
        return VideoSpec(width, height, 24, frames)

    def _ws_data(self, task: _Task) -> JSONDict:
        outputs = (
            [self._url(task.output_path)] if task.phase == "completed" and task.output_path else []
        )
        elapsed_ms = 0
        if task.finished_clock is not None:
            elapsed_ms = max(1, round((task.finished_clock - task.created_clock) * 1000))
        data: JSONDict = {
            "id": task.id,
            "model": task.model,
            "outputs": outputs,
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [False] * len(outputs),
            "status": self._status(task),
            "created_at": _iso(task.created_wall),
            "error": task.error_message or "",
            "executionTime": elapsed_ms,
            "timings": {"inference": elapsed_ms},
        }
        if task.error_code is not None:
            data["code"] = task.error_code
        return data

    def _ws_ticket(self, request: _Request) -> EmulatorResponse:
        payload = self._parse_json(request.body)
        if not isinstance(payload, dict):
            return self._ws_error(400, "request body must be a JSON object")
        filename, size = payload.get("filename"), payload.get("size")
        if not isinstance(filename, str) or not filename.strip() or "/" in filename:
            return self._ws_error(400, "filename is required (a bare file name)")
        if not _is_int(size) or size <= 0:
            return self._ws_error(400, "size is required (a positive integer, bytes)")
        if size > _MAX_UPLOAD_BYTES:
            return self._ws_error(400, "file too large: pass files over 300 MB by URL")
        content_type = payload.get("content_type")
        if content_type is not None and not isinstance(content_type, str):
            return self._ws_error(400, "content_type must be a string")
        content_type = (
            content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        token = self._hex(24)
        now = self.wall_clock()
        file_path = f"{FILES_PREFIX}wavespeed/media/{token}/{filename}"
        signature = self._hex(32)
        ticket = _Ticket(
            token, filename, size, content_type, signature, now + self.ticket_ttl, file_path
        )
        self._tickets[token] = ticket
        self._files[file_path] = _StoredFile(
            file_path, "wavespeed", content_type, now + self.upload_ttl
        )
        upload_url = (
            f"{self.base_url}{UPLOAD_PREFIX}{token}/{quote(filename)}"
            f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={int(self.ticket_ttl)}"
            f"&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature={signature}"
        )
        data = {
            "type": content_type.split("/")[0]
            if content_type.split("/")[0] in ("image", "video", "audio")
            else "file",
            "download_url": self._url(file_path),
            "filename": filename,
            "size": size,
            "upload": {
                "method": "PUT",
                "url": upload_url,
                "headers": {"Content-Type": content_type},
                "expires_at": _iso(ticket.expires_at, nanoseconds=False),
            },
        }
        return _json_response(200, {"code": 200, "message": "success", "data": data})

    def _ws_binary_upload(self, request: _Request) -> EmulatorResponse:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return self._ws_error(400, "expected multipart/form-data with a field named file")
        message = BytesParser(policy=HTTP_POLICY).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
        )
        for part in message.iter_parts() if message.is_multipart() else ():
            if part.get_param("name", header="content-disposition") != "file":
                continue
            filename = Path(part.get_filename() or "upload.bin").name
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            part_type = part.get_content_type()
            if part_type in ("text/plain", "application/octet-stream"):
                part_type = mimetypes.guess_type(filename)[0] or part_type
            file_path = f"{FILES_PREFIX}wavespeed/media/{self._hex(24)}/{filename}"
            self._files[file_path] = _StoredFile(
                file_path, "wavespeed", part_type, self.wall_clock() + self.upload_ttl, data=data
            )
            kind = part_type.split("/")[0]
            result = {
                "type": kind if kind in ("image", "video", "audio") else "file",
                "download_url": self._url(file_path),
                "filename": filename,
                "size": len(data),
            }
            return _json_response(200, {"code": 200, "message": "success", "data": result})
        return self._ws_error(400, "multipart field 'file' is required")

    # ---- Qingbo -------------------------------------------------------------------------------

    def _qb_error(self, status: int, code: str, message: str) -> EmulatorResponse:
        return _json_response(status, {"error": {"message": message, "code": code}})

    def _qingbo(self, request: _Request) -> EmulatorResponse:
        key = self._bearer(request)
        if key is None or key not in self.qingbo_keys:
            return self._qb_error(401, "invalid_api_key", "Invalid API key")
        if request.kind == "submit":
            return self._with_faults(request, lambda f: self._qb_submit(request, key, f))
        if request.kind in ("poll", "cancel"):
            parts = request.path.split("/")  # "", "v1", "tasks", id[, "cancel"]
            task_id = parts[3] if len(parts) > 3 else ""
            well_formed = len(parts) == (5 if request.kind == "cancel" else 4) and task_id
            task = self._tasks.get(task_id) if well_formed else None
            if task is None or task.provider != "qingbo" or task.owner != key:
                # Someone else's task is indistinguishable from a missing one (PROVIDERS §3.6).
                return self._with_faults(
                    request,
                    lambda _f: self._qb_error(404, "task_not_found", f"task not found: {task_id}"),
                )
            found = task
            if request.kind == "poll":
                return self._with_faults(request, lambda f: self._qb_poll(found, f))
            return self._with_faults(request, lambda _f: self._qb_cancel(found))
        if request.path.startswith("/v1/tasks"):
            return self._qb_error(
                405, "method_not_allowed", f"{request.method} not allowed on {request.path}"
            )
        return self._qb_error(404, "not_found", f"no such endpoint: {request.path}")

    def _qb_submit(self, request: _Request, key: str, fault: Fault | None) -> EmulatorResponse:
        parsed = self._parse_json(request.body)
        body = parsed if isinstance(parsed, dict) else {}
        idem = request.headers.get("idempotency-key") or None
        model = body.get("model") if isinstance(body.get("model"), str) else None

        def record(status: int, task_id: str | None, created: bool) -> None:
            self._record_submission(
                request,
                provider="qingbo",
                endpoint="/v1/tasks",
                model=model,
                body=body,
                idempotency_key=idem,
                task_id=task_id,
                created=created,
                status=status,
            )

        if idem is not None:
            remembered = self._idempotency.get((key, idem))
            if remembered is not None and self.clock() - remembered[1] < self.idempotency_ttl:
                task = self._tasks[remembered[0]]
                self._advance(task, polled=False)
                record(self.qingbo_submit_status, task.id, False)
                return _json_response(self.qingbo_submit_status, self._qb_submit_json(task))
        if not isinstance(parsed, dict):
            record(400, None, False)
            return self._qb_error(400, "invalid_request", "request body must be a JSON object")
        try:
            action = self._qb_validate(body)
        except _Invalid as exc:
            record(400, None, False)
            return self._qb_error(400, "invalid_request", exc.message)
        queued = 0
        for other in self._tasks.values():
            if other.provider == "qingbo" and other.owner == key:
                self._advance(other, polled=False)
                queued += other.phase == "waiting"
        if queued >= self.max_queued:
            record(429, None, False)
            return self._qb_error(
                429,
                "too_many_queued_tasks",
                f"at most {self.max_queued} tasks may be queued per account at the same time",
            )
        output = self._qb_output_spec(body, action)
        task = self._new_task(
            "qingbo",
            key,
            model=str(body["model"]),
            action=action,
            body=body,
            output=output,
            price=self._qb_price(body),
        )
        task.idempotency_key = idem
        task.callback_url = body.get("callback_url") or None
        task.callback_events = tuple(body.get("callback_events") or ())
        task.pending_failure = self._media_failure(task)
        if fault is not None and fault.fail_task_code is not None:
            task.pending_failure = self._failure("qingbo", fault.fail_task_code, fault.fail_message)
        if idem is not None:
            self._idempotency[(key, idem)] = (task.id, self.clock())
        self._emit_callback(task, "queued")
        record(self.qingbo_submit_status, task.id, True)
        return _json_response(self.qingbo_submit_status, self._qb_submit_json(task))

    def _qb_poll(self, task: _Task, fault: Fault | None) -> EmulatorResponse:
        self._advance(task, polled=True)
        if fault is not None and fault.fail_task_code is not None and not task.terminal:
            task.pending_failure = self._failure("qingbo", fault.fail_task_code, fault.fail_message)
            self._finish(task)
        return _json_response(200, self._qb_task_json(task))

    def _qb_cancel(self, task: _Task) -> EmulatorResponse:
        self._advance(task, polled=False)
        if task.phase != "waiting":
            status = self._status(task)
            return self._qb_error(
                400,
                "task_not_cancellable",
                f"only queued tasks can be cancelled; this task is {status}",
            )
        task.phase = "cancelled"
        task.finished_clock, task.finished_wall = self.clock(), self.wall_clock()
        self._emit_callback(task, "cancelled")
        reply: JSONDict = {"task_id": task.id, "status": "cancelled", "refunded": True}
        if self.qingbo_cost_unit != "none":
            reply["refunded_quota"] = round(task.price_usd * QUOTA_PER_USD)
        return _json_response(200, reply)

    def _qb_validate(self, body: JSONDict) -> str:
        """Check a V4 body against the SkyReels page (PROVIDERS §3.3); returns the action."""
        model = body.get("model")
        if model is None:
            raise _Invalid("model is required")
        if model not in QINGBO_MODELS:
            raise _Invalid(
                f"model {model!r} is not available; use one of {', '.join(QINGBO_MODELS)}"
            )
        action = body.get("action")
        if action is not None and action not in V4_ACTIONS:
            raise _Invalid(f"action must be one of {', '.join(V4_ACTIONS)}, got {action!r}")
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 5000):
            raise _Invalid("prompt must be a string of at most 5000 characters")
        if body.get("aspect_ratio", "16:9") not in V4_ASPECT_RATIOS:
            raise _Invalid(f"aspect_ratio must be one of {', '.join(V4_ASPECT_RATIOS)}")
        if body.get("resolution", "720p") not in V4_RESOLUTIONS:
            raise _Invalid(f"resolution must be one of {', '.join(V4_RESOLUTIONS)}")
        duration = body.get("duration", 5)
        if not (_is_int(duration) and 3 <= duration <= 15):
            raise _Invalid(f"duration must be an integer in 3..15, got {duration!r}")
        if "prompt_optimizer" in body and not isinstance(body["prompt_optimizer"], bool):
            raise _Invalid("prompt_optimizer must be a boolean")
        if "extra" in body and not isinstance(body["extra"], dict):
            raise _Invalid("extra must be an object")

        def url(value: object, where: str) -> str:
            if value is None or value == "":
                raise _Invalid(f"{where} is required")
            if not _is_http_url(value):
                raise _Invalid(f"{where} must be a public http(s) URL, got {value!r}")
            return cast(str, value)

        def url_list(name: str, limit: int) -> list[str]:
            value = body.get(name)
            if value is None:
                return []
            if not isinstance(value, list) or len(value) > limit:
                raise _Invalid(f"{name} must be a list of at most {limit} URLs")
            return [url(v, f"{name}[{i}]") for i, v in enumerate(value)]

        def items(name: str, limit: int) -> list[JSONDict]:
            value = body.get(name)
            if value is None:
                return []
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise _Invalid(f"{name} must be a list of objects")
            if len(value) > limit:
                raise _Invalid(f"{name} holds at most {limit} items, got {len(value)}")
            for i, item in enumerate(value):
                if not isinstance(item.get("tag"), str) or not item["tag"]:
                    raise _Invalid(f"{name}[{i}].tag is required")
            return cast(list[JSONDict], value)

        first = (
            url(body["first_frame_image"], "first_frame_image")
            if body.get("first_frame_image")
            else None
        )
        last = (
            url(body["last_frame_image"], "last_frame_image")
            if body.get("last_frame_image")
            else None
        )
        if last and not first:
            raise _Invalid("last_frame_image needs first_frame_image")
        image_urls = url_list("image_urls", 6)
        video_urls = url_list("video_urls", 1)
        audio_urls = url_list("audio_urls", 6)

        ref_images = items("ref_images", 6)
        ref_audio = False
        for i, ref in enumerate(ref_images):
            kind, urls = ref.get("type"), ref.get("image_urls")
            if kind not in ("image", "grid"):
                raise _Invalid(f"ref_images[{i}].type must be image or grid")
            if not isinstance(urls, list):
                raise _Invalid(f"ref_images[{i}].image_urls is required")
            low, high = (1, 1) if kind == "image" else (2, 9)
            if not low <= len(urls) <= high:
                raise _Invalid(
                    f"ref_images[{i}] of type {kind} takes {low}-{high} image_urls, got {len(urls)}"
                )
            for j, value in enumerate(urls):
                url(value, f"ref_images[{i}].image_urls[{j}]")
            if ref.get("audio_url") is not None:
                url(ref["audio_url"], f"ref_images[{i}].audio_url")
                ref_audio = True

        ref_videos = items("ref_videos", 1)
        for i, ref in enumerate(ref_videos):
            if ref.get("type") not in ("reference", "extend"):
                raise _Invalid(f"ref_videos[{i}].type must be reference or extend")
            url(ref.get("video_url"), f"ref_videos[{i}].video_url")

        previous = 0.0
        for i, frame in enumerate(items("mid_frame_images", 6)):
            url(frame.get("image_url"), f"mid_frame_images[{i}].image_url")
            stamp = frame.get("time_stamp")
            if not _is_number(stamp):
                raise _Invalid(f"mid_frame_images[{i}].time_stamp is required (seconds)")
            if not 0 < stamp < duration:
                raise _Invalid(
                    f"mid_frame_images[{i}].time_stamp must lie in (0, {duration}), got {stamp}"
                )
            if stamp <= previous:
                raise _Invalid("mid_frame_images time_stamp values must be strictly increasing")
            previous = float(stamp)

        if image_urls and ref_images:
            raise _Invalid("give image_urls or ref_images, not both")
        if video_urls and ref_videos:
            raise _Invalid("give video_urls or ref_videos, not both")
        if audio_urls and ref_audio:
            raise _Invalid("give audio_urls or ref_images[].audio_url, not both")
        # Lengths (V4 "Resource Limits"), where the emulator hosts the file and can measure it.
        videos = [(f"ref_videos[{i}].video_url", r["video_url"]) for i, r in enumerate(ref_videos)]
        videos += [(f"video_urls[{i}]", v) for i, v in enumerate(video_urls)]
        audios = [(f"audio_urls[{i}]", a) for i, a in enumerate(audio_urls)]
        audios += [
            (f"ref_images[{i}].audio_url", r["audio_url"])
            for i, r in enumerate(ref_images)
            if r.get("audio_url") is not None
        ]
        for (where, link), (what, low, high) in [
            *((v, ("a reference video", 2, 30)) for v in videos),
            *((a, ("reference audio", 3, 30)) for a in audios),
        ]:
            seconds = self._media_seconds(link)
            if seconds is not None and not low <= seconds <= high:
                raise _Invalid(f"{where}: {what} must be {low}-{high} s long, got {seconds:.2f} s")
        if "callback_url" in body:
            url(body["callback_url"], "callback_url")
        events = body.get("callback_events")
        if events is not None and (
            not isinstance(events, list) or not set(events) <= V4_CALLBACK_EVENTS
        ):
            raise _Invalid(
                f"callback_events must be a list drawn from {', '.join(sorted(V4_CALLBACK_EVENTS))}"
            )

        video_types = {str(ref["type"]) for ref in ref_videos}
        has: dict[str, bool] = {
            "extend": "extend" in video_types,
            "reference_video": "reference" in video_types or bool(video_urls),
            "reference_audio": bool(audio_urls) or ref_audio,
            "reference": bool(ref_images) or bool(image_urls),
            "first_last_frame": bool(first and last),
            "image2video": bool(first),
            "generate": True,
        }
        if action is None:
            action = next(a for a in has if has[a])
        elif not has[action]:
            needs = {
                "image2video": "first_frame_image",
                "first_last_frame": "first_frame_image and last_frame_image",
                "reference": "ref_images or image_urls",
                "reference_video": "ref_videos[].type=reference or video_urls",
                "reference_audio": "audio_urls or ref_images[].audio_url",
                "extend": "ref_videos[].type=extend",
            }
            raise _Invalid(f"action {action} needs {needs[action]}")
        if action == "generate" and not (isinstance(prompt, str) and prompt.strip()):
            raise _Invalid("prompt is required for text-to-video (action generate)")
        return str(action)

    def _qb_price(self, body: JSONDict) -> float:
        standard, with_video = _V4_PRICES[str(body["model"])][str(body.get("resolution", "720p"))]
        video_ref = bool(body.get("ref_videos")) or bool(body.get("video_urls"))
        return round((with_video if video_ref else standard) * int(body.get("duration", 5)), 6)

    def _qb_output_spec(self, body: JSONDict, action: str) -> VideoSpec:
        duration = int(body.get("duration", 5))
        ratio = str(body.get("aspect_ratio", "16:9"))
        source = self._qb_source(body, action)
        if action != "generate" and source is not None:
            # Media modes follow the source's ratio (PROVIDERS §3.3) when we can see it.
            dims = self._media_dims(source)
            if dims is not None:
                ratios = {r: tuple(int(x) for x in r.split(":")) for r in V4_ASPECT_RATIOS}
                best = _nearest(dims, [(w, h) for w, h in ratios.values()])
                ratio = next(r for r, wh in ratios.items() if wh == best)
        width, height = v4_frame_size(str(body.get("resolution", "720p")), ratio)
        frames = duration * 32
        if action == "extend":
            # "The new video is appended to the source" (PROVIDERS §3.3): source + new.
            seconds = self._media_seconds(source)
            frames += round((seconds if seconds is not None else 5.0) * 32)
        return VideoSpec(width, height, 32, frames, audio=True)

    @staticmethod
    def _qb_source(body: JSONDict, action: str) -> str | None:
        videos = [v.get("video_url") for v in body.get("ref_videos") or []] + list(
            body.get("video_urls") or []
        )
        images = [r["image_urls"][0] for r in body.get("ref_images") or [] if r.get("image_urls")]
        images += list(body.get("image_urls") or [])
        ordered: list[object]
        if action in ("extend", "reference_video"):
            ordered = [*videos, body.get("first_frame_image"), *images]
        elif action in ("reference", "reference_audio"):
            ordered = [*images, body.get("first_frame_image"), *videos]
        else:
            ordered = [body.get("first_frame_image"), *images, *videos]
        return next((u for u in ordered if isinstance(u, str) and u), None)

    def _qb_time(self, wall: float) -> int:
        return round(wall * 1000) if self.qingbo_timestamps == "ms" else int(wall)

    def _qb_cost(self, usd: float) -> int | float:
        return round(usd * QUOTA_PER_USD) if self.qingbo_cost_unit == "quota" else round(usd, 6)

    def _qb_submit_json(self, task: _Task) -> JSONDict:
        data: JSONDict = {
            "task_id": task.id,
            "model": task.model,
            "action": task.action,
            "status": self._status(task),
            "created_at": self._qb_time(task.created_wall),
            "progress": self._qb_progress(task),
        }
        if self.qingbo_cost_unit != "none":
            data["pre_consumed_cost"] = self._qb_cost(task.price_usd)
        return data

    def _qb_task_json(self, task: _Task) -> JSONDict:
        data: JSONDict = {
            "task_id": task.id,
            "status": self._status(task),
            "action": task.action,
            "model": task.model,
            "progress": self._qb_progress(task),
            "created_at": self._qb_time(task.created_wall),
        }
        if task.terminal and task.finished_wall is not None:
            data["completed_at"] = self._qb_time(task.finished_wall)
            if self.qingbo_cost_unit != "none":
                data["cost"] = self._qb_cost(self._charged(task))
        if task.phase == "failed":
            data["error"] = {"message": task.error_message, "code": task.error_code}
        if task.phase == "completed" and task.output_path is not None:
            url = self._url(task.output_path)
            expires = int(self._files[task.output_path].expires_at)
            data["result"] = {
                "videos": [{"url": [url] if self.qingbo_url_list else url, "expires_at": expires}]
            }
        base = f"{self.base_url}/v1/tasks/{task.id}"
        data["urls"] = {"get": base, "cancel": f"{base}/cancel"}
        return data

    def _qb_progress(self, task: _Task) -> int:
        if task.phase == "completed":
            return 100
        if task.phase != "running":
            return 0
        fractions = [0.0]
        if self.polls_to_finish:
            fractions.append(task.polls / self.polls_to_finish)
        if self.seconds_to_finish:
            fractions.append((self.clock() - task.created_clock) / self.seconds_to_finish)
        return max(1, min(99, int(100 * max(fractions))))

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
            if event not in ("completed", "failed"):
                return
            payload = {**self._ws_data(task), "input": task.body}
            body = json.dumps(payload, separators=(",", ":")).encode()
            webhook_id, stamp = self._hex(16), str(int(self.wall_clock()))
            secret = self.webhook_secret.removeprefix("whsec_").encode()
            signed = f"{webhook_id}.{stamp}.".encode() + body
            signature = hmac.new(secret, signed, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": stamp,
                "webhook-signature": f"v3,{signature}",
            }
        else:
            aliases = {
                "queued": {"queued"},
                "running": {"running", "processing"},
                "completed": {"succeeded", "completed"},
                "failed": {"failed"},
                "cancelled": {"cancelled"},
            }[event]
            wanted = set(task.callback_events) or {"succeeded", "failed"}
            if not aliases & wanted:
                return
            body = json.dumps(self._qb_task_json(task), separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
            if self.qingbo_status_names == "events" and event == "completed":
                event = "succeeded"  # the name the V4 page subscribes to and reports
        self.callbacks.append(
            Callback(task.provider, task.id, task.callback_url, event, headers, body)
        )

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

    # ---- files --------------------------------------------------------------------------------

    def _file_spec(self, spec: VideoSpec) -> VideoSpec:
        return scaled_geometry(spec, self.scale, self.max_seconds, self.min_short_side)

    def _url(self, path: str) -> str:
        head, _, name = path.rpartition("/")
        return f"{self.base_url}{head}/{quote(name)}"

    def _own_path(self, url: object) -> str | None:
        """The file path of a URL that points at this emulator's CDN, else ``None``."""
        if not isinstance(url, str):
            return None
        parts = urlsplit(url)
        if parts.netloc != urlsplit(self.base_url).netloc or not parts.path.startswith(
            FILES_PREFIX
        ):
            return None
        return unquote(parts.path)

    def _lookup(self, url: object) -> _StoredFile | None:
        path = self._own_path(url)
        stored = self._files.get(path) if path else None
        if stored is None or self.wall_clock() > stored.expires_at:
            return None
        if stored.data is None and stored.spec is None:
            return None  # a ticket whose PUT never arrived
        return stored

    def _materialise(self, stored: _StoredFile) -> bytes:
        if stored.data is None:
            if stored.spec is None:
                raise KeyError(stored.path)
            data = encode_video(self._file_spec(stored.spec))
            if self.stamp_outputs and stored.stamp:
                data = _stamp(data, stored.stamp)
            stored.data = data
            self._generated_by_digest[hashlib.sha256(data).hexdigest()] = stored.spec
        return stored.data

    def _probe_stored(self, stored: _StoredFile) -> None:
        if stored.probed or stored.dims is not None or stored.data is None:
            return
        stored.probed = True
        spec = self._generated_by_digest.get(hashlib.sha256(stored.data).hexdigest())
        if spec is not None:  # a re-upload of one of our outputs: we know its real geometry
            stored.dims, stored.seconds = (spec.width, spec.height), spec.seconds
            return
        if stored.content_type.startswith("image/"):
            stored.dims = _image_size(stored.data)
            return
        probe = probe_video(stored.data)
        if probe is not None:
            stored.dims, stored.seconds = (probe.width, probe.height), probe.duration
        else:  # audio (or anything else ffmpeg can time)
            stored.seconds = probe_duration(stored.data)

    def _media_dims(self, url: object) -> tuple[int, int] | None:
        stored = self._lookup(url)
        if stored is None:
            return None
        self._probe_stored(stored)
        return stored.dims

    def _media_seconds(self, url: object) -> float | None:
        stored = self._lookup(url)
        if stored is None:
            return None
        self._probe_stored(stored)
        return stored.seconds

    def _serve_file(self, request: _Request) -> EmulatorResponse:
        if request.method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed")
        stored = self._files.get(request.path)
        if stored is None or (stored.data is None and stored.spec is None):
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if self.wall_clock() > stored.expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired")
        data = self._materialise(stored)
        headers = {
            "Content-Type": stored.content_type,
            "Accept-Ranges": "bytes",
            "ETag": f'"{hashlib.md5(data).hexdigest()}"',  # S3 ETags are MD5 digests
        }
        status, start, end = 200, 0, len(data)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(len(data), int(match.group(2)) + 1) if match.group(2) else len(data)
            else:
                start = max(0, len(data) - int(match.group(2)))
            if start >= len(data) or start >= end:
                return EmulatorResponse(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers["Content-Length"] = str(end - start)
        body = b"" if request.method == "HEAD" else data[start:end]
        return EmulatorResponse(status, headers, body)

    def _accept_upload(self, request: _Request) -> EmulatorResponse:
        if request.method != "PUT":
            return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed")
        if self.reject_authorization_on_upload and "authorization" in request.headers:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        token = request.path[len(UPLOAD_PREFIX) :].split("/", 1)[0]
        ticket = self._tickets.get(token)
        if ticket is None or request.path != f"{UPLOAD_PREFIX}{token}/{ticket.filename}":
            return _s3_error(404, "NoSuchUpload", "The specified upload does not exist.")
        if request.query.get("X-Amz-Signature") != ticket.signature:
            return _s3_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
            )
        if self.wall_clock() > ticket.expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired")
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return _s3_error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )
        if request.headers.get("content-type", "") != ticket.content_type:
            return _s3_error(
                403,
                "SignatureDoesNotMatch",
                f"Content-Type must be the signed value {ticket.content_type!r}",
            )
        if len(request.body) != ticket.size:
            return _s3_error(
                400,
                "IncompleteBody",
                f"expected {ticket.size} bytes as ticketed, got {len(request.body)}",
            )
        stored = self._files[ticket.file_path]
        stored.data, stored.dims, stored.seconds, stored.probed = request.body, None, None, False
        etag = hashlib.md5(request.body).hexdigest()  # S3 ETags are MD5 digests
        return EmulatorResponse(200, {"ETag": f'"{etag}"'}, b"")

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

    # ---- adapters -----------------------------------------------------------------------------

    def mock_transport(self, *, real_sleep: bool = False) -> httpx.MockTransport:
        """This emulator as an ``httpx.MockTransport`` (sync and async clients).

        A dropped reply raises ``httpx.RemoteProtocolError`` after the request was applied;
        a truncated body raises it while the body is read. A slow reply whose delay reaches
        the request's read timeout raises ``httpx.ReadTimeout`` (again after applying the
        request); shorter delays are slept only with ``real_sleep`` (anyio in async clients).
        A held reply raises ``httpx.ReadTimeout`` when the read timeout is at most the hold
        (the client gave up), else ``httpx.RemoteProtocolError`` (the server hung up first);
        with ``real_sleep`` the shorter of the two is slept first.

        Args:
            real_sleep: Actually wait for slow replies instead of only simulating timeouts.
        """
        return _make_transport(self, real_sleep)


def _make_transport(emulator: Emulator, real_sleep: bool) -> httpx.MockTransport:
    import httpx

    class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
        """A body that stops early, as when the server closes mid-transfer."""

        def __init__(self, data: bytes) -> None:
            self._data = data

        def __iter__(self) -> Iterator[bytes]:
            if self._data:
                yield self._data
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self._data:
                yield self._data
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )

    class EmulatorTransport(httpx.MockTransport):
        """``httpx.MockTransport`` backed by an :class:`Emulator`."""

        def __init__(self, emulator: Emulator, real_sleep: bool) -> None:
            super().__init__(self._unused)
            self.emulator = emulator
            self.real_sleep = real_sleep

        @staticmethod
        def _unused(request: httpx.Request) -> httpx.Response:
            raise NotImplementedError

        def _answer(self, request: httpx.Request) -> tuple[EmulatorResponse, float | None]:
            response = self.emulator.handle(
                request.method,
                request.url.raw_path.decode("ascii"),
                dict(request.headers.items()),
                request.content,
            )
            timeout = cast(dict[str, float | None], request.extensions.get("timeout", {})).get(
                "read"
            )
            return response, timeout

        @staticmethod
        def _wait(response: EmulatorResponse, timeout: float | None) -> float:
            """Seconds a real client would wait for this reply before something happens."""
            wait = response.hold if response.hold is not None else response.delay
            return min(wait, timeout) if timeout is not None else wait

        def _finish(
            self, request: httpx.Request, response: EmulatorResponse, timeout: float | None
        ) -> httpx.Response:
            if response.hold is not None:
                if timeout is not None and timeout <= response.hold:
                    raise httpx.ReadTimeout("timed out", request=request)
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            if timeout is not None and response.delay >= timeout:
                raise httpx.ReadTimeout("timed out", request=request)
            if response.drop_connection:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            headers = dict(response.headers)
            if response.truncate_after is not None:
                headers.setdefault("Content-Length", str(len(response.body)))
                stream = _Stream(response.body[: response.truncate_after])
                return httpx.Response(
                    response.status, headers=headers, stream=stream, request=request
                )
            return httpx.Response(
                response.status, headers=headers, content=response.body, request=request
            )

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.read()
            response, timeout = self._answer(request)
            if self.real_sleep and self._wait(response, timeout) > 0:
                time.sleep(self._wait(response, timeout))
            return self._finish(request, response, timeout)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await request.aread()
            response, timeout = self._answer(request)
            if self.real_sleep and self._wait(response, timeout) > 0:
                import anyio

                await anyio.sleep(self._wait(response, timeout))
            return self._finish(request, response, timeout)

    return EmulatorTransport(emulator, real_sleep)


# --------------------------------------------------------------------------------------------
# Loopback server
# --------------------------------------------------------------------------------------------

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


def _configure(
    emulator: Emulator,
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
