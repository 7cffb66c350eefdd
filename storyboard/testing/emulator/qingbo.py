"""The Qingbo ``/v1/tasks`` room of the emulator (PROVIDERS §3): SkyReels V4 tasks.

Submit (with idempotency keys and the queued-task cap), status, cancel, validation against
the V4 page, prices in quota, output geometry and callbacks.
"""

from __future__ import annotations

import json
import math
from typing import cast

from storyboard.testing.emulator.core import (
    QINGBO_MODELS,
    EmulatorCore,
    _Invalid,
    _is_http_url,
    _is_int,
    _is_number,
    _Task,
)
from storyboard.testing.emulator.faults import _retry_after
from storyboard.testing.emulator.media import _nearest
from storyboard.testing.emulator.records import (
    Callback,
    EmulatorResponse,
    Fault,
    JSONDict,
    VideoSpec,
    _json_response,
    _Request,
)

V4_ACTIONS: tuple[str, ...] = (
    "generate",
    "image2video",
    "first_last_frame",
    "reference",
    "reference_video",
    "reference_audio",
    "extend",
)
V4_ASPECT_RATIOS: tuple[str, ...] = ("16:9", "9:16", "4:3", "3:4", "1:1")
V4_RESOLUTIONS: tuple[str, ...] = ("480p", "720p", "1080p")
# Both vocabularies: the SkyReels page says running/succeeded, other Qingbo pages and the
# task statuses say processing/completed (PROVIDERS §3.5). Which the server takes is
# UNCONFIRMED, so both are accepted.
V4_CALLBACK_EVENTS = frozenset(
    {"queued", "running", "succeeded", "failed", "processing", "completed", "cancelled"}
)

# PROVIDERS §3.3, USD per second: (standard, with a reference/extend video).
_V4_PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "skyreels-v4-fast": {
        "480p": (0.068, 0.1275),
        "720p": (0.0935, 0.17),
        "1080p": (0.23375, 0.425),
    },
    "skyreels-v4-std": {
        "480p": (0.0935, 0.153),
        "720p": (0.119, 0.2125),
        "1080p": (0.2975, 0.53125),
    },
}
QUOTA_PER_USD = 500_000  # vendor skill, UNCONFIRMED in the docs (PROVIDERS §3.5)

_QINGBO_HTTP_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def v4_frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """V4 frame size: the short side is the resolution, the long side follows the ratio (even)."""
    short = int(resolution.rstrip("p"))
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    if w_ratio >= h_ratio:
        width, height = short * w_ratio / h_ratio, float(short)
    else:
        width, height = float(short), short * h_ratio / w_ratio
    return (2 * math.ceil(width / 2 - 1e-9), 2 * math.ceil(height / 2 - 1e-9))


class QingboAPI(EmulatorCore):
    """The Qingbo task API on ``/v1`` (Bearer auth)."""

    def _qb_error(self, status: int, code: str, message: str) -> EmulatorResponse:
        return _json_response(status, {"error": {"message": message, "code": code}})

    def _qingbo(self, request: _Request) -> EmulatorResponse:
        key = self._bearer(request)
        if key is None or key not in self.qingbo_keys:
            return self._qb_error(401, "invalid_api_key", "Invalid API key")
        if request.kind == "submit":
            return self._with_faults(request, lambda f: self._qb_submit(request, key, f))
        if request.kind in ("poll", "cancel"):
            parts = request.path.split("/")  # "", "v1", "tasks", id[, "cancel"]
            task_id = parts[3] if len(parts) > 3 else ""
            well_formed = len(parts) == (5 if request.kind == "cancel" else 4) and task_id
            task = self._tasks.get(task_id) if well_formed else None
            if task is None or task.provider != "qingbo" or task.owner != key:
                # Someone else's task is indistinguishable from a missing one (PROVIDERS §3.6).
                return self._with_faults(
                    request,
                    lambda _f: self._qb_error(404, "task_not_found", f"task not found: {task_id}"),
                )
            found = task
            if request.kind == "poll":
                return self._with_faults(request, lambda f: self._qb_poll(found, f))
            return self._with_faults(request, lambda _f: self._qb_cancel(found))
        if request.path.startswith("/v1/tasks"):
            return self._qb_error(
                405, "method_not_allowed", f"{request.method} not allowed on {request.path}"
            )
        return self._qb_error(404, "not_found", f"no such endpoint: {request.path}")

    def _qb_submit(self, request: _Request, key: str, fault: Fault | None) -> EmulatorResponse:
        parsed = self._parse_json(request.body)
        body = parsed if isinstance(parsed, dict) else {}
        idem = request.headers.get("idempotency-key") or None
        model = body.get("model") if isinstance(body.get("model"), str) else None

        def record(status: int, task_id: str | None, created: bool) -> None:
            self._record_submission(
                request,
                provider="qingbo",
                endpoint="/v1/tasks",
                model=model,
                body=body,
                idempotency_key=idem,
                task_id=task_id,
                created=created,
                status=status,
            )

        if idem is not None:
            remembered = self._idempotency.get((key, idem))
            if remembered is not None and self.clock() - remembered[1] < self.idempotency_ttl:
                task = self._tasks[remembered[0]]
                self._advance(task, polled=False)
                record(self.qingbo_submit_status, task.id, False)
                return _json_response(self.qingbo_submit_status, self._qb_submit_json(task))
        if not isinstance(parsed, dict):
            record(400, None, False)
            return self._qb_error(400, "invalid_request", "request body must be a JSON object")
        try:
            action = self._qb_validate(body)
        except _Invalid as exc:
            record(400, None, False)
            return self._qb_error(400, "invalid_request", exc.message)
        queued = 0
        for other in self._tasks.values():
            if other.provider == "qingbo" and other.owner == key:
                self._advance(other, polled=False)
                queued += other.phase == "waiting"
        if queued >= self.max_queued:
            record(429, None, False)
            return self._qb_error(
                429,
                "too_many_queued_tasks",
                f"at most {self.max_queued} tasks may be queued per account at the same time",
            )
        output = self._qb_output_spec(body, action)
        task = self._new_task(
            "qingbo",
            key,
            model=str(body["model"]),
            action=action,
            body=body,
            output=output,
            price=self._qb_price(body),
        )
        task.idempotency_key = idem
        task.callback_url = body.get("callback_url") or None
        task.callback_events = tuple(body.get("callback_events") or ())
        task.pending_failure = self._media_failure(task)
        if fault is not None and fault.fail_task_code is not None:
            task.pending_failure = self._failure("qingbo", fault.fail_task_code, fault.fail_message)
        if idem is not None:
            self._idempotency[(key, idem)] = (task.id, self.clock())
        self._emit_callback(task, "queued")
        record(self.qingbo_submit_status, task.id, True)
        return _json_response(self.qingbo_submit_status, self._qb_submit_json(task))

    def _qb_poll(self, task: _Task, fault: Fault | None) -> EmulatorResponse:
        self._advance(task, polled=True)
        if fault is not None and fault.fail_task_code is not None and not task.terminal:
            task.pending_failure = self._failure("qingbo", fault.fail_task_code, fault.fail_message)
            self._finish(task)
        return _json_response(200, self._qb_task_json(task))

    def _qb_cancel(self, task: _Task) -> EmulatorResponse:
        self._advance(task, polled=False)
        if task.phase != "waiting":
            status = self._status(task)
            return self._qb_error(
                400,
                "task_not_cancellable",
                f"only queued tasks can be cancelled; this task is {status}",
            )
        task.phase = "cancelled"
        task.finished_clock, task.finished_wall = self.clock(), self.wall_clock()
        self._emit_callback(task, "cancelled")
        reply: JSONDict = {"task_id": task.id, "status": "cancelled", "refunded": True}
        if self.qingbo_cost_unit != "none":
            reply["refunded_quota"] = round(task.price_usd * QUOTA_PER_USD)
        return _json_response(200, reply)

    def _qb_validate(self, body: JSONDict) -> str:
        """Check a V4 body against the SkyReels page (PROVIDERS §3.3); returns the action."""
        model = body.get("model")
        if model is None:
            raise _Invalid("model is required")
        if model not in QINGBO_MODELS:
            raise _Invalid(
                f"model {model!r} is not available; use one of {', '.join(QINGBO_MODELS)}"
            )
        action = body.get("action")
        if action is not None and action not in V4_ACTIONS:
            raise _Invalid(f"action must be one of {', '.join(V4_ACTIONS)}, got {action!r}")
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 5000):
            raise _Invalid("prompt must be a string of at most 5000 characters")
        if body.get("aspect_ratio", "16:9") not in V4_ASPECT_RATIOS:
            raise _Invalid(f"aspect_ratio must be one of {', '.join(V4_ASPECT_RATIOS)}")
        if body.get("resolution", "720p") not in V4_RESOLUTIONS:
            raise _Invalid(f"resolution must be one of {', '.join(V4_RESOLUTIONS)}")
        duration = body.get("duration", 5)
        if not (_is_int(duration) and 3 <= duration <= 15):
            raise _Invalid(f"duration must be an integer in 3..15, got {duration!r}")
        if "prompt_optimizer" in body and not isinstance(body["prompt_optimizer"], bool):
            raise _Invalid("prompt_optimizer must be a boolean")
        if "extra" in body and not isinstance(body["extra"], dict):
            raise _Invalid("extra must be an object")

        def url(value: object, where: str) -> str:
            if value is None or value == "":
                raise _Invalid(f"{where} is required")
            if not _is_http_url(value):
                raise _Invalid(f"{where} must be a public http(s) URL, got {value!r}")
            return cast(str, value)

        def url_list(name: str, limit: int) -> list[str]:
            value = body.get(name)
            if value is None:
                return []
            if not isinstance(value, list) or len(value) > limit:
                raise _Invalid(f"{name} must be a list of at most {limit} URLs")
            return [url(v, f"{name}[{i}]") for i, v in enumerate(value)]

        def items(name: str, limit: int) -> list[JSONDict]:
            value = body.get(name)
            if value is None:
                return []
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise _Invalid(f"{name} must be a list of objects")
            if len(value) > limit:
                raise _Invalid(f"{name} holds at most {limit} items, got {len(value)}")
            for i, item in enumerate(value):
                if not isinstance(item.get("tag"), str) or not item["tag"]:
                    raise _Invalid(f"{name}[{i}].tag is required")
            return cast(list[JSONDict], value)

        first = (
            url(body["first_frame_image"], "first_frame_image")
            if body.get("first_frame_image")
            else None
        )
        last = (
            url(body["last_frame_image"], "last_frame_image")
            if body.get("last_frame_image")
            else None
        )
        if last and not first:
            raise _Invalid("last_frame_image needs first_frame_image")
        image_urls = url_list("image_urls", 6)
        video_urls = url_list("video_urls", 1)
        audio_urls = url_list("audio_urls", 6)

        ref_images = items("ref_images", 6)
        ref_audio = False
        for i, ref in enumerate(ref_images):
            kind, urls = ref.get("type"), ref.get("image_urls")
            if kind not in ("image", "grid"):
                raise _Invalid(f"ref_images[{i}].type must be image or grid")
            if not isinstance(urls, list):
                raise _Invalid(f"ref_images[{i}].image_urls is required")
            low, high = (1, 1) if kind == "image" else (2, 9)
            if not low <= len(urls) <= high:
                raise _Invalid(
                    f"ref_images[{i}] of type {kind} takes {low}-{high} image_urls, got {len(urls)}"
                )
            for j, value in enumerate(urls):
                url(value, f"ref_images[{i}].image_urls[{j}]")
            if ref.get("audio_url") is not None:
                url(ref["audio_url"], f"ref_images[{i}].audio_url")
                ref_audio = True

        ref_videos = items("ref_videos", 1)
        for i, ref in enumerate(ref_videos):
            if ref.get("type") not in ("reference", "extend"):
                raise _Invalid(f"ref_videos[{i}].type must be reference or extend")
            url(ref.get("video_url"), f"ref_videos[{i}].video_url")

        previous = 0.0
        for i, frame in enumerate(items("mid_frame_images", 6)):
            url(frame.get("image_url"), f"mid_frame_images[{i}].image_url")
            stamp = frame.get("time_stamp")
            if not _is_number(stamp):
                raise _Invalid(f"mid_frame_images[{i}].time_stamp is required (seconds)")
            if not 0 < stamp < duration:
                raise _Invalid(
                    f"mid_frame_images[{i}].time_stamp must lie in (0, {duration}), got {stamp}"
                )
            if stamp <= previous:
                raise _Invalid("mid_frame_images time_stamp values must be strictly increasing")
            previous = float(stamp)

        if image_urls and ref_images:
            raise _Invalid("give image_urls or ref_images, not both")
        if video_urls and ref_videos:
            raise _Invalid("give video_urls or ref_videos, not both")
        if audio_urls and ref_audio:
            raise _Invalid("give audio_urls or ref_images[].audio_url, not both")
        # Lengths (V4 "Resource Limits"), where the emulator hosts the file and can measure it.
        videos = [(f"ref_videos[{i}].video_url", r["video_url"]) for i, r in enumerate(ref_videos)]
        videos += [(f"video_urls[{i}]", v) for i, v in enumerate(video_urls)]
        audios = [(f"audio_urls[{i}]", a) for i, a in enumerate(audio_urls)]
        audios += [
            (f"ref_images[{i}].audio_url", r["audio_url"])
            for i, r in enumerate(ref_images)
            if r.get("audio_url") is not None
        ]
        for (where, link), (what, low, high) in [
            *((v, ("a reference video", 2, 30)) for v in videos),
            *((a, ("reference audio", 3, 30)) for a in audios),
        ]:
            seconds = self._media_seconds(link)
            if seconds is not None and not low <= seconds <= high:
                raise _Invalid(f"{where}: {what} must be {low}-{high} s long, got {seconds:.2f} s")
        if "callback_url" in body:
            url(body["callback_url"], "callback_url")
        events = body.get("callback_events")
        if events is not None and (
            not isinstance(events, list) or not set(events) <= V4_CALLBACK_EVENTS
        ):
            raise _Invalid(
                f"callback_events must be a list drawn from {', '.join(sorted(V4_CALLBACK_EVENTS))}"
            )

        video_types = {str(ref["type"]) for ref in ref_videos}
        has: dict[str, bool] = {
            "extend": "extend" in video_types,
            "reference_video": "reference" in video_types or bool(video_urls),
            "reference_audio": bool(audio_urls) or ref_audio,
            "reference": bool(ref_images) or bool(image_urls),
            "first_last_frame": bool(first and last),
            "image2video": bool(first),
            "generate": True,
        }
        if action is None:
            action = next(a for a in has if has[a])
        elif not has[action]:
            needs = {
                "image2video": "first_frame_image",
                "first_last_frame": "first_frame_image and last_frame_image",
                "reference": "ref_images or image_urls",
                "reference_video": "ref_videos[].type=reference or video_urls",
                "reference_audio": "audio_urls or ref_images[].audio_url",
                "extend": "ref_videos[].type=extend",
            }
            raise _Invalid(f"action {action} needs {needs[action]}")
        if action == "generate" and not (isinstance(prompt, str) and prompt.strip()):
            raise _Invalid("prompt is required for text-to-video (action generate)")
        return str(action)

    def _qb_price(self, body: JSONDict) -> float:
        standard, with_video = _V4_PRICES[str(body["model"])][str(body.get("resolution", "720p"))]
        video_ref = bool(body.get("ref_videos")) or bool(body.get("video_urls"))
        return round((with_video if video_ref else standard) * int(body.get("duration", 5)), 6)

    def _qb_output_spec(self, body: JSONDict, action: str) -> VideoSpec:
        duration = int(body.get("duration", 5))
        ratio = str(body.get("aspect_ratio", "16:9"))
        source = self._qb_source(body, action)
        if action != "generate" and source is not None:
            # Media modes follow the source's ratio (PROVIDERS §3.3) when we can see it.
            dims = self._media_dims(source)
            if dims is not None:
                ratios = {r: tuple(int(x) for x in r.split(":")) for r in V4_ASPECT_RATIOS}
                best = _nearest(dims, [(w, h) for w, h in ratios.values()])
                ratio = next(r for r, wh in ratios.items() if wh == best)
        width, height = v4_frame_size(str(body.get("resolution", "720p")), ratio)
        frames = duration * 32
        if action == "extend":
            # "The new video is appended to the source" (PROVIDERS §3.3): source + new.
            seconds = self._media_seconds(source)
            frames += round((seconds if seconds is not None else 5.0) * 32)
        return VideoSpec(width, height, 32, frames, audio=True)

    @staticmethod
    def _qb_source(body: JSONDict, action: str) -> str | None:
        videos = [v.get("video_url") for v in body.get("ref_videos") or []] + list(
            body.get("video_urls") or []
        )
        images = [r["image_urls"][0] for r in body.get("ref_images") or [] if r.get("image_urls")]
        images += list(body.get("image_urls") or [])
        ordered: list[object]
        if action in ("extend", "reference_video"):
            ordered = [*videos, body.get("first_frame_image"), *images]
        elif action in ("reference", "reference_audio"):
            ordered = [*images, body.get("first_frame_image"), *videos]
        else:
            ordered = [body.get("first_frame_image"), *images, *videos]
        return next((u for u in ordered if isinstance(u, str) and u), None)

    def _qb_time(self, wall: float) -> int:
        return round(wall * 1000) if self.qingbo_timestamps == "ms" else int(wall)

    def _qb_cost(self, usd: float) -> int | float:
        return round(usd * QUOTA_PER_USD) if self.qingbo_cost_unit == "quota" else round(usd, 6)

    def _qb_submit_json(self, task: _Task) -> JSONDict:
        data: JSONDict = {
            "task_id": task.id,
            "model": task.model,
            "action": task.action,
            "status": self._status(task),
            "created_at": self._qb_time(task.created_wall),
            "progress": self._qb_progress(task),
        }
        if self.qingbo_cost_unit != "none":
            data["pre_consumed_cost"] = self._qb_cost(task.price_usd)
        return data

    def _qb_task_json(self, task: _Task) -> JSONDict:
        data: JSONDict = {
            "task_id": task.id,
            "status": self._status(task),
            "action": task.action,
            "model": task.model,
            "progress": self._qb_progress(task),
            "created_at": self._qb_time(task.created_wall),
        }
        if task.terminal and task.finished_wall is not None:
            data["completed_at"] = self._qb_time(task.finished_wall)
            if self.qingbo_cost_unit != "none":
                data["cost"] = self._qb_cost(self._charged(task))
        if task.phase == "failed":
            data["error"] = {"message": task.error_message, "code": task.error_code}
        if task.phase == "completed" and task.output_path is not None:
            url = self._url(task.output_path)
            expires = int(self._files[task.output_path].expires_at)
            data["result"] = {
                "videos": [{"url": [url] if self.qingbo_url_list else url, "expires_at": expires}]
            }
        base = f"{self.base_url}/v1/tasks/{task.id}"
        data["urls"] = {"get": base, "cancel": f"{base}/cancel"}
        return data

    def _qb_progress(self, task: _Task) -> int:
        if task.phase == "completed":
            return 100
        if task.phase != "running":
            return 0
        fractions = [0.0]
        if self.polls_to_finish:
            fractions.append(task.polls / self.polls_to_finish)
        if self.seconds_to_finish:
            fractions.append((self.clock() - task.created_clock) / self.seconds_to_finish)
        return max(1, min(99, int(100 * max(fractions))))

    # ---- what the core asks of this room --------------------------------------------------

    def _qb_fault_reply(
        self, fault: Fault, status: int, message: str, headers: dict[str, str]
    ) -> EmulatorResponse:
        error: JSONDict = {
            "message": message,
            "code": fault.code or _QINGBO_HTTP_CODES.get(status, f"http_{status}"),
        }
        if fault.quota is not None:
            reset_wall = self.wall_clock() + fault.quota.reset_in
            error.update(
                code=fault.code or "quota_window_exceeded",
                message=fault.message or f"quota window {fault.quota.window} exhausted",
                window=fault.quota.window,
                used=fault.quota.used,
                cap=fault.quota.cap,
                reset_at=self._qb_time(reset_wall),
            )
            headers.setdefault("Retry-After", _retry_after(fault.quota.reset_in))
        return _json_response(status, {"error": error}, headers)

    def _qb_callback(self, task: _Task, event: str, url: str) -> Callback | None:
        aliases = {
            "queued": {"queued"},
            "running": {"running", "processing"},
            "completed": {"succeeded", "completed"},
            "failed": {"failed"},
            "cancelled": {"cancelled"},
        }[event]
        wanted = set(task.callback_events) or {"succeeded", "failed"}
        if not aliases & wanted:
            return None
        body = json.dumps(self._qb_task_json(task), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.qingbo_status_names == "events" and event == "completed":
            event = "succeeded"  # the name the V4 page subscribes to and reports
        return Callback(task.provider, task.id, url, event, headers, body)
