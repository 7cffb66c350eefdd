"""Emulator tests, the adapters: the loopback server, the mock transport (async), the CLI helpers.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from emulator.emulator_support import (
    FakeClock,
    make_emulator,
    qb_body,
)
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
    banner_lines,
    run_forever,
    serve,
)


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
