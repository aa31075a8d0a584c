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

from alarms.policy import load_policy
from monitor import console as line_console
from monitor.cli import build_parser
from monitor.commands import Ack, AudioPause, parse_command
from monitor.daemon import Daemon
from monitor.watch.app import decode_keys, subscriptions
from monitor.watch.model import ANSI, Line, WardView, plain_text, to_ansi
from tests.helpers import BrokerProcess
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
    view.handle("vigil/w1/b1/session", b'{"phase": "infusion", "audio_paused_until": null}', now)
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
    view.handle("vigil/w1/b3/session", b'{"phase": "none"}', T0)
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
    view.handle("vigil/w1/b1/session", json.dumps({"audio_paused_until": T0 + 120}).encode(), T0)
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
    async with (
        Daemon(settings, load_policy()) as daemon,
        aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier="tmux-test") as client,
    ):
        await daemon.connected(10)
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
