"""The one error tree of storyboard (shared kernel).

Every error the library raises derives from :class:`StoryboardError` and carries the facts a
caller needs as fields (file, line, shot, provider, task id, status), so callers branch on
type and fields, never on message text. Messages say what happened, where, and what to do
next. Only ``storyboard.cli.main`` prints errors and turns them into exit codes.

::

    StoryboardError
    ├── UsageError                   bad command-line use                      exit 2
    ├── InvalidStoryboard            problems: tuple[Problem, ...]             exit 2
    ├── PlanError                    the plan cannot be built                  exit 2
    ├── CannotStart                  obstacles: what stops a live run; none sent  exit 2
    ├── LockUnreadable               file, line: the lock cannot be read       exit 2
    ├── BudgetExceeded               estimate over budget, nothing submitted   exit 3
    ├── StoreError                   the clip store is unusable                exit 1
    ├── MediaError                   ffmpeg or an image failed (probe, frame)  exit 1
    ├── StitchError                  the final cut could not be written        exit 1
    ├── RenderFailed                 one or more shots failed                  exit 1
    ├── TakeError                    anything unexpected inside a take (shot)  exit 1
    └── ProviderError                provider, task_id, status                 exit 1
        ├── MissingAPIKey            env var is not set
        ├── InvalidAPIKey            env var holds no usable key (never shown)  exit 2
        ├── ProviderHTTPError        http_status, retryable
        │   ├── AuthenticationError  401/403: names the env var to fix
        │   └── ProviderBusy         429: no task created; retry_after seconds
        ├── SubmitOutcomeUnknown     the submit reply was lost; never retried blindly
        ├── TaskFailed               the provider's task ended failed (code, message)
        ├── ProviderTimeout          a wait ran past its deadline (also TimeoutError)
        ├── UnrecognisedStatus       a status the client does not know, polled too often
        └── DownloadError            output missing, too large or not a video
            └── OutputGone           the provider no longer serves a finished output

:func:`redact_secrets` is the one redaction of API keys: every form a key can take in a
text (raw, ``repr``- and JSON-escaped, URL-encoded, base64 of the key and of ``Bearer
<key>``) becomes ``***``. Providers apply it to everything they turn into a message, the
live runner to unexpected exceptions, and ``storyboard.cli`` once more to all it prints.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import quote, quote_plus

__all__ = [
    "AuthenticationError",
    "BudgetExceeded",
    "CannotStart",
    "ClipCorrupt",
    "DownloadError",
    "InvalidAPIKey",
    "InvalidStoryboard",
    "LockUnreadable",
    "MediaError",
    "MissingAPIKey",
    "Obstacle",
    "OutputGone",
    "PlanError",
    "Problem",
    "ProviderBusy",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RenderFailed",
    "ShortOutput",
    "ShotFailure",
    "StitchError",
    "StoreError",
    "StoryboardError",
    "SubmitOutcomeUnknown",
    "TakeError",
    "TaskFailed",
    "UnrecognisedStatus",
    "UsageError",
    "redact_secrets",
    "secret_forms",
]

# What the next run does about a submit whose outcome is unknown (journalled with the key):
# ``resend``: the provider de-duplicates submits (Qingbo's Idempotency-Key), so running the
# same command again is safe; ``look``: the next run looks for the task in the provider's
# task list first; ``force``: the list shows no such task, only ``--force`` buys it again.
NextStep = Literal["resend", "look", "force"]

_REDACTED = "***"


def _escapes(text: str) -> set[str]:
    """``text`` as it reads inside a str repr, a bytes repr and a JSON string.

    A repr quotes with ``'`` unless the text holds one (then ``"``); with both inside it
    escapes ``'``, so each escaped form also comes with its quotes escaped.
    """
    forms = {
        text,
        repr(text)[1:-1],
        repr(text.encode("utf-8", "surrogatepass"))[2:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        " ".join(text.split()),  # as a message excerpt collapses whitespace
    }
    return forms | {f.replace("'", "\\'") for f in forms} | {f.replace('"', '\\"') for f in forms}


def _percent(text: str) -> set[str]:
    """``text`` URL-encoded the usual ways (and every byte escaped), in either hex case."""
    every_byte = "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))
    forms: set[str] = set()
    for encoded in (quote(text, safe=""), quote(text), quote_plus(text), every_byte):
        forms.add(encoded)
        forms.add(_lower_hex(encoded))
    return forms


def _lower_hex(encoded: str) -> str:
    parts = encoded.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def _base64(text: str) -> set[str]:
    raw = text.encode("utf-8", "surrogatepass")
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        value = encode(raw).decode("ascii")
        forms.update((value, value.rstrip("=")))
    return forms


@lru_cache(maxsize=64)
def secret_forms(secret: str) -> tuple[str, ...]:
    """Every form of ``secret`` a message could show, longest first.

    Raw; ``repr``-escaped (``'abc\\n'``), as a bytes repr and JSON-escaped; URL-encoded
    (``%0A`` and ``%0a``); base64 (standard and URL-safe, with and without padding) of the
    key and of ``Bearer <key>``; the key with surrounding whitespace stripped, in each of
    those forms. Forms shorter than 4 characters are left out (they would blank ordinary
    words, and no usable key is that short).
    """
    forms: set[str] = set()
    for variant in {secret, secret.strip()}:
        if not variant:
            continue
        for escaped in _escapes(variant):
            forms.add(escaped)
            forms.update(_percent(escaped))
        forms.update(_percent(variant))
        forms.update(_base64(variant))
        forms.update(_base64(f"Bearer {variant}"))
    return tuple(sorted((f for f in forms if len(f) >= 4), key=lambda f: (-len(f), f)))


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (see :func:`secret_forms`) replaced by ``***``."""
    forms = sorted(
        {form for secret in secrets if secret for form in secret_forms(secret)},
        key=lambda f: (-len(f), f),
    )
    for form in forms:
        if form in text:
            text = text.replace(form, _REDACTED)
    return text


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a storyboard, located in its source file.

    ``line`` and ``col`` are 1-based; both are 0 when the problem concerns the whole file
    (for example when it cannot be read). ``path`` is a JSON path such as
    ``$.shots[2].duration``; ``where`` is the same place as keys and indexes
    (``("shots", 2, "duration")``), for code that asks where a problem is.
    """

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str | None = field(default=None, compare=False)
    shot: str | None = field(default=None, compare=False)
    where: tuple[str | int, ...] = field(default=(), compare=False, repr=False)

    def location(self) -> str:
        """``FILE:LINE:COL`` (or just ``FILE`` when the position is unknown)."""
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"

    def __str__(self) -> str:
        head = f"{self.location()}: {self.path}: {self.message}"
        if self.hint:
            return f"{head}\n    hint: {self.hint}"
        return head

    def to_json(self) -> dict[str, object]:
        """The problem as a plain mapping (for ``--json`` output)."""
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "shot": self.shot,
        }


class StoryboardError(Exception):
    """Base of every error raised by storyboard."""

    exit_code: int = 1

    def hint(self) -> str | None:
        """What the user can do next, when there is something useful to say."""
        return None


class UsageError(StoryboardError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


class InvalidStoryboard(StoryboardError):
    """A storyboard has one or more problems; all of them are in ``problems``."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        count = len(self.problems)
        first = str(self.problems[0]) if self.problems else "invalid storyboard"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(first + more)


class PlanError(StoryboardError):
    """The render plan cannot be built (for example an upstream shot is skipped)."""

    exit_code = 2

    def __init__(self, message: str, *, shot: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.shot = shot
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


@dataclass(frozen=True)
class Obstacle:
    """One thing that makes a take of a live run impossible, found before any submit."""

    shot: str
    message: str
    provider: str | None = None
    env_var: str | None = None  # the variable whose absence causes it, if one does
    local_input: bool = False  # a local file (or upstream clip) that needs hosting

    def __str__(self) -> str:
        return f"{self.shot}: {self.message}"


class CannotStart(StoryboardError):
    """A ``render --live`` cannot do what it is asked; every reason is in ``obstacles``.

    Raised before anything is uploaded or submitted, so nothing was spent.
    """

    exit_code = 2

    def __init__(self, obstacles: Sequence[Obstacle]) -> None:
        self.obstacles = tuple(obstacles)
        n = len(self.obstacles)
        super().__init__(
            f"{n} problem{'s' if n != 1 else ''} stop{'' if n != 1 else 's'} this live render; "
            "nothing was submitted"
        )

    def hint(self) -> str | None:
        missing = sorted({o.env_var for o in self.obstacles if o.env_var})
        local = any(o.local_input for o in self.obstacles)
        parts = []
        if missing:
            parts.append("export " + " ".join(f"{var}=..." for var in missing))
        if local:
            parts.append("write https:// URLs for the local inputs named above")
        if not parts:
            return None
        return " (or ".join(parts) + (")" if len(parts) > 1 else "")


class LockUnreadable(StoryboardError):
    """The lock file exists but cannot be read (merge conflict, bad JSON, wrong shape).

    Raised while planning, before anything is spent: a lock that is ignored would make the
    render pay again for every take it names.
    """

    exit_code = 2

    def __init__(self, file: str, line: int, reason: str, *, conflict: bool = False) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        self.conflict = conflict
        where = f"{file}:{line}" if line > 0 else file
        super().__init__(f"{where}: the lock file cannot be read: {reason}")

    def hint(self) -> str | None:
        first = (
            f"resolve the merge conflict in {self.file}" if self.conflict else f"repair {self.file}"
        )
        return (
            f"{first}, or delete it: the next render rebuilds it from the store and the "
            "journal, and pays again for clips that are in neither"
        )


class BudgetExceeded(StoryboardError):
    """The cost estimate of what is stale is over the budget; nothing was submitted."""

    exit_code = 3

    def __init__(self, estimate: float, budget: float, per_shot: Sequence[tuple[str, float]]):
        self.estimate = estimate
        self.budget = budget
        self.per_shot = tuple(per_shot)
        super().__init__(
            f"estimated cost ${estimate:.2f} is over the budget of ${budget:.2f}; "
            "nothing was submitted"
        )

    def hint(self) -> str | None:
        return "raise render.budget or pass --budget USD, or render fewer shots with --only ID"


class StoreError(StoryboardError):
    """The clip store cannot be used (unwritable folder, full disk)."""


class MediaError(StoryboardError):
    """The media layer failed: ffmpeg could not run, read or write a file, or an image is bad.

    Raised by :mod:`storyboard.media` (probing a clip, a last frame, the animatic); the
    stitcher reports it as a :class:`StitchError`, the render stage as a failed take.
    """

    def __init__(self, message: str, *, shot: str | None = None) -> None:
        super().__init__(message)
        self.shot = shot


class StitchError(StoryboardError):
    """The final cut could not be written (or a view of it: a sheet, an export, a review)."""

    def __init__(self, message: str, *, shot: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.shot = shot
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


@dataclass(frozen=True)
class ShotFailure:
    """Why one shot (or take) did not render."""

    shot: str
    take: int
    error: StoryboardError | None
    message: str
    skipped_because: str | None = None  # the failed upstream shot, for dependants


class RenderFailed(StoryboardError):
    """Some shots failed to render; finished clips were kept."""

    def __init__(self, failures: Sequence[ShotFailure]) -> None:
        self.failures = tuple(failures)
        names = ", ".join(sorted({f.shot for f in self.failures}))
        super().__init__(f"{len(self.failures)} shot(s) did not render: {names}")

    def hint(self) -> str | None:
        """One closing instruction that agrees with every shot's own hint.

        Shots whose submit outcome is unknown are split by what helps next: ``--force`` for
        those the provider's task list shows no task for, the same command for those that
        are looked for again or resent under the same idempotency key. Otherwise the
        generic advice is given only when some failure has no hint of its own.
        """
        unknown = [f for f in self.failures if isinstance(f.error, SubmitOutcomeUnknown)]
        if unknown:
            force = _shots(f for f in unknown if _next_step(f) == "force")
            again = _shots(f for f in unknown if _next_step(f) != "force")
            parts = ["every task already paid for was resumed"]
            if force:
                who = "each 'outcome unknown' shot above" if not again else ", ".join(force)
                parts.append(f"{who} needs --force ID to be submitted again (and paid again)")
            if again:
                parts.append(
                    f"run the same command again for {', '.join(again)}: its task is looked "
                    "for or resent, never bought twice"
                )
            return "; ".join(parts)
        bare = [
            f
            for f in self.failures
            if f.skipped_because is None and (f.error is None or not f.error.hint())
        ]
        if bare:
            return "fix the cause and run the same command again: finished shots are not redone"
        return None


class ProviderError(StoryboardError):
    """Something went wrong talking to a provider."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        shot: str | None = None,
        task_id: str | None = None,
        status: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.shot = shot
        self.task_id = task_id
        self.status = status
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


class MissingAPIKey(ProviderError):
    """A ``--live`` render needs a provider whose API key is not set."""

    def __init__(self, provider: str, env_var: str, *, shot: str | None = None) -> None:
        super().__init__(
            f"{env_var} is not set; it is needed for {provider} shots",
            provider=provider,
            shot=shot,
            hint=f"export {env_var}=... (or render without --live for a free preview)",
        )
        self.env_var = env_var


class InvalidAPIKey(ProviderError):
    """An API key variable is set to something that cannot be a key (exit 2).

    The message names the variable and what is wrong with it, never the value or any part
    of it: a key with a control character or a non-ASCII character would otherwise end up
    in an HTTP library's error text, or in a traceback.
    """

    exit_code = 2

    def __init__(self, provider: str, env_var: str, problem: str) -> None:
        super().__init__(
            f"{env_var} {problem}",
            provider=provider,
            hint=f"export {env_var}=... with the key as the provider's dashboard shows it",
        )
        self.env_var = env_var
        self.problem = problem


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        http_status: int,
        retryable: bool,
        code: str | None = None,
        shot: str | None = None,
        task_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, shot=shot, task_id=task_id, hint=hint)
        self.http_status = http_status
        self.retryable = retryable
        self.code = code


class AuthenticationError(ProviderHTTPError):
    """The provider rejected the API key (401/403)."""


class SubmitOutcomeUnknown(ProviderError):
    """A submit was sent but its reply was lost: the task may exist and be billed.

    Never retried blindly. ``next_step`` says what helps: ``resend`` (the same command
    resends it under the same idempotency key), ``look`` (the same command looks for it in
    the provider's task list again), ``force`` (the list shows no task: ``--force ID``).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        shot: str | None = None,
        task_id: str | None = None,
        status: str | None = None,
        hint: str | None = None,
        next_step: NextStep | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, shot=shot, task_id=task_id, status=status, hint=hint
        )
        self.next_step: NextStep | None = next_step


def _next_step(failure: ShotFailure) -> NextStep | None:
    error = failure.error
    return error.next_step if isinstance(error, SubmitOutcomeUnknown) else None


def _shots(failures: Iterable[ShotFailure]) -> list[str]:
    return sorted({f.shot for f in failures})


class TaskFailed(ProviderError):
    """The provider ran the task and reported it failed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        task_id: str | None,
        code: str | None = None,
        user_fixable: bool = False,
        shot: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, shot=shot, task_id=task_id, status="failed", hint=hint
        )
        self.code = code
        self.user_fixable = user_fixable


class ProviderTimeout(ProviderError, TimeoutError):
    """A wait on the provider ran past its deadline; the task id is kept for a rerun."""


class DownloadError(ProviderError):
    """The output could not be downloaded or is not a plausible video."""


class ShortOutput(DownloadError):
    """A provider's output is much shorter than asked; the journal keeps the task as failed.

    ``asked`` and ``received`` are seconds of new footage. Never bought again automatically:
    ``--force SHOT`` buys a new take.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        shot: str,
        task_id: str | None,
        asked: float,
        received: float,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, shot=shot, task_id=task_id, hint=hint)
        self.asked = asked
        self.received = received


class ClipCorrupt(StitchError):
    """Stored clips whose bytes no longer match their digest; they were dropped from the store.

    A cache miss, never stitched or uploaded: the next render brings them back (free where a
    preview re-renders or a journalled live task is downloaded again).
    """

    def __init__(self, message: str, *, shots: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, shot=shots[0] if shots else None)
        self.shots = tuple(shots)
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


class OutputGone(DownloadError):
    """A finished task's output is no longer served (HTTP 403/404/410 on its link).

    Output links expire (Qingbo's after 24 h, WaveSpeed's after 7 days). The journal keeps
    the task, so nothing is bought automatically; ``--force ID`` buys the take again.
    """


class ProviderBusy(ProviderHTTPError):
    """The provider refused new work for now (HTTP 429); no task was created.

    Rate limits, Qingbo's quota window and its cap of 5 queued tasks per account. Waiting
    ``retry_after`` seconds and submitting again (with the same idempotency key, where the
    provider has one) cannot bill twice, because the refused request created nothing.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retry_after: float,
        code: str | None = None,
        shot: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            http_status=429,
            retryable=True,
            code=code,
            shot=shot,
            hint=hint,
        )
        self.retry_after = retry_after


class UnrecognisedStatus(ProviderError):
    """A task kept reporting a status the client does not know; the journal keeps the task.

    Not a task failure: the task may still finish, so a rerun resumes it by its id.
    """


class TakeError(StoryboardError):
    """Something unexpected stopped a take (an input deleted mid-run, a disk or SQLite error).

    Never a traceback: the scheduler reports it as the failure of the take, by shot. A task
    already submitted for the take stays in the journal, so a rerun resumes it.
    """

    def __init__(
        self,
        message: str,
        *,
        shot: str,
        take: int,
        provider: str | None = None,
        task_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.shot = shot
        self.take = take
        self.provider = provider
        self.task_id = task_id
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint
