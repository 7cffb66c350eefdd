"""Tests for the live providers (WaveSpeed, Qingbo) and their HTTP plumbing.

Almost everything runs against the protocol emulator through its ``httpx.MockTransport``;
a few end-to-end tests go over real sockets to an ``EmulatorServer`` on 127.0.0.1. No test
mocks httpx itself, and no test needs a real key or the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from storyboard import __version__
from storyboard.catalog import MODELS, ModelSpec
from storyboard.errors import (
    AuthenticationError,
    DownloadError,
    InvalidAPIKey,
    MissingAPIKey,
    OutputGone,
    ProviderBusy,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    SubmitOutcomeUnknown,
)
from storyboard.model import Keyframe, Media, Ref, Shot
from storyboard.providers import wavespeed
from storyboard.providers._http import (
    RetryableResponse,
    RetryPolicy,
    Timeouts,
    parse_retry_after,
    retry_delay,
    retry_idempotent,
    should_retry,
)
from storyboard.providers.base import (
    Failed,
    Job,
    Provider,
    Queued,
    ReportedCost,
    Running,
    Succeeded,
    TaskFinder,
    TaskRef,
    TaskStatus,
    Unrecognised,
)
from storyboard.providers.qingbo import OWNED_PARAMS as qingbo_owned
from storyboard.providers.qingbo import (
    QUEUED_CAP_WAIT,
    QingboProvider,
    epoch_seconds,
    idempotency_key,
    parse_task,
    reported_quota,
)
from storyboard.providers.qingbo import build_request as qb_build
from storyboard.providers.wavespeed import OWNED_PARAMS as wavespeed_owned
from storyboard.providers.wavespeed import WaveSpeedProvider
from storyboard.providers.wavespeed import build_request as ws_build
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
    probe_video,
)

CDN = "https://cdn.example.com/"
HOSTED = "https://media.example.com/up/"
WALL = 1_775_285_160.04  # the SkyReels page's example created_at, in seconds
KEY = hashlib.sha256(b"take").hexdigest()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class Sleeps(list[float]):
    """A no-op sleep that records every delay it was asked for."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


def url(name: str, kind: str = "image") -> Media:
    return Media(CDN + name, kind)  # type: ignore[arg-type]


def local(name: str, kind: str = "image") -> Media:
    return Media(f"refs/{name}", kind, Path("/proj/refs") / name)  # type: ignore[arg-type]


def make_job(
    model: str,
    *,
    seed: int | None = None,
    urls: dict[str, str] | None = None,
    key: str = KEY,
    attempt: int = 0,
    spec: ModelSpec | None = None,
    **fields: Any,
) -> Job:
    """A job built straight from a Shot and the model registry (no storyboard file)."""
    spec = spec or MODELS[model]
    fields.setdefault("prompt", "a shiba on the moon")
    shot = Shot(id="s1", index=0, line=1, model=model, **fields)
    width, height = spec.size(shot.resolution, shot.aspect_ratio)
    return Job(
        shot=shot,
        spec=spec,
        take=1,
        key=key,
        seed=seed,
        seconds=spec.clip_seconds(shot.duration),
        width=width,
        height=height,
        fps=spec.fps,
        urls=urls or {},
        attempt=attempt,
    )


def make_emulator(**options: Any) -> Emulator:
    options.setdefault("max_seconds", 1.0)
    return Emulator(seed=7, **options)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = make_emulator()
    yield emulator
    assert emulator.internal_errors == []


def ws_provider(
    emulator: Emulator, sleeps: Sleeps | None = None, key: str = WS_KEY, **options: Any
) -> WaveSpeedProvider:
    return WaveSpeedProvider(
        api_key=key,
        base_url=emulator.base_url,
        transport=emulator.mock_transport(),
        sleep=Sleeps() if sleeps is None else sleeps,
        rand=lambda: 0.5,
        **options,
    )


def qb_provider(
    emulator: Emulator, sleeps: Sleeps | None = None, key: str = QB_KEY, **options: Any
) -> QingboProvider:
    return QingboProvider(
        api_key=key,
        base_url=emulator.base_url,
        transport=emulator.mock_transport(),
        sleep=Sleeps() if sleeps is None else sleeps,
        rand=lambda: 0.5,
        **options,
    )


@contextlib.asynccontextmanager
async def opened(provider: WaveSpeedProvider | QingboProvider) -> AsyncIterator[Any]:
    try:
        yield provider
    finally:
        await provider.aclose()


async def poll_until_done(provider: Provider, task: TaskRef, limit: int = 10) -> TaskStatus:
    for _ in range(limit):
        status = await provider.poll(task)
        if isinstance(status, Succeeded | Failed):
            return status
    raise AssertionError(f"task {task.task_id} did not finish in {limit} polls")


def png(path: Path, size: tuple[int, int] = (64, 36)) -> Path:
    Image.new("RGB", size, (200, 40, 40)).save(path)
    return path


# --------------------------------------------------------------------------------------------
# Retry policy: pure functions
# --------------------------------------------------------------------------------------------


def test_should_retry_statuses_and_errors() -> None:
    for status in (429, 500, 502, 503, 504):
        assert should_retry(status=status)
    for status in (200, 400, 401, 403, 404, 409, 501):
        assert not should_retry(status=status)
    assert not should_retry()
    error: Exception
    for error in (
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("closed"),
        httpx.ReadError("reset"),
    ):
        assert should_retry(error=error)
    for error in (httpx.UnsupportedProtocol("ftp"), httpx.LocalProtocolError("bad")):
        assert not should_retry(error=error)
    assert not should_retry(error=ValueError("not ours"))


@given(attempt=st.integers(0, 80), r=st.floats(0, 1, exclude_max=True))
def test_retry_delay_full_jitter_within_capped_bounds(attempt: int, r: float) -> None:
    delay = retry_delay(attempt, None, base=0.5, cap=30.0, rand=lambda: r)
    assert 0.0 <= delay < min(30.0, 0.5 * 2**attempt)


def test_retry_delay_examples() -> None:
    almost_one = 0.999_999
    assert retry_delay(0, rand=lambda: almost_one, base=0.5, cap=30) == pytest.approx(0.5, rel=1e-5)
    assert retry_delay(3, rand=lambda: almost_one, base=0.5, cap=30) == pytest.approx(4, rel=1e-5)
    assert retry_delay(10, rand=lambda: almost_one, base=0.5, cap=30) == pytest.approx(30, 1e-5)
    assert retry_delay(10_000, rand=lambda: almost_one) <= 30  # no overflow far out
    assert retry_delay(5, rand=lambda: 0.0) == 0.0
    # A server's Retry-After wins over the backoff, even above the cap.
    assert retry_delay(0, 7.0, rand=lambda: 0.5) == 7.0
    assert retry_delay(0, 120.0, cap=30) == 120.0
    assert retry_delay(2, -3.0) == 0.0


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("0") == 0.0
    for bad in (None, "", "  ", "-1", "soon", "inf", "nan"):
        assert parse_retry_after(bad) is None, bad
    now = 1_700_000_000.0
    in_two_minutes = email.utils.formatdate(now + 120, usegmt=True)
    assert parse_retry_after(in_two_minutes, now=now) == pytest.approx(120, abs=1)
    past = email.utils.formatdate(now - 3600, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.anyio
async def test_retry_idempotent_honours_deadline_and_attempts() -> None:
    request = httpx.Request("GET", "https://api.example.com/x")
    calls = 0

    async def busy() -> str:
        nonlocal calls
        calls += 1
        raise RetryableResponse(httpx.Response(429, request=request), retry_after=1000.0)

    sleeps = Sleeps()
    with pytest.raises(RetryableResponse):
        await retry_idempotent(busy, policy=RetryPolicy(deadline=300), sleep=sleeps)
    assert calls == 1 and sleeps == []  # a wait past the deadline is not even started

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(httpx.ConnectError):
        await retry_idempotent(
            flaky, policy=RetryPolicy(max_attempts=4), sleep=sleeps, rand=lambda: 1.0
        )
    assert calls == 4 and sleeps == [0.5, 1.0, 2.0]

    async def broken() -> str:
        raise httpx.UnsupportedProtocol("ftp", request=request)

    with pytest.raises(httpx.UnsupportedProtocol):
        await retry_idempotent(broken, sleep=sleeps)
    assert len(sleeps) == 3  # not retried


# --------------------------------------------------------------------------------------------
# WaveSpeed: requests
# --------------------------------------------------------------------------------------------

V1 = "wavespeed-ai/SkyReels-V1"
V3_REF = "skywork-ai/skyreels-v3/reference-to-video"
V3_EXTEND = "skywork-ai/skyreels-v3/extend-video"
V3_CUTSHOT = "skywork-ai/skyreels-v3/extend-video-cutshot"

WS_CASES: list[tuple[str, Job, str, dict[str, Any]]] = [
    (
        "v1-local-seed-negative",
        make_job(
            "skyreels-v1",
            first_frame=local("a.png"),
            seed=42,
            negative_prompt="blurry",
            urls={"refs/a.png": HOSTED + "a.png"},
        ),
        V1,
        {
            "prompt": "a shiba on the moon",
            "image": HOSTED + "a.png",
            "seed": 42,
            "negative_prompt": "blurry",
        },
    ),
    (
        "v1-url-random-seed",
        make_job("skyreels-v1", first_frame=url("bird.jpg")),
        V1,
        {"prompt": "a shiba on the moon", "image": CDN + "bird.jpg"},
    ),
    (
        "v1-continues",
        make_job(
            "skyreels-v1",
            continues="s0",
            seed=0,
            urls={"upstream_frame": HOSTED + "s0-last.png", "upstream": HOSTED + "s0.mp4"},
        ),
        V1,
        {"prompt": "a shiba on the moon", "image": HOSTED + "s0-last.png", "seed": 0},
    ),
    (
        "v1-params-last",
        make_job(
            "skyreels-v1",
            first_frame=url("bird.jpg"),
            seed=1,
            params={"enable_safety_checker": False},
        ),
        V1,
        {
            "prompt": "a shiba on the moon",
            "image": CDN + "bird.jpg",
            "seed": 1,
            "enable_safety_checker": False,
        },
    ),
    (
        "v3-reference",
        make_job(
            "skyreels-v3-reference",
            refs=(Ref(images=(url("a.jpg"),)), Ref(images=(local("b.png"),), tag="hero")),
            aspect_ratio="9:16",
            duration=7.0,
            urls={"refs/b.png": HOSTED + "b.png"},
        ),
        V3_REF,
        {
            "prompt": "a shiba on the moon",
            "images": [CDN + "a.jpg", HOSTED + "b.png"],
            "aspect_ratio": "9:16",
            "duration": 7,
        },
    ),
    (
        "v3-reference-defaults",
        make_job("skyreels-v3-reference", refs=(Ref(images=(url("a.jpg"),)),)),
        V3_REF,
        {
            "prompt": "a shiba on the moon",
            "images": [CDN + "a.jpg"],
            "aspect_ratio": "16:9",
            "duration": 5,
        },
    ),
    (
        "v3-extend",
        make_job(
            "skyreels-v3-extend", extends="s0", duration=10, urls={"upstream": HOSTED + "s0.mp4"}
        ),
        V3_EXTEND,
        {"prompt": "a shiba on the moon", "video": HOSTED + "s0.mp4", "duration": 10},
    ),
    (
        "v3-cutshot",
        make_job(
            "skyreels-v3-cutshot",
            extends="s0",
            cut_type="Cut-In",
            duration=3,
            urls={"upstream": HOSTED + "s0.mp4"},
        ),
        V3_CUTSHOT,
        {
            "prompt": "a shiba on the moon",
            "video": HOSTED + "s0.mp4",
            "cut_type": "Cut-In",
            "duration": 3,
        },
    ),
    (
        "v3-cutshot-defaults",
        make_job("skyreels-v3-cutshot", extends="s0", urls={"upstream": HOSTED + "s0.mp4"}),
        V3_CUTSHOT,
        {
            "prompt": "a shiba on the moon",
            "video": HOSTED + "s0.mp4",
            "cut_type": "Auto",
            "duration": 5,
        },
    ),
]


@pytest.mark.parametrize(
    ("job", "endpoint", "expected"), [c[1:] for c in WS_CASES], ids=[c[0] for c in WS_CASES]
)
@pytest.mark.anyio
async def test_wavespeed_submit_sends_exact_json(
    emu: Emulator, job: Job, endpoint: str, expected: dict[str, Any]
) -> None:
    assert ws_build(job) == (f"/api/v3/{endpoint}", expected)
    async with opened(ws_provider(emu)) as provider:
        task = await provider.submit(job)
        status = await poll_until_done(provider, task)
    sub = emu.submissions[-1]
    assert (sub.endpoint, sub.created, sub.task_id) == (endpoint, True, task.task_id)
    assert sub.body == expected
    assert sub.headers["user-agent"] == f"storyboard/{__version__}"
    assert (task.provider, task.key) == ("wavespeed", KEY)
    assert isinstance(status, Succeeded) and len(status.outputs) == 1
    assert emu.auth_leaks == []


def test_wavespeed_missing_url_for_local_file_names_it() -> None:
    job = make_job("skyreels-v1", first_frame=local("a.png"))
    with pytest.raises(ProviderError, match=r"refs/a\.png") as info:
        ws_build(job)
    assert info.value.shot == "s1"
    with pytest.raises(ProviderError, match="upstream"):
        ws_build(make_job("skyreels-v3-extend", extends="s0"))
    with pytest.raises(ProviderError, match="not served by WaveSpeed"):
        ws_build(make_job("skyreels-v4-fast"))


# --------------------------------------------------------------------------------------------
# WaveSpeed: lifecycle, download, upload
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wavespeed_poll_lifecycle_and_download(tmp_path: Path) -> None:
    emulator = make_emulator(polls_to_start=2, polls_to_finish=3)
    job = make_job("skyreels-v1", first_frame=url("bird.jpg"), seed=42)
    async with opened(ws_provider(emulator)) as provider:
        assert isinstance(provider, Provider)
        task = await provider.submit(job)
        statuses = [await provider.poll(task) for _ in range(3)]
        assert statuses[:2] == [Queued(), Running()]
        done = statuses[2]
        assert isinstance(done, Succeeded) and done.reported is None  # WaveSpeed reports none
        assert done.outputs == (emulator.task(task.task_id).output_url,)
        dest = tmp_path / "clip.mp4"
        await provider.download(task, done, dest)
    probe = probe_video(dest)
    assert probe is not None and probe.fps == 24
    downloads = [r for r in emulator.requests if r.kind == "download"]
    assert len(downloads) == 1 and not downloads[0].has_authorization
    assert emulator.auth_leaks == []


@pytest.mark.anyio
async def test_wavespeed_upload_then_reuse_url(tmp_path: Path) -> None:
    emulator = make_emulator(wall_clock=lambda: WALL)
    image = png(tmp_path / "a.png")
    async with opened(ws_provider(emulator, clock=lambda: WALL)) as provider:
        hosted, expires = await provider.upload(image, "image/png")
        assert expires == WALL + 7 * 86_400
        assert emulator.file_bytes(hosted) == image.read_bytes()
        for take in (1, 2):  # the second shot reuses the URL: no second upload
            job = make_job(
                "skyreels-v1",
                first_frame=local("a.png"),
                urls={"refs/a.png": hosted},
                key=f"{take:064x}",
            )
            task = await provider.submit(job)
            status = await poll_until_done(provider, task)
            assert isinstance(status, Succeeded), status
            assert emulator.submissions[-1].body["image"] == hosted
    media = [r for r in emulator.requests if r.kind == "media"]
    puts = [r for r in emulator.requests if r.kind == "upload"]
    assert len(media) == 1 and len(puts) == 1
    assert media[0].has_authorization and not puts[0].has_authorization
    assert emulator.auth_leaks == []


@pytest.mark.anyio
async def test_wavespeed_upload_put_is_retried(tmp_path: Path, emu: Emulator) -> None:
    emu.script(Fault(on="upload", status=500), Fault(on="media", status=503))
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        hosted, _ = await provider.upload(png(tmp_path / "b.png"), "image/png")
    assert emu.file_bytes(hosted) == (tmp_path / "b.png").read_bytes()
    assert sleeps == [0.25, 0.25]  # one retry of the ticket, one of the PUT
    assert emu.auth_leaks == []


@pytest.mark.parametrize(("code", "fixable"), [(1401, True), (1200, True), (5000, False)])
@pytest.mark.anyio
async def test_wavespeed_failed_task_codes(emu: Emulator, code: int, fixable: bool) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", fail_task_code=code))
    async with opened(ws_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        status = await poll_until_done(provider, task)
    assert isinstance(status, Failed)
    assert (status.code, status.user_fixable) == (str(code), fixable)
    assert status.message == emu.task(task.task_id).error_message != ""


@pytest.mark.anyio
async def test_wavespeed_invalid_input_is_a_user_fixable_failure(emu: Emulator) -> None:
    job = make_job("skyreels-v3-reference", refs=(Ref(images=(url("a.jpg"),)),), duration=12)
    async with opened(ws_provider(emu)) as provider:
        status = await poll_until_done(provider, await provider.submit(job))
    assert isinstance(status, Failed) and status.code == "1401" and status.user_fixable
    assert "duration" in status.message


@pytest.mark.parametrize(
    "fault",
    [Fault(on="submit", provider="wavespeed", drop=True), Fault(on="submit", delay=61.0)],
    ids=["dropped", "read-timeout"],
)
@pytest.mark.anyio
async def test_wavespeed_lost_submit_reply_is_unknown_and_not_retried(
    emu: Emulator, fault: Fault
) -> None:
    emu.script(fault)
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        with pytest.raises(SubmitOutcomeUnknown) as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert info.value.shot == "s1" and info.value.provider == "wavespeed"
    assert "s1" in str(info.value)
    assert "--force s1" in (info.value.hint() or "")
    assert len(emu.tasks()) == 1 and len(emu.submissions) == 1  # created once, sent once
    assert sleeps == []


@pytest.mark.anyio
async def test_submit_that_never_connected_is_an_ordinary_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    provider = WaveSpeedProvider(api_key=WS_KEY, transport=httpx.MockTransport(refuse))
    async with opened(provider):
        with pytest.raises(ProviderError, match="nothing was submitted") as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert not isinstance(info.value, SubmitOutcomeUnknown)


@pytest.mark.anyio
async def test_wavespeed_429_on_submit_is_busy(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", status=429, retry_after=7))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(ProviderBusy) as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert info.value.retry_after == 7 and info.value.http_status == 429
    assert emu.tasks() == []


@pytest.mark.parametrize("status", [502, 504])
@pytest.mark.anyio
async def test_wavespeed_gateway_error_on_submit_is_unknown(emu: Emulator, status: int) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", status=status))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(SubmitOutcomeUnknown, match=f"HTTP {status}") as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert "--force s1" in (info.value.hint() or "")
    assert len(emu.submissions) == 1  # never retried


@pytest.mark.anyio
async def test_wavespeed_http_400_carries_message_and_envelope_code() -> None:
    strict = make_emulator(wavespeed_invalid="http")
    job = make_job("skyreels-v3-reference", refs=(Ref(images=(url("a.jpg"),)),), duration=12)
    async with opened(ws_provider(strict)) as provider:
        with pytest.raises(ProviderHTTPError) as info:
            await provider.submit(job)
    assert info.value.http_status == 400 and info.value.code == "400"
    assert not info.value.retryable and "duration" in str(info.value)


# --------------------------------------------------------------------------------------------
# Retries of status checks and downloads
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_poll_429_with_retry_after_is_retried_after_that_delay(emu: Emulator) -> None:
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        emu.script(Fault(on="poll", status=429, retry_after=3))
        assert await provider.poll(task) == Running()
    assert sleeps == [3.0]


@pytest.mark.anyio
async def test_poll_5xx_and_dropped_replies_back_off_with_jitter(emu: Emulator) -> None:
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        emu.script(Fault(on="poll", status=503), Fault(on="poll", drop=True))
        status = await provider.poll(task)
    assert sleeps == [0.25, 0.5]  # rand pinned at 0.5: half of 0.5 * 2**attempt
    # The 503 was not a poll, the dropped reply was (applied, then lost): the retry is the
    # second poll, which finishes the task.
    assert emu.task(task.task_id).polls == 2 and isinstance(status, Succeeded)


@pytest.mark.anyio
async def test_poll_gives_up_after_the_attempts(emu: Emulator) -> None:
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        emu.script(Fault(on="poll", status=502, times=20))
        with pytest.raises(ProviderHTTPError) as info:
            await provider.poll(task)
    assert info.value.http_status == 502 and info.value.retryable
    assert info.value.task_id == task.task_id
    assert len(sleeps) == 5  # six attempts


@pytest.mark.anyio
async def test_poll_that_keeps_timing_out_is_a_provider_timeout(emu: Emulator) -> None:
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        emu.script(Fault(on="poll", delay=31.0, times=20))  # past the 30 s read timeout
        with pytest.raises(ProviderTimeout) as info:
            await provider.poll(task)
    assert isinstance(info.value, TimeoutError) and info.value.task_id == task.task_id
    assert len(sleeps) == 5


@pytest.mark.anyio
async def test_poll_of_unknown_task_is_not_retried(emu: Emulator) -> None:
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        with pytest.raises(ProviderHTTPError) as info:
            await provider.poll(TaskRef("qingbo", "task_nope", KEY))
    assert info.value.http_status == 404 and info.value.code == "task_not_found"
    assert sleeps == []


@pytest.mark.anyio
async def test_download_retries_errors_and_truncation(emu: Emulator, tmp_path: Path) -> None:
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        status = await poll_until_done(provider, task)
        assert isinstance(status, Succeeded)
        emu.script(
            Fault(on="download", status=503),
            Fault(on="download", truncate=100),
            Fault(on="download", drop=True),
        )
        dest = tmp_path / "clip.mp4"
        await provider.download(task, status, dest)
    assert dest.read_bytes() == emu.file_bytes(status.outputs[0])
    assert len(sleeps) == 3
    assert emu.auth_leaks == []


@pytest.mark.anyio
async def test_download_size_cap_and_errors(emu: Emulator, tmp_path: Path) -> None:
    dest = tmp_path / "clip.mp4"
    async with opened(ws_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        status = await poll_until_done(provider, task)
        assert isinstance(status, Succeeded)
        with pytest.raises(DownloadError, match="cap of 100 bytes"):
            await provider.download(task, status, dest, max_bytes=100)
        assert not dest.exists()
        emu.script(Fault(on="download", status=404))
        with pytest.raises(DownloadError, match="HTTP 404"):
            await provider.download(task, status, dest)
        with pytest.raises(DownloadError, match="without an output"):
            await provider.download(task, Succeeded(outputs=()), dest)
        with pytest.raises(DownloadError, match="not http"):
            await provider.download(task, Succeeded(outputs=("file:///etc/passwd",)), dest)
    assert not dest.exists()


@pytest.mark.anyio
async def test_download_cap_holds_without_content_length(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=endless())

    provider = QingboProvider(api_key=QB_KEY, transport=httpx.MockTransport(handler))
    dest = tmp_path / "clip.mp4"
    async with opened(provider):
        status = Succeeded(outputs=("https://cdn.example.com/out.mp4",))
        with pytest.raises(DownloadError, match="cap of 5000 bytes"):
            await provider.download(TaskRef("qingbo", "t", KEY), status, dest, max_bytes=5000)
    assert not dest.exists()
    assert [r.headers.get("authorization") for r in seen] == [None]


# --------------------------------------------------------------------------------------------
# Keys: 401, missing keys, redaction
# --------------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.anyio
async def test_401_names_the_env_var_and_never_the_key(emu: Emulator) -> None:
    async with opened(ws_provider(emu, key=SECRET)) as provider:
        with pytest.raises(AuthenticationError) as ws_info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        with pytest.raises(AuthenticationError):
            await provider.poll(TaskRef("wavespeed", "f" * 32, KEY))
    async with opened(qb_provider(emu, key=SECRET)) as provider:
        with pytest.raises(AuthenticationError) as qb_info:
            await provider.submit(make_job("skyreels-v4-fast"))
    for info, env_var in ((ws_info, "WAVESPEED_API_KEY"), (qb_info, "QINGBO_API_KEY")):
        error = info.value
        assert error.http_status == 401
        assert env_var in str(error) and env_var in (error.hint() or "")
        assert SECRET not in str(error) + (error.hint() or "") + repr(error.args)
    assert emu.tasks() == []


@pytest.mark.anyio
async def test_provider_text_echoing_the_key_is_redacted(emu: Emulator) -> None:
    emu.script(Fault(on="poll", status=400, message=f"malformed header Bearer {WS_KEY}"))
    async with opened(ws_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        with pytest.raises(ProviderHTTPError) as info:
            await provider.poll(task)
    assert WS_KEY not in str(info.value) and "Bearer ***" in str(info.value)
    assert WS_KEY not in repr(provider) and WS_KEY not in repr(vars(provider))


@pytest.mark.anyio
async def test_from_env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> None:
    with pytest.raises(MissingAPIKey) as info:
        WaveSpeedProvider.from_env()
    assert info.value.env_var == "WAVESPEED_API_KEY" and info.value.provider == "wavespeed"
    with pytest.raises(MissingAPIKey) as qb_info:
        QingboProvider.from_env(environ={"QINGBO_API_KEY": "  "})
    assert qb_info.value.env_var == "QINGBO_API_KEY"
    with pytest.raises(MissingAPIKey):
        WaveSpeedProvider(api_key="")

    monkeypatch.setenv("WAVESPEED_API_KEY", WS_KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", emu.base_url)
    async with opened(WaveSpeedProvider.from_env(transport=emu.mock_transport())) as provider:
        await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    env = {"QINGBO_API_KEY": QB_KEY, "QINGBO_BASE_URL": emu.base_url + "/v1"}
    async with opened(QingboProvider.from_env(environ=env, transport=emu.mock_transport())) as qb:
        await qb.submit(make_job("skyreels-v4-fast"))
    assert [s.created for s in emu.submissions] == [True, True]


# --------------------------------------------------------------------------------------------
# Qingbo: requests for every action
# --------------------------------------------------------------------------------------------

V4_BASE = {
    "model": "skyreels-v4-fast",
    "prompt": "a shiba on the moon",
    "duration": 5,
    "resolution": "720p",
    "aspect_ratio": "16:9",
    "prompt_optimizer": True,
}

QB_CASES: list[tuple[str, Job, str, dict[str, Any]]] = [
    ("generate", make_job("skyreels-v4-fast"), "generate", V4_BASE),
    (
        "generate-settings",
        make_job(
            "skyreels-v4-std",
            duration=8,
            resolution="1080p",
            aspect_ratio="9:16",
            prompt_optimizer=False,
        ),
        "generate",
        {
            **V4_BASE,
            "model": "skyreels-v4-std",
            "duration": 8,
            "resolution": "1080p",
            "aspect_ratio": "9:16",
            "prompt_optimizer": False,
        },
    ),
    (
        "image2video-local",
        make_job(
            "skyreels-v4-fast",
            prompt="",
            first_frame=local("f.png"),
            urls={"refs/f.png": HOSTED + "f.png"},
        ),
        "image2video",
        {
            **{k: v for k, v in V4_BASE.items() if k != "prompt"},
            "first_frame_image": HOSTED + "f.png",
        },
    ),
    (
        "first_last_frame-keyframes",
        make_job(
            "skyreels-v4-fast",
            duration=6,
            first_frame=url("f.jpg"),
            last_frame=url("l.jpg"),
            keyframes=(Keyframe(2.0, url("k2.jpg"), tag="peak"), Keyframe(4.5, local("k4.png"))),
            urls={"refs/k4.png": HOSTED + "k4.png"},
        ),
        "first_last_frame",
        {
            **V4_BASE,
            "duration": 6,
            "first_frame_image": CDN + "f.jpg",
            "last_frame_image": CDN + "l.jpg",
            "mid_frame_images": [
                # A keyframe's tag is sent; an untagged one is named by its position.
                {"tag": "peak", "image_url": CDN + "k2.jpg", "time_stamp": 2.0},
                {"tag": "kf2", "image_url": HOSTED + "k4.png", "time_stamp": 4.5},
            ],
        },
    ),
    (
        "reference-tagged-and-grid",
        make_job(
            "skyreels-v4-fast",
            refs=(
                Ref(images=(url("char.jpg"),), tag="hero"),
                Ref(images=(url("s1.jpg"), url("s2.jpg"), url("s3.jpg")), grid=True),
            ),
        ),
        "reference",
        {
            **V4_BASE,
            "ref_images": [
                {"tag": "hero", "type": "image", "image_urls": [CDN + "char.jpg"]},
                {
                    "tag": "ref2",
                    "type": "grid",
                    "image_urls": [CDN + "s1.jpg", CDN + "s2.jpg", CDN + "s3.jpg"],
                },
            ],
        },
    ),
    (
        "reference_video",
        make_job("skyreels-v4-fast", reference_video=url("style.mp4", "video")),
        "reference_video",
        {
            **V4_BASE,
            "ref_videos": [{"tag": "ref", "type": "reference", "video_url": CDN + "style.mp4"}],
        },
    ),
    (
        "reference_audio-urls",
        make_job(
            "skyreels-v4-fast",
            first_frame=url("f.jpg"),
            audio=(url("voice.mp3", "audio"), local("music.wav", "audio")),
            urls={"refs/music.wav": HOSTED + "music.wav"},
        ),
        "reference_audio",
        {
            **V4_BASE,
            "first_frame_image": CDN + "f.jpg",
            "audio_urls": [CDN + "voice.mp3", HOSTED + "music.wav"],
        },
    ),
    (
        "reference_audio-ref",
        make_job(
            "skyreels-v4-fast",
            refs=(Ref(images=(url("c.jpg"),), tag="singer", audio=url("v.wav", "audio")),),
        ),
        "reference_audio",
        {
            **V4_BASE,
            "ref_images": [
                {
                    "tag": "singer",
                    "type": "image",
                    "image_urls": [CDN + "c.jpg"],
                    "audio_url": CDN + "v.wav",
                }
            ],
        },
    ),
    (
        "extend",
        make_job(
            "skyreels-v4-fast", extends="s0", duration=4, urls={"upstream": HOSTED + "s0.mp4"}
        ),
        "extend",
        {
            **V4_BASE,
            "duration": 4,
            "ref_videos": [{"tag": "src", "type": "extend", "video_url": HOSTED + "s0.mp4"}],
        },
    ),
    (
        "continues",
        make_job(
            "skyreels-v4-fast",
            continues="s0",
            urls={"upstream_frame": HOSTED + "s0-last.png", "upstream": HOSTED + "s0.mp4"},
        ),
        "image2video",
        {**V4_BASE, "first_frame_image": HOSTED + "s0-last.png"},
    ),
    (
        "explicit-action-and-params",
        make_job(
            "skyreels-v4-fast",
            action="reference",
            first_frame=url("f.jpg"),
            refs=(Ref(images=(url("a.jpg"),)),),
            params={"callback_url": "https://hooks.example.com/qb"},
        ),
        "reference",
        {
            **V4_BASE,
            "action": "reference",
            "first_frame_image": CDN + "f.jpg",
            "ref_images": [{"tag": "ref1", "type": "image", "image_urls": [CDN + "a.jpg"]}],
            "callback_url": "https://hooks.example.com/qb",
        },
    ),
]


@pytest.mark.parametrize(
    ("job", "action", "expected"), [c[1:] for c in QB_CASES], ids=[c[0] for c in QB_CASES]
)
@pytest.mark.anyio
async def test_qingbo_submit_sends_exact_json_for_every_action(
    emu: Emulator, job: Job, action: str, expected: dict[str, Any]
) -> None:
    assert qb_build(job) == expected
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(job)
        status = await poll_until_done(provider, task)
    sub = emu.submissions[-1]
    assert (sub.endpoint, sub.created, sub.task_id) == ("/v1/tasks", True, task.task_id)
    assert sub.body == expected
    assert sub.idempotency_key == f"storyboard-{KEY}"
    assert emu.task(task.task_id).action == action
    assert isinstance(status, Succeeded) and len(status.outputs) == 1
    assert emu.auth_leaks == []


def test_qingbo_missing_url_names_the_file_and_the_ways_out() -> None:
    with pytest.raises(ProviderError, match=r"refs/f\.png") as info:
        qb_build(make_job("skyreels-v4-fast", first_frame=local("f.png")))
    hint = info.value.hint() or ""
    assert "https URL" in hint and "WAVESPEED_API_KEY" in hint


# --------------------------------------------------------------------------------------------
# Qingbo: lifecycle, idempotency, limits, wire variants
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", ["task", "events"])
@pytest.mark.anyio
async def test_qingbo_lifecycle_progress_and_cost(names: str, tmp_path: Path) -> None:
    emulator = make_emulator(polls_to_start=2, polls_to_finish=3, qingbo_status_names=names)
    async with opened(qb_provider(emulator)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        queued, running, done = [await provider.poll(task) for _ in range(3)]
        assert queued == Queued()
        assert running == Running(progress=0.66)
        assert isinstance(done, Succeeded)
        # The cost exactly as reported, in quota (fast 720p, 5 s = $0.4675 in the emulator's
        # quota), never converted into dollars.
        assert done.reported == ReportedCost(233_750, "quota")
        assert type(done.reported.amount) is int
        dest = tmp_path / "clip.mp4"
        await provider.download(task, done, dest)
    probe = probe_video(dest)
    assert probe is not None and probe.has_audio
    assert emulator.auth_leaks == []


@pytest.mark.parametrize(
    ("code", "fixable"), [("upstream_bad_request", True), ("upstream_unavailable", False)]
)
@pytest.mark.anyio
async def test_qingbo_failed_task(emu: Emulator, code: str, fixable: bool) -> None:
    emu.script(Fault(on="poll", fail_task_code=code, fail_message="invalid prompt"))
    async with opened(qb_provider(emu)) as provider:
        status = await provider.poll(await provider.submit(make_job("skyreels-v4-fast")))
    assert status == Failed(
        message=f"[{code}] Upstream returned: invalid prompt", code=code, user_fixable=fixable
    )


@pytest.mark.anyio
async def test_qingbo_cancelled_task_is_failed(emu: Emulator) -> None:
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        auth = {"Authorization": f"Bearer {QB_KEY}"}
        assert emu.handle("POST", f"/v1/tasks/{task.task_id}/cancel", auth, b"").status == 200
        status = await provider.poll(task)
    assert isinstance(status, Failed) and status.code == "cancelled" and not status.user_fixable


@pytest.mark.anyio
async def test_qingbo_lost_reply_is_resubmitted_with_the_same_key(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", drop=True))
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
    (only,) = emu.tasks()
    assert task.task_id == only.task_id
    assert [s.idempotency_key for s in emu.submissions] == [f"storyboard-{KEY}"] * 2
    assert [s.created for s in emu.submissions] == [True, False]
    assert len(sleeps) == 1


@pytest.mark.anyio
async def test_qingbo_submit_retries_are_bounded(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", drop=True, times=10))
    async with opened(qb_provider(emu)) as provider:
        with pytest.raises(SubmitOutcomeUnknown) as info:
            await provider.submit(make_job("skyreels-v4-fast"))
    assert info.value.shot == "s1" and "Idempotency-Key" in (info.value.hint() or "")
    assert len(emu.submissions) == 3 and len(emu.tasks()) == 1


@pytest.mark.anyio
async def test_qingbo_submit_5xx_is_retried_with_the_same_key(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", status=502))
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        await provider.submit(make_job("skyreels-v4-fast"))
    assert [s.http_status for s in emu.submissions] == [502, 200]
    assert len(emu.tasks()) == 1 and len(sleeps) == 1


@pytest.mark.parametrize("unit", ["ms", "s"])
@pytest.mark.anyio
async def test_qingbo_quota_window_is_busy_until_reset(unit: str) -> None:
    emulator = make_emulator(wall_clock=lambda: WALL, qingbo_timestamps=unit)
    emulator.script(Fault(on="submit", quota=QuotaWindow(window="5h", reset_in=30)))
    async with opened(qb_provider(emulator, clock=lambda: WALL)) as provider:
        with pytest.raises(ProviderBusy) as info:
            await provider.submit(make_job("skyreels-v4-fast"))
        busy = info.value
        assert busy.code == "quota_window_exceeded" and busy.http_status == 429
        assert busy.retry_after == pytest.approx(30, abs=0.05)
        assert emulator.tasks() == []
        await provider.submit(make_job("skyreels-v4-fast"))  # after the wait: same key, OK
    assert [s.idempotency_key for s in emulator.submissions] == [f"storyboard-{KEY}"] * 2


@pytest.mark.anyio
async def test_qingbo_five_queued_limit_is_busy(emu: Emulator) -> None:
    async with opened(qb_provider(emu)) as provider:
        tasks = [
            await provider.submit(make_job("skyreels-v4-fast", key=f"{i:064x}")) for i in range(5)
        ]
        sixth = make_job("skyreels-v4-fast", key=f"{6:064x}")
        with pytest.raises(ProviderBusy) as info:
            await provider.submit(sixth)
        assert info.value.code == "too_many_queued_tasks"
        assert info.value.retry_after == QUEUED_CAP_WAIT
        await provider.poll(tasks[0])  # one task starts: a slot frees up
        await provider.submit(sixth)
    assert len(emu.tasks()) == 6


@pytest.mark.anyio
async def test_qingbo_400_carries_message_and_code(emu: Emulator) -> None:
    async with opened(qb_provider(emu)) as provider:
        with pytest.raises(ProviderHTTPError) as info:
            await provider.submit(make_job("skyreels-v4-fast", duration=20))
    error = info.value
    assert (error.http_status, error.code, error.retryable) == (400, "invalid_request", False)
    assert "duration must be an integer in 3..15" in str(error) and error.shot == "s1"
    assert len(emu.submissions) == 1


@pytest.mark.anyio
async def test_qingbo_rate_limit_uses_retry_after(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", status=429, retry_after=7))
    async with opened(qb_provider(emu)) as provider:
        with pytest.raises(ProviderBusy) as info:
            await provider.submit(make_job("skyreels-v4-fast"))
    assert info.value.retry_after == 7 and info.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("url_list", [True, False])
@pytest.mark.anyio
async def test_qingbo_output_url_list_or_string(url_list: bool, tmp_path: Path) -> None:
    emulator = make_emulator(qingbo_url_list=url_list)
    async with opened(qb_provider(emulator)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        status = await poll_until_done(provider, task)
        assert isinstance(status, Succeeded)
        assert status.outputs == (emulator.task(task.task_id).output_url,)
        await provider.download(task, status, tmp_path / "clip.mp4")
    assert probe_video(tmp_path / "clip.mp4") is not None


@pytest.mark.parametrize("unit", ["ms", "s"])
def test_qingbo_timestamps_in_seconds_or_milliseconds(unit: str) -> None:
    emulator = make_emulator(wall_clock=lambda: WALL, qingbo_timestamps=unit)
    auth = {"Authorization": f"Bearer {QB_KEY}"}
    body = b'{"model":"skyreels-v4-fast","prompt":"x"}'
    task_id = emulator.handle("POST", "/v1/tasks", auth, body).json()["task_id"]
    for _ in range(2):
        reply = emulator.handle("GET", f"/v1/tasks/{task_id}", auth, b"").json()
    parsed = parse_task(reply)
    assert parsed.status == "completed"
    assert parsed.created_at == pytest.approx(WALL, abs=1)
    assert parsed.completed_at == pytest.approx(WALL, abs=1)
    assert parsed.expires_at == pytest.approx(WALL + 86_400, abs=1)


def test_epoch_seconds_and_reported_quota() -> None:
    assert epoch_seconds(1_775_285_160) == 1_775_285_160.0
    assert epoch_seconds(1_775_285_160_040) == pytest.approx(1_775_285_160.04)
    assert epoch_seconds("1775285160040") == pytest.approx(1_775_285_160.04)
    bad: object
    for bad in (None, True, "soon", -5, math.nan, {}):
        assert epoch_seconds(bad) is None
    assert reported_quota(233_750) == 233_750  # as reported: no conversion
    assert reported_quota(0.4675) == 0.4675  # whatever the number, it stays as it came
    assert reported_quota(0) == 0
    for bad in (None, True, "1.0", math.inf, math.nan, -1, [1]):
        assert reported_quota(bad) is None


def test_parse_task_tolerates_missing_and_odd_fields() -> None:
    parsed = parse_task({"task_id": "t", "status": "processing"})
    assert parsed.to_status() == Running(progress=None)
    assert parse_task({"status": "running", "progress": 250}).to_status() == Running(progress=1.0)
    assert parse_task({"status": "mystery", "progress": 5}).to_status() == Unrecognised("mystery")
    done = parse_task(
        {"status": "completed", "result": {"videos": [{"url": ["a", "b"]}, {"url": "c"}]}}
    )
    assert done.to_status() == Succeeded(outputs=("a", "b", "c"), reported=None)
    failed = parse_task({"status": "failed", "error": "boom"}).to_status()
    assert failed == Failed(message="boom", code=None, user_fixable=False)


# --------------------------------------------------------------------------------------------
# End to end over real sockets
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_end_to_end_wavespeed_over_loopback(tmp_path: Path) -> None:
    emulator = make_emulator()
    with EmulatorServer(emulator) as server:
        provider = WaveSpeedProvider(api_key=WS_KEY, base_url=server.url, sleep=Sleeps())
        async with opened(provider):
            hosted, _ = await provider.upload(png(tmp_path / "a.png", (96, 54)), "image/png")
            job = make_job(
                "skyreels-v1", first_frame=local("a.png"), seed=3, urls={"refs/a.png": hosted}
            )
            task = await provider.submit(job)
            status = await poll_until_done(provider, task)
            assert isinstance(status, Succeeded)
            await provider.download(task, status, tmp_path / "clip.mp4")

            emulator.script(Fault(on="submit", drop=True))
            with pytest.raises(SubmitOutcomeUnknown):
                await provider.submit(make_job("skyreels-v1", first_frame=url("b.jpg")))
    probe = probe_video(tmp_path / "clip.mp4")
    assert probe is not None and (probe.width, probe.height) == (120, 68)
    assert emulator.submissions[0].body == {
        "prompt": "a shiba on the moon",
        "image": hosted,
        "seed": 3,
    }
    assert len(emulator.tasks()) == 2 and len(emulator.submissions) == 2
    assert emulator.auth_leaks == [] and emulator.internal_errors == []


@pytest.mark.anyio
async def test_end_to_end_qingbo_over_loopback(tmp_path: Path) -> None:
    emulator = make_emulator()
    emulator.script(Fault(on="submit", drop=True), Fault(on="poll", status=503))
    sleeps = Sleeps()
    with EmulatorServer(emulator) as server:
        provider = QingboProvider(api_key=QB_KEY, base_url=server.url, sleep=sleeps)
        async with opened(provider):
            job = make_job("skyreels-v4-std", extends="s0", urls={"upstream": CDN + "s0.mp4"})
            task = await provider.submit(job)  # the first reply is lost; the retry finds it
            status = await poll_until_done(provider, task)
            assert isinstance(status, Succeeded)
            await provider.download(task, status, tmp_path / "clip.mp4")
    assert probe_video(tmp_path / "clip.mp4") is not None
    assert len(emulator.tasks()) == 1 and emulator.submits_per_idempotency_key == {
        f"storyboard-{KEY}": 2
    }
    assert len(sleeps) == 2
    assert emulator.auth_leaks == [] and emulator.internal_errors == []


# --------------------------------------------------------------------------------------------
# Issue 7: status vocabularies, attempts, params, reported cost, unknown outcomes, listing
# --------------------------------------------------------------------------------------------

QB_STATUSES: list[tuple[str, type]] = [
    ("queued", Queued),
    ("processing", Running),  # the task pages
    ("running", Running),  # the SkyReels page's callback_events
    ("completed", Succeeded),
    ("succeeded", Succeeded),
    ("failed", Failed),
    ("cancelled", Failed),
    ("canceled", Failed),
]


@pytest.mark.parametrize(("name", "kind"), QB_STATUSES)
@pytest.mark.anyio
async def test_qingbo_reads_both_status_vocabularies(emu: Emulator, name: str, kind: type) -> None:
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        emu.script(Fault(on="poll", provider="qingbo", task_status=name))
        status = await provider.poll(task)
    assert isinstance(status, kind), status
    if name in ("cancelled", "canceled"):
        assert isinstance(status, Failed) and status.code == "cancelled"


@pytest.mark.anyio
async def test_qingbo_events_vocabulary_cancel_is_failed() -> None:
    emulator = make_emulator(qingbo_status_names="events")
    async with opened(qb_provider(emulator)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        auth = {"Authorization": f"Bearer {QB_KEY}"}
        assert emulator.handle("POST", f"/v1/tasks/{task.task_id}/cancel", auth, b"").status == 200
        status = await provider.poll(task)
    assert isinstance(status, Failed) and status.code == "cancelled"


@pytest.mark.parametrize("name", ["paused", "on_hold", "PROCESSING_2"])
@pytest.mark.anyio
async def test_qingbo_unknown_status_is_unrecognised_never_running(
    emu: Emulator, name: str
) -> None:
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        emu.script(Fault(on="poll", provider="qingbo", task_status=name))
        assert await provider.poll(task) == Unrecognised(status=name)
        assert isinstance(await provider.poll(task), Succeeded)  # the next reply is read again


WS_STATUSES: list[tuple[str, type]] = [
    ("created", Queued),
    ("pending", Queued),
    ("processing", Running),
    ("completed", Succeeded),
    ("failed", Failed),
    ("cancelled", Failed),
    ("timeout", Failed),
    ("deleted", Failed),
    ("paused", Unrecognised),
    ("queued", Unrecognised),  # Qingbo's word, not WaveSpeed's
]


@pytest.mark.parametrize(("name", "kind"), WS_STATUSES)
@pytest.mark.anyio
async def test_wavespeed_status_vocabulary(emu: Emulator, name: str, kind: type) -> None:
    async with opened(ws_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
        emu.script(Fault(on="poll", provider="wavespeed", task_status=name))
        status = await provider.poll(task)
    assert isinstance(status, kind), status
    if kind is Unrecognised:
        assert status == Unrecognised(status=name)
    if kind is Succeeded:
        assert isinstance(status, Succeeded) and status.reported is None


_KNOWN_QB = {name for name, _ in QB_STATUSES}
_KNOWN_WS = {name for name, kind in WS_STATUSES if kind is not Unrecognised}


@given(text=st.text(max_size=20))
def test_any_other_status_text_is_unrecognised_with_that_text(text: str) -> None:
    from storyboard.providers.wavespeed import status_from_prediction

    if text.strip().lower() not in _KNOWN_QB:
        assert parse_task({"status": text}).to_status() == Unrecognised(status=text)
    if text.strip().lower() not in _KNOWN_WS:
        assert status_from_prediction({"status": text}) == Unrecognised(status=text)


# ---- --force buys a new generation on Qingbo -------------------------------------------------


def test_idempotency_key_keeps_attempt_zero_and_numbers_the_others() -> None:
    assert idempotency_key(KEY) == idempotency_key(KEY, 0) == f"storyboard-{KEY}"
    assert idempotency_key(KEY, 1) == f"storyboard-{KEY}-a1"
    assert idempotency_key(KEY, 12) == f"storyboard-{KEY}-a12"
    with pytest.raises(ValueError):
        idempotency_key(KEY, -1)


@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_idempotency_keys_of_different_attempts_differ(a: int, b: int) -> None:
    assert (idempotency_key(KEY, a) == idempotency_key(KEY, b)) == (a == b)
    assert (idempotency_key(KEY, a) == idempotency_key(KEY[:-1] + "0", a)) == (KEY[-1] == "0")


@pytest.mark.anyio
async def test_qingbo_forced_attempt_buys_a_new_generation(emu: Emulator) -> None:
    async with opened(qb_provider(emu)) as provider:
        first = await provider.submit(make_job("skyreels-v4-fast"))
        again = await provider.submit(make_job("skyreels-v4-fast"))  # a resend: same key
        forced = await provider.submit(make_job("skyreels-v4-fast", attempt=1))
    assert again.task_id == first.task_id != forced.task_id
    assert forced.key == KEY  # the generation key is unchanged; only the purchase differs
    assert [s.idempotency_key for s in emu.submissions] == [
        f"storyboard-{KEY}",
        f"storyboard-{KEY}",
        f"storyboard-{KEY}-a1",
    ]
    assert [s.created for s in emu.submissions] == [True, False, True]
    assert len(emu.tasks()) == 2


@pytest.mark.anyio
async def test_qingbo_forced_submit_with_lost_reply_is_resent_with_its_own_key(
    emu: Emulator,
) -> None:
    emu.script(Fault(on="submit", provider="qingbo", drop=True))
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast", attempt=2))
    (only,) = emu.tasks()
    assert task.task_id == only.task_id
    assert [s.idempotency_key for s in emu.submissions] == [f"storyboard-{KEY}-a2"] * 2
    assert [s.created for s in emu.submissions] == [True, False]


# ---- params cannot change what is priced or checked ------------------------------------------


def _job_for(model: str, **fields: Any) -> Job:
    """A job of ``model`` whose request would build (inputs as URLs)."""
    upstream = {"upstream": HOSTED + "s0.mp4"}
    if model == "skyreels-v1":
        return make_job(model, first_frame=url("a.jpg"), **fields)
    if model == "skyreels-v3-reference":
        return make_job(model, refs=(Ref(images=(url("a.jpg"),)),), **fields)
    if model in ("skyreels-v3-extend", "skyreels-v3-cutshot"):
        return make_job(model, extends="s0", urls=upstream, **fields)
    return make_job(model, **fields)


QB_OWNED = sorted(qingbo_owned)
WS_OWNED = sorted((model, key) for model, keys in wavespeed_owned.items() for key in keys)


@pytest.mark.parametrize("key", QB_OWNED)
@pytest.mark.anyio
async def test_qingbo_params_cannot_override_a_field_it_sets(emu: Emulator, key: str) -> None:
    job = _job_for("skyreels-v4-fast", params={key: "1080p", "callback_url": CDN + "hook"})
    async with opened(qb_provider(emu)) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.submit(job)
    error = info.value
    assert error.shot == "s1" and error.provider == "qingbo"
    assert f"params.{key}" in str(error) and "s1" in str(error)
    assert qingbo_owned[key] in (error.hint() or "")
    assert emu.submissions == []  # refused before anything was sent


@pytest.mark.parametrize(("model", "key"), WS_OWNED)
@pytest.mark.anyio
async def test_wavespeed_params_cannot_override_a_field_it_sets(
    emu: Emulator, model: str, key: str
) -> None:
    job = _job_for(model, params={key: 15})
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(ProviderError) as info:
            await provider.submit(job)
    assert info.value.shot == "s1" and f"params.{key}" in str(info.value)
    assert wavespeed_owned[model][key] in (info.value.hint() or "")
    assert emu.submissions == []


@pytest.mark.parametrize(
    ("model", "key", "field"),
    [
        ("skyreels-v4-fast", "video_urls", "reference_video"),
        ("skyreels-v1", "resolution", "resolution"),
        ("skyreels-v1", "enable_sync_mode", ""),
    ],
)
def test_params_in_the_models_reserved_params_are_refused(model: str, key: str, field: str) -> None:
    spec = dataclasses.replace(MODELS[model], reserved_params={key: field})
    job = _job_for(model, spec=spec, params={key: True})
    build = qb_build if spec.provider == "qingbo" else ws_build
    with pytest.raises(ProviderError, match=f"params.{key}") as info:
        build(job)
    hint = info.value.hint() or ""
    assert (f"set the shot's {field}" in hint) if field else ("storyboard sets it" in hint)


_PARAM_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_PARAM_VALUES = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=8))


@given(params=st.dictionaries(_PARAM_KEYS, _PARAM_VALUES, max_size=4))
def test_other_params_pass_through_unchanged(params: dict[str, Any]) -> None:
    for model, build in (("skyreels-v4-fast", qb_build), ("skyreels-v3-extend", ws_build)):
        spec = MODELS[model]
        refused = set(qingbo_owned if model == "skyreels-v4-fast" else wavespeed_owned[model])
        refused |= set(spec.reserved_params)
        job = _job_for(model, params=params)
        if refused & set(params):
            with pytest.raises(ProviderError):
                build(job)
            continue
        result = build(job)
        body = result if isinstance(result, dict) else result[1]
        plain = build(_job_for(model))
        plain_body = plain if isinstance(plain, dict) else plain[1]
        assert body == {**plain_body, **params}


# ---- reported cost keeps its unit ------------------------------------------------------------


@pytest.mark.anyio
async def test_qingbo_without_a_reported_cost_reports_none() -> None:
    emulator = make_emulator(qingbo_cost_unit="none", qingbo_status_names="events")
    async with opened(qb_provider(emulator)) as provider:
        status = await poll_until_done(provider, await provider.submit(make_job("skyreels-v4-std")))
    assert isinstance(status, Succeeded) and status.outputs and status.reported is None


# ---- a submit that may have created a task is an unknown outcome -----------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507])
@pytest.mark.parametrize("created", [True, False], ids=["created", "not-created"])
@pytest.mark.anyio
async def test_wavespeed_submit_5xx_is_unknown_outcome(
    emu: Emulator, status: int, created: bool
) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", status=status, apply=created))
    sleeps = Sleeps()
    async with opened(ws_provider(emu, sleeps)) as provider:
        with pytest.raises(SubmitOutcomeUnknown) as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    error = info.value
    assert f"HTTP {status}" in str(error) and "may exist" in str(error)
    assert (error.shot, error.provider, error.status) == ("s1", "wavespeed", "unknown")
    assert "--force s1" in (error.hint() or "")
    assert len(emu.submissions) == 1 and sleeps == []  # sent once, never retried
    assert len(emu.tasks()) == int(created)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>gateway</html>", "not JSON"),
        (b'{"code": 200, "message": "success", "data": {}}', "without a task id"),
        (b'{"code": 200, "message": "success"}', "without a task id"),
        (b'{"code": 500, "message": "internal"}', "without a task id"),
        (b"[1, 2]", "without a task id"),
    ],
    ids=["html", "no-id", "no-data", "code-500", "not-an-object"],
)
@pytest.mark.anyio
async def test_wavespeed_unreadable_submit_reply_is_unknown_outcome(
    emu: Emulator, body: bytes, what: str
) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", status=200, body=body))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(SubmitOutcomeUnknown, match=what) as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert "--force s1" in (info.value.hint() or "")


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
@pytest.mark.anyio
async def test_wavespeed_submit_4xx_proves_nothing_was_created(emu: Emulator, status: int) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", status=status, message="refused"))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(ProviderHTTPError) as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert not isinstance(info.value, SubmitOutcomeUnknown)
    assert info.value.http_status == status and emu.tasks() == []


@pytest.mark.anyio
async def test_wavespeed_error_code_in_a_200_envelope_is_a_refusal(emu: Emulator) -> None:
    body = b'{"code": 400, "message": "prompt is required", "data": null}'
    emu.script(Fault(on="submit", provider="wavespeed", status=200, body=body))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(ProviderHTTPError, match="prompt is required") as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert not isinstance(info.value, SubmitOutcomeUnknown) and info.value.code == "400"


@pytest.mark.anyio
async def test_wavespeed_held_submit_reply_is_unknown_outcome(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="wavespeed", hold=True))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(SubmitOutcomeUnknown, match="no reply") as info:
            await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg")))
    assert "--force s1" in (info.value.hint() or "")
    assert len(emu.tasks()) == 1


@pytest.mark.anyio
async def test_qingbo_submit_5xx_behind_a_created_task_returns_that_task(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", status=503, apply=True))
    sleeps = Sleeps()
    async with opened(qb_provider(emu, sleeps)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
    (only,) = emu.tasks()
    assert task.task_id == only.task_id and len(sleeps) == 1
    assert [s.created for s in emu.submissions] == [True, False]


@pytest.mark.anyio
async def test_qingbo_submit_5xx_after_the_retries_is_unknown_outcome(emu: Emulator) -> None:
    emu.script(Fault(on="submit", provider="qingbo", status=500, apply=True, times=10))
    async with opened(qb_provider(emu)) as provider:
        with pytest.raises(SubmitOutcomeUnknown, match="HTTP 500") as info:
            await provider.submit(make_job("skyreels-v4-fast"))
    assert "Idempotency-Key" in (info.value.hint() or "")
    assert len(emu.submissions) == 3 and len(emu.tasks()) == 1


# ---- WaveSpeed: settle an unknown outcome from the prediction listing ------------------------


class Wall:
    """A settable wall clock shared by the emulator and the client."""

    def __init__(self, now: float = WALL) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ref_job(prompt: str = "a shiba on the moon", take: int = 1) -> Job:
    return make_job(
        "skyreels-v3-reference",
        prompt=prompt,
        refs=(Ref(images=(url("a.jpg"),)),),
        key=f"{take:064x}",
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault(on="submit", provider="wavespeed", drop=True),
        Fault(on="submit", provider="wavespeed", status=503, apply=True),
        Fault(on="submit", provider="wavespeed", hold=True),
    ],
    ids=["dropped", "503-created", "held"],
)
@pytest.mark.anyio
async def test_wavespeed_find_task_settles_a_lost_submit(fault: Fault) -> None:
    wall = Wall()
    emulator = make_emulator(wall_clock=wall)
    job = make_job("skyreels-v1", first_frame=url("a.jpg"), seed=5)
    async with opened(ws_provider(emulator, clock=wall)) as provider:
        assert isinstance(provider, TaskFinder)
        other = await provider.submit(make_job("skyreels-v1", first_frame=url("b.jpg"), seed=5))
        wall.now += 30
        emulator.script(fault)
        since = wall.now
        with pytest.raises(SubmitOutcomeUnknown):
            await provider.submit(job)
        wall.now += 5
        found = await provider.find_task(job, since=since)
        assert found is not None and found.task_id != other.task_id
        assert (found.provider, found.key) == ("wavespeed", KEY)
        status = await poll_until_done(provider, found)  # a real task: it can be polled
    assert isinstance(status, Succeeded)
    created = [s for s in emulator.submissions if s.created]
    assert found.task_id == created[-1].task_id
    assert len(emulator.submissions) == 2  # the listing never submits
    listing = [r for r in emulator.requests if r.kind == "list"]
    assert [(r.method, r.path) for r in listing] == [("POST", "/api/v3/predictions")]


@pytest.mark.anyio
async def test_wavespeed_find_task_is_none_when_nothing_was_created() -> None:
    wall = Wall()
    emulator = make_emulator(wall_clock=wall)
    job = make_job("skyreels-v1", first_frame=url("a.jpg"), seed=5)
    async with opened(ws_provider(emulator, clock=wall)) as provider:
        # Same input long before the submit, other inputs just after it: neither is this one.
        await provider.submit(job)
        wall.now += 3600
        since = wall.now
        emulator.script(Fault(on="submit", provider="wavespeed", status=503))
        with pytest.raises(SubmitOutcomeUnknown):
            await provider.submit(job)
        await provider.submit(make_job("skyreels-v1", first_frame=url("a.jpg"), seed=6))
        await provider.submit(_ref_job())
        assert await provider.find_task(job, since=since) is None
        # The clock slack: a task created a little before ``since`` is still found.
        assert await provider.find_task(job, since=WALL + 30) is not None


@pytest.mark.anyio
async def test_wavespeed_find_task_excludes_known_takes_and_refuses_to_guess(
    emu: Emulator,
) -> None:
    async with opened(ws_provider(emu)) as provider:
        since = emu.wall_clock()
        first = await provider.submit(_ref_job(take=1))  # V3 takes send the same input
        emu.script(Fault(on="submit", provider="wavespeed", drop=True))
        with pytest.raises(SubmitOutcomeUnknown):
            await provider.submit(_ref_job(take=2))
        second = emu.submissions[-1].task_id
        found = await provider.find_task(_ref_job(take=2), since=since, exclude={first.task_id})
        assert found is not None and found.task_id == second != first.task_id
        with pytest.raises(ProviderError, match="2 predictions") as info:
            await provider.find_task(_ref_job(take=2), since=since)
    assert "--force s1" in (info.value.hint() or "")


@pytest.mark.anyio
async def test_wavespeed_find_task_pages_through_the_listing(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wavespeed, "LIST_PAGE_SIZE", 2)
    job = _ref_job("the one we lost")
    async with opened(ws_provider(emu)) as provider:
        since = emu.wall_clock()
        wanted = await provider.submit(job)
        for i in range(5):  # newer predictions push ours to the last page
            await provider.submit(_ref_job(f"other {i}", take=i + 2))
        found = await provider.find_task(job, since=since)
        assert found is not None and found.task_id == wanted.task_id
        assert len([r for r in emu.requests if r.kind == "list"]) == 3
        monkeypatch.setattr(wavespeed, "MAX_LIST_PAGES", 2)
        with pytest.raises(ProviderError, match="after 2 pages"):
            await provider.find_task(job, since=since)


@pytest.mark.anyio
async def test_wavespeed_find_task_retries_a_page_then_reports_unreadable_listings(
    emu: Emulator,
) -> None:
    sleeps = Sleeps()
    job = make_job("skyreels-v1", first_frame=url("a.jpg"))
    async with opened(ws_provider(emu, sleeps)) as provider:
        since = emu.wall_clock()
        task = await provider.submit(job)
        emu.script(Fault(on="list", status=503))
        found = await provider.find_task(job, since=since)
        assert found is not None and found.task_id == task.task_id and len(sleeps) == 1

        emu.script(Fault(on="list", status=404))
        with pytest.raises(ProviderError, match="no prediction listing") as info:
            await provider.find_task(job, since=since)
        assert info.value.shot == "s1" and "--force s1" in (info.value.hint() or "")

        bad = b'{"code": 200, "message": "success", "data": {"items": "none"}}'
        emu.script(Fault(on="list", status=200, body=bad))
        with pytest.raises(ProviderError, match="without a list of items"):
            await provider.find_task(job, since=since)

        emu.script(Fault(on="list", status=200, body=b"<html>"))
        with pytest.raises(ProviderError, match="not JSON"):
            await provider.find_task(job, since=since)


def test_qingbo_is_no_task_finder_and_only_wavespeed_hosts_files() -> None:
    assert not isinstance(QingboProvider(api_key=QB_KEY), TaskFinder)
    assert isinstance(WaveSpeedProvider(api_key=WS_KEY), TaskFinder)
    assert WaveSpeedProvider.can_host_files and not QingboProvider.can_host_files


@pytest.mark.anyio
async def test_end_to_end_wavespeed_unknown_outcome_settled_over_loopback() -> None:
    emulator = make_emulator()
    job = make_job("skyreels-v1", first_frame=url("a.jpg"), seed=9)
    with EmulatorServer(emulator) as server:
        provider = WaveSpeedProvider(
            api_key=WS_KEY,
            base_url=server.url,
            sleep=Sleeps(),
            timeouts=Timeouts(connect=2.0, submit=0.5),
        )
        async with opened(provider):
            emulator.script(Fault(on="submit", provider="wavespeed", hold=True, delay=5.0))
            since = emulator.wall_clock()
            with pytest.raises(SubmitOutcomeUnknown):
                await provider.submit(job)  # the reply is held until the client gives up
            found = await provider.find_task(job, since=since)
            assert found is not None
            emulator.script(Fault(on="submit", provider="wavespeed", status=502, apply=True))
            with pytest.raises(SubmitOutcomeUnknown, match="HTTP 502"):
                await provider.submit(job)
            with pytest.raises(ProviderError, match="2 predictions"):
                await provider.find_task(job, since=since)
            again = await provider.find_task(job, since=since, exclude={found.task_id})
            assert again is not None and again.task_id != found.task_id
    assert len(emulator.tasks()) == 2
    assert emulator.auth_leaks == [] and emulator.internal_errors == []


@pytest.mark.anyio
async def test_wavespeed_find_task_will_not_say_none_when_inputs_are_not_listed(
    emu: Emulator,
) -> None:
    job = make_job("skyreels-v1", first_frame=url("a.jpg"))
    item = {"id": "f" * 32, "model": V1, "status": "completed", "created_at": "2026-01-01T00:00Z"}
    listing = {"code": 200, "message": "success", "data": {"page": 1, "total": 1, "items": [item]}}
    emu.script(Fault(on="list", status=200, body=json.dumps(listing).encode()))
    async with opened(ws_provider(emu)) as provider:
        with pytest.raises(ProviderError, match="without their input") as info:
            await provider.find_task(job, since=emu.wall_clock())
    assert "--force s1" in (info.value.hint() or "")


@pytest.mark.anyio
async def test_wavespeed_find_task_has_one_deadline(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wavespeed, "_LIST_DEADLINE", 0.05)
    emu.script(Fault(on="list", delay=5.0))
    job = make_job("skyreels-v1", first_frame=url("a.jpg"))
    provider = WaveSpeedProvider(
        api_key=WS_KEY, base_url=emu.base_url, transport=emu.mock_transport(real_sleep=True)
    )
    async with opened(provider):
        with pytest.raises(ProviderTimeout, match="took longer than") as info:
            await provider.find_task(job, since=emu.wall_clock())
    assert info.value.shot == "s1"


# --------------------------------------------------------------------------------------------
# Issue 8: keys checked and never echoed in any form; outputs the provider no longer has
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "form",
    [
        lambda k: k,
        lambda k: repr(k + "\n")[1:-1],
        lambda k: json.dumps(k + "\u00e9\t")[1:-1],
        lambda k: "%".join(["", *(f"{b:02X}" for b in k.encode())]),
        lambda k: __import__("base64").b64encode(f"Bearer {k}".encode()).decode(),
        lambda k: __import__("base64").b64encode(k.encode()).decode().rstrip("="),
    ],
)
async def test_a_key_echoed_in_any_form_is_redacted(emu: Emulator, form: Any) -> None:
    echoed = form(QB_KEY)
    emu.script(Fault(on="poll", provider="qingbo", status=400, message=f"header {echoed} bad"))
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        with pytest.raises(ProviderHTTPError) as info:
            await provider.poll(task)
    text = str(info.value)
    assert echoed not in text and QB_KEY not in text and "header ***" in text


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (f"{WS_KEY}\n", None),  # surrounding whitespace is stripped, as ever
        (f"{WS_KEY}\x07", "contains a control character"),
        (f"{WS_KEY[:4]}\n{WS_KEY[4:]}", "contains a control character"),
        (f"{WS_KEY}é", "contains a non-ASCII character"),
        (f"{WS_KEY[:4]} {WS_KEY[4:]}", "contains whitespace"),
    ],
)
def test_from_env_checks_the_keys_shape(key: str, problem: str | None) -> None:
    env = {"WAVESPEED_API_KEY": key}
    if problem is None:
        WaveSpeedProvider.from_env(environ=env)
        return
    with pytest.raises(InvalidAPIKey) as info:
        WaveSpeedProvider.from_env(environ=env)
    assert str(info.value) == f"WAVESPEED_API_KEY {problem}"
    assert WS_KEY[4:] not in repr(info.value.args) + (info.value.hint() or "")


@pytest.mark.anyio
@pytest.mark.parametrize("status", [403, 404, 410])
async def test_a_finished_output_no_longer_served_is_output_gone(
    emu: Emulator, tmp_path: Path, status: int
) -> None:
    emu.script(Fault(on="download", provider="qingbo", status=status))
    async with opened(qb_provider(emu)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        done = await poll_until_done(provider, task)
        assert isinstance(done, Succeeded)
        with pytest.raises(OutputGone) as info:
            await provider.download(task, done, tmp_path / "clip.mp4")
    error = info.value
    assert error.task_id == task.task_id and error.provider == "qingbo"
    assert "no longer has this output" in str(error) and "24 h" in str(error)
    assert not (tmp_path / "clip.mp4").exists()
    assert len([r for r in emu.requests if r.kind == "download"]) == 1  # not retried


@pytest.mark.anyio
async def test_qingbo_reports_when_its_output_links_expire() -> None:
    emulator = make_emulator(wall_clock=lambda: WALL)
    async with opened(qb_provider(emulator)) as provider:
        task = await provider.submit(make_job("skyreels-v4-fast"))
        done = await poll_until_done(provider, task)
    assert isinstance(done, Succeeded)
    assert done.expires_at is not None
    assert abs(done.expires_at - (WALL + 24 * 3600)) < 5  # 24 h after the task ended
