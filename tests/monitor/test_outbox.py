"""The durable outbox, and alarm events that outlive the daemon that raised them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alarms.policy import load_policy
from drivers.mqtt.client import Client as MqttClient
from kernel.vocabulary import Param, Sample
from monitor.daemon import Daemon
from monitor.outbox import Outbox
from tests.helpers import BrokerProcess, free_port, mosquitto_path
from tests.monitor.test_daemon import settings_for

PREFIX = "vigil/w1/b1"


def test_events_survive_reopening_in_seq_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    box = Outbox(path)
    for seq in (1, 2, 3):
        box.append(seq, {"seq": seq})
    box.remove(1)
    box.close()
    again = Outbox(path)
    assert [(e.seq, e.payload) for e in again.peek()] == [(2, {"seq": 2}), (3, {"seq": 3})]
    assert len(again) == 2
    assert again.last_seq == 3
    again.close()


def test_seq_never_goes_back_even_when_empty(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "j.sqlite")
    box.append(5, {})
    box.remove(5)
    assert box.last_seq == 5
    with pytest.raises(ValueError, match="does not follow"):
        box.append(5, {})
    box.close()


async def test_events_raised_while_the_broker_is_down_are_delivered_after_restart(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = settings_for(mqtt_broker, tmp_path)
    mqtt_broker.stop()
    # the samples are of the last seconds: none is dated ahead of the bed's clock (which
    # would be re-stamped, docs/ARCHITECTURE.md on DEVICE_CLOCK_OFF)
    now = time.time() - 8
    async with Daemon(settings, load_policy()) as daemon:
        # DESAT_CRITICAL (< 85 for 5 s) needs no session: raised with the broker away
        for i in range(7):
            daemon.bed.samples.put(Sample(now + i, Param.SPO2, 80.0, True, "mon1"))
        async with asyncio.timeout(10):
            while not daemon.ward.pending_alarms:  # noqa: ASYNC110 - waiting on the bed loop
                await asyncio.sleep(0.01)
        raised = daemon.core.seq
    assert raised >= 1
    mqtt_broker.start()
    received: list[dict[str, Any]] = []
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="ward") as ward:
        await ward.subscribe(f"{PREFIX}/alarms", qos=1)
        async with Daemon(settings, load_policy()):
            async with asyncio.timeout(15):
                async for message in ward.messages:
                    received.append(json.loads(message.payload))
                    if (received[-1]["code"], received[-1]["state"]) == (
                        "DEVICE_DISCONNECTED",
                        "cleared",
                    ):
                        break
    # numbering goes on from the journal: every event once, in order
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert len(received) == raised + 1
    assert received[0]["code"] == "DESAT_CRITICAL"
    assert received[0]["state"] == "active"
    # the monitor (on the same broker) was down before the restart: that alarm was restored
    # and clears under its own id once the monitor is back
    down = [e for e in received if e["code"] == "DEVICE_DISCONNECTED"]
    assert [e["state"] for e in down] == ["active", "cleared"]
    assert down[0]["alarm_id"] == down[1]["alarm_id"]


@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="an ACL needs mosquitto")
async def test_an_alarm_the_broker_refuses_stays_in_the_outbox(tmp_path: Path) -> None:
    # An ACL that forgot the bed's alarm topic: MQTT 5 PUBACK 0x87 (Not authorized).
    acl = tmp_path / "acl"
    acl.write_text(
        "topic readwrite vigil/w1/b1/status\ntopic readwrite vigil/w1/b1/cmd\n"
        "topic readwrite vigil/w1/b1/cmd/result\ntopic readwrite vigil/w1/b1/vitals\n"
        "topic readwrite vigil/w1/b1/alarms/active\ntopic readwrite vigil/w1/b1/session\n"
        "topic readwrite monitors/#\n"
    )
    port = free_port()
    config = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n"
        "persistence false\nuser root\nlog_dest stderr\n"
    )
    with BrokerProcess(tmp_path / "broker", port=port, config=config) as broker:
        settings = settings_for(broker, tmp_path)
        timeouts = settings.timeouts.model_copy(update={"ward_link_down_s": 1.0})
        settings = settings.model_copy(update={"timeouts": timeouts})
        now = time.time()
        with captured("vigil.ward") as lines:
            async with Daemon(settings, load_policy()) as daemon:
                await daemon.connected(timeout=10)
                for i in range(7):
                    daemon.bed.samples.put(Sample(now + i, Param.SPO2, 80.0, True, "mon1"))
                async with asyncio.timeout(10):
                    while not any("publish_refused" in line for line in lines):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                # the link keeps reconnecting, yet no alarm moves: the bed says so itself
                async with asyncio.timeout(10):
                    while "WARD_LINK_DOWN" not in daemon.core.engine.active:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                # refused is not delivered: the event waits in the outbox for a fixed ACL
                assert daemon.ward.pending_alarms >= 1
                kept = [e.payload["code"] for e in daemon.outbox.peek()]
        assert kept[:1] == ["DESAT_CRITICAL"]
        assert "WARD_LINK_DOWN" in kept
        assert any("Not authorized" in line for line in lines)


@contextlib.contextmanager
def captured(logger: str) -> Iterator[list[str]]:
    lines: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Handler()
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
