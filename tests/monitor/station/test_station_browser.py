"""The central station in a real browser, against a real broker and real bed daemons.

One set-up for the module (docs/station.md "Tests"): a broker, two `vigil run` bed daemons
(w1/b1, w1/b2) reading an MQTT monitor each, the monitors' samples published by this test at
1 Hz, the station (`monitor.station.server.Station`, in a thread of this process, on a real
port and its own SQLite file) and one headless Debian chromium with a browser context per user.
One test runs the steps in order, each building on the one before (the bed killed in one is
offline in the next), so that scripts/test's workers cannot split them.

Expected values come from the clinical documents, not the code: the IEC 60601-1-8 ranges of
docs/station.md "Alarm signals"; DESAT_CRITICAL (SpO2 < 85 for 5 s, high) and BP_PRE_GATE
(two cuff readings >= 140/90 in `pre`, medium) from docs/ALARMS.md; the dose 0.5 mg/kg and
the pump rate (the dose over 40 min at the given concentration) from docs/PROTOCOL.md step 1.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.monitor.station.browser_rig import (
    PASSWORD,
    WAIT_MS,
    Ward,
    brighter,
    browser_context,
    bursts,
    flash,
    gaps,
    rgb,
    tile,
)

# anna logs in through the form, in the first step
LOGIN_BY_FORM = ("anna",)
pytestmark = [pytest.mark.broker_incidental]


def step_login_tiles_and_the_audio_arming_state(ward: Ward, pages: dict[str, Page]) -> None:
    page = pages["anna"]
    page.fill("#login-form input[name=user]", "anna")
    page.fill("#login-form input[name=password]", "wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_have_text("wrong user or password")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button")
    expect(page.locator("#who")).to_have_text("anna (nurse)")
    # every bed a tile, with its numbers and their ages
    for bed in ("b1", "b2"):
        expect(tile(page, bed).locator('[data-param="HR"] .vvalue')).to_have_text("72")
        expect(tile(page, bed).locator('[data-param="SPO2"] .vage')).to_have_attribute(
            "data-stale", "0"
        )
    # the browser has not let the page make a sound: it says so until armed
    arm = page.locator("#arm")
    expect(arm).to_be_visible()
    expect(arm).to_contain_text("alarm sound is OFF")
    assert arm.bounding_box()["width"] >= 1900  # type: ignore[index]  # across the screen
    arm.click()
    expect(arm).to_be_hidden()
    expect(page.locator("#audio-state")).to_have_text("alarm sound ON")
    # the audio context stops (the browser suspended it): the page says so again
    page.evaluate("window.__audio.contexts[0].suspend()")
    expect(arm).to_be_visible()
    arm.click()
    expect(arm).to_be_hidden()


def step_a_high_alarm_flashes_red_at_2_hz_and_sounds_the_high_burst(
    ward: Ward, pages: dict[str, Page]
) -> None:
    assert ward.feed is not None
    page = pages["anna"]
    ward.feed.values["b1"]["SPO2"] = 80.0  # DESAT_CRITICAL: < 85 for 5 s, high (docs/ALARMS.md)
    line = tile(page, "b1").locator('[data-code="DESAT_CRITICAL"]')
    expect(line).to_be_visible(timeout=WAIT_MS)
    expect(line).to_have_attribute("data-priority", "high")
    # priority by text and mark, not colour alone
    expect(line).to_contain_text("!!!")
    expect(line).to_contain_text("HIGH")
    expect(page.locator("#banner-alarms li").first).to_contain_text("w1/b1 HIGH DESAT_CRITICAL")
    frequency, duty, colours = flash(page, '[data-bed="w1/b1"]', "borderTopColor", 3000)
    assert 1.4 <= frequency <= 2.8, frequency
    assert 0.2 <= duty <= 0.6, duty
    r, g, b = rgb(brighter(sorted(colours)))
    assert (r > 200, g < 60, b < 60) == (True, True, True), colours  # red
    frequency, duty, colours = flash(
        page, '[data-bed="w1/b1"] [data-code="DESAT_CRITICAL"]', "backgroundColor", 3000
    )
    assert 1.4 <= frequency <= 2.8, frequency
    assert 0.2 <= duty <= 0.6, duty
    # the page is playing the high burst: 10 pulses of the high pulse length
    page.wait_for_function("window.__audio.pulses.length >= 10")
    pulses = page.evaluate("window.__audio.pulses.slice(0, 10)")
    assert all(0.075 <= p["stop"] - p["start"] <= 0.2 for p in pulses), pulses


def _schedule(page: Page, ward: Ward, script: str, run_ms: int) -> list[dict[str, Any]]:
    """Pulses `script` schedules with the page's AlarmSound, on Playwright's fake clock."""
    assert ward.station is not None
    page.goto(ward.station.url + "/api/me")
    page.evaluate(
        "async () => { const m = await import('/static/alarm-audio.js');"
        " window.__sound = new m.AlarmSound(window.AudioContext); await window.__sound.arm(); }"
    )
    page.evaluate(script)
    page.clock.run_for(run_ms)
    pulses: list[dict[str, Any]] = page.evaluate("window.__audio.pulses")
    return pulses


def step_the_audio_schedule_is_within_the_standards_ranges(chromium: Browser, ward: Ward) -> None:
    context = browser_context(chromium, ward, None)
    try:
        page = context.new_page()
        page.clock.install()
        high = bursts(_schedule(page, ward, "window.__sound.play('high')", 40_000))
        assert len(high) >= 2
        for burst in high[:-1]:
            assert len(burst) == 10  # 3+2, pause, 3+2
            between = gaps(burst)
            for i in (0, 1, 3, 5, 6, 8):  # spacing inside a group: 50-125 ms
                assert 0.050 <= between[i] <= 0.125, between
            for i in (2, 7):  # between the 3 and the 2: a break, shorter than the pause
                assert 0.125 < between[i] < 0.35 or math.isclose(between[i], 0.35), between
            assert 0.35 <= between[4] <= 1.30, between  # the pause between the halves
            for p in burst:
                assert 0.075 <= p["stop"] - p["start"] <= 0.200
        for a, b in itertools.pairwise(high):
            assert 2.5 <= b[0]["start"] - a[-1]["stop"] <= 15.0
        pulse = high[0][0]
        f0 = pulse["freq"][0][1]
        assert 150 <= f0 <= 1000
        amplitudes = pulse["wave"]["imag"]
        harmonics = [
            k
            for k in range(2, len(amplitudes))
            if 300 <= k * f0 <= 4000 and 20 * math.log10(amplitudes[k] / amplitudes[1]) >= -15
        ]
        assert len(harmonics) >= 4, amplitudes
        # rise: from silence to full over 10-20 % of the pulse
        ramp_to = next(t for kind, v, t in pulse["gain"] if kind == "ramp" and v > 0)
        rise = (ramp_to - pulse["start"]) / (pulse["stop"] - pulse["start"])
        assert 0.10 <= rise <= 0.20, rise

        page.evaluate("window.__audio.pulses.length = 0")
        page.evaluate("window.__sound.play('medium')")
        page.clock.run_for(40_000)
        medium = bursts(page.evaluate("window.__audio.pulses"))
        assert len(medium) >= 2
        for burst in medium[:-1]:
            assert len(burst) == 3
            assert all(0.125 <= g <= 0.250 for g in gaps(burst))
            assert all(0.125 <= p["stop"] - p["start"] <= 0.250 for p in burst)
        for a, b in itertools.pairwise(medium):
            assert 2.5 <= b[0]["start"] - a[-1]["stop"] <= 30.0

        page.evaluate("window.__audio.pulses.length = 0")
        page.evaluate("window.__sound.play('low')")
        page.clock.run_for(50_000)
        low = bursts(page.evaluate("window.__audio.pulses"))
        assert low
        for burst in low:
            assert 1 <= len(burst) <= 2
            assert all(0.125 <= p["stop"] - p["start"] <= 0.250 for p in burst)
        for a, b in itertools.pairwise(low):
            assert b[0]["start"] - a[-1]["stop"] > 15.0

        # a higher priority does not wait for the next medium burst: it starts at once
        page.evaluate("window.__sound.play('medium')")
        page.clock.run_for(1_000)
        page.evaluate("window.__audio.pulses.length = 0")
        switched = page.evaluate("window.__sound.ctx.currentTime")
        page.evaluate("window.__sound.play('high')")
        page.clock.run_for(3_000)
        first = min(page.evaluate("window.__audio.pulses"), key=lambda p: p["start"])
        assert first["start"] - switched < 0.1
        assert 0.075 <= first["stop"] - first["start"] <= 0.2
    finally:
        context.close()


def step_acknowledge_goes_pending_then_confirmed_with_the_nurses_name_on_two_pages(
    pages: dict[str, Page],
) -> None:
    anna, ben = pages["anna"], pages["ben"]
    watch = """() => { window.__ack = [];
      new MutationObserver(() => {
        for (const el of document.querySelectorAll('[data-bed="w1/b1"] [data-ack]'))
          window.__ack.push(el.dataset.ack + ' ' + el.textContent.trim());
      }).observe(document.body, { subtree: true, childList: true }); }"""
    for page in (anna, ben):
        expect(tile(page, "b1").locator('[data-code="DESAT_CRITICAL"]')).to_be_visible()
        page.evaluate(watch)
    tile(anna, "b1").locator('[data-code="DESAT_CRITICAL"] .ack-btn').click()
    for page in (anna, ben):
        confirmed = tile(page, "b1").locator('[data-code="DESAT_CRITICAL"] [data-ack="confirmed"]')
        expect(confirmed).to_contain_text("ACK anna")
        seen = page.evaluate("window.__ack")
        pending = [s for s in seen if s.startswith("pending")]
        assert pending, seen
        assert "ACK pending (anna)" in pending[0]
        assert seen.index(pending[0]) < next(
            i for i, s in enumerate(seen) if s.startswith("confirmed")
        )
        # acknowledged: it stops flashing
        # (looked up afresh each poll: the page rebuilds the line as data arrives)
        page.wait_for_function(
            """() => { const el = document.querySelector(
                 '[data-bed="w1/b1"] [data-code="DESAT_CRITICAL"]');
               return el !== null && getComputedStyle(el).animationName === "none"; }"""
        )


def step_an_audio_pause_shows_its_countdown_on_every_page(pages: dict[str, Page]) -> None:
    anna, ben = pages["anna"], pages["ben"]
    tile(anna, "b1").click()
    anna.click('#actions [data-cmd="audio_pause"]')
    anna.click("#detail-close")
    # the bed's 120 s pause (docs/ALARMS.md), from its retained session, on both pages
    for page in (anna, ben):
        paused = tile(page, "b1").locator('[data-paused="1"]')
        expect(paused).to_contain_text("AUDIO PAUSED")
        expect(paused).to_contain_text(re.compile(r"1 min|1[0-9]{2} s|[0-9]{1,2} s"))


def step_a_viewer_cannot_acknowledge_and_a_nurse_cannot_override(
    pages: dict[str, Page],
) -> None:
    vic, anna, cleo = pages["vic"], pages["anna"], pages["cleo"]
    expect(tile(vic, "b1")).to_be_visible()
    assert tile(vic, "b1").locator(".ack-btn").count() == 0
    # the page hides the button; the station refuses the command itself
    vic.evaluate("window.vigilStation.send('w1/b1', {cmd: 'audio_pause'})")
    expect(vic.locator(".toast.bad").last).to_contain_text("a viewer cannot send commands")
    anna.evaluate(
        "window.vigilStation.send('w1/b1', "
        "{cmd: 'override', what: 'relative_contraindication', reason: 'nurse tries'})"
    )
    expect(anna.locator(".toast.bad").last).to_contain_text("override: only a clinician may")
    # a clinician may, with a reason; the bed accepts it (nothing else to override yet)
    tile(cleo, "b1").click()
    form = cleo.locator("#override-form")
    form.locator("select[name=what]").select_option("relative_contraindication")
    form.locator("input[name=reason]").fill("pregnancy discussed with obstetrics")
    form.locator("button").click()
    expect(cleo.locator(".toast.good").last).to_contain_text("override by cleo: accepted")
    cleo.click("#detail-close")


def step_the_checklist_form_is_refused_then_accepted(ward: Ward, pages: dict[str, Page]) -> None:
    assert ward.feed is not None
    page = pages["anna"]
    tile(page, "b2").click()
    page.click('#actions [data-cmd="open_session"]')
    form = page.locator("#checklist-form")
    form.locator("input[name=patient_id]").fill("P-0042")
    form.locator("input[name=weight_kg]").fill("70")
    form.locator("input[name=concentration]").fill("10")
    items = form.locator("fieldset[data-item]")
    for i in range(items.count() - 1):  # one item left unanswered
        items.nth(i).locator("input[value=no]").check()
    form.locator("button[type=submit]").click()
    result = form.locator(".form-result")
    expect(result).to_contain_text("answer every item")
    expect(result).to_contain_text("concomitant_cns_depressants")
    # an absolute contraindication: the bed refuses, with its reason
    form.locator('[data-item="raised_intracranial_pressure"] input[value=yes]').check()
    items.nth(items.count() - 1).locator("input[value=no]").check()
    form.locator("button[type=submit]").click()
    expect(result).to_contain_text("REFUSED")
    expect(result).to_contain_text("absolute contraindication: raised_intracranial_pressure")
    form.locator('[data-item="raised_intracranial_pressure"] input[value=no]').check()
    form.locator("button[type=submit]").click()
    # 70 kg x 0.5 mg/kg = 35 mg; 35 mg / 10 mg/mL = 3.5 mL over 40 min = 5.25 mL/h
    expect(result.locator("[data-dose]")).to_have_text("dose 35.0 mg")
    expect(result.locator("[data-rate]")).to_have_text("pump rate 5.3 mL/h")
    page.click("#checklist-close")
    expect(page.locator("#detail-title")).to_contain_text("patient P-0042")
    page.click("#detail-close")
    # in `pre`, two cuff readings >= 140/90: BP_PRE_GATE, medium, yellow at 0.4-0.8 Hz
    ward.feed.determination("b2", 150, 95)
    time.sleep(1.1)
    ward.feed.determination("b2", 152, 96)
    line = tile(page, "b2").locator('[data-code="BP_PRE_GATE"]')
    expect(line).to_have_attribute("data-priority", "medium")
    expect(line).to_contain_text("!! MEDIUM")
    frequency, duty, colours = flash(
        page, '[data-bed="w1/b2"] [data-code="BP_PRE_GATE"]', "backgroundColor", 6000
    )
    assert 0.4 <= frequency <= 0.8, frequency
    assert 0.2 <= duty <= 0.6, duty
    r, g, b = rgb(brighter(sorted(colours)))
    assert (r > 200, g > 170, b < 60) == (True, True, True), colours  # yellow
    # low priority: cyan and steady (the page's own style for it)
    style = page.evaluate(
        "() => { const li = document.createElement('li'); li.className = 'alarm prio-low flashing';"
        " document.querySelector('#ward').append(li); const s = getComputedStyle(li);"
        " const out = [s.animationName, s.backgroundColor]; li.remove(); return out; }"
    )
    assert style[0] == "none"
    r, g, b = rgb(style[1])
    assert (r < 80, g > 150, b > 180) == (True, True, True), style  # cyan


def step_a_killed_bed_is_offline_and_its_values_go_stale(
    ward: Ward, pages: dict[str, Page]
) -> None:
    page = pages["ben"]
    ward.beds["b2"].send_signal(signal.SIGKILL)
    ward.beds["b2"].wait(10)
    # the broker publishes the bed's Last Will at once: its socket is gone
    expect(tile(page, "b2").locator('[data-status="offline"]')).to_contain_text("OFFLINE")
    # no more vitals through the dead bed: after 3 expected intervals (3 x 2 s) they are stale
    expect(tile(page, "b2").locator('[data-param="HR"] .vage')).to_contain_text("STALE")
    # each value by its own interval: the cuff reading of seconds ago is not stale (15 min)
    expect(tile(page, "b2").locator('[data-param="NIBP_SYS"] .vage')).to_have_attribute(
        "data-stale", "0"
    )
    expect(tile(page, "b1").locator('[data-param="HR"] .vage')).to_have_attribute("data-stale", "0")
    # a bed offline during a session is the station's technical alarm
    expect(page.locator("#banner-alarms")).to_contain_text("BED_OFFLINE")


def step_a_restarted_station_keeps_its_history(ward: Ward, pages: dict[str, Page]) -> None:
    assert ward.station is not None
    ward.station.restart()
    page = pages["anna"]
    # the page reconnects by itself; the login (its cookie) survives the restart
    expect(page.locator("#link")).to_have_text("broker connected")
    tile(page, "b1").click()
    history = page.locator("#history tbody")
    expect(history).to_contain_text("DESAT_CRITICAL")
    expect(history).to_contain_text("anna")  # who acknowledged
    expect(page.locator("#report-link")).to_have_attribute("href", "/report/w1/b1")
    page.click("#detail-close")
    # the report: the same history, times with their offset (ISO 8601)
    report = page.context.new_page()
    report.goto(ward.station.url + "/report/w1/b1")
    expect(report.locator("#history tbody")).to_contain_text("DESAT_CRITICAL")
    first = report.locator("#history tbody tr td").first.text_content() or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", first), first
    report.close()


def step_broker_loss_at_the_station(ward: Ward, pages: dict[str, Page]) -> None:
    page = pages["ben"]
    ward.broker.stop()
    expect(page.locator("#banner-alarms")).to_contain_text("STATION_BROKER_LOST")
    for bed in ("b1", "b2"):
        expect(tile(page, bed).locator('[data-status="no-broker"]')).to_have_text(
            "NO DATA: station lost the broker"
        )
    expect(tile(page, "b1").locator('[data-param="HR"] .vage')).to_contain_text("STALE")
    # heard: the station's technical alarm is medium at least
    assert page.evaluate("window.vigilStation.sound.priority") in ("medium", "high")


@pytest.mark.timeout(150)
def test_the_station_in_a_browser(chromium: Browser, ward: Ward, pages: dict[str, Page]) -> None:
    """One ward, one browser, the steps in order (each builds on the one before; one test, so
    that pytest-xdist cannot split them across workers)."""
    step_login_tiles_and_the_audio_arming_state(ward, pages)
    step_a_high_alarm_flashes_red_at_2_hz_and_sounds_the_high_burst(ward, pages)
    step_the_audio_schedule_is_within_the_standards_ranges(chromium, ward)
    step_acknowledge_goes_pending_then_confirmed_with_the_nurses_name_on_two_pages(pages)
    step_an_audio_pause_shows_its_countdown_on_every_page(pages)
    step_a_viewer_cannot_acknowledge_and_a_nurse_cannot_override(pages)
    step_the_checklist_form_is_refused_then_accepted(ward, pages)
    step_a_killed_bed_is_offline_and_its_values_go_stale(ward, pages)
    step_a_restarted_station_keeps_its_history(ward, pages)
    step_broker_loss_at_the_station(ward, pages)
