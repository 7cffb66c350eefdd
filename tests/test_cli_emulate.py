"""``storyboard emulate`` as a user runs it: a real process on 127.0.0.1, spoken to over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from storyboard.cli import main


def _start(*flags: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "storyboard", "emulate", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "QINGBO_API_KEY=" in line:
            break
    text = "".join(lines)
    url = re.search(r"QINGBO_BASE_URL=(\S+)", text)
    key = re.search(r"QINGBO_API_KEY=(\S+)", text)
    if url is None or key is None:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail(f"no banner from storyboard emulate: {text!r}")
    return proc, url.group(1), key.group(1)


def _statuses_until_terminal(url: str, key: str) -> tuple[list[str], dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        reply = client.post(
            "/v1/tasks", json={"model": "skyreels-v4-fast", "prompt": "a fox", "duration": 3}
        )
        assert reply.status_code == 200, reply.text
        task = reply.json()
        seen = [task["status"]]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            task = client.get(f"/v1/tasks/{task['task_id']}").json()
            if task["status"] != seen[-1]:
                seen.append(task["status"])
            if task["status"] in ("succeeded", "completed", "failed"):
                return seen, task
            time.sleep(0.2)
    pytest.fail(f"task did not end: {seen}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "names", "has_cost"),
    [
        ((), ("queued", "processing", "completed"), True),
        (
            ("--qingbo-status-names", "events", "--qingbo-cost", "none"),
            ("queued", "running", "succeeded"),
            False,
        ),
    ],
)
def test_emulate_speaks_the_chosen_qingbo_vocabulary(
    flags: tuple[str, ...], names: tuple[str, ...], has_cost: bool
) -> None:
    proc, url, key = _start(*flags)
    try:
        seen, task = _statuses_until_terminal(url, key)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert tuple(seen) == names
    assert ("cost" in task) is has_cost


def test_emulate_refuses_an_unknown_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--qingbo-status-names", "nonsense"]) == 2
    assert "invalid choice" in capsys.readouterr().err
