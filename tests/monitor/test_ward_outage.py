"""A 30 s ward broker outage: monitoring goes on, and the ward gets every alarm event after.

Real parts throughout: mosquitto with persistence (as config/mosquitto sets up a ward broker),
a Masimo simulator on a pty feeding the daemon's serial driver (so data keeps flowing while the
broker is away), and a nurse-station subscriber with a persistent session (MQTT 3.1.1
clean_session=0, subscribed once, before the outage). The desaturation scenario's alarms are
raised and cleared while the broker is down; `WARD_LINK_DOWN` is raised locally 10 s into the
outage. When the broker is back, the subscriber receives every event the bed ever raised, in
`seq` order with no gap, each with the time it was raised, not the time it was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alarms.policy import load_policy
from drivers.masimo.spec import SPEC as MASIMO
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import SimulatedClock
from kernel.vocabulary import SessionEvent, Step
from monitor.daemon import Daemon
from monitor.settings import Settings
from simulators.masimo import MasimoSide
from simulators.mqtt_monitor import session_command
from simulators.scenarios import build_scenario
from simulators.serial_monitor import SerialMonitor
from tests.helpers import BrokerProcess, mosquitto_path

PREFIX = "vigil/w1/b1"
SPEED = 40.0
OUTAGE_S = 30.0
LINK_DOWN_S = 10.0


def settings(broker: BrokerProcess, tmp_path: Path, port: Path, anchor: float) -> Settings:
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": broker.url, "protocol": "5"},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "metrics": {"enabled": False},
            "timeouts": {"backoff_max_s": 1.0, "ward_link_down_s": LINK_DOWN_S},
            "clock": {"speed": SPEED, "anchor": anchor},
            "drivers": [{"kind": "masimo", "device_id": "ox1", "port": str(port)}],
        }
    )


@contextlib.asynccontextmanager
async def station(broker: BrokerProcess) -> AsyncIterator[aiomqtt.Client]:
    """The nurses' station: a persistent session, so the broker queues for it while away."""
    client = MqttClient(
        broker.host,
        broker.port,
        identifier="station-1",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
    )
    async with client:
        yield client


@pytest.mark.timeout(150)
@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="broker persistence needs mosquitto")
async def test_alarms_raised_during_a_30_s_outage_all_reach_the_ward_in_order(
    tmp_path: Path,
) -> None:
    anchor = time.time()
    clock = SimulatedClock(speed=SPEED, anchor=anchor)
    t0 = clock.now() + 2 * SPEED
    steps = {
        i.event: i.t
        for i in build_scenario("desaturation", t0=t0, seed=3, device_id="x")
        if isinstance(i, Step)
    }
    link = tmp_path / "ox.pty"
    broker = BrokerProcess(tmp_path / "broker", persistent=True)
    monitor = SerialMonitor(
        MasimoSide,
        clock=clock,
        scenario="desaturation",
        line=MASIMO.serial_line,
        pty=link,
        seed=3,
        t0=t0,
    )
    received: list[dict[str, Any]] = []
    with broker:
        async with station(broker) as ward:
            await ward.subscribe(f"{PREFIX}/alarms", qos=1)
        async with (
            monitor,
            Daemon(settings(broker, tmp_path, link, anchor), load_policy(), clock=clock) as daemon,
        ):
            await daemon.connected(timeout=10)
            async with MqttClient(broker.host, broker.port, identifier="nurse") as nurse:
                for event in (SessionEvent.SESSION_START, SessionEvent.INFUSION_START):
                    await clock.sleep_until(steps[event])
                    await nurse.publish(f"{PREFIX}/cmd", json.dumps(session_command(event)), qos=1)
                # the desaturation starts ~21 min into the infusion: take the broker away first
                await clock.sleep_until(steps[SessionEvent.INFUSION_START] + 600)
            broker.stop()
            down_at = clock.now()
            await asyncio.sleep(OUTAGE_S)
            during = daemon.core.seq
            broker.start()
            async with asyncio.timeout(30):
                # polled from outside, as an operator would look
                while daemon.ward.pending_alarms or "WARD_LINK_DOWN" in daemon.core.engine.active:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            raised = daemon.core.seq
            async with station(broker) as ward:
                async with asyncio.timeout(20):
                    async for message in ward.messages:
                        assert isinstance(message.payload, bytes)
                        received.append(json.loads(message.payload))
                        if received[-1]["seq"] == raised:
                            break

    seqs = [e["seq"] for e in received]
    assert seqs == list(range(1, raised + 1))  # every event, in order, none twice
    by_code = {(e["code"], e["state"]): e for e in received}
    # monitoring went on while the broker was away: the desaturation came and went unseen
    for key in (
        ("DESAT", "active"),
        ("DESAT", "cleared"),
        ("DESAT_SEVERE", "active"),
        ("DESAT_CRITICAL", "active"),
    ):
        assert key in by_code, sorted(by_code)
        assert by_code[key]["t"] > down_at
        assert by_code[key]["seq"] <= during
    down = by_code[("WARD_LINK_DOWN", "active")]
    back = by_code[("WARD_LINK_DOWN", "cleared")]
    assert down["priority"] == "medium"
    assert down["kind"] == "technical"
    # raised 10 s (real) into the outage, cleared when the link came back: true times
    assert down_at + LINK_DOWN_S * SPEED * 0.9 <= down["t"] <= down_at + (LINK_DOWN_S + 2) * SPEED
    assert back["t"] >= down_at + OUTAGE_S * SPEED
    assert back["seq"] == raised
