"""Shared helpers of the emulator tests: clocks, the two-adapter harness, request helpers."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from storyboard.testing.emulator import (
    DEFAULT_QINGBO_KEY as QB_KEY,
)
from storyboard.testing.emulator import (
    DEFAULT_WAVESPEED_KEY as WS_KEY,
)
from storyboard.testing.emulator import (
    Emulator,
    VideoSpec,
    serve,
)

V1 = "wavespeed-ai/SkyReels-V1"


V3_REF = "skywork-ai/skyreels-v3/reference-to-video"


V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"


V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"


CDN = "https://cdn.example.com/"


WALL = 1_775_285_160.04  # the SkyReels page's example created_at, in seconds


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


def make_emulator(clock: FakeClock, wall: FakeClock, **options: Any) -> Emulator:
    options.setdefault("max_seconds", 1.0)
    return Emulator(seed=7, clock=clock, wall_clock=wall, **options)


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


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of this length (no ffmpeg needed)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * round(seconds * rate))
    return buffer.getvalue()


def _list(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.post("/api/v3/predictions", json=params)
