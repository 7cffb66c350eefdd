"""Qingbo task API backend (stage 5, render): SkyReels V4 fast and std.

Wire format in, typed status out (PROVIDERS §3): submit ``POST /v1/tasks`` with one body
covering every V4 action, poll ``GET /v1/tasks/{id}``, download ``result.videos[].url``.

Unlike WaveSpeed, Qingbo de-duplicates submits by ``Idempotency-Key`` for 24 h: the same key
returns the original task and is not billed again (PROVIDERS §3.1). Every submit carries
``storyboard-<generation key>`` (``-a<attempt>`` appended for a ``--force`` purchase, see
:func:`idempotency_key`), so a submit whose reply was lost is repeated here a bounded
number of times, and a 429 (quota window, the 5-queued cap) becomes
:class:`~storyboard.errors.ProviderBusy` for the scheduler to wait and resubmit with the same
key. Qingbo has no upload endpoint; local files are hosted elsewhere (WaveSpeed's media API)
before the submit and arrive here as URLs in ``job.urls``.

Two status vocabularies are accepted: the task system's (``queued``, ``processing``,
``completed``, ``failed``, ``cancelled``) and the one the SkyReels page gives for
``callback_events`` (``queued``, ``running``, ``succeeded``, ``failed``), plus ``canceled``.
Any other status is :class:`~storyboard.providers.base.Unrecognised`, never "running": the
caller bounds how long it accepts one.

Choices where PROVIDERS.md says UNCONFIRMED:

* ``cost`` (terminal status) is reported as it comes, in quota (the docs' unit, an integer):
  :class:`~storyboard.providers.base.ReportedCost` with unit ``"quota"``. It is never
  converted into dollars here; the list price is the plan's business.
* ``created_at``/``completed_at``/``reset_at``/``expires_at``: seconds or milliseconds,
  told apart by size (anything above 10^11 is milliseconds: 10^11 s is the year 5138).
* ``result.videos[].url``: a list (current docs) or a plain string (older revision).
* The 5-queued cap answers 429; its code (``too_many_queued_tasks`` in our emulator) and the
  absence of a ``Retry-After`` are guesses: we wait :data:`QUEUED_CAP_WAIT` seconds then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import httpx

from storyboard.errors import ProviderBusy, ProviderError
from storyboard.model import Media
from storyboard.providers import PROVIDERS
from storyboard.providers._http import (
    HostedProvider,
    RetryableResponse,
    RetryPolicy,
    check_params,
    http_error,
    submit_outcome_unknown,
    translate_errors,
)
from storyboard.providers.base import (
    Failed,
    Job,
    Queued,
    ReportedCost,
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
    "OWNED_PARAMS",
    "QUEUED_CAP_WAIT",
    "QingboProvider",
    "QingboTask",
    "build_request",
    "epoch_seconds",
    "idempotency_key",
    "parse_task",
    "reported_quota",
]

NAME = "qingbo"
_ENTRY = PROVIDERS[NAME]  # the table holds the facts callers outside this module ask
API_KEY_ENV = "QINGBO_API_KEY"
BASE_URL_ENV = "QINGBO_BASE_URL"
DEFAULT_BASE_URL = "https://www.qingbo.dev"
# A 429 for the 5-queued cap carries no Retry-After (as far as we know): queued tasks start
# within seconds to minutes, so look again soon. UNCONFIRMED.
QUEUED_CAP_WAIT = 15.0
_RATE_LIMIT_WAIT = 10.0  # any other 429 without Retry-After
_QUOTA_WAIT = 60.0  # quota_window_exceeded without a readable reset_at
# Submits whose reply was lost (or 5xx) are repeated with the same Idempotency-Key. Bounded:
# a provider that keeps failing is reported, and a rerun resumes with the same key.
_SUBMIT_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, deadline=60.0)
_MS_THRESHOLD = 1e11  # larger epoch values are milliseconds (1e11 s is the year 5138)


def idempotency_key(generation_key: str, attempt: int = 0) -> str:
    """The ``Idempotency-Key`` of a take: same generation key and attempt, one task, one charge.

    ``attempt`` is the journalled purchase number of the generation key (``Job.attempt``):
    0 for the first purchase keeps the key of older journals (``storyboard-<key>``); every
    ``--force`` buys a new generation under ``storyboard-<key>-a<attempt>``. A submit resent
    after a lost reply carries the same job, hence the same key.
    """
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")
    suffix = f"-a{attempt}" if attempt else ""
    return f"storyboard-{generation_key}{suffix}"


# Body fields ``build_request`` sets itself, each with the shot field that sets it. A shot's
# ``params`` may not hold them: they decide what is priced and what validation checked
# (``image_urls``/``video_urls`` are the simplified forms of ``ref_images``/``ref_videos``).
OWNED_PARAMS: Mapping[str, str] = MappingProxyType(
    {
        "model": "model",
        "prompt": "prompt",
        "duration": "duration",
        "resolution": "resolution",
        "aspect_ratio": "aspect_ratio",
        "prompt_optimizer": "prompt_optimizer",
        "action": "action",
        "first_frame_image": "first_frame/continues",
        "last_frame_image": "last_frame",
        "mid_frame_images": "keyframes",
        "ref_images": "refs",
        "image_urls": "refs",
        "ref_videos": "reference_video/extends",
        "video_urls": "reference_video",
        "audio_urls": "audio",
    }
)


# --------------------------------------------------------------------------------------------
# Requests (pure)
# --------------------------------------------------------------------------------------------


def _media_url(job: Job, media: Media, field: str) -> str:
    """The URL Qingbo fetches for one input: the source itself, or the hosted copy."""
    if media.is_url:
        return media.source
    url = job.urls.get(media.source)
    if not url:
        raise ProviderError(
            f"shot {job.shot.id}: {field} {media.source} is a local file with no hosted URL",
            provider=NAME,
            shot=job.shot.id,
            hint=f"Qingbo has no upload API: write an https URL for {media.source} in the "
            "storyboard, or set WAVESPEED_API_KEY so local files are hosted through WaveSpeed",
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
            hint="set WAVESPEED_API_KEY so the upstream clip can be hosted for Qingbo",
        )
    return url


def build_request(job: Job) -> dict[str, Any]:
    """The JSON body of ``POST /v1/tasks`` for one take (no I/O).

    Covers every V4 action from the shot's fields; ``action`` is sent only when the shot
    sets it, otherwise Qingbo routes by the media fields present (PROVIDERS §3.3).
    ``shot.params`` is merged last, unchanged, for fields storyboard does not model; a key
    of :data:`OWNED_PARAMS` or of the model's ``reserved_params`` is refused (validation
    refuses it first; this is the defence in depth).

    Raises:
        ProviderError: The model is not a Qingbo model, a local input has no URL, or
            ``params`` holds a key that is set through a shot field.
    """
    shot, spec = job.shot, job.spec
    if spec.provider != NAME:
        raise ProviderError(
            f"shot {shot.id}: model {spec.id} is not served by Qingbo",
            provider=NAME,
            shot=shot.id,
        )
    check_params(NAME, job, OWNED_PARAMS)
    duration = shot.duration if shot.duration is not None else spec.default_duration
    body: dict[str, Any] = {"model": spec.id}
    if shot.prompt:
        body["prompt"] = shot.prompt  # optional for media modes; "" would be noise
    body["duration"] = round(duration)
    body["resolution"] = shot.resolution or spec.default_resolution
    body["aspect_ratio"] = shot.aspect_ratio or spec.default_aspect_ratio
    body["prompt_optimizer"] = True if shot.prompt_optimizer is None else shot.prompt_optimizer
    if shot.action is not None:
        body["action"] = shot.action
    if shot.continues:
        body["first_frame_image"] = _upstream_url(job, "upstream_frame")
    elif shot.first_frame is not None:
        body["first_frame_image"] = _media_url(job, shot.first_frame, "first_frame")
    if shot.last_frame is not None:
        body["last_frame_image"] = _media_url(job, shot.last_frame, "last_frame")
    if shot.keyframes:
        body["mid_frame_images"] = [
            {
                "tag": key.tag or f"kf{i}",
                "image_url": _media_url(job, key.image, "keyframes"),
                "time_stamp": key.at,
            }
            for i, key in enumerate(shot.keyframes, start=1)
        ]
    if shot.refs:
        refs: list[dict[str, Any]] = []
        for i, ref in enumerate(shot.refs, start=1):
            item: dict[str, Any] = {
                "tag": ref.tag or f"ref{i}",
                "type": "grid" if ref.grid else "image",
                "image_urls": [_media_url(job, m, "refs") for m in ref.images],
            }
            if ref.audio is not None:
                item["audio_url"] = _media_url(job, ref.audio, "refs audio")
            refs.append(item)
        body["ref_images"] = refs
    videos: list[dict[str, Any]] = []
    if shot.extends:
        videos.append({"tag": "src", "type": "extend", "video_url": _upstream_url(job, "upstream")})
    if shot.reference_video is not None:
        videos.append(
            {
                "tag": "ref",
                "type": "reference",
                "video_url": _media_url(job, shot.reference_video, "reference_video"),
            }
        )
    if videos:
        body["ref_videos"] = videos
    if shot.audio:
        body["audio_urls"] = [_media_url(job, m, "audio") for m in shot.audio]
    body.update(shot.params)
    return body


# --------------------------------------------------------------------------------------------
# Replies (pure)
# --------------------------------------------------------------------------------------------


def epoch_seconds(value: object) -> float | None:
    """Unix seconds from a Qingbo timestamp in seconds or milliseconds (``None`` if absent).

    The docs say milliseconds while their generic examples show seconds (PROVIDERS §3.5);
    values above 10^11 are taken as milliseconds.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value) / 1000.0 if value > _MS_THRESHOLD else float(value)


def reported_quota(value: object) -> float | None:
    """A Qingbo ``cost`` exactly as reported (quota, per the docs), or ``None``.

    Never converted: the docs call it quota and give no rate to dollars. Anything that is not
    a finite, non-negative number (absent, ``null``, a string, a boolean) is ``None``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _urls(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


_QUEUED = frozenset({"queued"})
_RUNNING = frozenset({"processing", "running"})  # task system / callback_events names
_SUCCEEDED = frozenset({"completed", "succeeded"})
_CANCELLED = frozenset({"cancelled", "canceled"})
_FAILED = frozenset({"failed"}) | _CANCELLED


@dataclass(frozen=True)
class QingboTask:
    """One ``GET /v1/tasks/{id}`` reply, parsed (times in Unix seconds, cost in quota)."""

    task_id: str
    status: str
    progress: float | None
    created_at: float | None
    completed_at: float | None
    outputs: tuple[str, ...]
    expires_at: float | None
    cost: float | None
    error_message: str | None
    error_code: str | None

    def to_status(self) -> TaskStatus:
        """The typed status, from either vocabulary (see the module docstring).

        ``queued``; ``processing``/``running``; ``completed``/``succeeded`` (with the cost
        as reported, in quota); ``failed``/``cancelled``/``canceled``; anything else is
        :class:`Unrecognised` with the status text.
        """
        name = self.status.strip().lower()
        if name in _QUEUED:
            return Queued()
        if name in _RUNNING:
            return Running(progress=self.progress)
        if name in _SUCCEEDED:
            return Succeeded(
                outputs=self.outputs,
                reported=None if self.cost is None else ReportedCost(self.cost, "quota"),
                expires_at=self.expires_at,
            )
        if name in _FAILED:
            cancelled = name in _CANCELLED
            default = "the task was cancelled" if cancelled else "task failed"
            code = self.error_code or ("cancelled" if cancelled else None)
            return Failed(
                message=self.error_message or default,
                code=code,
                # Qingbo's only "your request is wrong" code (PROVIDERS §3.5).
                user_fixable=code == "upstream_bad_request",
            )
        return Unrecognised(status=self.status)


def parse_task(data: Mapping[str, Any]) -> QingboTask:
    """Parse a Qingbo task object (status reply or submit reply)."""
    progress = data.get("progress")
    fraction = (
        min(1.0, max(0.0, float(progress) / 100.0))
        if isinstance(progress, int | float) and not isinstance(progress, bool)
        else None
    )
    outputs: list[str] = []
    expiries: list[float] = []
    result = data.get("result")
    videos = result.get("videos") if isinstance(result, dict) else None
    for video in videos if isinstance(videos, list) else []:
        if isinstance(video, dict):
            outputs += _urls(video.get("url"))
            expiry = epoch_seconds(video.get("expires_at"))
            if expiry is not None:
                expiries.append(expiry)
        else:
            outputs += _urls(video)
    error = data.get("error")
    message = code = None
    if isinstance(error, dict):
        message = str(error["message"]) if error.get("message") else None
        code = str(error["code"]) if error.get("code") else None
    elif isinstance(error, str) and error:
        message = error
    return QingboTask(
        task_id=str(data.get("task_id") or ""),
        status=str(data.get("status") or ""),
        progress=fraction,
        created_at=epoch_seconds(data.get("created_at")),
        completed_at=epoch_seconds(data.get("completed_at")),
        outputs=tuple(outputs),
        expires_at=min(expiries) if expiries else None,
        cost=reported_quota(data.get("cost")),
        error_message=message,
        error_code=code,
    )


# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


class QingboProvider(HostedProvider):
    """Qingbo ``/v1/tasks`` client for SkyReels V4 (see the module docstring).

    Construction, ``from_env``, ``download`` and ``aclose`` come from
    :class:`~storyboard.providers._http.HostedProvider`.
    """

    name = NAME
    label = _ENTRY.label
    key_var = API_KEY_ENV
    base_var = BASE_URL_ENV
    default_base = DEFAULT_BASE_URL
    can_host_files = _ENTRY.can_host_files
    idempotent_submit = _ENTRY.idempotent_submit  # Idempotency-Key: the original task
    output_lifetime = _ENTRY.output_lifetime  # result links are valid 24 h (PROVIDERS §3.3)
    output_lifetime_text = _ENTRY.output_lifetime_text

    def _api_root(self, base_url: str) -> str:
        # PROVIDERS §3.1 names the base ".../v1"; our paths carry /v1, so accept either.
        return base_url.rstrip("/").removesuffix("/v1")

    # ---- the protocol -------------------------------------------------------------------------

    async def submit(self, job: Job) -> TaskRef:
        """POST the take with the ``Idempotency-Key`` of its generation key and attempt.

        A lost reply, a timeout or a 5xx is retried a few times with the same key: Qingbo
        answers a repeated key with the original task and does not bill it again (PROVIDERS
        §3.1), so the repeat is safe where WaveSpeed's would not be.

        Raises:
            ProviderBusy: 429 (quota window, the 5-queued cap, a rate limit); nothing was
                created: wait ``retry_after`` seconds and submit again (same key).
            AuthenticationError: The key was refused.
            ProviderHTTPError: Any other error reply (4xx), with Qingbo's message and code.
            SubmitOutcomeUnknown: No reply, or a 5xx, even after the retries, or a reply
                without a task id; a later submit with the same key (within 24 h) still
                cannot bill twice.
            ProviderError: The API could not be reached (nothing was sent).
        """
        body = build_request(job)
        shot = job.shot.id
        ctx = self._http.ctx
        action = f"submit of shot {shot}"
        headers = {"Idempotency-Key": idempotency_key(job.key, job.attempt)}

        async def once() -> httpx.Response:
            response = await self._http.api.post(
                "/v1/tasks",
                json=body,
                headers=headers,
                timeout=self._http.timeouts.for_kind("submit"),
            )
            # 429 is not retried here: the wait can be minutes (a quota window), which is
            # the scheduler's business (ProviderBusy), not a request's.
            if response.status_code >= 500:
                raise RetryableResponse(response, self._http.retry_after(response))
            return response

        unknown_hint = (
            "run the same command again: the resubmit carries the same Idempotency-Key, so "
            "Qingbo returns the original task (if there is one) instead of billing twice"
        )
        with translate_errors(
            ctx, action=action, mode="submit", shot=shot, unknown_hint=unknown_hint
        ):
            response = await self._http.retrying(once, policy=_SUBMIT_POLICY)
        if response.status_code == 429:
            raise self._busy(response, shot)
        if not response.is_success:
            raise http_error(ctx, response, action=action, shot=shot)
        try:
            payload = response.json()
        except ValueError as exc:
            raise submit_outcome_unknown(
                ctx, action, "a reply that is not JSON", shot=shot, hint=unknown_hint
            ) from exc
        task_id = payload.get("task_id") if isinstance(payload, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise submit_outcome_unknown(
                ctx, action, "a reply without a task_id", shot=shot, hint=unknown_hint
            )
        return TaskRef(provider=NAME, task_id=task_id, key=job.key)

    async def poll(self, task: TaskRef) -> TaskStatus:
        """The task's state from ``GET /v1/tasks/{id}`` (retried).

        Raises:
            ProviderHTTPError: An error reply (404 ``task_not_found`` for an unknown task).
            ProviderTimeout: No reply in time, after retries.
            ProviderError: The network failed after retries, or the reply is unreadable.
        """
        action = f"status check of task {task.task_id}"
        payload = await self._http.get_json(
            f"/v1/tasks/{task.task_id}", action=action, task_id=task.task_id
        )
        if not isinstance(payload, dict):
            raise ProviderError(
                f"Qingbo answered the {action} with an unexpected reply",
                provider=NAME,
                task_id=task.task_id,
            )
        return parse_task(payload).to_status()

    # ---- helpers ------------------------------------------------------------------------------

    def _busy(self, response: httpx.Response, shot: str) -> ProviderBusy:
        """A 429 as :class:`ProviderBusy`, with the wait the reply implies."""
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        fields: Mapping[str, Any] = error if isinstance(error, dict) else {}
        # The docs list window/used/cap/reset_at as "extra fields" without saying where they
        # sit: look inside ``error`` first, then at the top level.
        top: Mapping[str, Any] = payload if isinstance(payload, dict) else {}
        code = str(fields.get("code") or top.get("code") or "") or None
        message = self._http.ctx.clean(str(fields.get("message") or ""))
        header_wait = self._http.retry_after(response)
        kind: Literal["quota", "queue", "rate"]
        if code == "quota_window_exceeded":
            kind = "quota"
            reset = epoch_seconds(fields.get("reset_at", top.get("reset_at")))
            if reset is not None:
                wait = reset - self._http.wall_clock()
            else:
                wait = header_wait if header_wait is not None else _QUOTA_WAIT
        elif code == "too_many_queued_tasks" or "queued" in message.lower():
            kind = "queue"
            wait = header_wait if header_wait is not None else QUEUED_CAP_WAIT
        else:
            kind = "rate"
            wait = header_wait if header_wait is not None else _RATE_LIMIT_WAIT
        what = {
            "quota": "the account's quota window is used up",
            "queue": "the account already has 5 queued tasks",
            "rate": "Qingbo is rate limiting submits",
        }[kind]
        return ProviderBusy(
            f"{what} (HTTP 429" + (f": {message})" if message else ")"),
            provider=NAME,
            # At least a second: a reset time in the past must not become a busy loop.
            retry_after=max(1.0, wait),
            code=code,
            shot=shot,
            hint="storyboard waits and submits again with the same Idempotency-Key",
        )
