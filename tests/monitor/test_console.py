"""The line console: what a nurse reads for each ward message."""

from __future__ import annotations

import asyncio
import io
import json

from drivers.mqtt.client import Client as MqttClient
from monitor.console import LineConsole
from monitor.wire import WireStatus, encode_alarm_event, encode_status, topic_filters

ALARM: dict[str, object] = {
    "t": 1767226740.0,
    "code": "BP_CRISIS",
    "priority": "high",
    "kind": "physiological",
    "state": "active",
    "param": "NIBP_SYS",
    "value": 190.0,
    "limit": 180.0,
    "phase": "infusion",
    "message": "BP 190/106 high on two consecutive determinations",
    "bed": "w1/b1",
    "alarm_id": "w1/b1/BP_CRISIS/1767226740000",
    "seq": 7,
}


def test_alarm_line_names_bed_priority_code_state_and_message() -> None:
    out = io.StringIO()
    console = LineConsole(out=out)
    (line,) = console.handle("vigil/w1/b1/alarms", json.dumps(ALARM).encode())
    assert "w1/b1" in line
    assert "*** HIGH" in line
    assert "BP_CRISIS ACTIVE" in line
    assert str(ALARM["message"]) in line
    assert [e.model_dump(mode="json", exclude_unset=True) for e in console.alarm_log] == [ALARM]
    assert out.getvalue() == line + "\n"


def test_colours_follow_iec_60601_1_8() -> None:
    console = LineConsole(out=io.StringIO(), colour=True)
    high = console.handle("vigil/w1/b1/alarms", json.dumps(ALARM).encode())[0]
    low = console.handle("vigil/w1/b1/alarms", json.dumps({**ALARM, "priority": "low"}).encode())[0]
    medium = console.handle(
        "vigil/w1/b1/alarms", json.dumps({**ALARM, "priority": "medium"}).encode()
    )[0]
    assert high.startswith("\x1b[1;31m")  # red
    assert medium.startswith("\x1b[33m")  # yellow
    assert low.startswith("\x1b[36m")  # cyan


def test_acknowledged_and_escalated_lines() -> None:
    console = LineConsole(out=io.StringIO())
    acked = {**ALARM, "state": "acknowledged", "user": "ann"}
    escalated = {**ALARM, "state": "escalated", "level": 2}
    assert (
        "ACKNOWLEDGED by ann" in console.handle("vigil/w1/b1/alarms", json.dumps(acked).encode())[0]
    )
    assert (
        "ESCALATED level 2"
        in console.handle("vigil/w1/b1/alarms", json.dumps(escalated).encode())[0]
    )


def test_offline_bed_is_shown_and_garbage_is_ignored() -> None:
    console = LineConsole(out=io.StringIO())
    assert console.handle("vigil/w1/b1/status", b'{"status": "online"}')
    (line,) = console.handle("vigil/w1/b1/status", b'{"status": "offline"}')
    assert "OFFLINE" in line
    assert console.handle("vigil/w1/b1/alarms", b"not json") == []
    assert console.handle("vigil/w1/b1/vitals", b'{"t": 1, "param": "NOPE"}') == []
    assert console.dropped == {"alarms": 1, "vitals": 1}
    assert console.handle("other/topic", b"{}") == []


def test_vitals_line_at_most_once_per_interval_with_cuff_age() -> None:
    console = LineConsole(out=io.StringIO(), vitals_every_s=60.0)
    t = 1767226000.0

    def vital(dt: float, param: str, value: float) -> list[str]:
        doc = {"t": t + dt, "param": param, "value": value, "valid": True, "device_id": "m"}
        return console.handle("vigil/w1/b1/vitals", json.dumps(doc).encode())

    assert vital(0, "NIBP_SYS", 150) != []  # the first vitals line
    assert vital(0, "NIBP_DIA", 90) == []
    assert vital(30, "HR", 88) == []
    (line,) = vital(120, "SPO2", 97)
    assert "HR  88" in line
    assert "SpO2  97 %" in line
    assert "BP 150/90 (2 min ago)" in line


def test_a_vitals_line_never_shows_a_time_before_a_line_already_printed() -> None:
    # vitals travel behind alarms and session updates: a reading older than the phase change
    # just printed waits for a newer one rather than print an earlier time
    console = LineConsole(out=io.StringIO(), vitals_every_s=300.0)
    session = {"t": 1000.0, "phase": "pre", "session": {"session_id": "s1", "patient_id": "p1"}}
    console.handle("vigil/w1/b1/session", json.dumps(session).encode())
    vital = {"t": 968.0, "param": "HR", "value": 71, "valid": True, "device_id": "m"}
    assert console.handle("vigil/w1/b1/vitals", json.dumps(vital).encode()) == []
    later = {**vital, "t": 1001.0, "value": 72}
    (line,) = console.handle("vigil/w1/b1/vitals", json.dumps(later).encode())
    assert "HR  72" in line
    assert console.last_t == 1001.0


def test_an_escalation_says_it_once_with_how_long_it_went_unacknowledged() -> None:
    console = LineConsole(out=io.StringIO())
    console.handle("vigil/w1/b1/alarms", json.dumps(ALARM).encode())
    escalated = {
        **ALARM,
        "t": float(ALARM["t"]) + 60,  # type: ignore[arg-type]
        "state": "escalated",
        "level": 1,
        "message": "BP_CRISIS not acknowledged: escalation level 1",
    }
    (line,) = console.handle("vigil/w1/b1/alarms", json.dumps(escalated).encode())
    assert line.endswith("BP_CRISIS ESCALATED level 1 (not acknowledged for 60 s)")
    assert line.count("BP_CRISIS") == 1


def test_an_acknowledgement_names_who_and_does_not_repeat_the_code() -> None:
    console = LineConsole(out=io.StringIO())
    acked = {**ALARM, "state": "acknowledged", "user": "ann", "message": "BP_CRISIS acknowledged"}
    (line,) = console.handle("vigil/w1/b1/alarms", json.dumps(acked).encode())
    assert line.endswith("BP_CRISIS ACKNOWLEDGED by ann")
    cleared = {
        **ALARM,
        "state": "cleared",
        "message": "BP_CRISIS acknowledged after its condition ended",
    }
    (line,) = console.handle("vigil/w1/b1/alarms", json.dumps(cleared).encode())
    assert line.endswith("BP_CRISIS CLEARED: acknowledged after its condition ended")


async def test_the_console_reads_beds_under_a_configured_root(mqtt_broker_url: str) -> None:
    # a ward whose beds publish under `site/north` (their `[broker] prefix`): the console given
    # that root prints them, and ignores a bed under the default root on the same broker
    host, port = mqtt_broker_url.removeprefix("mqtt://").rsplit(":", 1)
    console = LineConsole(out=io.StringIO(), root="site/north")
    event = encode_alarm_event(ALARM)
    status = encode_status(WireStatus(status="online", ward="w2", bed="b7"))
    async with (
        MqttClient(host, int(port), identifier="console") as reader,
        MqttClient(host, int(port), identifier="beds") as beds,
    ):
        for topic in topic_filters(["status", "alarms"], root="site/north"):
            await reader.subscribe(topic, qos=1)
        await beds.publish("vigil/w1/b1/alarms", event, qos=1)
        await beds.publish("site/north/w2/b7/status", status, qos=1)
        await beds.publish("site/north/w2/b7/alarms", event, qos=1)
        lines: list[str] = []
        async with asyncio.timeout(10):
            async for message in reader.messages:
                assert isinstance(message.payload, bytes)
                lines += console.handle(str(message.topic), message.payload)
                if len(lines) == 2:
                    break
    assert "w2/b7" in lines[0]
    assert "ONLINE" in lines[0]
    assert "BP_CRISIS ACTIVE" in lines[1]
    assert list(console.beds) == ["w2/b7"]
    assert console.handle("vigil/w1/b1/alarms", event) == []
