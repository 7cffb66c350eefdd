"""The emulator's fault script: scripted misbehaviour consumed in order by matching requests.

:class:`FaultScript` is a base of the core. It matches each request against the script,
records the hits and turns a fault into what the client sees: an error reply (in the
provider's own shape, through the provider rooms' ``_ws_fault_reply``/``_qb_fault_reply``),
a request applied behind a 5xx, a dropped, held, slow or truncated reply, or a reported
task status the client may not know.
"""

from __future__ import annotations

import http
import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace

from storyboard.testing.emulator.media import _s3_error
from storyboard.testing.emulator.records import (
    EmulatorResponse,
    Fault,
    FaultHit,
    Provider,
    Submission,
    _json_response,
    _Request,
)


@dataclass
class _FaultState:
    index: int
    fault: Fault
    seen: int = 0
    fired: int = 0


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _retry_after(seconds: float) -> str:
    # Retry-After takes whole seconds (RFC 9110); round up so a client never retries early.
    return str(max(0, math.ceil(seconds)))


class FaultScript(ABC):
    """Scripted faults and their hits; the state is set by the core's constructor."""

    wall_clock: Callable[[], float]
    submissions: list[Submission]
    fault_hits: list[FaultHit]
    _faults: list[_FaultState]
    _current_fault: int | None
    _lock: threading.RLock

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
            return self._qb_fault_reply(fault, status, message, headers)
        return self._ws_fault_reply(status, message, headers)

    # ---- what the core and the provider rooms supply -----------------------------------------

    @abstractmethod
    def _record_rejected_submit(
        self, request: _Request, provider: Provider, status: int
    ) -> None: ...

    @abstractmethod
    def _ws_fault_reply(
        self, status: int, message: str, headers: dict[str, str]
    ) -> EmulatorResponse: ...

    @abstractmethod
    def _qb_fault_reply(
        self, fault: Fault, status: int, message: str, headers: dict[str, str]
    ) -> EmulatorResponse: ...
