"""Emulator tests, scripted faults: rejects, drops, holds, slow and truncated replies, and
tasks created behind a 5xx.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from emulator.emulator_support import (
    V1,
    V3_REF,
    WALL,
    WS_CASES,
    FakeClock,
    Harness,
    _harness,
    make_emulator,
    png,
    qb_body,
    qb_submit,
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
    QuotaWindow,
    probe_video,
)


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
