"""Alarm states from a real bed in the station's page: low priority, audio pause break-through,
latched alarms (on the tile and in the bed detail).

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
import time

import pytest
from playwright.sync_api import Page, expect

from tests.monitor.station.browser_rig import (
    MEASURE_FLASH,
    Ward,
    bursts,
    gaps,
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


def step_a_higher_alarm_breaks_through_an_audio_pause(ward: Ward, page: Page) -> None:
    assert ward.feed is not None
    # armed, the low alarm sounds; paused, the page plays nothing
    page.click("#arm")
    page.wait_for_function("window.vigilStation.sound.priority === 'low'")
    page.evaluate("window.vigilStation.send('w1/b1', {cmd: 'audio_pause'})")
    _accepted(page, "audio_pause")
    expect(tile(page, "b1").locator('[data-paused="1"]')).to_contain_text("AUDIO PAUSED")
    page.wait_for_function("window.vigilStation.sound.priority === null")
    page.evaluate("window.__audio.pulses.length = 0")
    # a new alarm of higher priority than any present when the pause began: DESAT_CRITICAL
    ward.feed.values["b1"]["SPO2"] = 80.0
    expect(tile(page, "b1").locator('[data-code="DESAT_CRITICAL"]')).to_have_attribute(
        "data-priority", "high"
    )
    expect(tile(page, "b1").locator('[data-paused="1"]')).to_contain_text("AUDIO PAUSED")
    page.wait_for_function("window.vigilStation.sound.priority === 'high'")
    # the stub AudioContext records the high burst: 10 pulses as 3+2, a pause, 3+2
    page.wait_for_function("window.__audio.pulses.length >= 10")
    first = bursts(page.evaluate("window.__audio.pulses"))[0]
    assert len(first) == 10, first
    assert all(0.075 <= p["stop"] - p["start"] <= 0.2 for p in first), first
    between = gaps(first)
    assert 0.35 <= between[4] <= 1.30, between  # the pause between the halves
    assert all(between[i] < between[4] for i in (0, 1, 2, 3, 5, 6, 7, 8)), between


def step_a_latched_alarm_stays_shown_until_acknowledged(ward: Ward, page: Page) -> None:
    assert ward.feed is not None
    line = tile(page, "b1").locator('[data-code="DESAT_CRITICAL"]')
    expect(line.locator("[data-latched]")).to_have_count(0)  # its condition still holds
    ward.feed.values["b1"]["SPO2"] = 97.0  # the condition ends; DESAT_CRITICAL latches
    latched = line.locator('[data-latched="1"]')
    expect(latched).to_contain_text(re.compile(r"LATCHED, condition ended \d\d:\d\d:\d\d"))
    expect(line).to_contain_text("!!! HIGH DESAT_CRITICAL")
    # longer than a non-latching alarm takes to clear (5 s, docs/ALARMS.md): still there
    time.sleep(6)
    expect(latched).to_be_visible()
    expect(line.locator(".ack-btn")).to_be_visible()
    tile(page, "b1").click()
    shown = page.locator('#detail-active [data-code="DESAT_CRITICAL"]')
    expect(shown).to_contain_text("HIGH DESAT_CRITICAL")
    expect(shown.locator('[data-latched="1"]')).to_contain_text("LATCHED, condition ended")
    page.click("#detail-close")
    # acknowledged, a latched alarm whose condition has ended clears
    line.locator(".ack-btn").click()
    expect(line).to_have_count(0)


@pytest.mark.timeout(120)
def test_alarm_states_from_a_real_bed(ward: Ward, pages: dict[str, Page]) -> None:
    """Low, break-through, latched: one bed, one nurse's page, the steps in order."""
    page = pages["anna"]
    expect(tile(page, "b1").locator('[data-param="HR"] .vvalue')).to_have_text("72")
    step_a_low_alarm_is_cyan_steady_and_says_low(page)
    step_a_higher_alarm_breaks_through_an_audio_pause(ward, page)
    step_a_latched_alarm_stays_shown_until_acknowledged(ward, page)
