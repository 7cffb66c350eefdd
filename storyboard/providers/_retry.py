"""The retry policy of idempotent provider requests (used only by ``providers/_http.py``).

Status GETs, output downloads, upload PUTs and task-list pages may be tried again; submits
that create billable work never go through this (STYLE §8.7). Pure functions —
:func:`should_retry`, :func:`parse_retry_after`, :func:`retry_delay` — and one loop,
:func:`retry_idempotent`, that applies them with an injectable sleep and an overall deadline,
plus the per-kind :class:`Timeouts`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

import anyio
import httpx

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "RETRY_STATUSES",
    "Clock",
    "RetryPolicy",
    "RetryableResponse",
    "Sleep",
    "Timeouts",
    "parse_retry_after",
    "retry_delay",
    "retry_idempotent",
    "should_retry",
]

_T = TypeVar("_T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# Statuses worth another try of an idempotent request: rate limits and gateway/server trouble
# (the WaveSpeed SDK's set, PROVIDERS §1.9).
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeouts:
    """Per-request timeouts in seconds (the WaveSpeed SDK's defaults, PROVIDERS §1.9).

    ``connect`` applies to every request; the read (and write) timeout depends on the kind of
    request: a status GET or a download chunk, a submit, or an upload.
    """

    connect: float = 10.0
    get: float = 30.0
    submit: float = 60.0
    upload: float = 120.0

    def for_kind(self, kind: Literal["get", "submit", "upload"]) -> httpx.Timeout:
        """The ``httpx.Timeout`` for one kind of request."""
        seconds = {"get": self.get, "submit": self.submit, "upload": self.upload}[kind]
        # The pool wait is bounded too: a saturated pool must not hang a render forever.
        return httpx.Timeout(seconds, connect=self.connect, pool=seconds)


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent requests are retried.

    Attributes:
        max_attempts: Tries in total, the first included.
        base_delay: Backoff of the first retry before jitter, in seconds.
        max_delay: Cap of the exponential backoff (not of a server's ``Retry-After``).
        deadline: No retry wait may end later than this many seconds after the first try;
            a ``Retry-After`` beyond it ends the retries at once.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 300.0


DEFAULT_RETRY = RetryPolicy()


# --------------------------------------------------------------------------------------------
# The retry policy, as pure functions
# --------------------------------------------------------------------------------------------


def should_retry(*, status: int | None = None, error: BaseException | None = None) -> bool:
    """Whether an idempotent request that ended like this is worth another try.

    Args:
        status: The HTTP status of the reply, if one came.
        error: The httpx exception raised instead of a reply, if any.

    Returns:
        ``True`` for 429/500/502/503/504, timeouts, network errors and replies cut short;
        ``False`` for everything else (4xx, a malformed URL, a local protocol error).
    """
    if error is not None:
        return isinstance(
            error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )
    return status is not None and status in RETRY_STATUSES


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date).

    Args:
        value: The header value.
        now: Unix time to measure an HTTP date against (default: ``time.time()``).

    Returns:
        Non-negative seconds (a date in the past gives 0), or ``None`` when the header is
        missing or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # RFC 9110 allows only non-negative integers; tolerate fractions, refuse the absurd.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; a zone-less one is not a valid header
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = DEFAULT_RETRY.base_delay,
    cap: float = DEFAULT_RETRY.max_delay,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    A server's ``Retry-After`` is honoured as given: it knows when it will take work again,
    and waiting less only earns another 429. Otherwise capped exponential backoff with full
    jitter, ``uniform(0, min(cap, base * 2**attempt))``, so many clients hit by the same
    outage do not come back in lockstep.

    Args:
        attempt: How many retries came before this one.
        retry_after: Seconds from the reply's ``Retry-After``, if any.
        base: Backoff before the first retry.
        cap: Largest backoff.
        rand: Source of uniform numbers in [0, 1) (injectable for tests).
    """
    if retry_after is not None:
        return max(0.0, retry_after)
    ceiling = min(cap, base * math.pow(2, min(attempt, 62)))
    return max(0.0, rand() * ceiling)


class RetryableResponse(Exception):
    """An error reply (429/5xx) to an idempotent request that may be retried.

    Raised inside a retried operation; when the retries run out, :func:`translate_errors`
    turns it into a :class:`~storyboard.errors.ProviderHTTPError` (or a
    :class:`~storyboard.errors.DownloadError`).
    """

    def __init__(self, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.retry_after = retry_after


async def retry_idempotent(
    operation: Callable[[], Awaitable[_T]],
    *,
    policy: RetryPolicy = DEFAULT_RETRY,
    sleep: Sleep = anyio.sleep,
    clock: Clock = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> _T:
    """Run an idempotent operation, retrying it per ``policy``.

    ``operation`` is retried when it raises :class:`RetryableResponse` or an httpx error
    that :func:`should_retry` accepts; any other exception passes through at once. When the
    attempts or the deadline run out, the last exception is re-raised.

    Never use this for a request that creates billable work without an idempotency key.
    """
    started = clock()
    attempt = 0
    while True:
        try:
            return await operation()
        except (RetryableResponse, httpx.HTTPError) as exc:
            if isinstance(exc, httpx.HTTPError) and not should_retry(error=exc):
                raise
            retry_after = exc.retry_after if isinstance(exc, RetryableResponse) else None
            delay = retry_delay(
                attempt, retry_after, base=policy.base_delay, cap=policy.max_delay, rand=rand
            )
            attempt += 1
            if attempt >= policy.max_attempts or clock() - started + delay > policy.deadline:
                raise
        await sleep(delay)
