"""Hints that agree with what happens next (issue 8 item 7), through the real CLI.

Each situation prints one message naming the provider (and the task id where there is one)
and one instruction, the same on every line of a run and on the rerun, and ``plan`` says
what that next render then does:

* a WaveSpeed submit whose reply was lost: while the task list cannot be read, the same
  command looks again (never ``--force``: the task may exist); once the list shows no task,
  only ``--force SHOT`` buys it again; a task the list shows is resumed;
* a Qingbo submit whose reply was lost: the same command resends it under the same
  Idempotency-Key (``--force`` would buy a second generation);
* a finished output the provider no longer serves: the provider, the task id, "the provider
  no longer has this output", and ``--force SHOT``; nothing is bought by itself;
* a download that is not a video: the provider and the task id.

Every test serves the emulator on 127.0.0.1 and runs ``cli.main``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PAIR_BOARD, Emulators, Project, Result, run_cli

from storyboard.testing.emulator import Emulator, EmulatorServer, Fault

pytestmark = pytest.mark.slow

WS_KEY = "ws-hints-key-Rr52Tt9bXq"
QB_KEY = "qb-hints-key-Mm83Jj1cWd"

BOARD = PAIR_BOARD

FORCE_KITE = "`storyboard render storyboard.yaml --live --force kite`"
AGAIN = "`storyboard render storyboard.yaml --live`"


@dataclass
class Live:
    emu: Emulator
    server: EmulatorServer

    def submits(self, provider: str | None = None) -> int:
        return sum(1 for s in self.emu.submissions if provider in (None, s.provider))


@pytest.fixture
def live(emulators: Emulators) -> Callable[..., Live]:
    def start(**options: Any) -> Live:
        return Live(*emulators(keys=(WS_KEY, QB_KEY), **options))

    return start


def render(project: Project, *extra: str) -> Result:
    return run_cli("render", "--live", *extra, "storyboard.yaml")


def reason(project: Project, shot: str) -> str:
    shots = project.plan("--live")["shots"]
    return str(next(s for s in shots if s["id"] == shot)["reason"])


def error_block(result: Result, shot: str) -> tuple[str, str]:
    """The ``error: SHOT: ...`` line of a failed render and the hint under it."""
    lines = result.err.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"error: {shot}: "):
            for after in lines[i + 1 :]:
                if after.startswith("    hint: "):
                    return line, after.removeprefix("    hint: ")
                assert not after.startswith("error: "), result.err
    raise AssertionError(f"no error with a hint for {shot}:\n{result.err}")


def closing_hint(result: Result) -> str:
    return next(line for line in result.err.splitlines() if line.startswith("hint: "))


# --------------------------------------------------------------------------------------------
# WaveSpeed: a lost submit is looked for; only a task the list does not show needs --force
# --------------------------------------------------------------------------------------------

UNREADABLE = (
    "error: kite: outcome unknown: provider wavespeed, shot kite take 1: the submit got no "
    "usable reply; the provider's task list could not be read"
)
NOT_LISTED = (
    "error: kite: outcome unknown: provider wavespeed, shot kite take 1: the submit got no "
    "usable reply; the provider's task list shows no such task"
)


def test_wavespeed_lost_submit_with_an_unreadable_list_says_run_again_everywhere(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(BOARD)
    emu = live()
    # The submit's reply is lost, and the listing cannot be read on this run.
    emu.emu.script(
        Fault(on="submit", provider="wavespeed", status=503),
        Fault(on="list", provider="wavespeed", status=404),
    )
    first = render(project, "--keep-going")
    assert first.code == 1
    line, hint = error_block(first, "kite")
    assert line.startswith(UNREADABLE)
    assert hint.startswith(f"{AGAIN} looks for its task in the provider's task list again")
    # One instruction: nothing on any line of this run says --force for kite.
    assert "--force" not in first.err
    assert "run the same command again for kite" in closing_hint(first)
    assert "looks for its task" in reason(project, "kite")
    assert "--force" not in reason(project, "kite")

    # The rerun does what was said: it looks again (the list is readable now) and finds no
    # task; from then on the one instruction is --force, on every line and in the plan.
    mark = emu.submits()
    again = render(project)
    assert again.code == 1
    line, hint = error_block(again, "kite")
    assert line == NOT_LISTED
    assert hint == f"{FORCE_KITE} submits it again (and pays again)"
    assert "needs --force ID" in closing_hint(again)
    assert "run the same command again" not in again.err
    assert emu.submits() == mark
    assert "--force kite submits again" in reason(project, "kite")
    assert "shows no such task" in reason(project, "kite")

    third = render(project)
    assert error_block(third, "kite") == (line, hint)  # the same words on every rerun
    assert emu.submits() == mark


def test_wavespeed_lost_submit_found_in_the_list_on_the_rerun_is_resumed(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(BOARD)
    emu = live()
    # The task IS created behind the 503; the list cannot be read on the first run.
    emu.emu.script(
        Fault(on="submit", provider="wavespeed", status=503, apply=True),
        Fault(on="list", provider="wavespeed", status=404),
    )
    first = render(project, "--keep-going")
    assert first.code == 1
    assert "--force" not in first.err
    again = render(project)
    assert again.code == 0, again.err
    assert emu.submits("wavespeed") == 1 and len(emu.emu.tasks("wavespeed")) == 1


# --------------------------------------------------------------------------------------------
# Qingbo: a lost submit is resent under the same Idempotency-Key
# --------------------------------------------------------------------------------------------


def test_qingbo_lost_submit_says_run_again_and_the_rerun_resends_the_same_key(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(BOARD)
    emu = live()
    # Every try of the submit (3, retries included) gets a 503: the outcome is unknown.
    emu.emu.script(Fault(on="submit", provider="qingbo", status=503, times=3))
    first = render(project, "--keep-going")
    assert first.code == 1
    line, hint = error_block(first, "sea")
    assert line.startswith(
        "error: sea: outcome unknown: provider qingbo, shot sea take 1: the submit got no "
        "usable reply;"
    )
    assert hint == (
        f"{AGAIN} resends it with the same Idempotency-Key: qingbo answers with its task if "
        "it made one, and bills it once"
    )
    assert "--force" not in first.err  # --force would buy a second generation
    assert "run the same command again for sea" in closing_hint(first)
    plan_reason = reason(project, "sea")
    assert "resends it with the same Idempotency-Key" in plan_reason
    assert "--force" not in plan_reason
    assert emu.emu.pending_faults == []
    emu.emu.script(Fault(on="submit", provider="qingbo", status=503, times=3))
    again = render(project)
    assert error_block(again, "sea") == (line, hint)  # the same words on the rerun

    assert emu.emu.pending_faults == []
    done = render(project)
    assert done.code == 0, done.err
    keys = Counter(s.idempotency_key for s in emu.emu.submissions if s.provider == "qingbo")
    assert len(keys) == 1  # every resend carried the one key of attempt 0
    assert len(emu.emu.tasks("qingbo")) == 1


# --------------------------------------------------------------------------------------------
# An output the provider no longer has
# --------------------------------------------------------------------------------------------


class Wall:
    """The emulator's wall clock, started in the past and moved by the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def drop_clips(root: Path) -> None:
    for clip in (root / ".storyboard" / "objects").rglob("*.mp4"):
        clip.unlink()


def test_an_expired_output_is_not_promised_and_its_download_names_the_task(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(BOARD)
    # Qingbo reports when its links expire (24 h after the task ends): the emulator's clock
    # runs two days behind ours, so the link it reports has already expired by our clock.
    wall = Wall(time.time() - 48 * 3600)
    emu = live(wall_clock=wall)
    assert render(project).code == 0
    (sea_task,) = emu.emu.tasks("qingbo")
    drop_clips(project.root)  # the store is lost; the journal remembers both tasks

    # WaveSpeed keeps outputs 7 days: the next render downloads kite again.
    assert reason(project, "kite") == (
        "rendered, but the clip is gone from the store: the next render downloads it again"
    )
    # Qingbo's link has expired: plan does not promise a free download.
    assert reason(project, "sea") == (
        "rendered, but the clip is gone from the store and the provider no longer has it "
        "(its link expired): --force sea buys it again"
    )

    wall.now += 25 * 3600  # now the emulator's CDN refuses the expired link too
    mark = emu.submits()
    result = render(project, "--keep-going")
    assert result.code == 1
    line, hint = error_block(result, "sea")
    assert line == (
        f"error: sea: qingbo task {sea_task.task_id} (shot sea take 1): the provider no "
        "longer has this output (HTTP 403; links expire after 24 h); the journal keeps the "
        "task, so nothing is bought again by itself"
    )
    assert (
        hint
        == "`storyboard render storyboard.yaml --live --force sea` buys it again (and pays again)"
    )
    assert "run the same command again" not in result.err
    assert "error: kite" not in result.err  # downloaded again, for free
    assert emu.submits() == mark  # nothing bought by itself
    assert "--force sea buys it again" in reason(project, "sea")

    forced = render(project, "--force", "sea")
    assert forced.code == 0, forced.err
    assert emu.submits("qingbo") == 2 and emu.submits("wavespeed") == 1


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_output_of_a_finished_task_names_provider_task_and_force(
    project: Project, live: Callable[..., Live], status: int
) -> None:
    project.write(BOARD)
    emu = live()
    emu.emu.script(Fault(on="download", provider="wavespeed", status=status))
    result = render(project, "--keep-going")
    assert result.code == 1
    (kite_task,) = emu.emu.tasks("wavespeed")
    line, hint = error_block(result, "kite")
    assert line == (
        f"error: kite: wavespeed task {kite_task.task_id} (shot kite take 1): the provider no "
        f"longer has this output (HTTP {status}; links expire after 7 days); the journal keeps "
        "the task, so nothing is bought again by itself"
    )
    assert hint == f"{FORCE_KITE} buys it again (and pays again)"
    assert "fix the cause and run the same command again" not in result.err
    assert reason(project, "kite") == (
        "submitted earlier, but the provider no longer has its output: --force kite buys it again"
    )
    mark = emu.submits()
    forced = render(project, "--force", "kite")
    assert forced.code == 0, forced.err
    assert emu.submits() == mark + 1


# --------------------------------------------------------------------------------------------
# A download that is not a video
# --------------------------------------------------------------------------------------------


def test_a_download_that_is_not_a_video_names_the_provider_and_the_task(
    project: Project, live: Callable[..., Live]
) -> None:
    project.write(BOARD)
    emu = live()
    page = b"<html><body>503 Service Temporarily Unavailable</body></html>"
    emu.emu.script(
        Fault(on="download", provider="qingbo", status=200, body=page, content_type="text/html")
    )
    result = render(project, "--keep-going")
    assert result.code == 1
    (sea_task,) = emu.emu.tasks("qingbo")
    line, hint = error_block(result, "sea")
    assert line.startswith(f"error: sea: qingbo task {sea_task.task_id} (shot sea take 1): ")
    assert "not a readable video" in line
    # One instruction, and what the rerun does: download again, buy nothing.
    assert "--force" not in result.err
    assert "downloaded again" in hint or "downloads it again" in hint
    assert reason(project, "sea") == "submitted earlier: the next render resumes it, no new cost"
    mark = emu.submits()
    again = render(project)
    assert again.code == 0, again.err  # as the hint said: downloaded again, nothing bought
    assert emu.submits() == mark
