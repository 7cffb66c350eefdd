"""WaveSpeed API v3 backend (stage 5, render): SkyReels V1 and V3 models.

Wire format in, typed status out (PROVIDERS §1, §2): submit ``POST /api/v3/{endpoint}``
with the model's flat JSON input, poll ``GET /api/v3/predictions/{id}/result``, read the
``{"code", "message", "data"}`` envelope, download ``data.outputs[0]``, and host local files
through the two-step media API (ticket ``POST /api/v3/media/uploads``, then a ``PUT`` of the
bytes with only the ticket's headers).

The submit is sent once and never retried: WaveSpeed has no idempotency key (PROVIDERS
§1.2), so a reply lost after the request left may hide a created, billed task. That case is
:class:`~storyboard.errors.SubmitOutcomeUnknown` and only the user (``--force ID``) resubmits.
Status GETs, downloads and upload PUTs are retried (``_http``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx

from storyboard.errors import (
    ProviderBusy,
    ProviderError,
    ProviderHTTPError,
    SubmitOutcomeUnknown,
)
from storyboard.model import Media
from storyboard.providers._http import (
    RETRY_STATUSES,
    HostedProvider,
    ProviderContext,
    excerpt,
    http_error,
    provider_message,
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
)

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "UPLOAD_LIFETIME",
    "WaveSpeedProvider",
    "build_request",
    "status_from_prediction",
]

NAME = "wavespeed"
API_KEY_ENV = "WAVESPEED_API_KEY"
BASE_URL_ENV = "WAVESPEED_BASE_URL"
DEFAULT_BASE_URL = "https://api.wavespeed.ai"
# Uploaded files are kept 7 days (PROVIDERS §1.6). Measured from before the ticket request,
# so the recorded expiry can only err on the early side.
UPLOAD_LIFETIME = 7 * 86_400.0
# A 429 on submit without a Retry-After: WaveSpeed's per-minute limits (PROVIDERS §1.7)
# suggest waiting most of a minute. UNCONFIRMED (no documented 429 body or headers).
_DEFAULT_BUSY_WAIT = 30.0

_FAILED = frozenset({"failed", "cancelled", "timeout", "deleted"})  # the SDK's terminal set
_GATEWAY_ERRORS = frozenset({502, 504})


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
    starts from ``job.urls["upstream_frame"]``. ``shot.params`` is merged last, so it can
    add or override any field (the escape hatch for fields storyboard does not model).

    Raises:
        ProviderError: The model is not a WaveSpeed model, or a local input has no URL.
    """
    shot, spec = job.shot, job.spec
    if spec.provider != NAME:
        raise ProviderError(
            f"shot {shot.id}: model {spec.id} is not served by WaveSpeed",
            provider=NAME,
            shot=shot.id,
        )
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

    ``created`` is queued, ``processing`` running, ``completed`` succeeded with
    ``outputs``; ``failed``/``cancelled``/``timeout``/``deleted`` failed with the task's
    ``error`` text and ``code`` (1xxx: the input must change; 5xxx: provider trouble,
    PROVIDERS §1.3). Any other status means "keep polling", as in the official SDK.
    """
    status = str(data.get("status") or "")
    if status == "created":
        return Queued()
    if status == "completed":
        outputs = data.get("outputs") or []
        urls = outputs if isinstance(outputs, list) else [outputs]
        return Succeeded(outputs=tuple(str(u) for u in urls if isinstance(u, str) and u))
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
    return Running()


# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


class WaveSpeedProvider(HostedProvider):
    """WaveSpeed v3 client for the SkyReels models (see the module docstring).

    Construction, ``from_env``, ``download`` and ``aclose`` come from
    :class:`~storyboard.providers._http.HostedProvider`.
    """

    name = NAME
    label = "WaveSpeed"
    key_var = API_KEY_ENV
    base_var = BASE_URL_ENV
    default_base = DEFAULT_BASE_URL
    can_host_files = True

    # ---- the protocol -------------------------------------------------------------------------

    async def submit(self, job: Job) -> TaskRef:
        """POST the take once; never retried (a lost reply is an unknown outcome).

        Raises:
            ProviderBusy: HTTP 429: nothing was created; wait ``retry_after`` and resubmit.
            AuthenticationError: The key was refused.
            ProviderHTTPError: Any other error reply, with WaveSpeed's message and code.
            SubmitOutcomeUnknown: The request may have been sent but no usable reply came
                (no reply, a timeout, a gateway's 502/504, a reply without a task id).
            ProviderError: The API could not be reached (nothing was sent).
        """
        path, body = build_request(job)
        shot = job.shot.id
        ctx = self._http.ctx
        action = f"submit of shot {shot}"
        unknown_hint = (
            f"look for the task in your WaveSpeed dashboard; if there is none, run again with "
            f"--force {shot} to submit it again (WaveSpeed has no idempotency key)"
        )
        with translate_errors(
            ctx, action=action, mode="submit", shot=shot, unknown_hint=unknown_hint
        ):
            response = await self._http.api.post(
                path, json=body, timeout=self._http.timeouts.for_kind("submit")
            )
        if response.status_code == 429:
            raise self._busy(response, shot)
        if response.status_code in _GATEWAY_ERRORS:
            # A gateway answered, not WaveSpeed: the request may have reached the API and
            # created a task behind it (PROVIDERS §1.4 shows a 504 for a task that still
            # completes). Without an idempotency key, that is an unknown outcome.
            raise self._unknown(action, shot, unknown_hint, f"HTTP {response.status_code}")
        if not response.is_success:
            raise http_error(ctx, response, action=action, shot=shot)
        try:
            payload = response.json()
        except ValueError as exc:
            raise self._unknown(action, shot, unknown_hint, "a reply that is not JSON") from exc
        data = self._envelope(payload, response, action=action, shot=shot)
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise self._unknown(action, shot, unknown_hint, "a reply without a task id")
        return TaskRef(provider=NAME, task_id=task_id, key=job.key)

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
            message = ctx.redact(excerpt(str(payload.get("message") or "")))
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

    @staticmethod
    def _unknown(action: str, shot: str, hint: str, what: str) -> SubmitOutcomeUnknown:
        return SubmitOutcomeUnknown(
            f"{action} got {what} from WaveSpeed; the task may exist and be billed",
            provider=NAME,
            shot=shot,
            status="unknown",
            hint=hint,
        )


def _http_message(ctx: ProviderContext, response: httpx.Response) -> tuple[str | None, str | None]:
    message, code = provider_message(response)
    return (ctx.redact(excerpt(message)) if message else None), code
