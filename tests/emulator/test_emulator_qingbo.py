"""Emulator tests, the Qingbo room: actions, lifecycle, validation, idempotency, the
queue cap, cancel, wire variants.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.emulator_support import (
    CDN,
    V1,
    WALL,
    WS_CASES,
    FakeClock,
    Harness,
    _harness,
    make_emulator,
    qb_body,
    qb_finish,
    qb_submit,
    upload,
    wav,
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
    VideoSpec,
    body_hash,
    encode_video,
)

TASK_ID_RE = re.compile(r"^task_[0-9A-HJKMNP-TV-Z]{26}$")


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
