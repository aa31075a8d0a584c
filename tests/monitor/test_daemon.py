"""The daemon in-process against a real broker: bad input, commands, retained state, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import load_policy
from monitor.commands import Checklist
from monitor.daemon import Daemon
from monitor.settings import Settings
from monitor.supervisor import LinkState
from tests.helpers import BrokerProcess, bed_settings, free_port, next_json, running_bed

PREFIX = "vigil/w1/b1"
TOPIC = "monitors/mon1/samples"


def settings_for(broker: BrokerProcess, tmp_path: Path, **broker_extra: Any) -> Settings:
    protocol = "5" if broker.implementation == "mosquitto" else "3.1.1"
    return bed_settings(broker.url, tmp_path, broker={"protocol": protocol, **broker_extra})


def sample(t: float, param: str, value: float | None, **extra: Any) -> bytes:
    return json.dumps(
        {"t": t, "param": param, "value": value, "valid": True, "device_id": "mon1", **extra}
    ).encode()


async def test_bad_input_is_counted_and_ignored_and_the_daemon_keeps_running(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    async with running_bed(settings, mqtt_broker, "bad-input") as (daemon, client):
        await client.subscribe(f"{PREFIX}/vitals", qos=1)
        now = time.time()
        bad = [
            b"this is not json",
            b'{"t": "yesterday", "param": "HR", "value": 70, "valid": true, "device_id": "mon1"}',
            b'{"t": 1, "param": "HR", "value": "seventy", "valid": true, "device_id": "mon1"}',
            b'{"param": "HR", "value": 70, "valid": true, "device_id": "mon1"}',
            b'{"t": 1, "param": "BLOOD_TYPE", "value": 1, "valid": true, "device_id": "mon1"}',
            b"[]",
        ]
        for payload in bad:
            await client.publish(TOPIC, payload, qos=1)
        # HR 900 is well formed but outside 20-300/min: delivered as an invalid sample
        await client.publish(TOPIC, sample(now, "HR", 900.0), qos=1)
        await client.publish(TOPIC, sample(now + 1, "HR", 72.0), qos=1)
        first = await next_json(client, f"{PREFIX}/vitals")
        second = await next_json(client, f"{PREFIX}/vitals")
        stats = daemon.drivers[0].stats
        assert (first["value"], first["valid"]) == (900.0, False)
        assert (second["value"], second["valid"]) == (72.0, True)
        assert stats.frames == len(bad) + 2
        assert stats.samples == 2
        assert sum(n for k, n in stats.dropped.items() if k != "out_of_range") == len(bad)
        assert stats.dropped["out_of_range"] == 1
        assert "TACHY_SEVERE" not in daemon.core.engine.active
        assert daemon.device_status["mon1"].state is LinkState.CONNECTED


def all_no() -> dict[str, bool]:
    return dict.fromkeys(Checklist.model_fields, False)


async def test_commands_are_answered_and_refusals_change_nothing(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    async with running_bed(settings, mqtt_broker, "nurse") as (daemon, nurse):
        await nurse.subscribe(f"{PREFIX}/cmd/result", qos=1)

        async def send(cmd: dict[str, Any] | bytes) -> dict[str, Any]:
            payload = cmd if isinstance(cmd, bytes) else json.dumps(cmd).encode()
            await nurse.publish(f"{PREFIX}/cmd", payload, qos=1)
            return await next_json(nurse, f"{PREFIX}/cmd/result")

        base = {"request_id": "r", "user": "ann"}
        refused = await send({"cmd": "start_infusion", **base})
        assert refused["ok"] is False
        assert "phase pre" in refused["error"]
        bad = await send(b'{"cmd": "open_session", "request_id": "r2"}')
        assert bad == {"request_id": "r2", "ok": False, "error": bad["error"]}
        assert "user" in bad["error"]
        assert "weight_kg" in bad["error"]
        heavy = await send(
            {
                "cmd": "open_session",
                **base,
                "patient_id": "P1",
                "weight_kg": 400.0,
                "concentration_mg_per_ml": 10.0,
                "checklist": all_no(),
            }
        )
        assert heavy["ok"] is False
        assert "30-250 kg" in heavy["error"]
        assert daemon.core.session is None
        opened = await send(
            {
                "cmd": "open_session",
                **base,
                "patient_id": "P1",
                "weight_kg": 80.0,
                "concentration_mg_per_ml": 10.0,
                "checklist": all_no(),
            }
        )
        # docs/PROTOCOL.md: 0.5 mg/kg; 40 mg at 10 mg/mL over 40 min is 6 mL/h
        course = opened.pop("course")
        assert daemon.core.session is not None
        assert opened.pop("session_id") == daemon.core.session.session_id
        assert opened == {"request_id": "r", "ok": True, "dose_mg": 40.0, "rate_ml_per_h": 6.0}
        # the patient's first infusion (docs/PROTOCOL.md "Course": six over two weeks)
        assert (course["infusion_number"], course["of"], course["flags"]) == (1, 6, [])
        assert daemon.core.phase.value == "pre"


async def test_a_second_lost_monitor_is_announced_too(tmp_path: Path) -> None:
    # two monitors on a broker nobody runs: each loss raises DEVICE_DISCONNECTED, the second
    # anew (naming both), so a nurse who acknowledged the first still hears of the second
    url = f"mqtt://127.0.0.1:{free_port()}"
    settings = Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": url},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "metrics": {"enabled": False},
            "drivers": [
                {"kind": "mqtt", "device_id": "mon1", "topic": "a"},
                {"kind": "mqtt", "device_id": "ox1", "topic": "b"},
            ],
        }
    )
    async with Daemon(settings, load_policy()) as daemon:
        async with asyncio.timeout(10):
            while len(daemon._devices.down) < 2:  # noqa: ASYNC110 - watching from outside
                await asyncio.sleep(0.02)
        events = [
            (e.payload["state"], e.payload["message"])
            for e in daemon.outbox.peek()
            if e.payload["code"] == "DEVICE_DISCONNECTED"
        ]
    assert [state for state, _ in events] == ["active", "cleared", "active"]
    assert "mon1" in events[-1][1]
    assert "ox1" in events[-1][1]


async def test_a_lost_monitor_is_named_for_a_person_and_the_error_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a serial monitor whose port is not there and an MQTT one on a broker nobody runs
    port = tmp_path / "ttyUSB0"
    settings = Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": f"mqtt://127.0.0.1:{free_port()}"},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "metrics": {"enabled": False},
            "drivers": [
                {"kind": "masimo", "device_id": "ox", "port": str(port)},
                {"kind": "mqtt", "device_id": "mon1", "topic": "a"},
            ],
        }
    )
    caplog.set_level(logging.INFO)
    async with Daemon(settings, load_policy()) as daemon:
        async with asyncio.timeout(10):
            while len(daemon._devices.down) < 2:  # noqa: ASYNC110 - watching from outside
                await asyncio.sleep(0.02)
        messages = [
            e.payload["message"]
            for e in daemon.outbox.peek()
            if e.payload["code"] == "DEVICE_DISCONNECTED" and e.payload["state"] == "active"
        ]
    lost = {"ox": f"ox (port {port})", "mon1": "mon1 (MQTT)"}
    first, second = messages
    assert first in {f"no data from monitor {lost['ox']}", f"no data from monitor {lost['mon1']}"}
    assert second in {
        f"no data from monitors {lost['ox']}, {lost['mon1']}",
        f"no data from monitors {lost['mon1']}, {lost['ox']}",
    }
    # the technical detail, with the device it is about, is in the log
    details = {r.getMessage() for r in caplog.records if "event=device_lost" in r.getMessage()}
    assert any("device=ox" in d and "No such file or directory" in d for d in details), details
    assert any("device=mon1" in d and "Connection refused" in d for d in details), details
