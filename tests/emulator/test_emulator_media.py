"""Emulator tests, served media: output geometry, scaled files, distinct bytes per task.

Most protocol tests run twice: through ``httpx.MockTransport`` and through the real loopback
server (fixture ``h``), so both adapters are held to the same wire behaviour.
"""

from __future__ import annotations

from typing import Any

import pytest

from emulator.emulator_support import (
    CDN,
    V1,
    V3_CUTSHOT,
    V3_EXTEND,
    V3_REF,
    WS_CASES,
    FakeClock,
    Harness,
    _harness,
    make_emulator,
    png,
    qb_body,
    qb_finish,
    upload,
    ws_poll,
    ws_submit,
)
from storyboard.testing.emulator import (
    VideoSpec,
    probe_video,
    scaled_geometry,
)


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
