"""Browser fixtures for the station's tests: Debian's chromium driven by Playwright for Python.

`playwright install` cannot download a browser here, so the tests drive `/usr/bin/chromium`
(installed by .ci/run) through `executable_path`. A Playwright release speaks the DevTools
protocol of the Chromium it bundles, and is tested against the stable channel one major below
it; pyproject pins the release made for Debian's major (see the comment there). Any other pairing
fails here, loudly, naming both versions: an old driver against a new browser fails in odd ways
far from the cause.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import playwright
import pytest
from playwright.sync_api import Browser, sync_playwright

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = Path("/usr/bin/chromium")
# Chromium's background connections are refused here, many at a time, without these flags
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def bundled_chromium() -> str:
    """The Chromium version the installed Playwright release was built for."""
    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    data = json.loads(browsers.read_text())
    return str(next(b["browserVersion"] for b in data["browsers"] if b["name"] == "chromium"))


def pairing_problem(browser_version: str, bundled: str, playwright_version: str) -> str | None:
    """Why this Chromium and this Playwright do not go together (None: they do)."""
    major = int(browser_version.split(".", 1)[0])
    want = int(bundled.split(".", 1)[0])
    if want - 1 <= major <= want:
        return None
    return (
        f"Playwright {playwright_version} drives Chromium {bundled} (and the stable channel "
        f"{want - 1}), but {CHROMIUM} is Chromium {browser_version}: pin the playwright "
        "release made for this Chromium major in pyproject.toml (dev extra)"
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Debian chromium for the whole module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            problem = pairing_problem(browser.version, bundled_chromium(), version("playwright"))
            if problem is not None:
                pytest.fail(problem, pytrace=False)
            yield browser
        finally:
            browser.close()
