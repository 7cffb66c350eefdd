"""HTTP plumbing shared by the live providers (stage 5, render; used only by providers).

What lives here, and nowhere else:

* :func:`make_client`: the one ``httpx.AsyncClient`` factory (timeouts, ``User-Agent``,
  ``Authorization`` only when a key is given, the ``transport=`` seam tests swap).
* The retry policy of *idempotent* requests lives in :mod:`storyboard.providers._retry`
  (re-exported here for the provider modules); submits that create billable work never go
  through it (STYLE §8.7).
* :func:`translate_errors`: the single seam where httpx exceptions become storyboard errors
  (``raise ... from exc``), and :func:`http_error` for error replies. Every message passes
  through :meth:`ProviderContext.redact`, so an API key echoed by a provider or buried in an
  exception text never reaches a message (CONTRACT §5).
* :class:`ApiSession`: an API client (with the key) plus a separate *files* client without
  it, because upload and download URLs live on other hosts (a bucket, a CDN) that must never
  see the key.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import anyio
import httpx

from storyboard import __version__
from storyboard.errors import (
    AuthenticationError,
    DownloadError,
    InvalidAPIKey,
    MissingAPIKey,
    OutputGone,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    StoreError,
    SubmitOutcomeUnknown,
    redact_secrets,
)
from storyboard.providers._retry import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    RETRY_STATUSES,
    Clock,
    RetryableResponse,
    RetryPolicy,
    Sleep,
    Timeouts,
    parse_retry_after,
    retry_delay,
    retry_idempotent,
    should_retry,
)
from storyboard.providers.base import Job, Succeeded, TaskRef

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "KEY_LENGTH",
    "MAX_DOWNLOAD_BYTES",
    "RETRY_STATUSES",
    "USER_AGENT",
    "ApiSession",
    "Clock",
    "HostedProvider",
    "ProviderContext",
    "RetryPolicy",
    "RetryableResponse",
    "Sleep",
    "Timeouts",
    "check_key",
    "check_params",
    "excerpt",
    "http_error",
    "key_problem",
    "make_client",
    "parse_retry_after",
    "provider_message",
    "retry_delay",
    "retry_idempotent",
    "should_retry",
    "submit_outcome_unknown",
    "translate_errors",
]


_T = TypeVar("_T")

USER_AGENT = f"storyboard/{__version__}"
MAX_DOWNLOAD_BYTES = 2 * 1024**3  # far above any 15 s clip; stops a runaway or hostile reply
_CHUNK = 1024 * 1024
# A sane API key length: both providers' keys are a few dozen printable ASCII characters.
KEY_LENGTH = (8, 512)
# A download of a finished task's output answered with one of these: the provider (its CDN or
# bucket) no longer serves it. 403 is what an expired presigned link gets from S3.
_GONE_STATUSES = frozenset({403, 404, 410})


def key_problem(value: str) -> str | None:
    """What makes ``value`` (already stripped) unusable as an API key, or ``None``.

    Printable ASCII only, no whitespace or control character inside, a sane length. The
    answer never quotes the value or any part of it.
    """
    low, high = KEY_LENGTH
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "contains a control character"
    if any(ord(c) > 0x7F for c in value):
        return "contains a non-ASCII character"
    if any(c.isspace() for c in value):
        return "contains whitespace"
    if len(value) < low:
        return f"is too short to be an API key ({len(value)} characters; at least {low})"
    if len(value) > high:
        return f"is too long to be an API key ({len(value)} characters; at most {high})"
    return None


def check_key(provider: str, env_var: str, value: str) -> str:
    """``value`` stripped of surrounding whitespace, checked to be a usable key.

    Raises:
        MissingAPIKey: Nothing is left after stripping.
        InvalidAPIKey: The key has a control, non-ASCII or whitespace character inside, or
            an absurd length; the error names ``env_var``, never the value.
    """
    key = value.strip()
    if not key:
        raise MissingAPIKey(provider, env_var)
    problem = key_problem(key)
    if problem is not None:
        raise InvalidAPIKey(provider, env_var, problem)
    return key


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


def make_client(
    base_url: str,
    *,
    api_key: str | None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` configured the storyboard way.

    Args:
        base_url: The API root (``""`` for a client that only fetches absolute URLs).
        api_key: Sent as ``Authorization: Bearer`` on every request; ``None`` for the files
            client that talks to upload and download hosts, which must never see the key.
        transport: The network, or a test double (the emulator's ``mock_transport()``).
        timeouts: Connect and per-kind read timeouts; the client default is the GET one,
            callers pass ``timeout=timeouts.for_kind(...)`` for submits and uploads.
        follow_redirects: Follow redirects (only for the key-less files client: CDNs and
            presigned URLs redirect; an API client must not chase its key around).
    """
    headers = {"User-Agent": USER_AGENT}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
        headers["Accept"] = "application/json"
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        transport=transport,
        timeout=timeouts.for_kind("get"),
        follow_redirects=follow_redirects,
    )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderContext:
    """Who we are talking to, for error messages: name, label, the env var, what to hide.

    ``secrets`` (the API key) is kept out of ``repr`` and every form of it (raw, escaped,
    URL-encoded, base64; :func:`~storyboard.errors.redact_secrets`) is replaced by ``***``
    in every text :meth:`redact` sees.
    """

    name: str
    label: str
    env_var: str
    base_url_var: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``***``."""
        return redact_secrets(text, self.secrets)

    def clean(self, text: str, limit: int = 300) -> str:
        """A redacted one-line excerpt (redacted before and after whitespace is collapsed)."""
        return self.redact(excerpt(self.redact(text), limit))


def excerpt(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (whitespace collapsed)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def provider_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """The ``(message, code)`` a provider put in an error reply, if it put any.

    Understands WaveSpeed's envelope ``{"code", "message", "data"}`` and Qingbo's
    ``{"error": {"message", "code"}}``; anything else yields the body text as the message.
    """
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            message, code = error.get("message"), error.get("code")
            return (
                str(message) if message not in (None, "") else None,
                str(code) if code not in (None, "") else None,
            )
        if isinstance(error, str) and error:
            return error, None
        message, code = payload.get("message"), payload.get("code")
        if message not in (None, "") or code not in (None, ""):
            return (
                str(message) if message not in (None, "") else None,
                str(code) if code not in (None, "") else None,
            )
    text = response.text.strip() if response.content else ""
    return (text or None), None


def http_error(
    ctx: ProviderContext,
    response: httpx.Response,
    *,
    action: str,
    shot: str | None = None,
    task_id: str | None = None,
) -> ProviderHTTPError:
    """The error for a provider's HTTP error reply (the body must already be read).

    401/403 become :class:`AuthenticationError` naming the environment variable to fix;
    everything else a :class:`ProviderHTTPError` carrying the provider's own message and
    code, ``retryable`` for 429/5xx.
    """
    status = response.status_code
    message, code = provider_message(response)
    said = f": {ctx.clean(message)}" if message else ""
    if status in (401, 403):
        return AuthenticationError(
            f"{ctx.label} rejected the API key in {ctx.env_var} (HTTP {status}{said})",
            provider=ctx.name,
            http_status=status,
            retryable=False,
            code=code,
            shot=shot,
            task_id=task_id,
            hint=f"set {ctx.env_var} to a valid {ctx.label} API key",
        )
    return ProviderHTTPError(
        f"{ctx.label} {action} failed with HTTP {status}{said}",
        provider=ctx.name,
        http_status=status,
        retryable=status in RETRY_STATUSES,
        code=code,
        shot=shot,
        task_id=task_id,
    )


def check_params(provider: str, job: Job, owned: Mapping[str, str]) -> None:
    """Refuse ``shot.params`` keys that would override what is priced or checked.

    ``owned`` maps each body field the request builder sets itself to the shot field that
    sets it; the model's ``reserved_params`` add the fields the price depends on. Validation
    refuses both first (at ``FILE:LINE:COL``); this is the defence in depth, so a
    ``params: {resolution: 1080p}`` can never buy more than the plan priced.

    Raises:
        ProviderError: The first such key, naming the shot and the field to use instead.
    """
    reserved = job.spec.reserved_params
    for key in job.shot.params:
        if key not in owned and key not in reserved:
            continue
        # An empty field name: no shot field stands for the key, storyboard drives it.
        field_name = owned.get(key) or reserved.get(key) or ""
        instead = (
            f"set the shot's {field_name} instead" if field_name else "storyboard sets it itself"
        )
        raise ProviderError(
            f"shot {job.shot.id}: params.{key} would override what storyboard sets, prices "
            "and checks itself",
            provider=provider,
            shot=job.shot.id,
            hint=f"remove {key} from the params of shot {job.shot.id}: {instead}",
        )


def submit_outcome_unknown(
    ctx: ProviderContext,
    action: str,
    what: str,
    *,
    shot: str | None,
    hint: str | None,
    detail: str | None = None,
) -> SubmitOutcomeUnknown:
    """The one error of a submit that may have created a task: ``what`` says what came back.

    Used for a lost reply, a 5xx, and a 2xx the client cannot read (not JSON, no task id).
    """
    more = f" ({detail})" if detail else ""
    return SubmitOutcomeUnknown(
        f"{action} got {what} from {ctx.label}{more}; the task may exist and be billed",
        provider=ctx.name,
        shot=shot,
        status="unknown",
        hint=hint,
    )


# Errors raised before a byte of the request left this machine: a submit that hit them
# created nothing, so it is an ordinary error, not an unknown outcome.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@contextlib.contextmanager
def translate_errors(
    ctx: ProviderContext,
    *,
    action: str,
    mode: Literal["request", "submit", "download"] = "request",
    shot: str | None = None,
    task_id: str | None = None,
    unknown_hint: str | None = None,
) -> Iterator[None]:
    """Turn httpx exceptions (and exhausted :class:`RetryableResponse`) into our errors.

    Args:
        ctx: The provider.
        action: What was being done, for the message ("status check", "upload of a.png").
        mode: ``request`` (idempotent call), ``submit`` (a lost reply after the request may
            have been sent, or a 5xx left after retries, is :class:`SubmitOutcomeUnknown`;
            a connection never made is an ordinary error: nothing was sent), or
            ``download`` (every failure is a :class:`DownloadError`).
        shot: The shot concerned, if any.
        task_id: The task concerned, if any.
        unknown_hint: The hint of a :class:`SubmitOutcomeUnknown` (what the user can do).
    """
    try:
        yield
    except RetryableResponse as exc:
        if mode == "download":
            raise DownloadError(
                f"{action} failed with HTTP {exc.response.status_code} after retries",
                provider=ctx.name,
                shot=shot,
                task_id=task_id,
            ) from exc
        if mode == "submit":
            # A 5xx to a request that reached the provider may hide a created task.
            raise submit_outcome_unknown(
                ctx, action, f"HTTP {exc.response.status_code}", shot=shot, hint=unknown_hint
            ) from exc
        raise http_error(ctx, exc.response, action=action, shot=shot, task_id=task_id) from exc
    except httpx.HTTPError as exc:
        detail = ctx.clean(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if mode == "download":
            raise DownloadError(
                f"{action} failed: {detail}", provider=ctx.name, shot=shot, task_id=task_id
            ) from exc
        if mode == "submit" and not isinstance(exc, _NOT_SENT):
            raise submit_outcome_unknown(
                ctx, action, "no reply", shot=shot, hint=unknown_hint, detail=detail
            ) from exc
        if isinstance(exc, httpx.TimeoutException):
            raise ProviderTimeout(
                f"{ctx.label} did not answer the {action} in time ({detail})",
                provider=ctx.name,
                shot=shot,
                task_id=task_id,
                hint="check the network and run the same command again",
            ) from exc
        nothing = "; nothing was submitted" if mode == "submit" else ""
        raise ProviderError(
            f"could not reach {ctx.label} for the {action} ({detail}){nothing}",
            provider=ctx.name,
            shot=shot,
            task_id=task_id,
            hint=f"check the network (and {ctx.base_url_var}, if you set it)",
        ) from exc


# --------------------------------------------------------------------------------------------
# A session: API client + key-less files client + policy
# --------------------------------------------------------------------------------------------


class ApiSession:
    """The HTTP side of one provider: its API client, a key-less files client and policy.

    Args:
        ctx: The provider (name, label, env var, the key to redact).
        base_url: API root.
        api_key: The key, sent only by the API client.
        transport: Shared by both clients (tests pass the emulator's mock transport).
        sleep: Awaited between retries (tests inject a recorder).
        clock: Monotonic seconds, for retry deadlines.
        wall_clock: Unix seconds, for ``Retry-After`` dates and expiry times.
        policy: Retry policy of idempotent requests.
        timeouts: Per-kind timeouts.
        rand: Jitter source.
    """

    def __init__(
        self,
        ctx: ProviderContext,
        *,
        base_url: str,
        api_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        policy: RetryPolicy = DEFAULT_RETRY,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ctx = ctx
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.policy = policy
        self.timeouts = timeouts
        self.rand = rand
        self.api = make_client(
            base_url.rstrip("/"), api_key=api_key, transport=transport, timeouts=timeouts
        )
        self.files = make_client(
            "", api_key=None, transport=transport, timeouts=timeouts, follow_redirects=True
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds from the reply's ``Retry-After`` header, if it has a readable one."""
        return parse_retry_after(response.headers.get("Retry-After"), now=self.wall_clock())

    async def retrying(
        self, operation: Callable[[], Awaitable[_T]], *, policy: RetryPolicy | None = None
    ) -> _T:
        """:func:`retry_idempotent` with this session's sleep, clocks and policy."""
        return await retry_idempotent(
            operation,
            policy=policy or self.policy,
            sleep=self.sleep,
            clock=self.clock,
            rand=self.rand,
        )

    def check_retryable(self, response: httpx.Response) -> httpx.Response:
        """Raise :class:`RetryableResponse` for a 429/5xx reply; return any other."""
        if should_retry(status=response.status_code):
            raise RetryableResponse(response, self.retry_after(response))
        return response

    async def get_json(
        self, path: str, *, action: str, shot: str | None = None, task_id: str | None = None
    ) -> Any:
        """GET an API path (retried) and return the parsed JSON of a 2xx reply.

        Raises:
            ProviderHTTPError: An error reply (after retries for 429/5xx).
            ProviderTimeout: No reply in time, after retries.
            ProviderError: The network failed after retries, or the reply is not JSON.
        """

        async def once() -> httpx.Response:
            return self.check_retryable(await self.api.get(path))

        with translate_errors(self.ctx, action=action, shot=shot, task_id=task_id):
            response = await self.retrying(once)
        if not response.is_success:
            raise http_error(self.ctx, response, action=action, shot=shot, task_id=task_id)
        return self.parse_json(response, action=action, shot=shot, task_id=task_id)

    def parse_json(
        self,
        response: httpx.Response,
        *,
        action: str,
        shot: str | None = None,
        task_id: str | None = None,
    ) -> Any:
        """The JSON body of a reply, or a :class:`ProviderError` saying it is unreadable."""
        try:
            return response.json()
        except ValueError as exc:
            body = self.ctx.clean(response.text, 120)
            raise ProviderError(
                f"{self.ctx.label} answered the {action} with something that is not JSON "
                f"(HTTP {response.status_code}: {body!r})",
                provider=self.ctx.name,
                shot=shot,
                task_id=task_id,
            ) from exc

    async def put_bytes(
        self, url: str, data: bytes, headers: Mapping[str, str], *, action: str
    ) -> None:
        """PUT raw bytes to a presigned URL with exactly ``headers`` (retried; no key).

        Raises:
            ProviderHTTPError: The storage refused the upload.
            ProviderError: The network failed after retries.
        """
        _require_http_url(self.ctx, url, action=action)
        clean = {k: v for k, v in headers.items() if k.lower() != "authorization"}

        async def once() -> httpx.Response:
            response = await self.files.put(
                url, content=data, headers=clean, timeout=self.timeouts.for_kind("upload")
            )
            return self.check_retryable(response)

        with translate_errors(self.ctx, action=action):
            response = await self.retrying(once)
        if not response.is_success:
            raise http_error(self.ctx, response, action=action)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
        task_id: str | None = None,
        shot: str | None = None,
    ) -> int:
        """Stream ``url`` to ``dest`` (retried, size-capped, no key); the bytes written.

        A failed download leaves no file at ``dest``.

        Raises:
            DownloadError: Not 2xx, larger than ``max_bytes``, or the transfer kept failing.
            StoreError: ``dest`` cannot be written.
        """
        action = f"download of the output of task {task_id}" if task_id else "download"
        if not url.lower().startswith(("http://", "https://")):
            raise DownloadError(
                f"{action}: the provider gave a URL that is not http(s): {url[:120]!r}",
                provider=self.ctx.name,
                shot=shot,
                task_id=task_id,
            )

        def too_large(size: int) -> DownloadError:
            return DownloadError(
                f"{action}: the output is larger than the cap of {max_bytes} bytes "
                f"({size} bytes or more)",
                provider=self.ctx.name,
                shot=shot,
                task_id=task_id,
            )

        async def once() -> int:
            async with self.files.stream("GET", url) as response:
                if should_retry(status=response.status_code):
                    await response.aread()
                    raise RetryableResponse(response, self.retry_after(response))
                if response.status_code in _GONE_STATUSES and task_id is not None:
                    # A finished task's link that no longer answers: expired, or removed.
                    raise OutputGone(
                        f"{action} failed with HTTP {response.status_code}: the provider no "
                        "longer has this output",
                        provider=self.ctx.name,
                        shot=shot,
                        task_id=task_id,
                        status=str(response.status_code),
                    )
                if not response.is_success:
                    raise DownloadError(
                        f"{action} failed with HTTP {response.status_code}"
                        + (" (the link may have expired)" if response.status_code == 403 else ""),
                        provider=self.ctx.name,
                        shot=shot,
                        task_id=task_id,
                    )
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise too_large(int(declared))
                written = 0
                # Each attempt starts the file afresh: a retried transfer must not append.
                async with await anyio.open_file(dest, "wb") as out:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise too_large(written)
                        await out.write(chunk)
                return written

        try:
            with translate_errors(
                self.ctx, action=action, mode="download", shot=shot, task_id=task_id
            ):
                return await self.retrying(once)
        except OSError as exc:
            dest.unlink(missing_ok=True)
            raise StoreError(f"cannot write the {action} to {dest}: {exc.strerror or exc}") from exc
        except BaseException:
            # Also on cancellation: a half-written file must never pass for a clip.
            dest.unlink(missing_ok=True)
            raise

    async def aclose(self) -> None:
        """Close both clients."""
        await self.api.aclose()
        await self.files.aclose()


def _require_http_url(ctx: ProviderContext, url: str, *, action: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise ProviderError(
            f"{ctx.label} gave a {action} URL that is not http(s): {url[:120]!r}",
            provider=ctx.name,
        )


class HostedProvider:
    """What the hosted clients share: construction from a key or the environment, the
    HTTP session (the key goes only to the API host), downloading outputs, closing.

    Subclasses set the class attributes and implement ``submit`` and ``poll``.

    Args:
        api_key: The provider's key; sent only to the API host.
        base_url: API root (the emulator's address in tests).
        transport: The network, or a test double.
        sleep: Awaited between retries of idempotent requests.
        clock: Unix seconds, for expiries and ``Retry-After`` dates.
        retry: Retry policy of idempotent requests.
        timeouts: Connect and per-kind read timeouts.
        rand: Jitter source (tests pin it).

    Raises:
        MissingAPIKey: ``api_key`` is empty.
        InvalidAPIKey: ``api_key`` cannot be a key (see :func:`key_problem`).
    """

    name: str  # an instance attribute to the Provider protocol; set per class
    label: ClassVar[str]
    key_var: ClassVar[str]
    base_var: ClassVar[str]
    default_base: ClassVar[str]
    # Whether the provider can host a local file and give a URL other providers can fetch
    # (WaveSpeed's media API); a provider without it takes URLs only.
    can_host_files: ClassVar[bool] = False
    # Whether a resent submit can never create a second task (an idempotency key).
    idempotent_submit: ClassVar[bool] = False
    # How long the provider serves a finished task's output (seconds), and in words.
    output_lifetime: ClassVar[float] = 24 * 3600.0
    output_lifetime_text: ClassVar[str] = "24 h"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Clock = time.time,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        rand: Callable[[], float] = random.random,
    ) -> None:
        raw_key = api_key
        api_key = check_key(self.name, self.key_var, api_key)
        context = ProviderContext(
            self.name, self.label, self.key_var, self.base_var, secrets=(api_key, raw_key)
        )
        self._http = ApiSession(
            context,
            base_url=self._api_root(base_url or self.default_base),
            api_key=api_key,
            transport=transport,
            sleep=sleep,
            wall_clock=clock,
            policy=retry,
            timeouts=timeouts,
            rand=rand,
        )

    def _api_root(self, base_url: str) -> str:
        """The root the request paths are appended to."""
        return base_url

    @classmethod
    def from_env(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> Self:
        """A client configured from the provider's ``*_API_KEY`` and ``*_BASE_URL``.

        Raises:
            MissingAPIKey: the key variable is unset or empty.
            InvalidAPIKey: the variable holds something that cannot be a key (a control,
                non-ASCII or whitespace character inside, an absurd length); the error
                names the variable, never the value.
        """
        env = os.environ if environ is None else environ
        key = check_key(cls.name, cls.key_var, env.get(cls.key_var, ""))
        base = env.get(cls.base_var, "").strip() or cls.default_base
        return cls(api_key=key, base_url=base, transport=transport, sleep=sleep)

    async def download(
        self,
        task: TaskRef,
        status: Succeeded,
        dest: Path,
        *,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> None:
        """Stream the first output to ``dest`` without the API key (retried, size-capped).

        Output links expire (Qingbo's after 24 h): callers download as soon as a task ends.

        Raises:
            DownloadError: No output URL, not 2xx, over ``max_bytes``, or the transfer failed.
        """
        if not status.outputs:
            raise DownloadError(
                f"{self.label} task {task.task_id} completed without an output URL",
                provider=self.name,
                task_id=task.task_id,
            )
        try:
            await self._http.download(
                status.outputs[0], dest, max_bytes=max_bytes, task_id=task.task_id
            )
        except OutputGone as exc:
            raise OutputGone(
                f"{self.label} task {task.task_id}: the provider no longer has this output "
                f"(HTTP {exc.status}; its links expire after {self.output_lifetime_text})",
                provider=self.name,
                task_id=task.task_id,
                status=exc.status,
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        await self._http.aclose()
