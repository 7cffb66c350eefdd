"""Emulator tests, the WaveSpeed room: lifecycle, auth, invalid input, uploads, the
listing, seed limits.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.emulator_support import (
    CDN,
    V1,
    V3_CUTSHOT,
    V3_EXTEND,
    V3_REF,
    WALL,
    WS_CASES,
    FakeClock,
    Harness,
    _harness,
    _list,
    make_emulator,
    png,
    ws_poll,
    ws_submit,
)
from storyboard.testing.emulator import (
    DEFAULT_QINGBO_KEY as QB_KEY,
)
from storyboard.testing.emulator import (
    DEFAULT_WAVESPEED_KEY as WS_KEY,
)
from storyboard.testing.emulator import (
    Emulator,
    Fault,
    body_hash,
    probe_video,
    scaled_geometry,
)


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
