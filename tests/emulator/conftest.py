"""Fixtures of the emulator tests: fake clocks, an emulator, and the harness over both adapters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.emulator_support import (
    WALL,
    FakeClock,
    Harness,
    _harness,
    make_emulator,
)
from storyboard.testing.emulator import (
    Emulator,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(WALL)


@pytest.fixture
def emu(clock: FakeClock, wall: FakeClock) -> Iterator[Emulator]:
    emulator = make_emulator(clock, wall)
    yield emulator
    assert emulator.internal_errors == []


@pytest.fixture(params=["mock", "server"])
def h(request: pytest.FixtureRequest, emu: Emulator) -> Iterator[Harness]:
    yield from _harness(request.param, emu)


@pytest.fixture
def hm(emu: Emulator) -> Iterator[Harness]:
    """Mock transport only (for the many small protocol cases)."""
    yield from _harness("mock", emu)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
