"""Tests for the WaveSpeed + Qingbo protocol emulator (storyboard.testing.emulator).

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server, so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from storyboard.testing.emulator import (
    DEFAULT_QINGBO_KEY as QB_KEY,
)
from storyboard.testing.emulator import (
    DEFAULT_WAVESPEED_KEY as WS_KEY,
)
from storyboard.testing.emulator import (
    Emulator,
    EmulatorServer,
    Fault,
    QuotaWindow,
    VideoSpec,
    banner_lines,
    body_hash,
    encode_video,
    probe_video,
    run_forever,
    scaled_geometry,
    serve,
)

V1 = "wavespeed-ai/SkyReels-V1"
V3_REF = "skywork-ai/skyreels-v3/reference-to-video"
V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"
V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"
CDN = "https://cdn.example.com/"
WALL = 1_775_285_160.04  # the SkyReels page's example created_at, in seconds
TASK_ID_RE = re.compile(r"^task_[0-9A-HJKMNP-TV-Z]{26}$")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """An emulator plus a way to reach it (mock transport or loopback server)."""

    emu: Emulator
    base: str
    transport: httpx.BaseTransport | None
    kind: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(
            base_url=self.base,
            transport=self.transport,
            headers=headers,
            timeout=timeout,
            trust_env=False,  # never route loopback traffic through an environment proxy
        )
        self.clients.append(client)
        return client

    def ws(self) -> httpx.Client:
        return self.client(WS_KEY)

    def qb(self) -> httpx.Client:
        return self.client(QB_KEY)

    def anon(self) -> httpx.Client:
        return self.client(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(WALL)


def make_emulator(clock: FakeClock, wall: FakeClock, **options: Any) -> Emulator:
    options.setdefault("max_seconds", 1.0)
    return Emulator(seed=7, clock=clock, wall_clock=wall, **options)


@pytest.fixture
def emu(clock: FakeClock, wall: FakeClock) -> Iterator[Emulator]:
    emulator = make_emulator(clock, wall)
    yield emulator
    assert emulator.internal_errors == []


def _harness(kind: str, emulator: Emulator) -> Iterator[Harness]:
    if kind == "mock":
        harness = Harness(emulator, emulator.base_url, emulator.mock_transport(), kind)
        yield harness
    else:
        with serve(emulator) as server:
            harness = Harness(emulator, server.url, None, kind)
            yield harness
    for client in harness.clients:
        client.close()


@pytest.fixture(params=["mock", "server"])
def h(request: pytest.FixtureRequest, emu: Emulator) -> Iterator[Harness]:
    yield from _harness(request.param, emu)


@pytest.fixture
def hm(emu: Emulator) -> Iterator[Harness]:
    """Mock transport only (for the many small protocol cases)."""
    yield from _harness("mock", emu)


def ws_submit(client: httpx.Client, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/api/v3/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["code"] == 200
    assert envelope["message"] == "success"
    return dict(envelope["data"])


def ws_poll(client: httpx.Client, task_id: str, *, short: bool = False) -> dict[str, Any]:
    path = f"/api/v3/predictions/{task_id}" + ("" if short else "/result")
    response = client.get(path)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def qb_submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/v1/tasks", json=body, headers=headers)


def qb_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "skyreels-v4-fast", "prompt": "a shiba on the moon"}
    body.update(fields)
    return body


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(h: Harness, data: bytes, filename: str, content_type: str) -> str:
    ticket = h.ws().post(
        "/api/v3/media/uploads",
        json={"filename": filename, "size": len(data), "content_type": content_type},
    )
    assert ticket.status_code == 200, ticket.text
    info = ticket.json()["data"]
    put = h.anon().put(info["upload"]["url"], content=data, headers=info["upload"]["headers"])
    assert put.status_code == 200, put.text
    return str(info["download_url"])


# --------------------------------------------------------------------------------------------
# WaveSpeed
# --------------------------------------------------------------------------------------------

WS_CASES: dict[str, tuple[dict[str, Any], VideoSpec]] = {
    V1: (
        {"prompt": "FPS-24, a hummingbird", "image": CDN + "bird.jpg", "seed": 42},
        VideoSpec(960, 544, 24, 97),
    ),
    V3_REF: (
        {
            "prompt": "a product reveal",
            "images": [CDN + "a.jpg", CDN + "b.jpg"],
            "aspect_ratio": "9:16",
            "duration": 6,
        },
        VideoSpec(720, 1280, 24, 6 * 24 + 1),
    ),
    V3_EXTEND: (
        {"prompt": "keep walking", "video": CDN + "src.mp4", "duration": 5},
        VideoSpec(1280, 720, 24, 120),
    ),
    V3_CUTSHOT: (
        {
            "prompt": "[ZOOM_IN_CUT] a close-up",
            "video": CDN + "src.mp4",
            "cut_type": "Auto",
            "duration": 2,
        },
        VideoSpec(1280, 720, 24, 2 * 24 + 1),
    ),
}


@pytest.mark.parametrize("endpoint", list(WS_CASES))
def test_wavespeed_lifecycle(h: Harness, endpoint: str) -> None:
    body, real = WS_CASES[endpoint]
    client = h.ws()
    data = ws_submit(client, endpoint, body)

    assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
    assert data["model"] == endpoint
    assert data["status"] == "created"
    assert data["outputs"] == [] and data["has_nsfw_contents"] == []
    assert data["error"] == ""
    assert data["urls"]["get"] == f"{h.base}/api/v3/predictions/{data['id']}/result"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", data["created_at"])
    assert "code" not in data

    assert ws_poll(client, data["id"])["status"] == "processing"
    done = ws_poll(client, data["id"], short=True)  # both result forms answer the same
    assert done["status"] == "completed"
    assert len(done["outputs"]) == 1 and done["has_nsfw_contents"] == [False]
    assert done["timings"]["inference"] == done["executionTime"] >= 1
    assert ws_poll(client, data["id"]) == done  # terminal: stays put

    video = h.anon().get(done["outputs"][0])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    probe = probe_video(video.content, count_frames=True)
    expected = scaled_geometry(real, 1 / 8, 1.0)
    assert probe is not None
    assert (probe.width, probe.height, probe.frames) == (
        expected.width,
        expected.height,
        expected.frames,
    )
    assert probe.fps == 24 and not probe.has_audio

    (sub,) = h.emu.submissions
    assert (sub.provider, sub.endpoint, sub.model, sub.task_id, sub.created) == (
        "wavespeed",
        endpoint,
        endpoint,
        data["id"],
        True,
    )
    assert sub.body == body and sub.body_hash == body_hash(body)
    assert "authorization" not in sub.headers
    assert h.emu.task(data["id"]).output == real
    assert h.emu.auth_leaks == []


def test_wavespeed_auth(h: Harness) -> None:
    body = WS_CASES[V1][0]
    for client in (h.anon(), h.client("wrong-key"), h.client(QB_KEY)):
        response = client.post(f"/api/v3/{V1}", json=body)
        assert response.status_code == 401
        assert response.json()["code"] == 401
        assert "invalid authentication" in response.json()["message"]
        assert client.get("/api/v3/predictions/0123/result").status_code == 401
    assert h.emu.submissions == [] and h.emu.tasks() == []
    assert [leak.where for leak in h.emu.auth_leaks] == ["cross-provider", "cross-provider"]


def test_wavespeed_unknown_prediction_and_other_account(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(clock, wall, wavespeed_keys=(WS_KEY, "ws-other"))
    for h in _harness("mock", emulator):
        data = ws_submit(h.ws(), V1, WS_CASES[V1][0])
        missing = h.ws().get("/api/v3/predictions/" + "0" * 32 + "/result")
        assert missing.status_code == 404 and missing.json()["code"] == 404
        other = h.client("ws-other").get(f"/api/v3/predictions/{data['id']}/result")
        assert other.status_code == 404
        assert h.ws().post("/api/v3/no/such-model", json={}).status_code == 404


@pytest.mark.parametrize(
    ("endpoint", "body", "code", "text"),
    [
        (V1, {"prompt": "p"}, 1400, "image"),
        (V1, {"image": CDN + "a.jpg"}, 1400, "prompt"),
        (V1, {"prompt": "p", "image": CDN + "a.jpg", "seed": -2}, 1401, "seed"),
        (V3_REF, {"prompt": "p", "images": [CDN + f"{i}.jpg" for i in range(5)]}, 1401, "images"),
        (
            V3_REF,
            {"prompt": "p", "images": [CDN + "a.jpg"], "aspect_ratio": "4:3"},
            1401,
            "aspect_ratio",
        ),
        (V3_REF, {"prompt": "p", "images": [CDN + "a.jpg"], "duration": 11}, 1401, "duration"),
        (V3_REF, {"prompt": "p"}, 1400, "images"),
        (V3_EXTEND, {"prompt": "p"}, 1400, "video"),
        (V3_CUTSHOT, {"prompt": "p", "video": CDN + "v.mp4", "duration": 6}, 1401, "duration"),
    ],
)
def test_wavespeed_invalid_input_is_a_failed_task(
    hm: Harness, endpoint: str, body: dict[str, Any], code: int, text: str
) -> None:
    data = ws_submit(hm.ws(), endpoint, body)  # accepted over HTTP, failed as a task
    assert data["status"] == "failed" and data["code"] == code and text in data["error"]
    assert ws_poll(hm.ws(), data["id"])["status"] == "failed"
    assert hm.emu.total_charged_usd() == 0


def test_wavespeed_invalid_input_as_http_400(clock: FakeClock, wall: FakeClock) -> None:
    for h in _harness("mock", make_emulator(clock, wall, wavespeed_invalid="http")):
        response = h.ws().post(f"/api/v3/{V1}", json={"prompt": "p"})
        assert response.status_code == 400
        assert response.json() == {"code": 400, "message": "image is required", "data": None}
        assert h.emu.tasks() == [] and h.emu.submissions[0].created is False


def test_wavespeed_unreachable_media_fails_with_1402(hm: Harness) -> None:
    local = ws_submit(hm.ws(), V1, {"prompt": "p", "image": "/home/me/bird.jpg"})
    missing = ws_submit(
        hm.ws(), V1, {"prompt": "p", "image": hm.base + "/files/wavespeed/media/nope/x.jpg"}
    )
    for data in (local, missing):
        ws_poll(hm.ws(), data["id"])
        failed = ws_poll(hm.ws(), data["id"])
        assert failed["status"] == "failed" and failed["code"] == 1402 and failed["outputs"] == []


def test_wavespeed_sync_mode_and_webhook(hm: Harness) -> None:
    response = hm.ws().post(
        f"/api/v3/{V1}?webhook=https://hooks.example.com/ws",
        json={**WS_CASES[V1][0], "enable_sync_mode": True},
    )
    data = response.json()["data"]
    assert data["status"] == "completed" and len(data["outputs"]) == 1
    (callback,) = hm.emu.callbacks
    assert callback.url == "https://hooks.example.com/ws" and callback.event == "completed"
    secret = hm.ws().get("/api/v3/webhook/secret").json()["data"]["secret"]
    signed = (
        f"{callback.headers['webhook-id']}.{callback.headers['webhook-timestamp']}.".encode()
        + callback.body
    )
    digest = hmac.new(secret.removeprefix("whsec_").encode(), signed, hashlib.sha256).hexdigest()
    assert callback.headers["webhook-signature"] == f"v3,{digest}"
    payload = json.loads(callback.body)
    assert payload["id"] == data["id"] and payload["input"]["image"] == WS_CASES[V1][0]["image"]
    balance = hm.ws().get("/api/v3/balance").json()["data"]["balance"]
    assert balance == pytest.approx(100.0 - 0.20)


def test_upload_ticket_put_and_download(h: Harness, wall: FakeClock) -> None:
    data = png(90, 160)
    ticket = h.ws().post("/api/v3/media/uploads", json={"filename": "bird.png", "size": len(data)})
    assert ticket.status_code == 200
    info = ticket.json()["data"]
    upload_info = info["upload"]
    assert upload_info["method"] == "PUT"
    assert upload_info["headers"] == {"Content-Type": "image/png"}  # guessed from the name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", upload_info["expires_at"])
    assert (info["filename"], info["size"], info["type"]) == ("bird.png", len(data), "image")

    anon = h.anon()
    assert anon.get(info["download_url"]).status_code == 404  # nothing there before the PUT
    url, headers = upload_info["url"], upload_info["headers"]
    assert anon.put(url, content=data[:-1], headers=headers).status_code == 400  # size differs
    assert anon.put(url, content=data, headers={"Content-Type": "image/jpeg"}).status_code == 403
    assert anon.put(url.split("?")[0], content=data, headers=headers).status_code == 403
    assert anon.put(url, content=iter([data]), headers=headers).status_code == 411  # chunked
    assert h.emu.auth_leaks == []

    assert anon.put(url, content=data, headers=headers).status_code == 200
    download = anon.get(info["download_url"])
    assert download.status_code == 200 and download.content == data
    assert download.headers["content-type"] == "image/png"
    partial = anon.get(info["download_url"], headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and partial.content == data[:10]

    # Never required, and recorded when sent: the key must not leak to the bucket or the CDN.
    assert h.ws().put(url, content=data, headers=headers).status_code == 200
    assert h.ws().get(info["download_url"]).status_code == 200
    leaks = h.emu.auth_leaks
    assert [(leak.kind, leak.where, leak.value) for leak in leaks] == [
        ("upload", "authorization", f"Bearer {WS_KEY}"),
        ("download", "authorization", f"Bearer {WS_KEY}"),
    ]
    assert anon.get(info["download_url"] + f"?key={WS_KEY}").status_code == 200
    assert h.emu.auth_leaks[-1].where == "query"

    wall.advance(3601)  # the ticket lives one hour
    assert anon.put(url, content=data, headers=headers).status_code == 403


def test_upload_ticket_errors_and_legacy_binary(hm: Harness) -> None:
    bad = hm.ws().post("/api/v3/media/uploads", json={"filename": "x.png"})
    assert bad.status_code == 400 and bad.json()["code"] == 400
    assert (
        hm.anon().post("/api/v3/media/uploads", json={"filename": "x", "size": 1}).status_code
        == 401
    )
    data = png(64, 64)
    legacy = hm.ws().post(
        "/api/v3/media/upload/binary", files={"file": ("dot.png", data, "image/png")}
    )
    assert legacy.status_code == 200
    info = legacy.json()["data"]
    assert (info["type"], info["filename"], info["size"]) == ("image", "dot.png", len(data))
    assert hm.anon().get(info["download_url"]).content == data


def test_reject_authorization_on_upload_option(clock: FakeClock, wall: FakeClock) -> None:
    for h in _harness("mock", make_emulator(clock, wall, reject_authorization_on_upload=True)):
        ticket = (
            h.ws()
            .post("/api/v3/media/uploads", json={"filename": "a.png", "size": 3})
            .json()["data"]
        )
        put = h.ws().put(
            ticket["upload"]["url"], content=b"abc", headers=ticket["upload"]["headers"]
        )
        assert put.status_code == 400 and b"Only one auth mechanism" in put.content
        assert len(h.emu.auth_leaks) == 1


# --------------------------------------------------------------------------------------------
# Output geometry (real frame counts, no max_seconds cap)
# --------------------------------------------------------------------------------------------


def test_output_geometry_full_length(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(clock, wall, max_seconds=None, polls_to_finish=1)
    for h in _harness("mock", emulator):
        portrait = upload(h, png(90, 160), "portrait.png", "image/png")
        cases: list[tuple[str, dict[str, Any], VideoSpec]] = [
            (V1, {"prompt": "p", "image": portrait}, VideoSpec(544, 960, 24, 97)),
            (
                V3_REF,
                {"prompt": "p", "images": [CDN + "a.jpg"], "duration": 5},
                VideoSpec(1280, 720, 24, 121),
            ),
            (V3_EXTEND, {"prompt": "p", "video": CDN + "v.mp4"}, VideoSpec(1280, 720, 24, 120)),
            (
                V3_CUTSHOT,
                {"prompt": "p", "video": CDN + "v.mp4", "duration": 2},
                VideoSpec(1280, 720, 24, 49),
            ),
        ]
        outputs: dict[str, str] = {}
        for endpoint, body, real in cases:
            task_id = ws_submit(h.ws(), endpoint, body)["id"]
            outputs[endpoint] = ws_poll(h.ws(), task_id)["outputs"][0]
            assert emulator.task(task_id).output == real
            check_file(h, outputs[endpoint], real)

        # V4: short side = resolution, 32 fps, joint audio; extend = source + new footage.
        generate = qb_finish(h, qb_body(duration=3, resolution="480p", aspect_ratio="9:16"))
        assert emulator.task(generate["task_id"]).output == VideoSpec(480, 854, 32, 96, audio=True)
        source_url = generate["result"]["videos"][0]["url"][0]
        check_file(h, source_url, VideoSpec(480, 854, 32, 96, audio=True))

        extend = qb_finish(
            h,
            qb_body(
                duration=3, ref_videos=[{"tag": "src", "type": "extend", "video_url": source_url}]
            ),
        )
        assert extend["action"] == "extend"
        # follows the source's 9:16 and holds its 3 s first
        assert emulator.task(extend["task_id"]).output == VideoSpec(
            720, 1280, 32, 96 + 96, audio=True
        )

        from_v1 = qb_finish(
            h,
            qb_body(
                duration=3, ref_videos=[{"tag": "s", "type": "extend", "video_url": outputs[V1]}]
            ),
        )
        assert emulator.task(from_v1["task_id"]).output == VideoSpec(
            720, 1280, 32, round(97 / 24 * 32) + 96, True
        )

        external = qb_finish(
            h,
            qb_body(
                duration=3, ref_videos=[{"tag": "s", "type": "extend", "video_url": CDN + "x.mp4"}]
            ),
        )
        assert emulator.task(external["task_id"]).output == VideoSpec(
            1280, 720, 32, 5 * 32 + 96, True
        )

        # A re-uploaded output is recognised by its bytes: its real length counts.
        reupload = upload(h, h.anon().get(source_url).content, "src.mp4", "video/mp4")
        again = qb_finish(
            h,
            qb_body(duration=4, ref_videos=[{"tag": "s", "type": "extend", "video_url": reupload}]),
        )
        assert emulator.task(again["task_id"]).output.frames == 96 + 4 * 32


def check_file(h: Harness, url: str, real: VideoSpec) -> None:
    probe = probe_video(h.anon().get(url).content, count_frames=True)
    expected = scaled_geometry(real, 1 / 8, None)
    assert probe is not None
    assert (probe.width, probe.height, probe.frames, probe.has_audio) == (
        expected.width,
        expected.height,
        expected.frames,
        real.audio,
    )
    assert probe.fps == real.fps
    assert probe.duration == pytest.approx(real.seconds, abs=0.05)


def qb_finish(h: Harness, body: dict[str, Any]) -> dict[str, Any]:
    submitted = qb_submit(h.qb(), body)
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    for _ in range(5):
        status = h.qb().get(f"/v1/tasks/{task_id}").json()
        if status["status"] in ("completed", "failed"):
            break
    assert status["status"] == "completed", status
    return dict(status)


def test_scaled_geometry_mapping() -> None:
    assert scaled_geometry(VideoSpec(960, 544, 24, 97), 1 / 8, None) == VideoSpec(120, 68, 24, 97)
    assert scaled_geometry(VideoSpec(1920, 1080, 32, 480, True), 1 / 8, 2.0) == VideoSpec(
        240, 136, 32, 64, True
    )
    assert scaled_geometry(VideoSpec(854, 480, 32, 96), 1 / 100, None) == VideoSpec(64, 36, 32, 96)
    assert scaled_geometry(VideoSpec(100, 60, 24, 10), 4.0, None) == VideoSpec(100, 60, 24, 10)


def test_outputs_are_distinct_per_task(hm: Harness) -> None:
    urls = []
    for _ in range(2):
        task_id = ws_submit(hm.ws(), V1, WS_CASES[V1][0])["id"]
        ws_poll(hm.ws(), task_id)
        urls.append(ws_poll(hm.ws(), task_id)["outputs"][0])
    first, second = (hm.anon().get(url).content for url in urls)
    assert first != second  # same geometry, one encode, but each task's bytes are its own
    assert probe_video(first) == probe_video(second)


# --------------------------------------------------------------------------------------------
# Qingbo
# --------------------------------------------------------------------------------------------

QB_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("generate", {"duration": 3, "resolution": "480p", "aspect_ratio": "4:3"}),
    ("image2video", {"first_frame_image": CDN + "f.jpg"}),
    (
        "first_last_frame",
        {
            "first_frame_image": CDN + "f.jpg",
            "last_frame_image": CDN + "l.jpg",
            "mid_frame_images": [
                {"tag": "kf_2s", "image_url": CDN + "k2.jpg", "time_stamp": 2.0},
                {"tag": "kf_4s", "image_url": CDN + "k4.jpg", "time_stamp": 4},
            ],
        },
    ),
    (
        "reference",
        {
            "ref_images": [
                {"tag": "char", "type": "image", "image_urls": [CDN + "char.jpg"]},
                {
                    "tag": "style",
                    "type": "grid",
                    "image_urls": [CDN + f"s{i}.jpg" for i in range(3)],
                },
            ]
        },
    ),
    ("reference", {"image_urls": [CDN + "a.jpg", CDN + "b.jpg"]}),
    (
        "reference_video",
        {"ref_videos": [{"tag": "style_ref", "type": "reference", "video_url": CDN + "r.mp4"}]},
    ),
    ("reference_video", {"video_urls": [CDN + "r.mp4"]}),
    ("reference_audio", {"audio_urls": [CDN + "voice.mp3"], "first_frame_image": CDN + "f.jpg"}),
    (
        "reference_audio",
        {
            "ref_images": [
                {
                    "tag": "char",
                    "type": "image",
                    "image_urls": [CDN + "c.jpg"],
                    "audio_url": CDN + "v.wav",
                }
            ]
        },
    ),
    (
        "extend",
        {
            "ref_videos": [{"tag": "src", "type": "extend", "video_url": CDN + "src.mp4"}],
            "duration": 4,
        },
    ),
]


@pytest.mark.parametrize(
    ("action", "fields"), QB_ACTIONS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(QB_ACTIONS)]
)
@pytest.mark.parametrize("model", ["skyreels-v4-fast", "skyreels-v4-std"])
def test_qingbo_actions_auto_routed(
    hm: Harness, model: str, action: str, fields: dict[str, Any]
) -> None:
    body = qb_body(model=model, **fields)
    submitted = qb_submit(hm.qb(), body)
    assert submitted.status_code == 200, submitted.text
    reply = submitted.json()
    assert set(reply) == {
        "task_id",
        "model",
        "action",
        "status",
        "created_at",
        "progress",
        "pre_consumed_cost",
    }
    assert TASK_ID_RE.match(reply["task_id"])
    assert (reply["model"], reply["action"], reply["status"], reply["progress"]) == (
        model,
        action,
        "queued",
        0,
    )
    assert reply["created_at"] == round(WALL * 1000)  # milliseconds
    price = hm.emu.task(reply["task_id"]).price_usd
    assert reply["pre_consumed_cost"] == round(price * 500_000)

    running = hm.qb().get(f"/v1/tasks/{reply['task_id']}").json()
    assert running["status"] == "processing" and 0 < running["progress"] < 100
    assert "cost" not in running and "completed_at" not in running and "result" not in running
    done = hm.qb().get(f"/v1/tasks/{reply['task_id']}").json()
    assert done["status"] == "completed" and done["progress"] == 100 and done["action"] == action
    assert done["cost"] == reply["pre_consumed_cost"]
    (video,) = done["result"]["videos"]
    assert isinstance(video["url"], list) and len(video["url"]) == 1
    assert video["expires_at"] == int(WALL + 86_400)
    assert done["urls"] == {
        "get": f"{hm.base}/v1/tasks/{reply['task_id']}",
        "cancel": f"{hm.base}/v1/tasks/{reply['task_id']}/cancel",
    }
    (sub,) = hm.emu.submissions
    assert sub.body == body and sub.model == model and sub.endpoint == "/v1/tasks"


def test_qingbo_lifecycle_over_both_transports(h: Harness) -> None:
    body = qb_body(prompt_optimizer=False, callback_url="https://hooks.example.com/qb")
    reply = qb_submit(h.qb(), body, **{"Idempotency-Key": "gen-key-1"}).json()
    for expected in ("processing", "completed"):
        assert h.qb().get(f"/v1/tasks/{reply['task_id']}").json()["status"] == expected
    done = h.qb().get(f"/v1/tasks/{reply['task_id']}").json()
    url = done["result"]["videos"][0]["url"][0]
    assert url.startswith(h.base + "/files/")
    assert h.anon().get(url).status_code == 200
    (sub,) = h.emu.submissions
    assert sub.idempotency_key == "gen-key-1" and sub.headers["idempotency-key"] == "gen-key-1"
    assert "authorization" not in sub.headers
    assert [c.event for c in h.emu.callbacks] == ["completed"]  # default: terminal events only
    assert json.loads(h.emu.callbacks[0].body)["status"] == "completed"
    assert h.emu.auth_leaks == []


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {
                "ref_images": [
                    {"tag": f"t{i}", "type": "image", "image_urls": [CDN + "a.jpg"]}
                    for i in range(7)
                ]
            },
            "at most 6",
        ),
        ({"ref_images": [{"tag": "g", "type": "grid", "image_urls": [CDN + "a.jpg"]}]}, "2-9"),
        ({"ref_images": [{"tag": "g", "type": "grid", "image_urls": [CDN + "a.jpg"] * 10}]}, "2-9"),
        ({"ref_images": [{"tag": "i", "type": "image", "image_urls": [CDN + "a.jpg"] * 2}]}, "1-1"),
        ({"ref_images": [{"type": "image", "image_urls": [CDN + "a.jpg"]}]}, "tag"),
        (
            {"mid_frame_images": [{"tag": "k", "image_url": CDN + "k.jpg", "time_stamp": 0}]},
            "(0, 5)",
        ),
        (
            {"mid_frame_images": [{"tag": "k", "image_url": CDN + "k.jpg", "time_stamp": 5}]},
            "(0, 5)",
        ),
        (
            {
                "duration": 8,
                "mid_frame_images": [{"tag": "k", "image_url": CDN + "k.jpg", "time_stamp": 9.5}],
            },
            "(0, 8)",
        ),
        (
            {
                "mid_frame_images": [
                    {"tag": "a", "image_url": CDN + "a.jpg", "time_stamp": 3},
                    {"tag": "b", "image_url": CDN + "b.jpg", "time_stamp": 2},
                ]
            },
            "strictly increasing",
        ),
        ({"duration": 2}, "3..15"),
        ({"duration": 16}, "3..15"),
        ({"duration": "5"}, "3..15"),
        ({"duration": 5.5}, "3..15"),
        ({"resolution": "4k"}, "resolution"),
        ({"aspect_ratio": "21:9"}, "aspect_ratio"),
        ({"model": "skyreels-v5"}, "not available"),
        ({"model": None}, "model is required"),
        ({"action": "upscale"}, "action"),
        ({"prompt": None}, "prompt is required"),
        ({"prompt": "x" * 5001}, "5000"),
        ({"action": "reference_video", "image_urls": [CDN + "a.jpg"]}, "needs"),
        (
            {"ref_videos": [{"tag": "a", "type": "extend", "video_url": CDN + "a.mp4"}] * 2},
            "at most 1",
        ),
        (
            {"ref_videos": [{"tag": "a", "type": "remix", "video_url": CDN + "a.mp4"}]},
            "reference or extend",
        ),
        (
            {
                "image_urls": [CDN + "a.jpg"],
                "ref_images": [{"tag": "c", "type": "image", "image_urls": [CDN + "a.jpg"]}],
            },
            "not both",
        ),
        ({"last_frame_image": CDN + "l.jpg"}, "needs first_frame_image"),
        ({"first_frame_image": "data:image/png;base64,AAAA"}, "http(s)"),
        ({"callback_events": ["exploded"]}, "callback_events"),
    ],
)
def test_qingbo_validation_400(hm: Harness, fields: dict[str, Any], text: str) -> None:
    body = qb_body(**fields)
    body = {k: v for k, v in body.items() if v is not None}
    response = qb_submit(hm.qb(), body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and text in error["message"]
    assert hm.emu.tasks() == []
    assert hm.emu.submissions[0].created is False and hm.emu.submissions[0].http_status == 400


def test_qingbo_non_json_body_and_auth(hm: Harness) -> None:
    bad = hm.qb().post(
        "/v1/tasks", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    for client in (hm.anon(), hm.client("nope"), hm.client(WS_KEY)):
        response = qb_submit(client, qb_body())
        assert response.status_code == 401
        assert response.json() == {
            "error": {"message": "Invalid API key", "code": "invalid_api_key"}
        }


def test_qingbo_explicit_action_locks_mode(hm: Harness) -> None:
    body = qb_body(
        action="image2video", first_frame_image=CDN + "f.jpg", video_urls=[CDN + "v.mp4"]
    )
    reply = qb_submit(hm.qb(), body).json()
    assert reply["action"] == "image2video"
    # The video reference still bills the surcharge: 0.17 $/s at 720p fast.
    assert hm.emu.task(reply["task_id"]).price_usd == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({}, 0.4675),
        ({"model": "skyreels-v4-std", "resolution": "1080p"}, 1.4875),
        ({"resolution": "480p", "duration": 10}, 0.68),
        ({"ref_videos": [{"tag": "s", "type": "extend", "video_url": CDN + "s.mp4"}]}, 0.85),
        (
            {
                "model": "skyreels-v4-std",
                "resolution": "480p",
                "duration": 4,
                "ref_videos": [{"tag": "r", "type": "reference", "video_url": CDN + "r.mp4"}],
            },
            0.612,
        ),
    ],
)
def test_qingbo_cost_from_price_table(
    clock: FakeClock, wall: FakeClock, fields: dict[str, Any], usd: float
) -> None:
    for unit in ("quota", "usd"):
        for h in _harness("mock", make_emulator(clock, wall, qingbo_cost_unit=unit)):
            reply = qb_submit(h.qb(), qb_body(**fields)).json()
            expected = round(usd * 500_000) if unit == "quota" else pytest.approx(usd)
            assert reply["pre_consumed_cost"] == expected
            h.emu.finish_task(reply["task_id"])
            assert h.qb().get(f"/v1/tasks/{reply['task_id']}").json()["cost"] == expected
            assert h.emu.total_charged_usd("qingbo") == pytest.approx(usd)


def test_qingbo_idempotency(h: Harness, clock: FakeClock) -> None:
    body = qb_body()
    first = qb_submit(h.qb(), body, **{"Idempotency-Key": "gk-1"}).json()
    h.qb().get(f"/v1/tasks/{first['task_id']}")
    second = qb_submit(h.qb(), qb_body(prompt="a different body"), **{"Idempotency-Key": "gk-1"})
    assert second.status_code == 200
    assert second.json()["task_id"] == first["task_id"]
    assert second.json()["status"] == "processing"  # the original task, as it is now
    assert len(h.emu.tasks()) == 1
    assert h.emu.submits_per_idempotency_key["gk-1"] == 2
    assert h.emu.tasks_per_body_hash[body_hash(body)] == 1
    assert [s.created for s in h.emu.submissions] == [True, False]
    assert h.emu.total_charged_usd() == pytest.approx(0.4675)  # billed once

    clock.advance(86_400)  # the key is forgotten after 24 h
    third = qb_submit(h.qb(), body, **{"Idempotency-Key": "gk-1"}).json()
    assert third["task_id"] != first["task_id"]
    assert h.emu.tasks_per_body_hash[body_hash(body)] == 2


def test_qingbo_idempotency_is_per_api_key(clock: FakeClock, wall: FakeClock) -> None:
    for h in _harness("mock", make_emulator(clock, wall, qingbo_keys=(QB_KEY, "qb-other"))):
        mine = qb_submit(h.qb(), qb_body(), **{"Idempotency-Key": "k"}).json()
        theirs = qb_submit(h.client("qb-other"), qb_body(), **{"Idempotency-Key": "k"}).json()
        assert mine["task_id"] != theirs["task_id"]
        # and one account cannot see (or cancel) the other's task
        assert h.client("qb-other").get(f"/v1/tasks/{mine['task_id']}").status_code == 404
        cancel = h.client("qb-other").post(f"/v1/tasks/{mine['task_id']}/cancel")
        assert cancel.status_code == 404 and cancel.json()["error"]["code"] == "task_not_found"


def test_qingbo_five_queued_per_account(hm: Harness) -> None:
    ids = [
        qb_submit(hm.qb(), qb_body(), **{"Idempotency-Key": f"k{i}"}).json()["task_id"]
        for i in range(5)
    ]
    sixth = qb_submit(hm.qb(), qb_body(), **{"Idempotency-Key": "k5"})
    assert sixth.status_code == 429
    assert sixth.json()["error"]["code"] == "too_many_queued_tasks"
    assert (
        qb_submit(hm.qb(), qb_body(), **{"Idempotency-Key": "k0"}).json()["task_id"] == ids[0]
    )  # replay ok
    hm.qb().get(f"/v1/tasks/{ids[0]}")  # it starts processing: one queue slot frees
    assert qb_submit(hm.qb(), qb_body(), **{"Idempotency-Key": "k5"}).status_code == 200
    assert qb_submit(hm.qb(), qb_body()).status_code == 429
    assert len(hm.emu.tasks()) == 6


def test_qingbo_cancel(hm: Harness, wall: FakeClock) -> None:
    reply = qb_submit(hm.qb(), qb_body()).json()
    task_id = reply["task_id"]
    wall.advance(3)
    cancel = hm.qb().post(f"/v1/tasks/{task_id}/cancel")
    assert cancel.status_code == 200
    assert cancel.json() == {
        "task_id": task_id,
        "status": "cancelled",
        "refunded": True,
        "refunded_quota": reply["pre_consumed_cost"],
    }
    status = hm.qb().get(f"/v1/tasks/{task_id}").json()
    assert (status["status"], status["cost"], status["progress"]) == ("cancelled", 0, 0)
    assert status["completed_at"] == round((WALL + 3) * 1000)
    again = hm.qb().post(f"/v1/tasks/{task_id}/cancel")
    assert again.status_code == 400 and again.json()["error"]["code"] == "task_not_cancellable"

    running = qb_submit(hm.qb(), qb_body()).json()["task_id"]
    hm.qb().get(f"/v1/tasks/{running}")
    refused = hm.qb().post(f"/v1/tasks/{running}/cancel")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "task_not_cancellable"
    assert hm.qb().post("/v1/tasks/task_nope/cancel").status_code == 404
    assert hm.emu.total_charged_usd() == pytest.approx(0.4675)


def test_qingbo_not_found(hm: Harness) -> None:
    response = hm.qb().get("/v1/tasks/task_01K8SGYNNNVBQTXNR4MM964S7K")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


def test_qingbo_wire_variants(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(
        clock, wall, qingbo_url_list=False, qingbo_timestamps="s", qingbo_submit_status=202
    )
    for h in _harness("mock", emulator):
        submitted = qb_submit(h.qb(), qb_body())
        assert submitted.status_code == 202
        assert submitted.json()["created_at"] == int(WALL)
        h.emu.finish_task(submitted.json()["task_id"])
        done = h.qb().get(f"/v1/tasks/{submitted.json()['task_id']}").json()
        assert isinstance(done["result"]["videos"][0]["url"], str)
        assert done["completed_at"] == int(WALL)


def test_qingbo_output_link_expires_after_24h(hm: Harness, wall: FakeClock) -> None:
    qb = qb_finish(hm, qb_body(duration=3))
    ws_id = ws_submit(hm.ws(), V1, WS_CASES[V1][0])["id"]
    ws_poll(hm.ws(), ws_id)
    ws_url = ws_poll(hm.ws(), ws_id)["outputs"][0]
    wall.advance(86_401)
    expired = hm.anon().get(qb["result"]["videos"][0]["url"][0])
    assert expired.status_code == 403 and b"expired" in expired.content
    assert hm.anon().get(ws_url).status_code == 200  # WaveSpeed keeps outputs 7 days


def test_qingbo_unreachable_emulator_media_fails_task(hm: Harness) -> None:
    body = qb_body(first_frame_image=hm.base + "/files/wavespeed/media/none/f.png")
    task_id = qb_submit(hm.qb(), body).json()["task_id"]
    hm.emu.finish_task(task_id)
    status = hm.qb().get(f"/v1/tasks/{task_id}").json()
    assert status["status"] == "failed" and status["error"]["code"] == "upstream_bad_request"
    assert status["cost"] == 0


# --------------------------------------------------------------------------------------------
# Clock-driven progression
# --------------------------------------------------------------------------------------------


def test_progression_by_clock_time(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(
        clock,
        wall,
        polls_to_start=None,
        polls_to_finish=None,
        seconds_to_start=2.0,
        seconds_to_finish=10.0,
    )
    for h in _harness("mock", emulator):
        qb_id = qb_submit(h.qb(), qb_body()).json()["task_id"]
        ws_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
        seen = []
        for step in (0.0, 2.0, 3.0, 4.0, 1.0, 100.0):
            clock.advance(step)
            qb = h.qb().get(f"/v1/tasks/{qb_id}").json()
            seen.append((qb["status"], qb["progress"], ws_poll(h.ws(), ws_id)["status"]))
        assert seen == [
            ("queued", 0, "created"),
            ("processing", 20, "processing"),
            ("processing", 50, "processing"),
            ("processing", 90, "processing"),
            ("completed", 100, "completed"),
            ("completed", 100, "completed"),
        ]
        assert ws_poll(h.ws(), ws_id)["executionTime"] == 10_000

        # Queued tasks start on their own with time, freeing the 5-queued cap.
        for _ in range(5):
            qb_submit(h.qb(), qb_body())
        assert qb_submit(h.qb(), qb_body()).status_code == 429
        clock.advance(2.0)
        assert qb_submit(h.qb(), qb_body()).status_code == 200


def test_progression_by_polls_is_deterministic(clock: FakeClock, wall: FakeClock) -> None:
    statuses = []
    for _ in range(2):
        emulator = make_emulator(
            FakeClock(0.0), FakeClock(WALL), polls_to_start=2, polls_to_finish=4
        )
        for h in _harness("mock", emulator):
            task_id = qb_submit(h.qb(), qb_body()).json()["task_id"]
            run = [task_id]
            run += [h.qb().get(f"/v1/tasks/{task_id}").json()["status"] for _ in range(5)]
            statuses.append(run)
    assert statuses[0] == statuses[1]  # same seed, same clocks: same ids and same story
    assert statuses[0][1:] == ["queued", "processing", "processing", "completed", "completed"]


# --------------------------------------------------------------------------------------------
# Scripted faults
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["wavespeed", "qingbo"])
def test_fault_submit_429_with_retry_after(h: Harness, provider: str) -> None:
    h.emu.script(Fault(on="submit", provider=provider, status=429, retry_after=2))  # type: ignore[arg-type]

    def submit() -> httpx.Response:
        if provider == "wavespeed":
            return h.ws().post(f"/api/v3/{V1}", json=WS_CASES[V1][0])
        return qb_submit(h.qb(), qb_body())

    limited = submit()
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    if provider == "wavespeed":
        assert limited.json() == {"code": 429, "message": "too many requests", "data": None}
    else:
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert h.emu.tasks() == []
    assert submit().status_code == 200
    assert len(h.emu.fault_hits) == 1 and h.emu.pending_faults == [] and h.emu.fault_count(0) == 1
    assert [(s.http_status, s.created) for s in h.emu.submissions] == [(429, False), (200, True)]


def test_fault_poll_5xx_does_not_count_as_poll(h: Harness) -> None:
    task_id = qb_submit(h.qb(), qb_body()).json()["task_id"]
    h.emu.script(Fault(on="poll", status=503, times=2))
    codes = [h.qb().get(f"/v1/tasks/{task_id}").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert h.emu.task(task_id).polls == 1 and h.emu.task(task_id).status == "processing"
    assert [r.fault_index for r in h.emu.requests[-3:]] == [0, 0, None]


def test_fault_slow_reply_over_server(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(clock, wall)
    emulator.script(
        Fault(on="submit", provider="wavespeed", delay=0.6),
        Fault(on="poll", provider="wavespeed", delay=0.2),
    )
    for h in _harness("server", emulator):
        with pytest.raises(httpx.ReadTimeout):
            h.client(WS_KEY, timeout=0.2).post(f"/api/v3/{V1}", json=WS_CASES[V1][0])
        (task,) = emulator.tasks()  # the server applied the submit before the slow reply
        started = time.monotonic()
        assert ws_poll(h.ws(), task.task_id)["status"] == "processing"
        assert time.monotonic() - started >= 0.2


def test_fault_slow_reply_over_mock_transport(hm: Harness) -> None:
    hm.emu.script(Fault(on="submit", delay=30.0), Fault(on="poll", delay=0.05))
    with pytest.raises(httpx.ReadTimeout):  # simulated: no real 30 s wait
        qb_submit(hm.client(QB_KEY, timeout=1.0), qb_body())
    (task,) = hm.emu.tasks()
    assert task.status == "queued"
    sleeper = httpx.Client(
        base_url=hm.base,
        transport=hm.emu.mock_transport(real_sleep=True),
        headers={"Authorization": f"Bearer {QB_KEY}"},
    )
    with sleeper:
        started = time.monotonic()
        assert sleeper.get(f"/v1/tasks/{task.task_id}").status_code == 200
        assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize("provider", ["wavespeed", "qingbo"])
def test_fault_dropped_reply_after_submit(h: Harness, provider: str) -> None:
    h.emu.script(Fault(on="submit", drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        if provider == "wavespeed":
            h.ws().post(f"/api/v3/{V1}", json=WS_CASES[V1][0])
        else:
            qb_submit(h.qb(), qb_body(), **{"Idempotency-Key": "gen-1"})
    (task,) = h.emu.tasks()  # created and billed, though the client never heard
    (sub,) = h.emu.submissions
    assert sub.created and sub.task_id == task.task_id
    assert h.emu.requests[-1].dropped
    if provider == "qingbo":  # the idempotency key makes the blind retry safe
        retry = qb_submit(h.qb(), qb_body(), **{"Idempotency-Key": "gen-1"})
        assert retry.status_code == 200 and retry.json()["task_id"] == task.task_id
        assert len(h.emu.tasks()) == 1


@pytest.mark.parametrize("code", [1401, 5000])
def test_fault_wavespeed_task_fails_with_code(h: Harness, code: int) -> None:
    h.emu.script(Fault(on="submit", provider="wavespeed", fail_task_code=code))
    task_id = ws_submit(h.ws(), V3_REF, WS_CASES[V3_REF][0])["id"]
    assert ws_poll(h.ws(), task_id)["status"] == "processing"
    failed = ws_poll(h.ws(), task_id)
    assert (failed["status"], failed["code"], failed["outputs"]) == ("failed", code, [])
    assert failed["error"]
    assert h.emu.total_charged_usd() == 0


@pytest.mark.parametrize("code", ["upstream_bad_request", "upstream_unavailable"])
def test_fault_qingbo_task_fails_with_code(h: Harness, code: str) -> None:
    h.emu.script(
        Fault(on="poll", provider="qingbo", fail_task_code=code, fail_message="invalid prompt")
    )
    task_id = qb_submit(
        h.qb(), qb_body(callback_events=["failed"], callback_url="https://h.example/x")
    ).json()["task_id"]
    failed = h.qb().get(f"/v1/tasks/{task_id}")
    assert failed.status_code == 200
    status = failed.json()
    assert (status["status"], status["progress"], status["cost"]) == ("failed", 0, 0)
    assert status["error"] == {
        "message": f"[{code}] Upstream returned: invalid prompt",
        "code": code,
    }
    assert "result" not in status
    assert [c.event for c in h.emu.callbacks] == ["failed"]


def test_fault_quota_window_exceeded(h: Harness) -> None:
    h.emu.script(
        Fault(
            on="submit",
            provider="qingbo",
            quota=QuotaWindow(window="5h", used=10, cap=10, reset_in=30),
        )
    )
    response = qb_submit(h.qb(), qb_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"] == {
        "message": "quota window 5h exhausted",
        "code": "quota_window_exceeded",
        "window": "5h",
        "used": 10,
        "cap": 10,
        "reset_at": round((WALL + 30) * 1000),
    }


def test_fault_download_errors(h: Harness) -> None:
    task_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
    ws_poll(h.ws(), task_id)
    url = ws_poll(h.ws(), task_id)["outputs"][0]
    h.emu.script(
        Fault(on="download", status=503),
        Fault(on="download", truncate=100),
        Fault(on="download", drop=True),
    )
    assert h.anon().get(url).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        h.anon().get(url)
    with pytest.raises(httpx.RemoteProtocolError):
        h.anon().get(url)
    full = h.anon().get(url)
    assert full.status_code == 200 and probe_video(full.content) is not None


def test_fault_upload_put_5xx_then_ok(h: Harness) -> None:
    h.emu.script(Fault(on="upload", status=500), Fault(on="media", status=503, times=1, skip=1))
    data = png(64, 64)
    ticket = (
        h.ws()
        .post("/api/v3/media/uploads", json={"filename": "a.png", "size": len(data)})
        .json()["data"]
    )
    put = h.anon().put(ticket["upload"]["url"], content=data, headers=ticket["upload"]["headers"])
    assert put.status_code == 500 and put.headers["content-type"] == "application/xml"
    assert (
        h.anon()
        .put(ticket["upload"]["url"], content=data, headers=ticket["upload"]["headers"])
        .status_code
        == 200
    )
    second = h.ws().post("/api/v3/media/uploads", json={"filename": "b.png", "size": 1})
    assert second.status_code == 503 and second.json()["code"] == 503


def test_faults_fire_in_order_with_provider_filter_and_skip(hm: Harness) -> None:
    ws_id = ws_submit(hm.ws(), V1, WS_CASES[V1][0])["id"]
    qb_id = qb_submit(hm.qb(), qb_body()).json()["task_id"]
    hm.emu.script(
        Fault(on="poll", provider="qingbo", status=500, skip=1),
        Fault(on="poll", status=502),
        Fault(on="any", body=b"<html>bad gateway</html>", status=502, content_type="text/html"),
    )
    assert hm.ws().get(f"/api/v3/predictions/{ws_id}/result").status_code == 502  # fault 1
    assert hm.qb().get(f"/v1/tasks/{qb_id}").status_code == 200  # fault 0 skips one
    assert hm.qb().get(f"/v1/tasks/{qb_id}").status_code == 500  # fault 0
    html = hm.qb().get(f"/v1/tasks/{qb_id}")  # fault 2
    assert html.status_code == 502 and html.text == "<html>bad gateway</html>"
    assert html.headers["content-type"] == "text/html"
    assert [hit.index for hit in hm.emu.fault_hits] == [1, 0, 2]
    assert hm.qb().get(f"/v1/tasks/{qb_id}").status_code == 200


def test_fault_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Fault(on="submit")
    with pytest.raises(ValueError, match="kind"):
        Fault(on="explode", status=500)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault(on="poll", status=500, times=0)
    with pytest.raises(ValueError, match="drop"):
        Fault(on="submit", status=500, drop=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_through_mock_transport(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", drop=True), Fault(on="poll", delay=0.01))
    async with httpx.AsyncClient(
        base_url=emu.base_url,
        transport=emu.mock_transport(real_sleep=True),
        headers={"Authorization": f"Bearer {QB_KEY}"},
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v1/tasks", json=qb_body(), headers={"Idempotency-Key": "a"})
        reply = await client.post("/v1/tasks", json=qb_body(), headers={"Idempotency-Key": "a"})
        task_id = reply.json()["task_id"]
        assert (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "processing"
        done = (await client.get(f"/v1/tasks/{task_id}")).json()
        emu.script(Fault(on="download", truncate=10))
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(done["result"]["videos"][0]["url"][0])
    assert len(emu.tasks()) == 1


# --------------------------------------------------------------------------------------------
# Server and CLI helpers
# --------------------------------------------------------------------------------------------


def test_server_refuses_non_loopback_and_closes_cleanly(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmulatorServer(emu, host="0.0.0.0")  # refused: the point of the test
    server = EmulatorServer(emu)
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    assert emu.base_url == server.url
    server.close()
    server.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/v1/tasks/x", trust_env=False)


def test_run_forever_banner_and_stop() -> None:
    stop = threading.Event()
    lines: list[list[str]] = []
    ready = threading.Event()

    def on_ready(banner: list[str]) -> None:
        lines.append(banner)
        ready.set()

    thread = threading.Thread(
        target=run_forever, kwargs={"port": 0, "on_ready": on_ready, "stop": stop}
    )
    thread.start()
    try:
        assert ready.wait(5)
        (banner,) = lines
        url = re.search(r"http://127\.0\.0\.1:\d+", banner[0])
        assert url is not None
        assert f"  export WAVESPEED_BASE_URL={url.group(0)}" in banner
        assert f"  export QINGBO_BASE_URL={url.group(0)}" in banner
        assert f"  export WAVESPEED_API_KEY={WS_KEY}" in banner
        assert f"  export QINGBO_API_KEY={QB_KEY}" in banner
        reply = httpx.post(
            url.group(0) + "/v1/tasks",
            json=qb_body(),
            headers={"Authorization": f"Bearer {QB_KEY}"},
            trust_env=False,
        )
        assert reply.status_code == 200 and reply.json()["status"] == "queued"
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_banner_lines_name_the_keys(emu: Emulator) -> None:
    with serve(emu) as server:
        text = "\n".join(banner_lines(server))
    assert server.url in text and "Ctrl-C" in text


# --------------------------------------------------------------------------------------------
# Issue 7: the seed's status names, no reported cost, faults behind a reply, listing, limits
# --------------------------------------------------------------------------------------------


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of this length (no ffmpeg needed)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * round(seconds * rate))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["mock", "server"])
def test_qingbo_status_names_events(clock: FakeClock, wall: FakeClock, kind: str) -> None:
    emulator = make_emulator(clock, wall, qingbo_status_names="events")
    events = ["queued", "running", "succeeded", "failed"]
    hook = {"callback_url": "https://hooks.example.com/qb", "callback_events": events}
    for h in _harness(kind, emulator):
        reply = qb_submit(h.qb(), qb_body(**hook)).json()
        assert reply["status"] == "queued"
        task_id = reply["task_id"]
        seen = [h.qb().get(f"/v1/tasks/{task_id}").json()["status"] for _ in range(3)]
        assert seen == ["running", "succeeded", "succeeded"]
        assert h.emu.task(task_id).status == "succeeded"
        assert [c.event for c in h.emu.callbacks] == ["queued", "running", "succeeded"]
        assert [json.loads(c.body)["status"] for c in h.emu.callbacks] == [
            "queued",
            "running",
            "succeeded",
        ]
        h.emu.script(Fault(on="poll", fail_task_code="upstream_unavailable"))
        failing = qb_submit(h.qb(), qb_body()).json()["task_id"]
        assert h.qb().get(f"/v1/tasks/{failing}").json()["status"] == "failed"
        queued = qb_submit(h.qb(), qb_body()).json()["task_id"]
        assert h.qb().post(f"/v1/tasks/{queued}/cancel").json()["status"] == "cancelled"
        assert h.qb().get(f"/v1/tasks/{queued}").json()["status"] == "cancelled"
        running = qb_submit(h.qb(), qb_body()).json()["task_id"]
        h.qb().get(f"/v1/tasks/{running}")
        refused = h.qb().post(f"/v1/tasks/{running}/cancel").json()["error"]
        assert refused["code"] == "task_not_cancellable" and "running" in refused["message"]
        # WaveSpeed keeps its own vocabulary whatever the Qingbo switch says.
        ws_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
        assert [ws_poll(h.ws(), ws_id)["status"] for _ in range(2)] == ["processing", "completed"]


def test_status_options_are_checked() -> None:
    with pytest.raises(ValueError, match="qingbo_status_names"):
        Emulator(qingbo_status_names="verbs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="qingbo_cost_unit"):
        Emulator(qingbo_cost_unit="eur")  # type: ignore[arg-type]


def test_qingbo_cost_unit_none_reports_no_cost(
    hm: Harness, clock: FakeClock, wall: FakeClock
) -> None:
    for h in _harness("mock", make_emulator(clock, wall, qingbo_cost_unit="none")):
        reply = qb_submit(h.qb(), qb_body())
        assert reply.status_code == 200
        assert set(reply.json()) == {
            "task_id",
            "model",
            "action",
            "status",
            "created_at",
            "progress",
        }
        task_id = reply.json()["task_id"]
        h.emu.finish_task(task_id)
        done = h.qb().get(f"/v1/tasks/{task_id}").json()
        assert done["status"] == "completed" and "completed_at" in done
        assert "cost" not in done and "pre_consumed_cost" not in done
        queued = qb_submit(h.qb(), qb_body()).json()["task_id"]
        cancel = h.qb().post(f"/v1/tasks/{queued}/cancel").json()
        assert cancel == {"task_id": queued, "status": "cancelled", "refunded": True}
        assert "cost" not in h.qb().get(f"/v1/tasks/{queued}").json()
        # The account is billed all the same; it is only not told.
        assert h.emu.total_charged_usd("qingbo") == pytest.approx(0.4675)
    # WaveSpeed never reports a cost in its prediction object.
    data = ws_submit(hm.ws(), V1, WS_CASES[V1][0])
    done = [ws_poll(hm.ws(), data["id"]) for _ in range(2)][-1]
    assert not [k for k in {**data, **done} if "cost" in k or "price" in k]


@pytest.mark.parametrize("provider", ["wavespeed", "qingbo"])
def test_fault_task_created_behind_a_5xx(h: Harness, provider: str) -> None:
    h.emu.script(Fault(on="submit", provider=provider, status=503, apply=True))  # type: ignore[arg-type]
    if provider == "wavespeed":
        reply = h.ws().post(f"/api/v3/{V1}", json=WS_CASES[V1][0])
        assert reply.json() == {"code": 503, "message": "service unavailable", "data": None}
    else:
        reply = qb_submit(h.qb(), qb_body(), **{"Idempotency-Key": "gk-5xx"})
        assert reply.json()["error"]["code"] == "service_unavailable"
    assert reply.status_code == 503
    (task,) = h.emu.tasks()  # created and billed behind the error
    (sub,) = h.emu.submissions
    assert (sub.created, sub.task_id, sub.http_status) == (True, task.task_id, 503)
    assert h.emu.requests[-1].status == 503 and h.emu.requests[-1].fault_index == 0
    h.emu.finish_task(task.task_id)
    assert h.emu.total_charged_usd() == pytest.approx(task.price_usd) and task.price_usd > 0
    if provider == "qingbo":  # the same key finds the task the 503 hid
        again = qb_submit(h.qb(), qb_body(), **{"Idempotency-Key": "gk-5xx"})
        assert again.status_code == 200 and again.json()["task_id"] == task.task_id
    else:  # the listing shows it
        listed = h.ws().post("/api/v3/predictions", json={"page": 1, "page_size": 10})
        assert [item["id"] for item in listed.json()["data"]["items"]] == [task.task_id]
    assert len(h.emu.tasks()) == 1


def test_fault_applied_poll_behind_a_5xx(hm: Harness) -> None:
    task_id = qb_submit(hm.qb(), qb_body()).json()["task_id"]
    hm.emu.script(Fault(on="poll", status=500, apply=True, body=b"<html>oops</html>"))
    reply = hm.qb().get(f"/v1/tasks/{task_id}")
    assert reply.status_code == 500 and reply.text == "<html>oops</html>"
    assert hm.emu.task(task_id).polls == 1  # the poll counted all the same


@pytest.mark.parametrize("kind", ["mock", "server"])
def test_fault_applied_submit_rejected_as_invalid_stays_uncreated(
    clock: FakeClock, wall: FakeClock, kind: str
) -> None:
    for h in _harness(kind, make_emulator(clock, wall)):
        h.emu.script(Fault(on="submit", status=502, apply=True))
        assert qb_submit(h.qb(), qb_body(duration=99)).status_code == 502
        assert h.emu.tasks() == []
        assert [(s.created, s.http_status) for s in h.emu.submissions] == [(False, 502)]


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request" in t.name]


def test_fault_hold_until_the_client_gives_up_over_server(
    clock: FakeClock, wall: FakeClock
) -> None:
    emulator = make_emulator(clock, wall)
    emulator.script(Fault(on="submit", provider="qingbo", hold=True, delay=30.0))
    for h in _harness("server", emulator):
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            qb_submit(h.client(QB_KEY, timeout=0.3), qb_body())
        for client in h.clients:
            client.close()
        assert len(emulator.tasks()) == 1  # applied before the silence
        assert emulator.submissions[0].created and emulator.requests[-1].held
        # The client hung up: the server thread ends long before the 30 s bound.
        while _request_threads() and time.monotonic() - started < 5:
            time.sleep(0.02)
        assert _request_threads() == [] and time.monotonic() - started < 3
        assert qb_submit(h.qb(), qb_body()).status_code == 200  # the server still answers


def test_fault_hold_is_bounded_over_server(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(clock, wall)
    emulator.script(Fault(on="poll", hold=True, delay=0.3))
    for h in _harness("server", emulator):
        task_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):  # the server hung up first, no bytes
            h.client(WS_KEY, timeout=10).get(f"/api/v3/predictions/{task_id}/result")
        assert 0.3 <= time.monotonic() - started < 3
        assert emulator.task(task_id).polls == 1


def test_fault_hold_over_mock_transport(hm: Harness) -> None:
    hm.emu.script(Fault(on="submit", hold=True), Fault(on="poll", hold=True, delay=0.05))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # simulated: no real wait for the 60 s bound
        qb_submit(hm.client(QB_KEY, timeout=5.0), qb_body())
    assert time.monotonic() - started < 1
    (task,) = hm.emu.tasks()
    sleeper = httpx.Client(
        base_url=hm.base,
        transport=hm.emu.mock_transport(real_sleep=True),
        headers={"Authorization": f"Bearer {QB_KEY}"},
        timeout=5.0,
    )
    with sleeper, pytest.raises(httpx.RemoteProtocolError):
        sleeper.get(f"/v1/tasks/{task.task_id}")
    assert time.monotonic() - started >= 0.05 and hm.emu.task(task.task_id).polls == 1


@pytest.mark.anyio
async def test_fault_hold_async_mock_transport(emu: Emulator) -> None:
    emu.script(Fault(on="submit", hold=True, delay=0.05))
    async with httpx.AsyncClient(
        base_url=emu.base_url,
        transport=emu.mock_transport(real_sleep=True),
        headers={"Authorization": f"Bearer {QB_KEY}"},
        timeout=0.01,
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/tasks", json=qb_body())
    assert len(emu.tasks()) == 1


@pytest.mark.parametrize("provider", ["wavespeed", "qingbo"])
def test_fault_task_status_reports_an_unknown_status(h: Harness, provider: str) -> None:
    h.emu.script(Fault(on="poll", provider=provider, task_status="paused", times=2))  # type: ignore[arg-type]
    if provider == "wavespeed":
        task_id = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]

        def status() -> str:
            return str(ws_poll(h.ws(), task_id)["status"])
    else:
        task_id = qb_submit(h.qb(), qb_body()).json()["task_id"]

        def status() -> str:
            reply = h.qb().get(f"/v1/tasks/{task_id}")
            assert reply.status_code == 200
            return str(reply.json()["status"])

    assert [status(), status(), status()] == ["paused", "paused", "completed"]
    assert h.emu.task(task_id).polls == 2  # the faked polls moved the task on to its end


def test_fault_task_status_on_submit_reply(hm: Harness) -> None:
    hm.emu.script(Fault(on="submit", provider="qingbo", task_status="pending_review"))
    reply = qb_submit(hm.qb(), qb_body()).json()
    assert reply["status"] == "pending_review"
    assert hm.emu.task(reply["task_id"]).status == "queued"


def test_new_fault_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="5xx"):
        Fault(on="submit", apply=True)
    with pytest.raises(ValueError, match="5xx"):
        Fault(on="submit", status=429, apply=True)
    with pytest.raises(ValueError, match="5xx"):
        Fault(on="submit", status=500, quota=QuotaWindow(), apply=True)
    with pytest.raises(ValueError, match="hold"):
        Fault(on="submit", status=500, hold=True)
    with pytest.raises(ValueError, match="hold"):
        Fault(on="submit", hold=True, drop=True)
    with pytest.raises(ValueError, match="task_status"):
        Fault(on="download", task_status="paused")
    with pytest.raises(ValueError, match="task_status"):
        Fault(on="poll", task_status="")
    with pytest.raises(ValueError, match="task_status"):
        Fault(on="poll", status=500, task_status="paused")
    assert Fault(on="submit", hold=True).hold_seconds == 60.0
    assert Fault(on="submit", hold=True, delay=2).hold_seconds == 2.0
    assert Fault(on="submit", hold=True, delay=600).hold_seconds == 60.0
    assert Fault(on="list", status=503).rejects


def _list(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.post("/api/v3/predictions", json=params)


def _ids(client: httpx.Client, **params: Any) -> list[str]:
    found = _list(client, **params)
    assert found.status_code == 200, found.text
    return [item["id"] for item in found.json()["data"]["items"]]


@pytest.mark.parametrize("kind", ["mock", "server"])
def test_wavespeed_listing(clock: FakeClock, wall: FakeClock, kind: str) -> None:
    emulator = make_emulator(
        clock,
        wall,
        wavespeed_keys=(WS_KEY, "ws-other"),
        polls_to_start=None,  # polls never move a task: listing and polls must agree
        polls_to_finish=None,
    )
    for h in _harness(kind, emulator):
        stale = ws_submit(h.ws(), V1, WS_CASES[V1][0])["id"]
        wall.advance(8 * 86_400)  # older than the 7 days the listing covers
        first = ws_submit(h.ws(), V1, {**WS_CASES[V1][0], "seed": 1})["id"]
        wall.advance(60)
        second = ws_submit(h.ws(), V3_REF, WS_CASES[V3_REF][0])["id"]
        h.emu.finish_task(second)
        wall.advance(60)
        raw = b'{"prompt":"p",  "image":"' + CDN.encode() + b'x.jpg","extra":[1,2]}'
        third = h.ws().post(f"/api/v3/{V1}", content=raw).json()["data"]["id"]
        ws_submit(h.client("ws-other"), V1, WS_CASES[V1][0])  # another account's task

        reply = _list(h.ws(), page=1, page_size=100)
        assert reply.status_code == 200
        envelope = reply.json()
        assert (envelope["code"], envelope["message"]) == (200, "success")
        data = envelope["data"]
        assert (data["page"], data["page_size"], data["total"]) == (1, 100, 3)
        assert [item["id"] for item in data["items"]] == [third, second, first]
        for item in data["items"]:
            polled = ws_poll(h.ws(), item["id"])
            assert {k: v for k, v in item.items() if k != "input"} == polled
        assert data["items"][0]["input"] == json.loads(raw)
        assert data["items"][2]["input"] == {**WS_CASES[V1][0], "seed": 1}
        assert stale not in [item["id"] for item in data["items"]]

        ws = h.ws()
        assert _ids(ws, model=V1) == [third, first]
        assert _ids(ws, model=V3_REF, status="completed") == [second]
        assert _ids(ws, status="created") == [third, first]
        mid = WALL + 8 * 86_400 + 30  # between the first and the second task
        iso = datetime.fromtimestamp(mid, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert _ids(ws, created_after=iso) == [third, second]
        assert _ids(ws, created_after=mid) == [third, second]
        assert _ids(ws, created_before=iso) == [first]
        assert _ids(ws, created_after=iso, created_before=str(mid + 60)) == [second]
        assert _ids(ws, page=2, page_size=2) == [first]
        assert _ids(ws, page=3, page_size=2) == []
        query = h.ws().get("/api/v3/predictions", params={"model": V1, "page_size": "1"})
        assert query.status_code == 200
        assert [item["id"] for item in query.json()["data"]["items"]] == [third]
        assert query.json()["data"]["total"] == 2
        assert h.ws().post("/api/v3/predictions").json()["data"]["total"] == 3  # no body
        other = _list(h.client("ws-other")).json()["data"]
        assert other["total"] == 1 and other["page_size"] == 20


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"status": "done"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "nan"}, "created_before"),
        ({"model": 7}, "model"),
    ],
)
def test_wavespeed_listing_rejects_bad_parameters(
    hm: Harness, params: dict[str, Any], text: str
) -> None:
    reply = _list(hm.ws(), **params)
    assert reply.status_code == 400
    assert reply.json()["code"] == 400 and reply.json()["data"] is None
    assert text in reply.json()["message"]


def test_wavespeed_listing_auth_faults_and_body(hm: Harness) -> None:
    assert _list(hm.anon()).status_code == 401
    assert hm.ws().post("/api/v3/predictions", content=b"[1]").status_code == 400
    hm.emu.script(Fault(on="list", status=503, times=1))
    assert _list(hm.ws()).status_code == 503
    assert _list(hm.ws()).status_code == 200
    assert [r.kind for r in hm.emu.requests] == ["list"] * 4
    assert [r.fault_index for r in hm.emu.requests] == [None, None, 0, None]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=10 * 86_400), max_size=8),
    after=st.one_of(st.none(), st.integers(min_value=-86_400, max_value=11 * 86_400)),
    before=st.one_of(st.none(), st.integers(min_value=-86_400, max_value=11 * 86_400)),
    as_iso=st.booleans(),
)
def test_wavespeed_listing_time_filters(
    offsets: list[int], after: int | None, before: int | None, as_iso: bool
) -> None:
    wall = FakeClock(WALL)
    emulator = Emulator(seed=1, clock=FakeClock(0.0), wall_clock=wall)
    created: list[tuple[float, str]] = []
    for offset in sorted(offsets):
        wall.now = WALL + offset
        created.append((wall.now, ws_submit_core(emulator)))
    wall.now = WALL + 10 * 86_400

    def stamp(offset: int | None) -> Any:
        if offset is None:
            return None
        moment = WALL + offset
        if as_iso:
            return datetime.fromtimestamp(int(moment), tz=UTC).isoformat().replace("+00:00", "Z")
        return int(moment)

    low = None if after is None else float(int(WALL + after))
    high = None if before is None else float(int(WALL + before))
    expected = [
        task_id
        for at, task_id in reversed(created)
        if at >= wall.now - 7 * 86_400
        and (low is None or at >= low)
        and (high is None or at <= high)
    ]
    body = {"page_size": 100, "created_after": stamp(after), "created_before": stamp(before)}
    reply = emulator.handle(
        "POST",
        "/api/v3/predictions",
        {"Authorization": f"Bearer {WS_KEY}"},
        json.dumps(body).encode(),
    ).json()
    assert [item["id"] for item in reply["data"]["items"]] == expected
    assert reply["data"]["total"] == len(expected)


def ws_submit_core(emulator: Emulator) -> str:
    reply = emulator.handle(
        "POST",
        f"/api/v3/{V1}",
        {"Authorization": f"Bearer {WS_KEY}"},
        json.dumps(WS_CASES[V1][0]).encode(),
    )
    return str(reply.json()["data"]["id"])


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"ref_videos": [{"type": "extend", "video_url": CDN + "a.mp4"}]}, "ref_videos[0].tag"),
        ({"ref_videos": [{"tag": "s", "type": "extend"}]}, "ref_videos[0].video_url is required"),
        ({"ref_videos": [{"tag": "s", "video_url": CDN + "a.mp4"}]}, "reference or extend"),
        ({"ref_videos": {"tag": "s"}}, "list of objects"),
        ({"ref_images": [{"tag": "c", "image_urls": [CDN + "a.jpg"]}]}, "image or grid"),
        ({"ref_images": [{"tag": "c", "type": "image"}]}, "image_urls is required"),
        ({"ref_images": [{"tag": "", "type": "image", "image_urls": [CDN + "a"]}]}, "tag"),
        (
            {
                "duration": 15,
                "mid_frame_images": [
                    {"tag": f"k{i}", "image_url": CDN + "k.jpg", "time_stamp": i + 1}
                    for i in range(7)
                ],
            },
            "at most 6",
        ),
        ({"mid_frame_images": [{"image_url": CDN + "k.jpg", "time_stamp": 1}]}, "tag"),
        ({"mid_frame_images": [{"tag": "k", "time_stamp": 1}]}, "image_url is required"),
        ({"mid_frame_images": [{"tag": "k", "image_url": CDN + "k.jpg"}]}, "time_stamp"),
        (
            {
                "mid_frame_images": [
                    {"tag": "a", "image_url": CDN + "a.jpg", "time_stamp": 2},
                    {"tag": "b", "image_url": CDN + "b.jpg", "time_stamp": 2},
                ]
            },
            "strictly increasing",
        ),
        (
            {
                "audio_urls": [CDN + "v.mp3"],
                "ref_images": [
                    {
                        "tag": "c",
                        "type": "image",
                        "image_urls": [CDN + "c.jpg"],
                        "audio_url": CDN + "w.mp3",
                    }
                ],
            },
            "not both",
        ),
        (
            {
                "video_urls": [CDN + "v.mp4"],
                "ref_videos": [{"tag": "s", "type": "reference", "video_url": CDN + "r.mp4"}],
            },
            "not both",
        ),
        ({"duration": 3.0}, "3..15"),
        ({"duration": True}, "3..15"),
        ({"resolution": "720P"}, "resolution"),
    ],
)
def test_qingbo_seed_limits_are_400(hm: Harness, fields: dict[str, Any], text: str) -> None:
    response = qb_submit(hm.qb(), qb_body(**fields))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert text in response.json()["error"]["message"]
    assert hm.emu.tasks() == []


def _qb_status_code(emulator: Emulator, body: dict[str, Any]) -> int:
    reply = emulator.handle(
        "POST", "/v1/tasks", {"Authorization": f"Bearer {QB_KEY}"}, json.dumps(body).encode()
    )
    return reply.status


@settings(max_examples=60, deadline=None)
@given(
    duration=st.integers(min_value=-5, max_value=40),
    prompt_length=st.integers(min_value=0, max_value=6000),
)
def test_qingbo_duration_and_prompt_bounds(duration: int, prompt_length: int) -> None:
    emulator = Emulator(seed=3, max_queued=10_000)
    body = qb_body(duration=duration, prompt="x" * prompt_length)
    ok = 3 <= duration <= 15 and 1 <= prompt_length <= 5000
    assert _qb_status_code(emulator, body) == (200 if ok else 400)


@pytest.mark.slow
def test_qingbo_media_lengths_where_the_emulator_hosts_the_file(hm: Harness) -> None:
    short_video = upload(hm, encode_video(VideoSpec(64, 36, 8, 8)), "short.mp4", "video/mp4")
    video = upload(hm, encode_video(VideoSpec(64, 36, 8, 20)), "ok.mp4", "video/mp4")
    short_audio = upload(hm, wav(1.0), "short.wav", "audio/wav")
    long_audio = upload(hm, wav(31.0), "long.wav", "audio/wav")
    audio = upload(hm, wav(3.5), "ok.wav", "audio/wav")
    ws_id = ws_submit(hm.ws(), V1, WS_CASES[V1][0])["id"]
    hm.emu.finish_task(ws_id)
    output = ws_poll(hm.ws(), ws_id)["outputs"][0]  # 97 frames at 24 fps: about 4 s, known

    def extend(url: str) -> dict[str, Any]:
        return {"ref_videos": [{"tag": "src", "type": "extend", "video_url": url}]}

    def voiced(url: str) -> dict[str, Any]:
        return {
            "ref_images": [
                {"tag": "c", "type": "image", "image_urls": [CDN + "c.jpg"], "audio_url": url}
            ]
        }

    rejected = [
        (extend(short_video), "ref_videos[0].video_url: a reference video must be 2-30 s"),
        ({"video_urls": [short_video]}, "video_urls[0]: a reference video must be 2-30 s"),
        ({"audio_urls": [short_audio]}, "audio_urls[0]: reference audio must be 3-30 s"),
        ({"audio_urls": [long_audio]}, "got 31.00 s"),
        (voiced(short_audio), "ref_images[0].audio_url: reference audio must be 3-30 s"),
    ]
    for fields, text in rejected:
        response = qb_submit(hm.qb(), qb_body(**fields))
        assert response.status_code == 400, fields
        assert response.json()["error"]["code"] == "invalid_request"
        assert text in response.json()["error"]["message"]
    assert hm.emu.tasks("qingbo") == []
    accepted = [
        extend(video),
        extend(output),
        {"video_urls": [video]},
        {"audio_urls": [audio]},
        voiced(audio),
        extend(CDN + "elsewhere.mp4"),  # not ours: the emulator cannot measure it
    ]
    for fields in accepted:
        response = qb_submit(hm.qb(), qb_body(**fields), **{"Idempotency-Key": str(fields)})
        assert response.status_code == 200, (fields, response.text)
        hm.emu.finish_task(response.json()["task_id"])  # keep the queue free


WS_STRICT: list[tuple[str, dict[str, Any], int, str]] = [
    (V1, {"prompt": "p", "image": CDN + "a.jpg", "seed": 2_147_483_648}, 1401, "seed"),
    (V1, {"prompt": "p", "image": CDN + "a.jpg", "seed": "7"}, 1401, "seed"),
    (V1, {"prompt": "p", "image": CDN + "a.jpg", "seed": 7.0}, 1401, "seed"),
    (V1, {"prompt": "", "image": CDN + "a.jpg"}, 1400, "prompt"),
    (V1, {"prompt": "p", "image": ""}, 1400, "image"),
    (V3_REF, {"images": [CDN + "a.jpg"]}, 1400, "prompt"),
    (V3_REF, {"prompt": "p", "images": []}, 1400, "images"),
    (V3_REF, {"prompt": "p", "images": CDN + "a.jpg"}, 1401, "images"),
    (V3_REF, {"prompt": "p", "images": [CDN + "a.jpg"], "duration": 4}, 1401, "duration"),
    (V3_REF, {"prompt": "p", "images": [CDN + "a.jpg"], "duration": 7.5}, 1401, "duration"),
    (V3_REF, {"prompt": "p", "images": [CDN + "a.jpg"], "aspect_ratio": "4:3"}, 1401, "aspect"),
]


@pytest.mark.parametrize(("endpoint", "body", "code", "text"), WS_STRICT)
def test_wavespeed_seed_limits(
    clock: FakeClock, wall: FakeClock, endpoint: str, body: dict[str, Any], code: int, text: str
) -> None:
    for mode in ("task", "http"):
        for h in _harness("mock", make_emulator(clock, wall, wavespeed_invalid=mode)):
            response = h.ws().post(f"/api/v3/{endpoint}", json=body)
            if mode == "task":
                data = response.json()["data"]
                assert response.status_code == 200 and data["status"] == "failed"
                assert data["code"] == code and text in data["error"]
            else:
                assert response.status_code == 400 and response.json()["data"] is None
                assert text in response.json()["message"] and h.emu.tasks() == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.one_of(
        st.integers(min_value=-(2**40), max_value=2**40),
        st.sampled_from([-2, -1, 0, 2_147_483_647, 2_147_483_648, 9_999_999_999]),
    )
)
def test_wavespeed_v1_seed_range(seed: int) -> None:
    emulator = Emulator(seed=5)
    body = {"prompt": "p", "image": CDN + "a.jpg", "seed": seed}
    data = emulator.handle(
        "POST", f"/api/v3/{V1}", {"Authorization": f"Bearer {WS_KEY}"}, json.dumps(body).encode()
    ).json()["data"]
    if -1 <= seed <= 2_147_483_647:
        assert data["status"] == "created"
    else:
        assert (data["status"], data["code"]) == ("failed", 1401)


@pytest.mark.parametrize("duration", [5, 10])
def test_wavespeed_v3_reference_accepts_the_seed_range(hm: Harness, duration: int) -> None:
    for ratio in ("16:9", "9:16", "1:1"):
        body = {
            "prompt": "p",
            "images": [CDN + f"{i}.jpg" for i in range(4)],
            "duration": duration,
            "aspect_ratio": ratio,
        }
        assert ws_submit(hm.ws(), V3_REF, body)["status"] == "created"


def test_server_helpers_pass_the_wire_options_through(clock: FakeClock, wall: FakeClock) -> None:
    emulator = make_emulator(clock, wall)
    with serve(emulator, qingbo_status_names="events", qingbo_cost_unit="none") as server:
        reply = httpx.post(
            server.url + "/v1/tasks",
            json=qb_body(),
            headers={"Authorization": f"Bearer {QB_KEY}"},
            trust_env=False,
        ).json()
        assert "pre_consumed_cost" not in reply
        status = httpx.get(
            f"{server.url}/v1/tasks/{reply['task_id']}",
            headers={"Authorization": f"Bearer {QB_KEY}"},
            trust_env=False,
        ).json()
        assert status["status"] == "running"
    with EmulatorServer(qingbo_cost_unit="usd") as plain:
        assert (plain.emulator.qingbo_cost_unit, plain.emulator.qingbo_status_names) == (
            "usd",
            "task",
        )
    with pytest.raises(ValueError, match="qingbo_status_names"):
        EmulatorServer(qingbo_status_names="loud")  # type: ignore[arg-type]

    stop, ready = threading.Event(), threading.Event()
    served = Emulator()
    thread = threading.Thread(
        target=run_forever,
        kwargs={
            "emulator": served,
            "on_ready": lambda _lines: ready.set(),
            "stop": stop,
            "qingbo_status_names": "events",
            "qingbo_cost_unit": "none",
        },
    )
    thread.start()
    try:
        assert ready.wait(5)
        assert (served.qingbo_status_names, served.qingbo_cost_unit) == ("events", "none")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
