"""The MQTT monitor simulator against a real broker, in simulated time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from drivers.mqtt.client import Client as MqttClient
from kernel.clock import ManualClock, SimulatedClock
from kernel.vocabulary import NIBP_PARAMS, Param, Sample, SessionEvent
from monitor.commands import Checklist
from simulators.mqtt_monitor import (
    BrokerAddress,
    PublishStats,
    parse_broker_url,
    run_mqtt_monitor,
    session_command,
)
from simulators.scenarios import build_scenario, scenario_phases
from tests.helpers import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

TOPIC = "monitors/mon7/samples"
BED = "vigil/w1/b3"
SPEED = 20000.0  # simulated seconds per real second: a 3 h session in about half a second


class Inbox:
    """Every message the subscription receives, as (topic, qos, JSON payload)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def add(self, message: aiomqtt.Message) -> None:
        assert isinstance(message.payload, bytes)
        self.messages.append((str(message.topic), message.qos, json.loads(message.payload)))
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        """Return once `count` messages have arrived (at most 10 s)."""
        async with asyncio.timeout(10.0):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [payload for t, _, payload in self.messages if t == topic]


def mon7(url: str, **options: Any) -> Coroutine[Any, Any, int]:
    """The module's monitor, mon7 on `TOPIC`, playing as `options` say (`run_mqtt_monitor`)."""
    return run_mqtt_monitor(url=url, topic=TOPIC, device_id="mon7", **options)


@pytest.fixture
async def inbox(mqtt_broker_url: str) -> AsyncIterator[Inbox]:
    """A subscriber to the sample topic and the bed's command topic, ready before the test."""
    broker = parse_broker_url(mqtt_broker_url)
    box = Inbox()
    async with MqttClient(broker.host, broker.port) as client:
        await client.subscribe(TOPIC, qos=1)
        await client.subscribe(f"{BED}/cmd", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                box.add(message)

        task = asyncio.create_task(collect())
        try:
            yield box
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_samples_are_published_as_sample_json_at_their_qos(
    mqtt_broker_url: str, inbox: Inbox
) -> None:
    clock = SimulatedClock(speed=SPEED)
    t0 = clock.now()
    until = t0 + 400  # the pre phase with both baseline determinations, ~1200 samples
    sent = await mon7(
        mqtt_broker_url,
        scenario="hypertensive-surge",
        clock=clock,
        seed=5,
        t0=t0,
        until=until,
    )
    expected = [
        s
        for s in build_scenario("hypertensive-surge", t0=t0, seed=5, device_id="mon7")
        if isinstance(s, Sample) and s.t <= until
    ]
    assert sent == len(expected)
    await inbox.wait_for(sent)
    assert inbox.on(f"{BED}/cmd") == []  # no bed prefix, no commands
    # QoS 0 messages may in principle be lost; on a loopback broker none are, and the
    # order of one publisher's messages on one topic is kept.
    assert [payload for _, _, payload in inbox.messages] == [s.to_json() for s in expected]
    for _, qos, payload in inbox.messages:
        assert qos == (1 if Param(payload["param"]) in NIBP_PARAMS else 0)
    first = inbox.messages[0][2]
    assert first == {
        "t": t0,
        "param": "HR",
        "value": first["value"],
        "valid": True,
        "device_id": "mon7",
        "unit": "/min",
        "mdc": 147842,
    }
    nibp = [p for p in inbox.on(TOPIC) if p["param"].startswith("NIBP")]
    assert [(p["t"] - t0, p["param"]) for p in nibp] == [
        (60, "NIBP_SYS"),
        (60, "NIBP_DIA"),
        (60, "NIBP_MEAN"),
        (360, "NIBP_SYS"),
        (360, "NIBP_DIA"),
        (360, "NIBP_MEAN"),
    ]


async def test_session_steps_are_sent_as_nurse_commands(mqtt_broker_url: str, inbox: Inbox) -> None:
    clock = SimulatedClock(speed=SPEED * 10)
    t0 = clock.now()
    stats = PublishStats()
    # The whole session; only the cuff's samples, so it is 54 messages rather than 31,000.
    sent = await mon7(
        mqtt_broker_url,
        scenario="normal-session",
        clock=clock,
        bed_prefix=BED,
        t0=t0,
        params=NIBP_PARAMS,
        stats=stats,
    )
    assert sent == stats.samples == 3 * 18
    assert stats.commands == 4
    await inbox.wait_for(sent + 4)
    assert clock.now() >= scenario_phases("normal-session", t0)[SessionEvent.DISCHARGE]
    commands = inbox.on(f"{BED}/cmd")
    assert [c["cmd"] for c in commands] == [
        "open_session",
        "start_infusion",
        "stop_infusion",
        "discharge",
    ]
    assert commands[0] | {"request_id": "x"} == {
        "cmd": "open_session",
        "request_id": "x",
        "user": "simulator",
        "patient_id": "SIM-0001",
        "weight_kg": 70.0,
        "concentration_mg_per_ml": 10.0,
        # every contraindication answered, none ticked: the daemon requires each answer
        "checklist": dict.fromkeys(Checklist.model_fields, False),
    }
    for c in commands[1:]:
        assert set(c) == {"cmd", "request_id", "user"}
        assert c["user"] == "simulator"
    ids = [c["request_id"] for c in commands]
    assert len(set(ids)) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    # Each command arrives in time order with the samples: the infusion starts after the
    # second baseline determination and stops after the last infusion one.
    order = [p.get("cmd") or p["param"] for _, _, p in inbox.messages]
    start, stop = order.index("start_infusion"), order.index("stop_infusion")
    assert order[:start].count("NIBP_SYS") == 2
    assert order[start:stop].count("NIBP_SYS") == 8
    assert order[-1] == "discharge"


async def test_cancelling_closes_the_connection_and_reraises(
    mqtt_broker_url: str, inbox: Inbox
) -> None:
    clock = ManualClock(1767225600.0)
    stats = PublishStats()
    task = asyncio.create_task(
        mon7(
            mqtt_broker_url,
            scenario="normal-session",
            clock=clock,
            stats=stats,
        )
    )
    await inbox.wait_for(3)  # HR, PR, SPO2 at t0; then it waits for the clock
    assert stats.samples == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(60)
    await asyncio.sleep(0.2)
    assert len(inbox.messages) == 3  # nothing more after the cancel


async def test_a_cancel_that_hits_a_publish_is_not_lost(mqtt_broker_url: str) -> None:
    # Cancel runs at many moments of back-to-back publishing: on Python 3.11 some cancels land
    # as a publish completes, where asyncio.wait_for inside aiomqtt used to swallow them
    # (about one run in three before the fix).
    for k in range(16):
        task = asyncio.create_task(
            mon7(
                mqtt_broker_url,
                scenario="normal-session",
                clock=SimulatedClock(speed=SPEED),
                bed_prefix=BED,
            )
        )
        await asyncio.sleep(0.08 + 0.007 * k)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, f"run {k} ignored its cancel"
        assert task.cancelled()


async def test_unreachable_broker_is_an_mqtt_error() -> None:
    with pytest.raises(aiomqtt.MqttError):
        await mon7(
            f"mqtt://127.0.0.1:{free_port()}",
            scenario="normal-session",
            clock=ManualClock(0.0),
        )


@pytest.mark.parametrize(
    ("url", "scenario", "message"),
    [
        ("mqtts://127.0.0.1:8883", "normal-session", "must be mqtt://"),
        ("mqtt://127.0.0.1:1883", "no-such-scenario", "unknown scenario"),
    ],
)
async def test_bad_arguments_fail_before_connecting(url: str, scenario: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await mon7(url, scenario=scenario, clock=ManualClock(0.0))


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://127.0.0.1:18830", BrokerAddress("127.0.0.1", 18830)),
        ("mqtt://broker.ward", BrokerAddress("broker.ward", 1883)),
        ("mqtt://sim:s%40cret@h:1", BrokerAddress("h", 1, "sim", "s@cret")),
    ],
)
def test_parse_broker_url(url: str, address: BrokerAddress) -> None:
    assert parse_broker_url(url) == address


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:port", "127.0.0.1:1883"])
def test_parse_broker_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        parse_broker_url(url)


def test_each_command_has_a_fresh_request_id() -> None:
    a = session_command(SessionEvent.INFUSION_START)
    b = session_command(SessionEvent.INFUSION_START)
    assert a["cmd"] == b["cmd"] == "start_infusion"
    assert a["request_id"] != b["request_id"]
