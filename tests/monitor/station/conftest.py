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
from playwright.sync_api import Browser, Page, sync_playwright

from tests.monitor.station.browser_rig import (
    CHROMIUM,
    CHROMIUM_ARGS,
    USERS,
    WAIT_MS,
    Ward,
    browser_context,
    collect_errors,
)

if TYPE_CHECKING:
    from collections.abc import Iterator



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


@pytest.fixture(scope="module")
def ward(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ward]:
    """The module's ward: its beds are the module's `BEDS` (default b1 and b2)."""
    w = Ward(tmp_path_factory.mktemp("ward"), getattr(request.module, "BEDS", ("b1", "b2")))
    try:
        w.start()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def pages(
    request: pytest.FixtureRequest, chromium: Browser, ward: Ward
) -> Iterator[dict[str, Page]]:
    """A page per user, logged in, except the module's `LOGIN_BY_FORM` users (its test logs
    them in through the form)."""
    assert ward.station is not None
    by_form = getattr(request.module, "LOGIN_BY_FORM", ())
    contexts = {u: browser_context(chromium, ward, None if u in by_form else u) for u in USERS}
    out = {}
    errors: list[str] = []
    for user, context in contexts.items():
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", collect_errors(errors, user))
        page.goto(ward.station.url + "/")
        out[user] = page
    yield out
    for context in contexts.values():
        context.close()
    assert errors == [], errors  # the page threw: a broken page can look fine
