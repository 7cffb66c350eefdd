"""A real headless Chromium for the review page's tests, driven by Selenium 4.

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``); ``.ci/run`` installs them with ``apt-get`` when missing. A test
that needs the browser and does not find it fails and says so: a review page nobody opened
in a browser is not tested.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"

# Quiet, isolated, headless: no sandbox (containers), no GPU, no shared memory (small
# /dev/shm), nothing fetched in the background, a fresh profile per browser.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)


def require_browser() -> None:
    """Fail (never skip) when the browser or its driver is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        pytest.fail(
            f"the browser tests need {', '.join(missing)}: `.ci/run` installs Debian's "
            "chromium and chromium-driver (apt-get install chromium chromium-driver)",
            pytrace=False,
        )


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Selenium ``WebDriver`` for a fresh headless Chromium, quit on leaving."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="storyboard-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Every video has its metadata and has stopped loading (a video still loading shows a spinner).
VIDEOS_SETTLED = (
    "return Array.from(document.querySelectorAll('video'))"
    ".every(v => v.readyState >= 1 && v.networkState !== HTMLMediaElement.NETWORK_LOADING)"
)


def console_errors(driver: Any) -> list[str]:
    """The browser console's severe entries since the last call (errors, CSP refusals)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def full_page_screenshot(
    driver: Any, path: Path, width: int = 1280, *, down_to: str | None = None
) -> Path:
    """A screenshot of the whole page (the window grown to the page's height) as PNG; with
    ``down_to``, only from the top to a little below the element of that id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(1.0)  # the media controls redraw after the resize (a loading spinner first)
        driver.save_screenshot(str(path))
        bottom = None
        if down_to is not None:
            bottom = driver.execute_script(
                "return document.getElementById(arguments[0]).getBoundingClientRect().bottom",
                down_to,
            )
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if bottom is not None:
        from PIL import Image

        with Image.open(path) as image:
            top = image.crop((0, 0, image.width, min(image.height, int(bottom) + 28)))
        top.save(path)
    return path


def screenshot_example(out: Path, *, down_to: str = "shot-hover") -> Path:
    """The README's picture: the dawn example's review page (a copy of the example, rendered
    with the free preview), from the top down to the element ``down_to`` (the shot with three
    takes), 1280 px wide, as a palette PNG.

    Run ``python3 tests/browser.py docs/review.png`` to make it again.
    """
    from PIL import Image

    from storyboard.cache import Store
    from storyboard.pipeline import build, plan_build
    from storyboard.review import write_review
    from storyboard.takecheck import check_plan

    examples = Path(__file__).resolve().parent.parent / "examples"
    with tempfile.TemporaryDirectory(prefix="storyboard-example-") as tmp:
        root = Path(tmp) / "dawn"
        shutil.copytree(examples / "dawn", root)
        board = root / "storyboard.yaml"
        build(board)
        plan = plan_build(board)
        store = Store.for_storyboard(plan.board.path)
        page = write_review(
            plan, store, root / "renders" / "dawn.review", checks=check_plan(plan, store)
        )
        shot = Path(tmp) / "page.png"
        with chromium(1280, 900) as driver:
            driver.get(page.index.as_uri())
            deadline = time.monotonic() + 30
            while not driver.execute_script(VIDEOS_SETTLED):
                if time.monotonic() > deadline:
                    raise TimeoutError("the example's videos did not load")
                time.sleep(0.1)
            full_page_screenshot(driver, shot, down_to=down_to)
        with Image.open(shot) as image:
            out.parent.mkdir(parents=True, exist_ok=True)
            image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                out, optimize=True
            )
    return out


if __name__ == "__main__":
    import sys

    print(screenshot_example(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/review.png")))
