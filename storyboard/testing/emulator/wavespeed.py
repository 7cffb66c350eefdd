"""The WaveSpeed v3 room of the emulator (PROVIDERS §1, §2): submit, poll, list, uploads.

Models, validation, prices, output geometry, the prediction object and signed webhooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import mimetypes
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from pathlib import Path
from typing import Any
from urllib.parse import quote

from storyboard.testing.emulator.core import (
    V1,
    V3_EXTEND,
    V3_REFERENCE,
    WAVESPEED_MODELS,
    WAVESPEED_PREFIX,
    WAVESPEED_TASK_CODES,
    EmulatorCore,
    _Invalid,
    _is_int,
    _is_number,
    _Task,
)
from storyboard.testing.emulator.media import (
    FILES_PREFIX,
    UPLOAD_PREFIX,
    _nearest,
    _StoredFile,
    _Ticket,
)
from storyboard.testing.emulator.records import (
    Callback,
    EmulatorResponse,
    Fault,
    JSONDict,
    VideoSpec,
    _json_response,
    _Request,
)

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

LIST_PAGE_SIZE = 20  # default page_size of the prediction listing (UNCONFIRMED)
_MAX_UPLOAD_BYTES = 300 * 1024 * 1024  # "files >300 MB should be passed by URL" (§1.6)


def _iso(wall: float, *, nanoseconds: bool = True) -> str:
    ns = round(wall * 1e9)
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z" if nanoseconds else f"{stamp}Z"


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


class WaveSpeedAPI(EmulatorCore):
    """The WaveSpeed v3 API on ``/api/v3`` (Bearer auth)."""

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

    # ---- what the core asks of this room --------------------------------------------------

    def _ws_fault_reply(
        self, status: int, message: str, headers: dict[str, str]
    ) -> EmulatorResponse:
        return _json_response(status, {"code": status, "message": message, "data": None}, headers)

    def _ws_callback(self, task: _Task, event: str, url: str) -> Callback | None:
        if event not in ("completed", "failed"):
            return None
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
        return Callback(task.provider, task.id, url, event, headers, body)
