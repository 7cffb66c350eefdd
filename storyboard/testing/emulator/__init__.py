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

The rooms of this package, each importing only the ones above it (no cycle)::

    records.py    the public records (responses, faults, submissions, task snapshots)
    media.py      encoding/probing served videos; the CDN and upload bucket (MediaHost)
    faults.py     the fault script: matching, hits, error replies, drops and holds
    core.py       EmulatorCore: configuration, handle(), parsing, leaks, task state machines
    wavespeed.py  WaveSpeedAPI: the /api/v3 routes, validation, prices, geometry, webhooks
    qingbo.py     QingboAPI: the /v1/tasks routes, validation, prices, geometry, callbacks
    host.py       Emulator: both rooms on one host, plus the inspection API for tests
    transport.py  the httpx.MockTransport adapter (httpx imported lazily)
    server.py     EmulatorServer, serve, run_forever and the banner

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

from storyboard.testing.emulator.core import (
    DEFAULT_QINGBO_KEY,
    DEFAULT_WAVESPEED_KEY,
    QINGBO_MODELS,
    WAVESPEED_MODELS,
)
from storyboard.testing.emulator.host import Emulator
from storyboard.testing.emulator.media import (
    encode_video,
    probe_duration,
    probe_video,
    scaled_geometry,
)
from storyboard.testing.emulator.qingbo import QUOTA_PER_USD as QUOTA_PER_USD
from storyboard.testing.emulator.records import (
    AuthLeak,
    Callback,
    EmulatorResponse,
    Fault,
    FaultHit,
    QuotaWindow,
    RequestRecord,
    Submission,
    TaskInfo,
    VideoProbe,
    VideoSpec,
    body_hash,
)
from storyboard.testing.emulator.server import EmulatorServer, banner_lines, run_forever, serve

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
