"""The review page in a real headless Chromium (issue 11, "Tests that count").

Debian's ``chromium`` + ``chromium-driver`` through Selenium 4; missing, the tests fail and
say that ``.ci/run`` installs them. The static page is opened from ``file://`` (as a client
opens the zipped folder); ``--serve`` is opened from engineer B's :class:`ReviewServer`.
A full-page screenshot of each is kept in ``build/test-artifacts/``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser import ARTIFACTS, VIDEOS_SETTLED, chromium, console_errors, full_page_screenshot
from review_fixtures import HOSTILE, plan_of, render_board

from storyboard.media.probe import probe
from storyboard.review import ReviewPage, write_review
from storyboard.takecheck import check_plan
from storyboard.timeline import timeline_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def wait_for(driver: Any, script: str, what: str, *args: Any, timeout: float = 20.0) -> Any:
    """Run ``script`` (with ``args``) until it returns something truthy; fail saying ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReviewPage]:
    path = render_board(tmp_path_factory.mktemp("browser") / "proj")
    plan, store = plan_of(path)
    page = write_review(
        plan, store, path.parent / "renders" / "review", checks=check_plan(plan, store)
    )
    return path, page


VIDEOS = """
return Array.from(document.querySelectorAll('video')).map(v => ({
  src: v.getAttribute('src'), poster: v.getAttribute('poster'),
  ready: v.readyState, duration: v.duration, error: v.error && v.error.code}));
"""

POSTER = """
const done = arguments[arguments.length - 1];
const image = new Image();
image.onload = () => done(image.naturalWidth);
image.onerror = () => done(-1);
image.src = arguments[0];
"""


def test_the_static_page_from_file(reviewed: tuple[Path, ReviewPage]) -> None:
    path, page = reviewed
    plan, store = plan_of(path)
    timeline = timeline_of(plan, store)
    fps = timeline.fps
    with chromium() as driver:
        driver.get(page.index.as_uri())
        wait_for(driver, "return document.readyState === 'complete'", "the page to load")
        # Every video loads its metadata, and says the length of the file it plays.
        wait_for(
            driver,
            "return Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1)",
            "every video's metadata",
        )
        videos = driver.execute_script(VIDEOS)
        assert len(videos) == 1 + page.takes == 4
        for video in videos:
            assert video["error"] is None, video
            real = probe(page.folder / video["src"]).duration
            assert video["duration"] == pytest.approx(real, abs=1 / fps), video
        cut = videos[0]
        assert cut["duration"] == pytest.approx(timeline.seconds, abs=1 / fps)
        # Every poster loads: the <img> on the strip and each video's poster URL.
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
        )
        assert len(images) == 2  # the strip's two clips
        assert all(done and width > 0 for _, done, width in images), images
        for video in videos:
            width = driver.execute_async_script(POSTER, video["poster"])
            assert width > 0, video["poster"]
        # The CSS applied (its hash is in the policy): the strip's items are laid out
        # proportionally to their frames.
        widths = driver.execute_script(
            "const strip = document.querySelector('.strip').getBoundingClientRect().width;"
            "return Array.from(document.querySelectorAll('.strip .item'))"
            "  .map(e => e.getBoundingClientRect().width / strip);"
        )
        for width, item in zip(widths, timeline.items, strict=True):
            assert width == pytest.approx(item.frames / timeline.frames, abs=0.005)
        # The script runs (its hash is in the policy): a click on the strip seeks the cut.
        items = driver.find_elements("css selector", ".strip .item")
        for element, item in reversed(list(zip(items, timeline.items, strict=True))):
            element.click()
            wait_for(
                driver,
                f"return Math.abs(document.getElementById('cut').currentTime - {item.record_start / fps}) < 1e-3",
                f"the cut to seek to {item.shot}",
            )
            assert "current" in (element.get_attribute("class") or "")
        # The author's hostile card text stayed text.
        assert (
            driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        )
        card = driver.find_element("css selector", ".strip .item.card")
        assert card.text == HOSTILE
        wait_for(driver, VIDEOS_SETTLED, "the videos to stop loading")
        full_page_screenshot(driver, ARTIFACTS / "review-static.png")
        errors = console_errors(driver)
        assert not errors, errors


def test_the_page_with_shots_missing_from_file(tmp_path: Path) -> None:
    """No cut, no strip, and still no console error: the script copes with an empty page."""
    from review_fixtures import BOARD

    root = tmp_path / "proj"
    root.mkdir()
    path = root / "storyboard.yaml"
    path.write_text(BOARD, encoding="utf-8")
    plan, store = plan_of(path)
    page = write_review(plan, store, root / "review", selectable=True)
    with chromium() as driver:
        driver.get(page.index.as_uri())
        wait_for(driver, "return document.readyState === 'complete'", "the page to load")
        assert driver.find_element("css selector", ".notice").text.startswith("Not every shot")
        assert not driver.find_elements("css selector", "video")
        assert len(driver.find_elements("css selector", ".take .placeholder")) == 3
        errors = console_errors(driver)
        assert not errors, errors


# -- --serve -----------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def _server_class() -> Callable[..., Any]:
    try:
        from storyboard.review.server import ReviewServer
    except ImportError as exc:
        pytest.fail(f"storyboard.review.server.ReviewServer is not there yet: {exc}")
    return ReviewServer


def test_serve_mode_selects_take_2_in_the_browser(
    reviewed: tuple[Path, ReviewPage], tmp_path: Path
) -> None:
    review_server = _server_class()
    root = tmp_path / "repo"
    shutil.copytree(reviewed[0].parent, root)  # the store too: nothing renders again
    path = root / "storyboard.yaml"
    from storyboard.pipeline import restitch

    restitch(path)  # the cut records are kept per storyboard path
    (root / ".gitignore").write_text("renders/\n", encoding="utf-8")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "storyboard")
    before = path.read_text(encoding="utf-8")
    with review_server(path) as server, chromium() as driver:
        driver.get(server.url)
        wait_for(driver, "return document.readyState === 'complete'", "the page to load")
        old_cut = driver.find_element("id", "cut").get_attribute("src")
        sea = driver.find_element("id", "shot-sea")
        assert sea.find_element("css selector", ".take.selected").get_attribute("data-take") == "1"
        buttons = driver.find_elements("xpath", "//button[normalize-space()='select take 2']")
        assert len(buttons) == 1
        # A choice the server refuses (no take 7) is said beside the button; nothing changes.
        driver.execute_script("arguments[0].dataset.take = '7';", buttons[0])
        buttons[0].click()
        error = sea.find_element("css selector", ".error")
        said = wait_for(
            driver,
            "return !arguments[0].hidden && arguments[0].textContent",
            "the refusal to show",
            error,
        )
        assert said.startswith("could not select: ") and "7" in said, said
        assert buttons[0].text == "select take 2" and buttons[0].is_enabled()
        assert path.read_text(encoding="utf-8") == before
        # The browser logs the refused request itself; nothing else went wrong.
        logged = console_errors(driver)
        assert len(logged) == 1 and "/api/select" in logged[0], logged
        driver.execute_script("arguments[0].dataset.take = '2';", buttons[0])
        driver.execute_script("window.__before_reload = true;")
        buttons[0].click()
        # The page reloads (the marker is gone) and shows take 2 as the selected one.
        wait_for(
            driver,
            "return window.__before_reload === undefined && document.readyState === 'complete'"
            " && document.querySelector('#shot-sea .take.selected')",
            "the page to reload with the new selection",
            timeout=60,
        )
        sea = driver.find_element("id", "shot-sea")
        assert sea.find_element("css selector", ".take.selected").get_attribute("data-take") == "2"
        assert not driver.find_elements("xpath", "//button[normalize-space()='select take 2']")
        assert driver.find_elements("xpath", "//button[normalize-space()='select take 1']")
        new_cut = driver.find_element("id", "cut").get_attribute("src")
        assert new_cut != old_cut
        wait_for(driver, VIDEOS_SETTLED, "the new cut and the takes")
        full_page_screenshot(driver, ARTIFACTS / "review-served.png")
        errors = console_errors(driver)
        assert not errors, errors
    # git shows exactly the one changed select: line, and nothing else changed in the repo.
    diff = _git(root, "diff", "--unified=0")
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == ["-    select: 1", "+    select: 2"], diff
    assert path.read_text(encoding="utf-8") == before.replace("select: 1\n", "select: 2\n")
    assert _git(root, "status", "--porcelain") == " M storyboard.yaml\n"
