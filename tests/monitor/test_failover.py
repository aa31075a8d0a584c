"""Broker failover (issue 17): a bridged mosquitto pair, the primary killed mid-session.

Real parts: two mosquitto processes, the secondary bridged to the primary with the shipped
config/mosquitto/bridge.conf (test port, no TLS or login), a bed daemon whose `[broker]` lists
the primary then the secondary, its MQTT monitor fed on the secondary (it reaches the bed through
the bridge while the bed is on the primary), and a nurses' station with a persistent session on
the secondary. The primary is SIGKILLed while alarms flow: the bed's ward link and MQTT driver
move to the secondary within the urgent backoff bound, the station receives every alarm event
once, seq 1..N in order, and the outbox drains. The bed stays on the secondary when the primary
returns (drivers/mqtt/client.py: a client goes back to the first broker at its next connection,
never while a later one serves it).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alarms.policy import Policy, load_policy
from drivers.mqtt.client import Client as MqttClient
from kernel.settings import Endpoint
from kernel.vocabulary import Phase
from monitor.daemon import Daemon
from monitor.settings import Settings
from tests.helpers import BrokerProcess, free_port, mosquitto_path

PREFIX = "vigil/w1/b1"
TOPIC = "vigil/monitors/mon1/samples"  # under vigil/#, so the bridge carries it
BRIDGE = Path(__file__).parents[2] / "config" / "mosquitto" / "bridge.conf"
# the ward link's backoff while alarms wait (monitor/supervisor.py `Backoff.urgent_cap`), the
# connect itself and a scheduling margin on a loaded machine
MOVE_BOUND_S = 5.0


def secondary_config(port: int, primary: BrokerProcess) -> str:
    """The shipped bridge, pointed at the test primary, without its TLS and login lines."""
    bridge = [
        f"address {primary.host}:{primary.port}" if line.startswith("address ") else line
        for line in BRIDGE.read_text(encoding="utf-8").splitlines()
        if not line.startswith(("remote_username", "remote_password", "bridge_cafile"))
    ]
    assert f"address {primary.host}:{primary.port}" in bridge
    return (
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 20000\n"
        "persistence false\nlog_dest stderr\nlog_type all\n" + "\n".join(bridge) + "\n"
    )


def settings(primary: BrokerProcess, secondary: BrokerProcess, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": primary.url, "failover": [secondary.url], "protocol": "5"},
            "journal": {"path": str(tmp_path / "journal.sqlite"), "min_free_mb": 0},
            "metrics": {"enabled": False},
            "timeouts": {"broker_connect_s": 2.0},
            "drivers": [{"kind": "mqtt", "device_id": "mon1", "topic": TOPIC}],
        }
    )


def flapping_policy() -> Policy:
    """The shipped policy with DESAT_CRITICAL (SpO2 < 85) at once, in every phase, not latching.

    Cleared at once (``clear_after_s`` 0): each crossing raises an event and each return above
    clears it, a steady stream of alarm events to count across the failover.
    """
    policy = load_policy()
    rules = tuple(
        r.model_copy(update={"delay_s": 0.0, "phases": frozenset(Phase), "latching": False})
        if r.code == "DESAT_CRITICAL"
        else r
        for r in policy.continuous
    )
    general = policy.general.model_copy(update={"clear_after_s": 0.0})
    return policy.model_copy(update={"continuous": rules, "general": general})


async def feed(monitor: aiomqtt.Client, stop: asyncio.Event) -> None:
    """SpO2 crossing 85 % every 0.6 s (DESAT_CRITICAL raised and cleared), HR steady."""
    n = 0
    while not stop.is_set():
        spo2 = 80.0 if (n // 3) % 2 else 97.0
        for param, value in (("HR", 72.0), ("SPO2", spo2)):
            sample = {"t": time.time(), "param": param, "value": value, "valid": True}
            sample["device_id"] = "mon1"
            await monitor.publish(TOPIC, json.dumps(sample), qos=0)
        n += 1
        await asyncio.sleep(0.2)


async def until(condition: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109 - a bound
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - polled from outside, as an operator looks
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@pytest.mark.timeout(60)
@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="a bridge needs mosquitto")
async def test_the_bed_moves_to_the_bridged_secondary_and_the_ward_loses_no_alarm(
    tmp_path: Path,
) -> None:
    primary = BrokerProcess(tmp_path / "primary", implementation="mosquitto")
    port = free_port()
    secondary = BrokerProcess(
        tmp_path / "secondary", port=port, config=secondary_config(port, primary)
    )
    secondary_at = Endpoint(secondary.host, secondary.port)
    received: list[dict[str, Any]] = []
    stop = asyncio.Event()
    with primary, secondary:
        async with MqttClient(
            secondary.host,
            secondary.port,
            identifier="station-1",
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
        ) as station:
            await station.subscribe("$SYS/broker/connection/+/state", qos=1)
            await station.subscribe(f"{PREFIX}/alarms", qos=1)
            async with asyncio.timeout(10):  # the bridge is up (notifications, retained)
                async for message in station.messages:
                    if message.topic.matches("$SYS/#") and message.payload == b"1":
                        break
            async with (
                Daemon(settings(primary, secondary, tmp_path), flapping_policy()) as daemon,
                MqttClient(secondary.host, secondary.port, identifier="mon1") as monitor,
                asyncio.TaskGroup() as tg,
            ):
                await daemon.connected(timeout=10)
                assert daemon.ward.broker == Endpoint(primary.host, primary.port)
                tg.create_task(feed(monitor, stop), name="test.feed")

                async def collect() -> None:
                    async for message in station.messages:
                        if message.topic.matches(f"{PREFIX}/alarms"):
                            assert isinstance(message.payload, bytes)
                            received.append(json.loads(message.payload))

                collector = tg.create_task(collect(), name="test.collect")
                # alarms flowing through the primary and the bridge to the station
                await until(lambda: len(received) >= 4, 10, "4 alarm events via the primary")
                primary.kill()
                killed_at = time.monotonic()
                await until(lambda: daemon.ward.broker == secondary_at, MOVE_BOUND_S, "failover")
                moved_s = time.monotonic() - killed_at
                before = daemon.core.seq
                # alarms go on through the secondary; the MQTT driver followed too
                await until(lambda: daemon.core.seq >= before + 4, 10, "4 alarms after the move")
                # the bed stays where it is served when the primary is back
                primary.start()
                await asyncio.sleep(1.0)
                assert daemon.ward.broker == secondary_at
                stop.set()
                await until(lambda: not daemon.ward.pending_alarms, 5, "the outbox drained")
                raised = daemon.core.seq
                await until(lambda: received and received[-1]["seq"] >= raised, 5, "all received")
                collector.cancel()
    seqs = [e["seq"] for e in received]
    assert seqs == list(range(1, raised + 1)), seqs  # every event, in order, none twice
    assert moved_s < MOVE_BOUND_S
    assert {e["code"] for e in received} >= {"DESAT_CRITICAL"}
    assert max(e["seq"] for e in received) > before  # some were raised after the move
