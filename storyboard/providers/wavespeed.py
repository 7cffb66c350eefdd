"""WaveSpeed API v3 backend (stage 5, render): SkyReels V1 and V3 models.

Wire format in, typed status out (PROVIDERS §1, §2): submit ``POST /api/v3/{endpoint}``
with the model's flat JSON input, poll ``GET /api/v3/predictions/{id}/result``, read the
``{"code", "message", "data"}`` envelope, download ``data.outputs[0]``, and host local files
through the two-step media API (ticket ``POST /api/v3/media/uploads``, then a ``PUT`` of the
bytes with only the ticket's headers).

The submit is sent once and never retried: WaveSpeed has no idempotency key (PROVIDERS
§1.2), so a reply lost after the request left may hide a created, billed task. Any reply that
does not prove nothing was created (no reply, a read timeout, any 5xx, a 2xx without a task
id) is :class:`~storyboard.errors.SubmitOutcomeUnknown`; a 4xx proves it (429 is
:class:`~storyboard.errors.ProviderBusy`), and so does a connection never made. The runner
settles an unknown outcome with :meth:`WaveSpeedProvider.find_task` (the prediction listing)
before it asks for ``--force ID``. Status GETs, downloads, upload PUTs and listing pages are
retried (``_http``).

Statuses: ``created``/``pending`` queued, ``processing`` running, ``completed`` succeeded
(WaveSpeed reports no cost: ``reported`` is ``None``), ``failed``/``cancelled``/``timeout``/
``deleted`` failed (the official SDK's terminal set); anything else is
:class:`~storyboard.providers.base.Unrecognised`, never "running".
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import httpx

from storyboard.errors import (
    ProviderBusy,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    SubmitOutcomeUnknown,
)
from storyboard.model import Media
from storyboard.providers import PROVIDERS
from storyboard.providers._http import (
    RETRY_STATUSES,
    HostedProvider,
    ProviderContext,
    RetryPolicy,
    check_params,
    http_error,
    provider_message,
    submit_outcome_unknown,
    translate_errors,
)
from storyboard.providers.base import (
    Failed,
    Job,
    Queued,
    Running,
    Succeeded,
    TaskRef,
    TaskStatus,
    Unrecognised,
)

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "LIST_PAGE_SIZE",
    "LIST_SLACK",
    "MAX_LIST_PAGES",
    "OWNED_PARAMS",
    "UPLOAD_LIFETIME",
    "WaveSpeedProvider",
    "build_request",
    "status_from_prediction",
]

NAME = "wavespeed"
_ENTRY = PROVIDERS[NAME]  # the table holds the facts callers outside this module ask
API_KEY_ENV = "WAVESPEED_API_KEY"
BASE_URL_ENV = "WAVESPEED_BASE_URL"
DEFAULT_BASE_URL = "https://api.wavespeed.ai"
# Uploaded files are kept 7 days (PROVIDERS §1.6). Measured from before the ticket request,
# so the recorded expiry can only err on the early side.
UPLOAD_LIFETIME = 7 * 86_400.0
# A 429 on submit without a Retry-After: WaveSpeed's per-minute limits (PROVIDERS §1.7)
# suggest waiting most of a minute. UNCONFIRMED (no documented 429 body or headers).
_DEFAULT_BUSY_WAIT = 30.0

_QUEUED = frozenset({"created", "pending"})  # ``pending``: the SDK's tests, undocumented
_FAILED = frozenset({"failed", "cancelled", "timeout", "deleted"})  # the SDK's terminal set

# The prediction listing (``find_task``): pages of at most 100 items (the documented cap),
# searched from a minute before the submit (clock slack between us and WaveSpeed), at most
# MAX_LIST_PAGES pages and _LIST_DEADLINE seconds in all.
LIST_PAGE_SIZE = 100
LIST_SLACK = 60.0
MAX_LIST_PAGES = 20
_LIST_DEADLINE = 180.0
_LIST_POLICY = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=10.0, deadline=60.0)

# Body fields ``build_request`` sets itself, per model, with the shot field that sets each.
# A shot's ``params`` may not hold them: they decide what is priced and what was validated.
OWNED_PARAMS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "skyreels-v1": MappingProxyType(
            {
                "prompt": "prompt",
                "image": "first_frame/continues",
                "seed": "seed",
                "negative_prompt": "negative_prompt",
            }
        ),
        "skyreels-v3-reference": MappingProxyType(
            {
                "prompt": "prompt",
                "images": "refs",
                "aspect_ratio": "aspect_ratio",
                "duration": "duration",
            }
        ),
        "skyreels-v3-extend": MappingProxyType(
            {"prompt": "prompt", "video": "extends", "duration": "duration"}
        ),
        "skyreels-v3-cutshot": MappingProxyType(
            {"prompt": "prompt", "video": "extends", "cut_type": "cut_type", "duration": "duration"}
        ),
    }
)


# --------------------------------------------------------------------------------------------
# Requests (pure)
# --------------------------------------------------------------------------------------------


def _media_url(job: Job, media: Media, field: str) -> str:
    """The URL WaveSpeed fetches for one input: the source itself, or the uploaded copy."""
    if media.is_url:
        return media.source
    url = job.urls.get(media.source)
    if not url:
        raise ProviderError(
            f"shot {job.shot.id}: {field} {media.source} is a local file with no uploaded URL",
            provider=NAME,
            shot=job.shot.id,
            hint="local files are uploaded before the submit; this is a bug in the caller",
        )
    return url


def _upstream_url(job: Job, name: str) -> str:
    url = job.urls.get(name)
    if not url:
        what = "clip" if name == "upstream" else "last frame"
        raise ProviderError(
            f"shot {job.shot.id}: the upstream shot {job.shot.upstream}'s {what} has no URL",
            provider=NAME,
            shot=job.shot.id,
            hint="the upstream clip (or its last frame) is uploaded before the submit; "
            "this is a bug in the caller",
        )
    return url


def _duration(job: Job) -> int:
    value = job.shot.duration if job.shot.duration is not None else job.spec.default_duration
    return round(value)


def build_request(job: Job) -> tuple[str, dict[str, Any]]:
    """The API path and flat JSON body that submit one take (no I/O).

    Media fields take the source URL for ``http(s)`` inputs and ``job.urls[source]`` for
    local files; ``video`` is ``job.urls["upstream"]``; a V1 shot that ``continues`` another
    starts from ``job.urls["upstream_frame"]``. ``shot.params`` is merged last, unchanged,
    for fields storyboard does not model; a key of :data:`OWNED_PARAMS` (for the model) or of
    the model's ``reserved_params`` is refused (validation refuses it first; this is the
    defence in depth).

    Raises:
        ProviderError: The model is not a WaveSpeed model, a local input has no URL, or
            ``params`` holds a key that is set through a shot field.
    """
    shot, spec = job.shot, job.spec
    if spec.provider != NAME:
        raise ProviderError(
            f"shot {shot.id}: model {spec.id} is not served by WaveSpeed",
            provider=NAME,
            shot=shot.id,
        )
    owned = OWNED_PARAMS.get(spec.id)
    if owned is None:
        raise ProviderError(
            f"shot {shot.id}: storyboard does not know how to call WaveSpeed model {spec.id}",
            provider=NAME,
            shot=shot.id,
        )
    check_params(NAME, job, owned)
    body: dict[str, Any] = {"prompt": shot.prompt}
    if spec.id == "skyreels-v1":
        if shot.continues:
            body["image"] = _upstream_url(job, "upstream_frame")
        elif shot.first_frame is not None:
            body["image"] = _media_url(job, shot.first_frame, "first_frame")
        if job.seed is not None:
            body["seed"] = job.seed
        if shot.negative_prompt is not None:
            body["negative_prompt"] = shot.negative_prompt
    elif spec.id == "skyreels-v3-reference":
        body["images"] = [
            _media_url(job, media, "refs") for ref in shot.refs for media in ref.images
        ]
        body["aspect_ratio"] = shot.aspect_ratio or spec.default_aspect_ratio
        body["duration"] = _duration(job)
    elif spec.id in ("skyreels-v3-extend", "skyreels-v3-cutshot"):
        body["video"] = _upstream_url(job, "upstream")
        if spec.id == "skyreels-v3-cutshot":
            body["cut_type"] = shot.cut_type or spec.cut_types[0]
        body["duration"] = _duration(job)
    else:
        raise ProviderError(
            f"shot {shot.id}: storyboard does not know how to call WaveSpeed model {spec.id}",
            provider=NAME,
            shot=shot.id,
        )
    body.update(shot.params)
    return f"/api/v3/{spec.endpoint}", body


# --------------------------------------------------------------------------------------------
# Replies (pure)
# --------------------------------------------------------------------------------------------


def _task_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def status_from_prediction(data: Mapping[str, Any]) -> TaskStatus:
    """The typed status of a prediction object (the envelope's ``data``).

    ``created``/``pending`` are queued, ``processing`` running, ``completed`` succeeded with
    ``outputs`` (no reported cost: WaveSpeed gives none); ``failed``/``cancelled``/
    ``timeout``/``deleted`` failed with the task's ``error`` text and ``code`` (1xxx: the
    input must change; 5xxx: provider trouble, PROVIDERS §1.3). Any other status is
    :class:`Unrecognised` (the official SDK keeps polling; the runner bounds it instead).
    """
    raw = str(data.get("status") or "")
    status = raw.strip().lower()
    if status in _QUEUED:
        return Queued()
    if status == "processing":
        return Running()
    if status == "completed":
        outputs = data.get("outputs") or []
        urls = outputs if isinstance(outputs, list) else [outputs]
        return Succeeded(
            outputs=tuple(str(u) for u in urls if isinstance(u, str) and u), reported=None
        )
    if status in _FAILED:
        raw_code = data.get("code")
        code = _task_code(raw_code)
        error = str(data.get("error") or "").strip()
        message = error or f"the WaveSpeed task ended {status}"
        return Failed(
            message=message,
            code=str(raw_code) if raw_code not in (None, "") else None,
            user_fixable=code is not None and 1000 <= code < 2000,
        )
    return Unrecognised(status=raw)


# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


class WaveSpeedProvider(HostedProvider):
    """WaveSpeed v3 client for the SkyReels models (see the module docstring).

    Construction, ``from_env``, ``download`` and ``aclose`` come from
    :class:`~storyboard.providers._http.HostedProvider`.
    """

    name = NAME
    label = _ENTRY.label
    key_var = API_KEY_ENV
    base_var = BASE_URL_ENV
    default_base = DEFAULT_BASE_URL
    can_host_files = _ENTRY.can_host_files  # the media API (PROVIDERS §1.6)
    idempotent_submit = _ENTRY.idempotent_submit
    output_lifetime = _ENTRY.output_lifetime  # outputs are kept 7 days (PROVIDERS §1.6)
    output_lifetime_text = _ENTRY.output_lifetime_text

    # ---- the protocol -------------------------------------------------------------------------

    async def submit(self, job: Job) -> TaskRef:
        """POST the take once; never retried (WaveSpeed has no idempotency key).

        Raises:
            ProviderBusy: HTTP 429: nothing was created; wait ``retry_after`` and resubmit.
            AuthenticationError: The key was refused.
            ProviderHTTPError: Any other 4xx (or an error code in a 200 envelope): nothing
                was created; WaveSpeed's message and code are kept.
            SubmitOutcomeUnknown: The request may have created a task: no reply (a dropped
                connection, a read timeout), any 5xx, or a 2xx that is not JSON or names no
                task. Settle it with :meth:`find_task`, never by resubmitting blindly.
            ProviderError: The API could not be reached (nothing was sent).
        """
        path, body = build_request(job)
        shot = job.shot.id
        ctx = self._http.ctx
        action = f"submit of shot {shot}"
        # One instruction (the live runner settles the outcome before it says anything else):
        # the task is looked for in the prediction list; only a task that is not there is
        # bought again, and only by --force.
        hint = (
            f"the task may exist: storyboard looks for it in WaveSpeed's prediction list; "
            f"only if it is not there does --force {shot} buy it again"
        )

        def unknown(what: str) -> SubmitOutcomeUnknown:
            return submit_outcome_unknown(ctx, action, what, shot=shot, hint=hint)

        with translate_errors(ctx, action=action, mode="submit", shot=shot, unknown_hint=hint):
            response = await self._http.api.post(
                path, json=body, timeout=self._http.timeouts.for_kind("submit")
            )
        if response.status_code == 429:
            raise self._busy(response, shot)
        if response.status_code >= 500:
            # WaveSpeed, or a gateway in front of it, failed after the request arrived: a task
            # may have been created behind it (PROVIDERS §1.4 shows a 504 for a task that
            # still completes). Without an idempotency key, that is an unknown outcome.
            raise unknown(f"HTTP {response.status_code}")
        if not response.is_success:
            raise http_error(ctx, response, action=action, shot=shot)
        try:
            payload = response.json()
        except ValueError as exc:
            raise unknown("a reply that is not JSON") from exc
        envelope: Mapping[str, Any] = payload if isinstance(payload, dict) else {}
        number = _task_code(envelope.get("code"))
        if number is not None and 400 <= number < 500:
            # An error code in a 200 envelope refuses the request as a 4xx would.
            self._envelope(envelope, response, action=action, shot=shot)
        data = envelope.get("data")
        accepted = envelope.get("code") is None or number in (200, 0)
        task_id = data.get("id") if accepted and isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise unknown("a reply without a task id")
        return TaskRef(provider=NAME, task_id=task_id, key=job.key)

    async def find_task(
        self, job: Job, *, since: float, exclude: Collection[str] = ()
    ) -> TaskRef | None:
        """The prediction this account created for ``job`` at or after ``since``, if any.

        Settles a submit whose outcome is unknown (:class:`SubmitOutcomeUnknown`): lists the
        account's predictions with ``POST /api/v3/predictions`` and JSON ``{"page",
        "page_size", "model", "created_after"}`` (``created_after`` in ISO 8601 UTC,
        :data:`LIST_SLACK` seconds before ``since`` for clock skew), reading the envelope's
        ``data = {"page", "total", "items": [{"id", "model", "status", "created_at",
        "input"}, ...]}``, and returns the item whose ``input`` equals the body
        :func:`build_request` makes for ``job`` (compared as canonical JSON).

        UNCONFIRMED against the live service: the listing is documented on one page
        (PROVIDERS §1.3; another page shows ``GET``, and whether ``input`` is echoed exactly
        as sent is not documented). Only the project's emulator has been tried.

        Each page is retried as an idempotent request; at most :data:`MAX_LIST_PAGES` pages
        are read, all under one deadline.

        Args:
            job: The take whose submit was lost.
            since: Unix seconds just before that submit was sent.
            exclude: Task ids the caller already holds (other takes with the same input).

        Returns:
            The task, or ``None`` when the listing shows none for this input.

        Raises:
            ProviderError: The listing cannot be read (404: no such endpoint; a malformed
                reply), more than one prediction matches, no prediction matches but some are
                listed without their input, or there are more pages than storyboard reads.
            ProviderTimeout: The listing took longer than its deadline.
        """
        path, body = build_request(job)
        model = path.removeprefix("/api/v3/")
        want = _canonical(body)
        shot = job.shot.id
        action = f"look-up of shot {shot}'s task in the prediction list"
        created_after = datetime.fromtimestamp(max(0.0, since - LIST_SLACK), UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        hint = (
            f"look for shot {shot}'s task in your WaveSpeed dashboard; if there is none, run "
            f"again with --force {shot}"
        )
        found: list[str] = []
        blind = 0  # predictions of this model whose input the listing does not show
        complete = False
        with anyio.move_on_after(_LIST_DEADLINE) as scope:
            for page in range(1, MAX_LIST_PAGES + 1):
                query = {
                    "page": page,
                    "page_size": LIST_PAGE_SIZE,
                    "model": model,
                    "created_after": created_after,
                }
                items, more = await self._list_page(query, action=action, shot=shot, hint=hint)
                for item in items:
                    task_id = item.get("id")
                    if (
                        not isinstance(task_id, str)
                        or not task_id
                        or task_id in exclude
                        or task_id in found
                        or item.get("model", model) != model
                    ):
                        continue
                    given = item.get("input")
                    if not isinstance(given, dict):
                        blind += 1
                    elif _canonical(given) == want:
                        found.append(task_id)
                if not more:
                    complete = True
                    break
        if scope.cancelled_caught:
            raise ProviderTimeout(
                f"the {action} took longer than {_LIST_DEADLINE:.0f} s",
                provider=NAME,
                shot=shot,
                hint=hint,
            )
        if not complete:
            raise ProviderError(
                f"the {action} stopped after {MAX_LIST_PAGES} pages of predictions; the task "
                "may be on a later page",
                provider=NAME,
                shot=shot,
                hint=hint,
            )
        if len(found) > 1:
            raise ProviderError(
                f"the {action} found {len(found)} predictions with the same input "
                f"({', '.join(found)}); storyboard cannot tell which one is this take",
                provider=NAME,
                shot=shot,
                hint=hint,
            )
        if not found and blind:
            # "Not found" would invite a second purchase: say we could not look instead.
            raise ProviderError(
                f"the {action} lists {blind} prediction(s) since the submit without their "
                "input, so storyboard cannot tell whether one of them is this take",
                provider=NAME,
                shot=shot,
                hint=hint,
            )
        return TaskRef(provider=NAME, task_id=found[0], key=job.key) if found else None

    async def poll(self, task: TaskRef) -> TaskStatus:
        """The task's state from ``GET /api/v3/predictions/{id}/result`` (retried).

        Raises:
            ProviderHTTPError: An error reply (e.g. 404 for an unknown or expired task).
            ProviderTimeout: No reply in time, after retries.
            ProviderError: The network failed after retries, or the reply is unreadable.
        """
        action = f"status check of task {task.task_id}"
        payload = await self._http.get_json(
            f"/api/v3/predictions/{task.task_id}/result", action=action, task_id=task.task_id
        )
        return status_from_prediction(self._envelope(payload, None, action=action))

    async def upload(self, path: Path, content_type: str) -> tuple[str, float]:
        """Host a local file through the media API; its URL and expiry (Unix seconds).

        Two steps (PROVIDERS §1.6): a ticket from ``POST /api/v3/media/uploads``, then a
        ``PUT`` of the raw bytes to ``data.upload.url`` with only ``data.upload.headers``
        (never the key). Both are retried: the ticket request creates nothing billable
        (an unused ticket simply expires) and the PUT to the same URL is idempotent.

        Args:
            path: The local file.
            content_type: Its MIME type (signed into the upload URL).

        Returns:
            ``(download_url, expires_at)``; the URL is valid for 7 days.

        Raises:
            ProviderError: The file cannot be read, or the ticket reply is malformed.
            ProviderHTTPError: The API or the storage refused the upload.
        """
        ctx = self._http.ctx
        action = f"upload of {path}"
        try:
            data = await anyio.Path(path).read_bytes()
        except OSError as exc:
            raise ProviderError(
                f"cannot read {path} to upload it: {exc.strerror or exc}", provider=NAME
            ) from exc
        expires_at = self._http.wall_clock() + UPLOAD_LIFETIME
        ticket_body = {"filename": path.name, "size": len(data), "content_type": content_type}

        async def ticket_once() -> httpx.Response:
            response = await self._http.api.post(
                "/api/v3/media/uploads",
                json=ticket_body,
                timeout=self._http.timeouts.for_kind("submit"),
            )
            return self._http.check_retryable(response)

        with translate_errors(ctx, action=action):
            response = await self._http.retrying(ticket_once)
        if not response.is_success:
            raise http_error(ctx, response, action=action)
        ticket = self._envelope(
            self._http.parse_json(response, action=action), response, action=action
        )
        upload = ticket.get("upload")
        download_url = ticket.get("download_url")
        if (
            not isinstance(upload, dict)
            or not isinstance(upload.get("url"), str)
            or not isinstance(download_url, str)
        ):
            raise ProviderError(
                f"WaveSpeed's {action} ticket lacks data.upload.url or data.download_url",
                provider=NAME,
            )
        method = str(upload.get("method") or "PUT").upper()
        if method != "PUT":
            raise ProviderError(
                f"WaveSpeed asked for an upload by {method}; storyboard only knows PUT",
                provider=NAME,
            )
        raw_headers = upload.get("headers")
        headers = (
            {str(k): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        await self._http.put_bytes(upload["url"], data, headers, action=action)
        return download_url, expires_at

    # ---- helpers ------------------------------------------------------------------------------

    async def _list_page(
        self, query: Mapping[str, Any], *, action: str, shot: str, hint: str
    ) -> tuple[list[Mapping[str, Any]], bool]:
        """One page of the prediction listing: its items and whether more pages follow."""
        ctx = self._http.ctx

        async def once() -> httpx.Response:
            response = await self._http.api.post("/api/v3/predictions", json=dict(query))
            return self._http.check_retryable(response)

        with translate_errors(ctx, action=action, shot=shot):
            response = await self._http.retrying(once, policy=_LIST_POLICY)
        if not response.is_success:
            error = http_error(ctx, response, action=action, shot=shot)
            if response.status_code in (404, 405):
                raise ProviderError(
                    f"{error}; this WaveSpeed API has no prediction listing storyboard can read",
                    provider=NAME,
                    shot=shot,
                    hint=hint,
                ) from error
            raise error
        data = self._envelope(
            self._http.parse_json(response, action=action, shot=shot),
            response,
            action=action,
            shot=shot,
        )
        items = data.get("items")
        if not isinstance(items, list):
            raise ProviderError(
                f"WaveSpeed answered the {action} without a list of items",
                provider=NAME,
                shot=shot,
                hint=hint,
            )
        entries: list[Mapping[str, Any]] = [item for item in items if isinstance(item, dict)]
        total = _task_code(data.get("total"))
        page, size = int(query["page"]), int(query["page_size"])
        # Without a readable total, a full page may have a successor; an empty one never does.
        more = page * size < total if total is not None else len(items) >= size
        return entries, bool(items) and more

    def _envelope(
        self,
        payload: Any,
        response: httpx.Response | None,
        *,
        action: str,
        shot: str | None = None,
    ) -> Mapping[str, Any]:
        """``data`` of a ``{"code", "message", "data"}`` envelope whose code says success.

        WaveSpeed can report an error inside an HTTP 200 envelope (its ``code`` field;
        PROVIDERS §1.8): that is a :class:`ProviderHTTPError` with the envelope's code.
        """
        ctx = self._http.ctx
        if not isinstance(payload, dict):
            raise ProviderError(
                f"WaveSpeed answered the {action} with an unexpected reply", provider=NAME
            )
        code = payload.get("code")
        number = _task_code(code)
        if code is not None and number not in (200, 0):
            message = ctx.clean(str(payload.get("message") or ""))
            raise ProviderHTTPError(
                f"WaveSpeed {action} failed with code {code}" + (f": {message}" if message else ""),
                provider=NAME,
                http_status=response.status_code if response is not None else 200,
                retryable=number is not None and (number in RETRY_STATUSES or number >= 5000),
                code=str(code),
                shot=shot,
            )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise ProviderError(
                f"WaveSpeed answered the {action} without a data object", provider=NAME, shot=shot
            )
        return data

    def _busy(self, response: httpx.Response, shot: str) -> ProviderBusy:
        message, code = _http_message(self._http.ctx, response)
        wait = self._http.retry_after(response)
        return ProviderBusy(
            "WaveSpeed is rate limiting submits (HTTP 429)" + (f": {message}" if message else ""),
            provider=NAME,
            retry_after=_DEFAULT_BUSY_WAIT if wait is None else max(1.0, wait),
            code=code,
            shot=shot,
            hint="storyboard waits and submits again; a higher WaveSpeed tier raises the limit",
        )


def _canonical(value: object) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces), for comparing request bodies."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _http_message(ctx: ProviderContext, response: httpx.Response) -> tuple[str | None, str | None]:
    message, code = provider_message(response)
    return (ctx.clean(message) if message else None), code
