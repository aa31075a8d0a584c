"""No input lost across a restart, none applied twice (issue 17, items 3 and 7).

The bed and its MQTT monitor connect with stable client ids and persistent sessions, so QoS 1
messages published while the daemon is down are delivered when it is back; a retained command is
refused, not run at every start; the same accepted command delivered again is answered from the
journal, never applied twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alarms.policy import load_policy
from drivers.mqtt.client import Client as MqttClient
from monitor.daemon import Daemon
from monitor.settings import Settings
from tests.helpers import (
    BrokerProcess,
    bed_settings,
    mosquitto_path,
    open_session_command,
    running_bed,
)

PREFIX = "vigil/w1/b1"
TOPIC = "monitors/mon1/samples"


def settings_for(broker: BrokerProcess, tmp_path: Path) -> Settings:
    return bed_settings(broker.url, tmp_path)


def open_session(request_id: str) -> bytes:
    return json.dumps(open_session_command(request_id)).encode()


async def next_on(client: aiomqtt.Client, topic: str, timeout: float = 15) -> dict[str, Any]:  # noqa: ASYNC109 - a plain bound
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if str(message.topic) == topic and message.payload:
                data: dict[str, Any] = json.loads(message.payload)
                return data
    raise AssertionError("message stream ended")


# The embedded amqtt broker keeps no messages for a session that is away; mosquitto does (what a
# ward broker must do, config/mosquitto: persistence).
@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="queued messages need mosquitto")
async def test_a_command_and_a_determination_sent_during_a_restart_arrive_after_it(
    tmp_path: Path,
) -> None:
    with BrokerProcess(tmp_path / "broker", implementation="mosquitto") as broker:
        await _sent_during_a_restart(broker, tmp_path)


async def _sent_during_a_restart(mqtt_broker: BrokerProcess, tmp_path: Path) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="nurse") as nurse:
        await nurse.subscribe(f"{PREFIX}/cmd/result", qos=1)
        await nurse.subscribe(f"{PREFIX}/vitals", qos=1)
        # a first run makes the broker hold the bed's and the monitor's sessions
        async with Daemon(settings, load_policy()) as daemon:
            await daemon.connected(10)
            await asyncio.sleep(0.5)  # the driver's SUBACK (it connects on its own)
        # the bed is down: the nurse opens a session, the monitor sends a cuff reading
        await nurse.publish(f"{PREFIX}/cmd", open_session("during-restart"), qos=1)
        t = time.time()
        for param, value in (("NIBP_SYS", 131.0), ("NIBP_DIA", 84.0), ("NIBP_MEAN", 100.0)):
            sample = {"t": t, "param": param, "value": value, "valid": True, "device_id": "mon1"}
            await nurse.publish(TOPIC, json.dumps(sample).encode(), qos=1)
        async with Daemon(settings, load_policy()) as daemon:
            await daemon.connected(10)
            result = await next_on(nurse, f"{PREFIX}/cmd/result")
            assert result["request_id"] == "during-restart"
            assert result["ok"] is True, result
            assert daemon.core.session is not None
            vital = await next_on(nurse, f"{PREFIX}/vitals")
            assert (vital["param"], vital["value"]) == ("NIBP_SYS", 131.0)


async def test_a_retained_command_is_refused_not_run_at_start(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="nurse") as nurse:
        await nurse.subscribe(f"{PREFIX}/cmd/result", qos=1)
        await nurse.publish(f"{PREFIX}/cmd", open_session("kept"), qos=1, retain=True)
        for _ in range(2):  # at every start
            async with Daemon(settings, load_policy()) as daemon:
                await daemon.connected(10)
                result = await next_on(nurse, f"{PREFIX}/cmd/result")
                assert result == {
                    "request_id": "kept",
                    "ok": False,
                    "error": "retained command ignored: publish commands without retain",
                }
                assert daemon.core.session is None


async def test_the_same_accepted_command_again_is_answered_again_not_applied(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    async with running_bed(settings, mqtt_broker, "nurse") as (_daemon, nurse):
        await nurse.subscribe(f"{PREFIX}/cmd/result", qos=1)
        await nurse.publish(f"{PREFIX}/cmd", open_session("once"), qos=1)
        first = await next_on(nurse, f"{PREFIX}/cmd/result")
        await nurse.publish(f"{PREFIX}/cmd", open_session("once"), qos=1)
        again = await next_on(nurse, f"{PREFIX}/cmd/result")
        # applied again it would be refused: a session is already open
        assert first["ok"] is True
        assert again == first
        # a new request is applied (and refused, the session being open)
        await nurse.publish(f"{PREFIX}/cmd", open_session("twice"), qos=1)
        second = await next_on(nurse, f"{PREFIX}/cmd/result")
        assert second["ok"] is False
