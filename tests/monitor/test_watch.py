"""`vigil watch`: the nurse console's model, and the console as a nurse uses it (in tmux)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt.client import Client as MqttClient
from monitor import console as line_console
from monitor.cli import build_parser
from monitor.commands import Ack, AudioPause, parse_command
from monitor.watch.app import decode_keys, subscriptions
from monitor.watch.model import (
    ANSI,
    Cell,
    Line,
    Segment,
    WardView,
    display_width,
    flow,
    iso_local,
    plain_text,
    to_ansi,
)
from tests.helpers import BrokerProcess, running_bed
from tests.monitor.test_daemon import PREFIX, TOPIC, sample, settings_for

T0 = 1767226000.0
REPO = Path(__file__).resolve().parents[2]


def alarm(code: str, priority: str, since: float, *, state: str = "active") -> dict[str, Any]:
    return {
        "alarm_id": f"w1/b1/{code}/{round(since * 1000)}",
        "code": code,
        "priority": priority,
        "kind": "physiological",
        "state": state,
        "since": since,
        "param": "SPO2",
        "value": 80.0,
        "limit": 85.0,
        "level": 0,
        "latched": False,
    }


def event(a: dict[str, Any], state: str, **extra: Any) -> bytes:
    body = {k: a[k] for k in ("alarm_id", "code", "priority", "kind", "param", "value", "limit")}
    return json.dumps({"t": a["since"], **body, "state": state, "phase": "none", **extra}).encode()


def view_with_bed(now: float = T0, **kwargs: Any) -> WardView:
    view = WardView(user="nurse-kim", **kwargs)
    view.set_link(connected=True)
    view.handle("vigil/w1/b1/status", b'{"status": "online"}', now)
    session = {"t": now, "phase": "infusion", "audio_paused_until": None}
    view.handle("vigil/w1/b1/session", json.dumps(session).encode(), now)
    vital(view, "HR", 72.0, now)
    return view


def vital(view: WardView, param: str, value: float, now: float, bed: str = "w1/b1") -> None:
    doc = {"t": now, "param": param, "value": value, "valid": True, "device_id": "mon1"}
    view.handle(f"vigil/{bed}/vitals", json.dumps(doc).encode(), now)


def active(view: WardView, *alarms: dict[str, Any], now: float = T0, bed: str = "w1/b1") -> None:
    view.handle(f"vigil/{bed}/alarms/active", json.dumps(list(alarms)).encode(), now)


def screen(view: WardView, now: float) -> list[str]:
    return [plain_text(line) for line in view.render(now)]


def line_with(view: WardView, now: float, text: str) -> Line:
    (line,) = [ln for ln in view.render(now) if text in plain_text(ln)]
    return line


# ---------------------------------------------------------------------- model


def test_alarms_are_listed_high_medium_low_in_iec_colours() -> None:
    view = view_with_bed()
    low = alarm("SYMPATHOMIMETIC_SURGE", "low", T0 - 30)
    high = alarm("DESAT_CRITICAL", "high", T0 - 5)
    medium = alarm("TACHY", "medium", T0 - 60)
    active(view, low, high, medium)
    text = screen(view, T0)
    rows = [
        i for i, ln in enumerate(text) for c in ("DESAT_CRITICAL", "TACHY ", "SYMPATHO") if c in ln
    ]
    assert [text[i].split()[2] for i in rows] == [
        "DESAT_CRITICAL",
        "TACHY",
        "SYMPATHOMIMETIC_SURGE",
    ]
    styles = {
        code: {s.style for s in line_with(view, T0, code)} for code in ("DESAT_CRITICAL", "TACHY ")
    }
    assert "high" in styles["DESAT_CRITICAL"]
    assert "medium" in styles["TACHY "]
    assert "low" in {s.style for s in line_with(view, T0, "SYMPATHOMIMETIC_SURGE")}
    # IEC 60601-1-8: red high, yellow medium, cyan low; the same codes as the line console
    assert ANSI["high"] == line_console._COLOURS["high"] == "\x1b[1;31m"
    assert ANSI["medium"] == line_console._COLOURS["medium"] == "\x1b[33m"
    assert ANSI["low"] == line_console._COLOURS["low"] == "\x1b[36m"
    assert to_ansi(line_with(view, T0, "DESAT_CRITICAL"), 200).count("\x1b[1;31m") == 1


def test_screen_shows_phase_vitals_with_ages_honesty_line_and_iso_times() -> None:
    view = view_with_bed()
    vital(view, "SPO2", 97.0, T0 + 2)
    doc = {"t": T0 - 240, "param": "NIBP_SYS", "value": 121, "valid": True, "device_id": "m"}
    view.handle("vigil/w1/b1/vitals", json.dumps(doc).encode(), T0 + 2)
    doc |= {"param": "NIBP_DIA", "value": 79}
    view.handle("vigil/w1/b1/vitals", json.dumps(doc).encode(), T0 + 2)
    active(view, alarm("DESAT_CRITICAL", "high", T0))
    text = "\n".join(screen(view, T0 + 3))
    assert "decision support, not a certified medical device" in text.lower()
    bed = next(ln for ln in text.splitlines() if "w1/b1 " in ln)
    assert "infusion" in bed
    assert "online" in bed
    assert "HR 72 (3s)" in bed
    assert "SpO2 97% (1s)" in bed
    assert "NIBP 121/79 (243s)" in bed
    # ISO 8601 with an offset: the date and time in the header, time+offset on the alarm
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", text)
    assert re.search(r"since \d\d:\d\d:\d\d[+-]\d\d:\d\d \(3s\)", text)


def test_offline_bed_is_shown_offline_in_the_alert_style_never_fine() -> None:
    view = view_with_bed()
    view.handle("vigil/w1/b1/status", b'{"status": "offline"}', T0 + 1)
    line = line_with(view, T0 + 1, "[1] w1/b1")
    (seg,) = [s for s in line if "OFFLINE" in s.text]
    assert seg.style == "alert"
    assert ANSI["alert"] == "\x1b[1;7;31m"  # inverse red
    assert "online" not in plain_text(line)


def test_bed_without_vitals_for_longer_than_stale_s_is_stale() -> None:
    view = view_with_bed(stale_s=30.0)
    assert view.bed_condition(view.beds["w1/b1"], T0 + 30) == ("online", "plain")
    text, style = view.bed_condition(view.beds["w1/b1"], T0 + 31)
    assert (text, style) == ("STALE: no vitals for 31 s", "alert")
    hr = next(s for s in line_with(view, T0 + 31, "[1] w1/b1") if "(31s)" in s.text)
    assert hr.style == "alert"
    vital(view, "HR", 70.0, T0 + 40)
    assert view.bed_condition(view.beds["w1/b1"], T0 + 41)[0] == "online"
    # a bed that never sent vitals is stale too, counted from when it was first seen
    view.handle("vigil/w1/b2/status", b'{"status": "online"}', T0)
    assert view.bed_condition(view.beds["w1/b2"], T0 + 31) == ("STALE: no vitals", "alert")
    # and one whose status was never seen is not fine either
    view.handle("vigil/w1/b3/session", json.dumps({"t": T0, "phase": "none"}).encode(), T0)
    assert view.bed_condition(view.beds["w1/b3"], T0) == ("NO STATUS", "alert")


def test_lost_broker_link_is_said_above_everything() -> None:
    view = view_with_bed()
    active(view, alarm("DESAT_CRITICAL", "high", T0))
    view.set_link(connected=False, error="MqttError: connection refused")
    assert "NOT CONNECTED TO THE WARD BROKER" in screen(view, T0)[2]
    assert view.press("a", T0) == []
    assert view.notice is not None
    assert "not connected" in view.notice


def test_bell_rings_once_for_each_new_high_alarm_only() -> None:
    view = view_with_bed()
    high = alarm("DESAT_CRITICAL", "high", T0)
    medium = alarm("TACHY", "medium", T0)
    view.handle("vigil/w1/b1/alarms", event(medium, "active"), T0)
    assert view.take_bells() == 0
    view.handle("vigil/w1/b1/alarms", event(high, "active"), T0)
    active(view, high, medium)  # the retained list that follows does not ring it again
    view.handle("vigil/w1/b1/alarms", event(high, "active"), T0)  # a QoS 1 redelivery
    assert view.take_bells() == 1
    assert view.take_bells() == 0
    view.handle("vigil/w1/b1/alarms", event(high, "escalated", level=1), T0 + 60)
    view.handle("vigil/w1/b1/alarms", event(high, "acknowledged", user="ann"), T0 + 61)
    view.handle("vigil/w1/b1/alarms", event(high, "cleared"), T0 + 62)
    assert view.take_bells() == 0
    # a high alarm first learnt from the retained list (console started late) rings too
    late = alarm("BRADY_SEVERE", "high", T0 + 70)
    active(view, late, now=T0 + 70)
    assert view.take_bells() == 1


def test_no_bell_while_the_beds_audio_is_paused() -> None:
    view = view_with_bed()
    pause = {"t": T0, "phase": "infusion", "audio_paused_until": T0 + 120}
    view.handle("vigil/w1/b1/session", json.dumps(pause).encode(), T0)
    view.handle("vigil/w1/b1/alarms", event(alarm("DESAT_CRITICAL", "high", T0), "active"), T0)
    assert view.take_bells() == 0
    assert "audio paused until" in plain_text(line_with(view, T0, "[1] w1/b1"))
    view.handle("vigil/w1/b1/alarms", event(alarm("BRADY_SEVERE", "high", T0), "active"), T0 + 121)
    assert view.take_bells() == 1


def test_a_acknowledges_the_highest_unacknowledged_alarm_with_a_valid_command() -> None:
    view = view_with_bed()
    old_medium = alarm("TACHY", "medium", T0 - 100)
    high = alarm("DESAT_CRITICAL", "high", T0)
    acked = alarm("BRADY_SEVERE", "high", T0 - 200, state="acknowledged")
    active(view, old_medium, high, acked)
    (out,) = view.press("a", T0)
    assert out.topic == f"{PREFIX}/cmd"
    cmd = parse_command(out.payload)
    assert isinstance(cmd, Ack)
    assert cmd.alarm_id == high["alarm_id"]
    assert cmd.user == "nurse-kim"
    assert cmd.request_id == out.request_id
    (again,) = view.press("a", T0)
    assert parse_command(again.payload).request_id != cmd.request_id  # fresh each time
    assert "sent, waiting for the bed" in "\n".join(screen(view, T0))
    assert "NO ANSWER" in "\n".join(screen(view, T0 + 11))


def test_selection_picks_the_alarm_and_results_show_refusals() -> None:
    view = view_with_bed()
    high = alarm("DESAT_CRITICAL", "high", T0)
    medium = alarm("TACHY", "medium", T0)
    active(view, high, medium)
    for key in ("down", "down", "down"):  # bed row, DESAT_CRITICAL, TACHY
        assert view.press(key, T0) == []
    assert view.selection == ("w1/b1", medium["alarm_id"])
    assert plain_text(line_with(view, T0, "TACHY ")).startswith("    >")
    (out,) = view.press("a", T0)
    assert parse_command(out.payload) == Ack(
        cmd="ack", request_id=out.request_id, user="nurse-kim", alarm_id=medium["alarm_id"]
    )
    result = {"request_id": out.request_id, "ok": False, "error": "TACHY is already acknowledged"}
    view.handle("vigil/w1/b1/cmd/result", json.dumps(result).encode(), T0 + 1)
    refused = line_with(view, T0 + 1, "REFUSED")
    assert "REFUSED: TACHY is already acknowledged" in plain_text(refused)
    assert refused[-1].style == "alert"
    # an acknowledged alarm that is selected is not acknowledged twice
    active(view, high, {**medium, "state": "acknowledged"})
    assert view.press("a", T0 + 2) == []
    assert view.notice == "TACHY on w1/b1 is already acknowledged"
    # a cleared selection falls back to its bed; Esc goes back to "highest unacknowledged"
    active(view, high)
    assert view.press("esc", T0 + 3) == []
    (out,) = view.press("a", T0 + 3)
    assert json.loads(out.payload)["alarm_id"] == high["alarm_id"]


def test_p_pauses_the_selected_beds_audio_and_number_keys_select_beds() -> None:
    view = view_with_bed()
    view.handle("vigil/w1/b2/status", b'{"status": "online"}', T0)
    assert view.press("p", T0) == []  # two beds, none selected, no alarm: which bed?
    assert view.notice is not None
    view.press("2", T0)
    (out,) = view.press("p", T0)
    assert out.topic == "vigil/w1/b2/cmd"
    assert isinstance(parse_command(out.payload), AudioPause)
    view.handle("vigil/w1/b2/status", b'{"status": "offline"}', T0)
    assert view.press("p", T0) == []  # an offline bed cannot take it: said, not queued
    assert view.notice == "audio pause on w1/b2: not sent, w1/b2 is OFFLINE"
    assert view.press("q", T0) == []
    assert view.quit


def test_ward_filter_and_garbage() -> None:
    view = WardView(user="u", ward="w1")
    view.handle("vigil/w2/b1/status", b'{"status": "online"}', T0)
    view.handle("vigil/w1/b1/vitals", b"not json", T0)
    view.handle("vigil/w1/b1/alarms/active", b'{"not": "a list"}', T0)
    view.handle("other/w1/b1/status", b'{"status": "online"}', T0)
    view.handle("vigil/w1/b2/status", b"", T0)  # a cleared retained message: not a bed
    assert set(view.beds) == {"w1/b1"}
    assert view.malformed == 2
    assert subscriptions("w1")[0] == "vigil/w1/+/status"
    assert "vigil/+/+/alarms/active" in subscriptions(None)


def test_screen_fits_the_terminal_and_says_what_it_hides() -> None:
    view = view_with_bed()
    for n in range(2, 30):
        view.handle(f"vigil/w1/b{n:02}/status", b'{"status": "online"}', T0)
    lines = view.render(T0, height=20)
    assert len(lines) == 20
    assert any("more rows: enlarge the window" in plain_text(ln) for ln in lines)
    assert len(re.sub(r"\x1b\[[0-9;]*m", "", to_ansi(lines[0], 30))) == 30


def test_keys_are_decoded_from_raw_terminal_input() -> None:
    assert decode_keys(b"\x1b[A\x1b[Bj\x1bOAa1Q\x1b[1;5C\x1b") == [
        "up", "down", "j", "up", "a", "1", "q", "esc",
    ]  # fmt: skip


def test_cli_registers_watch() -> None:
    args = build_parser().parse_args(
        ["watch", "--broker", "mqtt://h:1883", "--ward", "w1", "--user", "kim", "--stale-s", "5"]
    )
    assert (args.broker, args.ward, args.user, args.stale_s) == ("mqtt://h:1883", "w1", "kim", 5.0)


def surge_bed(now: float = T0) -> WardView:
    """One bed in a BP surge with every kind of vital, an audio pause and the BP_CRISIS alarm."""
    view = view_with_bed(now)
    for param, value in (
        ("SPO2", 97.0), ("NIBP_SYS", 212.0), ("NIBP_DIA", 124.0), ("NIBP_MEAN", 153.0),
        ("ABP_SYS", 208.0), ("ABP_DIA", 121.0), ("ABP_MEAN", 150.0), ("RR", 18.0),
        ("ETCO2", 38.0), ("PR", 73.0),
    ):  # fmt: skip
        vital(view, param, value, now)
    pause = {"phase": "infusion", "audio_paused_until": now + 100, "t": now}
    view.handle("vigil/w1/b1/session", json.dumps(pause).encode(), now)
    crisis = {**alarm("BP_CRISIS", "high", now - 4), "param": "NIBP_SYS", "value": 212.0}
    active(view, {**crisis, "limit": 200.0, "latched": True, "level": 2}, now=now)
    return view


# Everything the bed row and its alarm row say, at any width.
SURGE_FACTS = (
    "[1]", "w1/b1", "infusion", "online", "HR 72 (0s)", "SpO2 97% (0s)",
    "NIBP 212/124 (153) (0s)", "ABP 208/121 (150) (0s)", "RR 18 (0s)", "EtCO2 38 (0s)",
    "PR 73 (0s)", "audio paused until", "(100s left)", "*** HIGH", "BP_CRISIS",
    "ACTIVE (escalated, level 2)", "NIBP_SYS 212 (limit 200)", "(4s)", "latched",
)  # fmt: skip


@pytest.mark.parametrize("width", [40, 79, 119, 199])
def test_issue11_5_no_vital_is_cut_off_at_any_width(width: int) -> None:
    """Issue 11 item 5: at 80 columns the bed line stopped after SpO2 and the alarm row lost its
    value and limit. Every row is laid out for the width: wrapped, nothing cut off."""
    view = surge_bed()
    lines = [plain_text(ln) for ln in view.render(T0, width=width)]
    assert all(len(ln) <= width for ln in lines), [ln for ln in lines if len(ln) > width]
    # a wrapped line ends at a word, so each fact is whole on one line
    for fact in SURGE_FACTS:
        assert any(fact in ln for ln in lines), (fact, lines)
    # at 200 columns the bed is one line and its alarm another, aligned as before
    if width == 199:
        assert sum("NIBP 212/124" in ln and "w1/b1" in ln for ln in lines) == 1


def test_issue11_5_a_narrow_bed_is_two_lines_its_continuation_indented() -> None:
    view = surge_bed()
    lines = [plain_text(ln) for ln in view.render(T0, width=79)]
    first = next(i for i, ln in enumerate(lines) if "[1] w1/b1" in ln)
    assert "NIBP 212/124 (153) (0s)" in lines[first]
    assert lines[first + 1].startswith("     ")
    assert "ABP 208/121 (150) (0s)" in lines[first + 1]
    assert "w1/b1" not in lines[first + 1]


def test_issue11_5_a_short_screen_hides_whole_beds_never_half_of_one() -> None:
    view = surge_bed()
    for n in range(2, 12):
        view.handle(f"vigil/w1/b{n:02}/status", b'{"status": "online"}', T0)
        for param, value in (("NIBP_SYS", 190.0), ("NIBP_DIA", 100.0), ("ETCO2", 40.0)):
            vital(view, param, value, T0, bed=f"w1/b{n:02}")
    for height in range(22, 40):
        lines = [plain_text(ln) for ln in view.render(T0, height=height, width=60)]
        assert len(lines) <= height
        assert "more rows: enlarge the window" in "\n".join(lines)
        beds = [i for i, ln in enumerate(lines) if re.match(r" \[\d+\] w1/b", ln)]
        for i in beds:  # each bed shown is shown with its blood pressure and its last vital
            block = "\n".join(lines[i : i + 3])
            assert "NIBP" in block
            assert "EtCO2" in block


def test_issue11_5_text_is_measured_in_terminal_cells() -> None:
    """A wide (East Asian) character takes two cells, a combining one none; control characters
    from the broker never reach the terminal."""
    assert display_width("看護師") == 6
    assert display_width("e\u0301") == 1
    assert to_ansi((Segment("看護師abc"),), 5) == "看護"
    assert to_ansi((Segment("ab"), Segment("看x", "bold")), 3) == "ab"
    assert "\x1b" not in to_ansi((Segment("ok\x1b[2Jgone"),), 20)
    view = view_with_bed()
    view.user = "看護師の山田さん"
    for line in view.render(T0, width=30):
        assert display_width(re.sub(r"\x1b\[[0-9;]*m", "", to_ansi(line, 30))) <= 30
        assert display_width(plain_text(line)) <= 30
    header = "".join(plain_text(ln) for ln in view.render(T0, width=30)[:3])
    assert "看護師の山田さん" in header


def test_issue11_5_flow_breaks_a_cell_wider_than_the_line_and_drops_nothing() -> None:
    cells = [Cell((Segment("a" * 25, "bold"),)), Cell((Segment("tail"),))]
    lines = flow(cells, 10, indent=2)
    assert [plain_text(ln) for ln in lines] == ["a" * 10, "  " + "a" * 8, "  " + "a" * 7, "  tail"]
    one = [(Segment("a" * 25, "bold"), Segment(" tail"))]
    assert flow(cells, None) == flow(cells, 30) == one


def test_issue11_8_the_selected_alarm_shows_its_alarm_id_and_the_shell_ack() -> None:
    """Issue 11 item 8: acknowledging from a shell needs an alarm_id nobody showed."""
    view = surge_bed()
    view.broker = "mqtt://127.0.0.1:1883"
    alarm_id = view.beds["w1/b1"].alarms[0].alarm_id
    assert alarm_id is not None
    assert not any(alarm_id in ln for ln in screen(view, T0))  # shown for the selected alarm
    view.press("down", T0)
    view.press("down", T0)
    text = screen(view, T0)
    row = next(i for i, ln in enumerate(text) if "BP_CRISIS " in ln)
    assert text[row].startswith("    >")
    assert text[row + 1].strip() == f"alarm_id {alarm_id}"
    assert any(
        f"vigil cmd --broker mqtt://127.0.0.1:1883 --bed vigil/w1/b1 ack alarm_id={alarm_id}" in ln
        for ln in text
    )
    narrow = [plain_text(ln) for ln in view.render(T0, width=60)]
    assert any(alarm_id in ln for ln in narrow)  # whole on one line, to copy
    view.press("up", T0)
    assert not any(alarm_id in ln for ln in screen(view, T0))


# A simulated bed: its clock 10 h ahead of the console's.
AHEAD = 36000.0


def test_issue11_9_ages_advance_on_the_beds_clock_not_the_consoles() -> None:
    """Issue 11 item 9: with the bed's clock ahead, every age read (0s) for ever."""
    view = view_with_bed(T0)
    # sent by the bed at its time, arriving at the console's T0
    view.handle("vigil/w1/b1/vitals", sample(T0 + AHEAD, "HR", 72.0), T0)
    active(view, alarm("DESAT_CRITICAL", "high", T0 + AHEAD - 3), now=T0)
    bed = plain_text(line_with(view, T0 + 5, "[1] w1/b1"))
    assert "HR 72 (5s)" in bed
    row = plain_text(line_with(view, T0 + 5, "DESAT_CRITICAL"))
    assert "(8s)" in row
    # the bed's clock is shown with the bed, the console's in the header
    bed_time = iso_local(T0 + AHEAD + 5, date=False)
    assert f"bed clock {bed_time}" in bed
    assert f"console {iso_local(T0 + 5)}" in screen(view, T0 + 5)[0]


def test_issue11_9_an_audio_pause_ends_on_the_beds_clock() -> None:
    """Issue 11 item 9: an audio pause in a simulated bed's time never ended on screen."""
    view = view_with_bed(T0)
    pause = {"t": T0 + AHEAD, "phase": "infusion", "audio_paused_until": T0 + AHEAD + 120}
    view.handle("vigil/w1/b1/session", json.dumps(pause).encode(), T0)
    assert "(120s left)" in plain_text(line_with(view, T0, "[1] w1/b1"))
    assert "(20s left)" in plain_text(line_with(view, T0 + 100, "[1] w1/b1"))
    assert "audio paused" not in plain_text(line_with(view, T0 + 121, "[1] w1/b1"))
    # and a new high alarm after the pause rings the station's bell
    view.handle("vigil/w1/b1/alarms", event(alarm("BRADY_SEVERE", "high", T0 + AHEAD), "active"),
                T0 + 121)  # fmt: skip
    assert view.take_bells() == 1


def test_issue11_9_a_fast_simulated_clock_is_followed_at_its_rate() -> None:
    """A bed at 60x: STALE and the ages count the bed's seconds, as the bed's own alarms do."""
    view = view_with_bed(T0, stale_s=30.0)
    view.handle("vigil/w1/b1/status", json.dumps({"status": "online", "t": T0}).encode(), T0)
    for k in range(1, 41):  # every half second for 20 s: 30 bed seconds each
        view.handle("vigil/w1/b1/vitals", sample(T0 + 30 * k, "HR", 72.0), T0 + 0.5 * k)
    last_rx = T0 + 20.0
    assert view.beds["w1/b1"].clock.rate == pytest.approx(60.0)
    assert view.bed_condition(view.beds["w1/b1"], last_rx + 0.4) == ("online", "plain")
    # 10 s later on the console: 600 s later on the bed
    assert view.bed_condition(view.beds["w1/b1"], last_rx + 10) == (
        "STALE: no vitals for 600 s", "alert",
    )  # fmt: skip
    assert "HR 72 (600s)" in plain_text(line_with(view, last_rx + 10, "[1] w1/b1"))
    assert "60x" in plain_text(line_with(view, last_rx + 10, "[1] w1/b1"))


def test_issue11_9_a_real_beds_jitter_is_not_taken_for_a_fast_clock() -> None:
    view = view_with_bed(T0)
    for k in range(1, 31):  # a second apart on the bed, arriving 0-0.3 s late
        view.handle("vigil/w1/b1/vitals", sample(T0 + k, "HR", 72.0), T0 + k + (k % 4) * 0.1)
    assert view.beds["w1/b1"].clock.rate == 1.0
    assert "bed clock" not in plain_text(line_with(view, T0 + 31, "[1] w1/b1"))


def test_issue11_9_retained_messages_do_not_set_the_beds_clock() -> None:
    """The broker replays a day-old session on subscribing: the alarm it shows is a day old,
    not 10 s old (retained times say nothing about the bed's clock now)."""
    view = WardView(user="u")
    view.set_link(connected=True)
    old = T0 - 86400
    view.handle("vigil/w1/b1/status", b'{"status": "offline"}', T0, retained=True)
    stored = {"t": old, "phase": "post", "audio_paused_until": old + 120}
    view.handle("vigil/w1/b1/session", json.dumps(stored).encode(), T0, retained=True)
    active(view, alarm("BP_CRISIS", "high", old - 10), now=T0)
    row = plain_text(line_with(view, T0, "BP_CRISIS"))
    assert "(86410s)" in row
    assert "audio paused" not in plain_text(line_with(view, T0, "[1] w1/b1"))


def test_issue11_16_a_bed_whose_retained_status_is_cleared_leaves_the_console() -> None:
    """Issue 11 item 16: a retired bed stayed OFFLINE for ever, one with an ACTIVE alarm."""
    view = view_with_bed()
    view.handle("vigil/w1/b2/status", b'{"status": "offline"}', T0, retained=True)
    active(view, alarm("BP_CRISIS", "high", T0 - 50), bed="w1/b2")
    # the broker's stored Last Will: it went offline before this console heard of it
    assert any("w1/b2" in ln and "OFFLINE since before" in ln for ln in screen(view, T0))
    # retiring it: empty retained payloads on its alarms/active, session and status
    view.handle("vigil/w1/b2/alarms/active", b"", T0 + 1)
    assert not any("BP_CRISIS" in ln for ln in screen(view, T0 + 1))
    view.handle("vigil/w1/b2/session", b"", T0 + 1)
    view.handle("vigil/w1/b2/status", b"", T0 + 1)
    assert "w1/b2" not in view.beds
    assert not any("w1/b2" in ln for ln in screen(view, T0 + 1))
    assert view.malformed == 0
    # the number keys now count the beds that are left
    view.press("2", T0 + 1)
    assert view.selection is None


def test_issue11_16_a_bed_offline_longer_than_hide_offline_s_is_hidden_and_named() -> None:
    view = view_with_bed(hide_offline_s=3600.0)
    view.handle("vigil/w1/b2/status", b'{"status": "online"}', T0)
    view.handle("vigil/w1/b2/status", b'{"status": "offline"}', T0 + 10)
    active(view, alarm("BP_CRISIS", "high", T0), now=T0 + 10, bed="w1/b2")
    shown = screen(view, T0 + 3610)
    assert any("[2] w1/b2" in ln and "OFFLINE" in ln and "(1 h 00 min)" in ln for ln in shown)
    hidden = screen(view, T0 + 3611)
    assert not any("[2] w1/b2" in ln or "BP_CRISIS" in ln for ln in hidden)
    assert "1 bed(s) offline for more than 3600 s not shown: w1/b2" in "\n".join(hidden)
    view.press("esc", T0 + 3611)
    assert view.press("a", T0 + 3611) == []  # its alarm is not the ward's to acknowledge now
    assert view.notice == "no unacknowledged alarm on the ward"
    # back online: shown again
    view.handle("vigil/w1/b2/status", b'{"status": "online"}', T0 + 3700)
    assert any("[2] w1/b2" in ln for ln in screen(view, T0 + 3700))
    # 0: never hidden
    never = view_with_bed(hide_offline_s=0.0)
    never.handle("vigil/w1/b1/status", b'{"status": "offline"}', T0)
    assert any("[1] w1/b1" in ln and "OFFLINE" in ln for ln in screen(never, T0 + 10 * 86400))


def test_issue11_16_cli_takes_hide_offline_after() -> None:
    parser = build_parser()
    args = parser.parse_args(["watch", "--broker", "mqtt://h", "--hide-offline-after", "600"])
    assert args.hide_offline_after == 600.0
    assert parser.parse_args(["watch", "--broker", "mqtt://h"]).hide_offline_after is None
    assert (
        parser.parse_args(
            ["watch", "--broker", "mqtt://h", "--hide-offline-after", "0"]
        ).hide_offline_after
        == 0.0
    )
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["watch", "--broker", "mqtt://h", "--hide-offline-after", "-1"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------- as a nurse sees it

# Real seconds for each step of the tmux test; DESAT_CRITICAL itself needs ~6 s of samples.
STEP_S = 30.0


async def _tmux(socket: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", socket, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def _screen_until(socket: str, *needles: str) -> str:
    """Poll the pane until every needle is on one screen; the last screen in the error."""
    text = ""
    try:
        async with asyncio.timeout(STEP_S):
            while not all(n in text for n in needles):
                await asyncio.sleep(0.2)
                text = await _tmux(socket, "capture-pane", "-p", "-t", "watch")
    except TimeoutError:
        pytest.fail(f"never on screen: {needles}\n--- last screen ---\n{text}")
    return text


async def _feed_desaturation(client: aiomqtt.Client) -> None:
    """SpO2 80 % (and HR 70) once a second, as the bed's monitor would send them."""
    while True:
        now = time.time()
        await client.publish(TOPIC, sample(now, "SPO2", 80.0), qos=1, timeout=5)
        await client.publish(TOPIC, sample(now, "HR", 70.0), qos=1, timeout=5)
        await asyncio.sleep(1.0)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.timeout(120)
async def test_nurse_acknowledges_a_new_alarm_from_the_keyboard(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    """Issue 6: a new alarm appears, is acknowledged from the keyboard, and the daemon records
    who acknowledged."""
    socket = f"vigil-test-{uuid.uuid4().hex[:8]}"
    # The pane outlives the console by a minute so its exit status (or a traceback) is seen.
    command = (
        f"{sys.executable} -m monitor.cli watch --broker {mqtt_broker.url} --user nurse-kim; "
        "echo vigil-watch-exited-$?; sleep 60"
    )
    settings = settings_for(mqtt_broker, tmp_path)
    async with running_bed(settings, mqtt_broker, "tmux-test") as (daemon, client):
        await client.subscribe(f"{PREFIX}/alarms", qos=1)
        feeder: asyncio.Task[None] | None = None
        try:
            await _tmux(
                socket, "new-session", "-d", "-s", "watch", "-x", "160", "-y", "50",
                "-c", str(REPO), command,
            )  # fmt: skip
            first = await _screen_until(socket, "VIGIL WATCH", "w1/b1", "online")
            assert "not a certified medical device" in first
            assert "DESAT_CRITICAL" not in first

            feeder = asyncio.create_task(_feed_desaturation(client), name="test.feeder")
            raised: dict[str, Any] | None = None
            async with asyncio.timeout(STEP_S):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    data = json.loads(message.payload)
                    if data["code"] == "DESAT_CRITICAL" and data["state"] == "active":
                        raised = data
                        break
            assert raised is not None
            alarm_screen = await _screen_until(socket, "DESAT_CRITICAL", "ACTIVE")
            row = next(ln for ln in alarm_screen.splitlines() if "DESAT_CRITICAL" in ln)
            assert "*** HIGH" in row
            assert "SPO2 80 (limit 85)" in row

            await _tmux(socket, "send-keys", "-t", "watch", "a")

            acked: dict[str, Any] | None = None
            async with asyncio.timeout(STEP_S):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    data = json.loads(message.payload)
                    if data["state"] == "acknowledged":
                        acked = data
                        break
            assert acked is not None
            assert acked["alarm_id"] == raised["alarm_id"]
            assert acked["code"] == "DESAT_CRITICAL"
            assert acked["user"] == "nurse-kim"
            assert daemon.core.engine.active["DESAT_CRITICAL"].acknowledged

            final = await _screen_until(
                socket, "ACKNOWLEDGED by nurse-kim", "ack DESAT_CRITICAL on w1/b1 by nurse-kim: "
                "accepted",
            )  # fmt: skip
            row = next(ln for ln in final.splitlines() if "DESAT_CRITICAL" in ln and "HIGH" in ln)
            assert "ACKNOWLEDGED by nurse-kim" in row

            await _tmux(socket, "send-keys", "-t", "watch", "q")
            await _screen_until(socket, "vigil-watch-exited-0")
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            with contextlib.suppress(RuntimeError, TimeoutError):
                await _tmux(socket, "kill-server")


async def _retain(client: aiomqtt.Client, topic: str, body: object) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    await client.publish(topic, payload, qos=1, retain=True, timeout=5)


async def _feed_surge(client: aiomqtt.Client, ahead: float) -> None:
    """w1/b1's vitals once a second, on a bed clock `ahead` of the real one (a simulation)."""
    values = {
        "HR": 72.0, "SPO2": 97.0, "NIBP_SYS": 212.0, "NIBP_DIA": 124.0, "NIBP_MEAN": 153.0,
        "ABP_SYS": 208.0, "ABP_DIA": 121.0, "ABP_MEAN": 150.0, "RR": 18.0, "ETCO2": 38.0,
    }  # fmt: skip
    while True:
        t = time.time() + ahead
        for param, value in values.items():
            await client.publish("vigil/w1/b1/vitals", sample(t, param, value), qos=1, timeout=5)
        await asyncio.sleep(1.0)


def _age_on(line: str, after: str) -> int:
    match = re.search(re.escape(after) + r"[^(]*\((\d+)s\)", line)
    assert match is not None, line
    return int(match.group(1))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.timeout(180)
async def test_issue11_a_bp_surge_shows_its_nibp_at_80_120_and_200_columns(
    mqtt_broker: BrokerProcess,
) -> None:
    """Issue 11 items 5, 8, 9 and 16 as a nurse sees them: the console in tmux at 80x24, then
    resized to 120x40 and 200x50, over a bed in a BP surge whose clock runs 10 h ahead (a
    simulation) and a retired bed left OFFLINE with an ACTIVE alarm."""
    socket = f"vigil-test-{uuid.uuid4().hex[:8]}"
    command = (
        f"{sys.executable} -m monitor.cli watch --broker {mqtt_broker.url} --user nurse-kim; "
        "echo vigil-watch-exited-$?; sleep 60"
    )
    start = time.time()
    bed_now = start + AHEAD
    crisis = {
        **alarm("BP_CRISIS", "high", bed_now - 4), "param": "NIBP_SYS", "value": 212.0,
        "limit": 200.0, "latched": True,
    }  # fmt: skip
    gone = {**alarm("BP_CRISIS", "high", start - 7260), "alarm_id": "w1/b9/BP_CRISIS/1"}
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="tmux-bed") as bed:
        await _retain(bed, "vigil/w1/b1/status", {"status": "online", "t": bed_now})
        session = {"t": bed_now, "phase": "infusion", "audio_paused_until": bed_now + 600}
        await _retain(bed, "vigil/w1/b1/session", session)
        await _retain(bed, "vigil/w1/b1/alarms/active", [crisis])
        # a bed that went away two hours ago: its Last Will, its last session and alarm
        await _retain(bed, "vigil/w1/b9/status", {"status": "offline"})
        await _retain(bed, "vigil/w1/b9/session", {"t": start - 7200, "phase": "post"})
        await _retain(bed, "vigil/w1/b9/alarms/active", [gone])
        feeder = asyncio.create_task(_feed_surge(bed, AHEAD), name="test.surge")
        try:
            await _tmux(
                socket, "new-session", "-d", "-s", "watch", "-x", "80", "-y", "24",
                "-c", str(REPO), command,
            )  # fmt: skip
            for columns, rows, together in (
                (80, 24, ("[1] w1/b1", "NIBP 212/124 (153)")),
                (120, 40, ("[1] w1/b1", "ABP 208/121 (150)")),
                (200, 50, ("[1] w1/b1", "EtCO2 38", "audio paused until")),
            ):
                if columns != 80:
                    await _tmux(
                        socket, "resize-window", "-t", "watch", "-x", str(columns), "-y", str(rows)
                    )
                text = await _screen_until(socket, "NIBP_SYS 212 (limit 200)", "w1/b9")
                deadline = time.monotonic() + STEP_S
                while not any(all(n in ln for n in together) for ln in text.splitlines()):
                    assert time.monotonic() < deadline, f"not laid out for {columns}:\n{text}"
                    text = await _screen_until(socket, "NIBP_SYS 212 (limit 200)")
                lines = text.splitlines()
                assert len(lines) <= rows
                # item 5: the blood pressure and everything else of the bed and its alarm
                for fact in (
                    "NIBP 212/124 (153)", "ABP 208/121 (150)", "SpO2 97%", "RR 18", "EtCO2 38",
                    "audio paused until", "s left)", "*** HIGH", "NIBP_SYS 212 (limit 200)",
                    "latched",
                ):  # fmt: skip
                    assert fact in text, (columns, fact, text)
                # item 9: ages on the bed's clock (it is 10 h ahead: they read 0 s before);
                # the alarm rows' "since" lines, w1/b1's first, then the gone bed's
                since = [ln for ln in lines if "since" in ln and "OFFLINE" not in ln]
                assert _age_on(since[0], "since") >= 4, text
                assert "bed clock" in text
                # the gone bed's alarm is two hours old, not dated by its retained session
                if columns > 80:  # (at 80x24 its rows may be below the screen's end)
                    assert len(since) == 2, text
                    assert 7260 <= _age_on(since[1], "since") < 7260 + 180, text

            # item 8: the selected alarm shows its alarm_id
            await _tmux(socket, "send-keys", "-t", "watch", "Down", "Down")
            await _screen_until(socket, f"alarm_id {crisis['alarm_id']}")

            # item 16: retiring w1/b9 (README): its retained topics cleared, it leaves the screen
            for suffix in ("alarms/active", "session", "status"):
                await _retain(bed, f"vigil/w1/b9/{suffix}", None)
            deadline = time.monotonic() + STEP_S
            text = await _screen_until(socket, "NIBP 212/124")
            while "w1/b9" in text:
                assert time.monotonic() < deadline, f"w1/b9 still shown:\n{text}"
                text = await _screen_until(socket, "NIBP 212/124")
            assert "NIBP_SYS 212 (limit 200)" in text

            await _tmux(socket, "send-keys", "-t", "watch", "q")
            await _screen_until(socket, "vigil-watch-exited-0")
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            with contextlib.suppress(RuntimeError, TimeoutError):
                await _tmux(socket, "kill-server")
            for suffix in ("status", "session", "alarms/active"):
                for b in ("b1", "b9"):
                    with contextlib.suppress(aiomqtt.MqttError):
                        await _retain(bed, f"vigil/w1/{b}/{suffix}", None)


def test_a_console_under_another_topic_root_reads_and_commands_there() -> None:
    # beds configured with `[broker] prefix = "site/w1/b1"`: the console is given `site`
    view = WardView(user="nurse-kim", root="site")
    view.set_link(connected=True)
    view.handle("vigil/w1/b9/status", b'{"status": "online"}', T0)  # another root: not ours
    view.handle("site/w1/b1/status", b'{"status": "online"}', T0)
    assert set(view.beds) == {"w1/b1"}
    (out,) = view.press("p", T0)
    assert out.topic == "site/w1/b1/cmd"
    assert isinstance(parse_command(out.payload), AudioPause)
    assert subscriptions("w1", "site")[0] == "site/w1/+/status"
