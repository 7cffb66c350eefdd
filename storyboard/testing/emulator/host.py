"""The emulator: the WaveSpeed and Qingbo rooms on one host, over the shared core."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from storyboard.testing.emulator.qingbo import QingboAPI
from storyboard.testing.emulator.records import Provider, TaskInfo
from storyboard.testing.emulator.wavespeed import WaveSpeedAPI

if TYPE_CHECKING:
    import httpx


class Emulator(WaveSpeedAPI, QingboAPI):
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
        from storyboard.testing.emulator.transport import make_transport

        return make_transport(self, real_sleep)
