"""One connection mechanism for every client: MQTT 5 where the broker speaks it, else 3.1.1.

Each test runs against both brokers the README names (mosquitto when installed, and the embedded
amqtt broker, which speaks 3.1.1 only), whatever `VIGIL_TEST_BROKER` says.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import aiomqtt
import pytest

from drivers.mqtt import client as mqtt_client
from drivers.mqtt.client import Client as MqttClient
from drivers.mqtt.driver import MqttMonitorDriver
from drivers.mqtt.spec import MqttSettings as MqttDriver
from kernel.clock import RealClock
from kernel.settings import BrokerSettings, Endpoint, TimeoutSettings
from monitor.settings import Settings
from tests.helpers import (
    BrokerImplementation,
    BrokerProcess,
    ListSink,
    free_port,
    mosquitto_path,
    running_bed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


# Both brokers where mosquitto is installed (CI installs it); the embedded one everywhere.
BROKERS: list[BrokerImplementation] = (
    ["mosquitto", "amqtt"] if mosquitto_path() is not None else ["amqtt"]
)
# What "auto" settles on with each: the embedded broker refuses MQTT 5 at CONNECT.
SPEAKS_V5 = {"mosquitto": True, "amqtt": False}


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    implementation: BrokerImplementation = request.param
    with BrokerProcess(tmp_path / "broker", implementation=implementation) as b:
        yield b


def _build(name: str) -> Callable[[aiomqtt.ProtocolVersion, Endpoint], aiomqtt.Client]:
    def build(protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        return MqttClient(endpoint.host, endpoint.port, identifier=name, protocol=protocol)

    return build


def _at(broker: BrokerProcess) -> tuple[Endpoint, ...]:
    return (Endpoint(broker.host, broker.port),)


async def test_auto_takes_mqtt5_where_the_broker_speaks_it_and_311_otherwise(
    broker: BrokerProcess,
) -> None:
    async with mqtt_client.connect("auto", _at(broker), _build("auto")) as client:
        assert mqtt_client.speaks_v5(client) is SPEAKS_V5[broker.implementation]
        # the connection works: a message goes round trip
        await client.subscribe("t/round", qos=1)
        await client.publish("t/round", b"hello", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
        assert message.payload == b"hello"


async def test_an_explicit_version_is_not_negotiated(broker: BrokerProcess) -> None:
    async with mqtt_client.connect("3.1.1", _at(broker), _build("v311")) as client:
        assert not mqtt_client.speaks_v5(client)
    if SPEAKS_V5[broker.implementation]:
        async with mqtt_client.connect("5", _at(broker), _build("v5")) as client:
            assert mqtt_client.speaks_v5(client)
    else:
        with pytest.raises(aiomqtt.MqttCodeError, match="Unsupported protocol version"):
            async with mqtt_client.connect("5", _at(broker), _build("v5")):
                pass


async def test_a_refusal_that_is_not_about_the_version_is_not_retried(tmp_path: Path) -> None:
    # no broker at all is an error of the first attempt, raised as it is
    attempts: list[aiomqtt.ProtocolVersion] = []
    with BrokerProcess(tmp_path / "broker", implementation="amqtt") as b:
        port = b.port
    # the broker is gone: connecting fails at TCP, which says nothing about MQTT versions

    def build(protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        attempts.append(protocol)
        return MqttClient(endpoint.host, endpoint.port, identifier="nobody", protocol=protocol)

    with pytest.raises(aiomqtt.MqttError):
        async with mqtt_client.connect("auto", (Endpoint("127.0.0.1", port),), build):
            pass
    assert attempts == [aiomqtt.ProtocolVersion.V5]


async def test_an_unreachable_broker_falls_over_to_the_next_in_order(
    broker: BrokerProcess,
) -> None:
    # the first broker of the list is gone (refused at TCP): the second takes the connection,
    # with the version rule applied to it; the first is tried again at every new connection
    dead = Endpoint("127.0.0.1", free_port())  # nothing listens there
    tried: list[Endpoint] = []

    def build(protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        tried.append(endpoint)
        return MqttClient(endpoint.host, endpoint.port, identifier="fo", protocol=protocol)

    live = Endpoint(broker.host, broker.port)
    for _ in range(2):
        async with mqtt_client.connect("auto", (dead, live), build) as client:
            assert mqtt_client.endpoint_of(client) == live
            assert mqtt_client.speaks_v5(client) is SPEAKS_V5[broker.implementation]
    per_connection = [dead, live] if SPEAKS_V5[broker.implementation] else [dead, live, live]
    assert tried == per_connection * 2
    # none reachable: the last one's error
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt_client.connect("auto", (dead, dead), build):
            pass


def _settings(broker: BrokerProcess, tmp_path: Path) -> Settings:
    # no protocol key: the default, "auto", as a config written from the README has it
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": broker.url},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "metrics": {"enabled": False},
            "drivers": [{"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}],
        }
    )


async def test_the_daemon_with_the_default_protocol_works_with_either_broker(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = _settings(broker, tmp_path)
    assert settings.broker.protocol == "auto"
    async with running_bed(settings, broker, "ward-watcher") as (_daemon, ward):
        await ward.subscribe("vigil/w1/b1/#", qos=1)
        sample = {"t": time.time(), "param": "HR", "value": 71, "valid": True, "device_id": "mon1"}
        await ward.publish("monitors/mon1/samples", json.dumps(sample), qos=1)
        seen: dict[str, object] = {}
        async with asyncio.timeout(10):
            async for message in ward.messages:
                seen[str(message.topic)] = json.loads(message.payload)
                if "vigil/w1/b1/vitals" in seen:
                    break
        status = seen["vigil/w1/b1/status"]
        assert isinstance(status, dict)
        assert status["status"] == "online"
        vitals = seen["vigil/w1/b1/vitals"]
        assert isinstance(vitals, dict)
        assert (vitals["param"], vitals["value"]) == ("HR", 71)


async def test_the_mqtt_driver_follows_the_ward_broker_protocol(broker: BrokerProcess) -> None:
    driver = MqttMonitorDriver(
        MqttDriver.model_validate({"kind": "mqtt", "device_id": "mon1", "topic": "m/1"}),
        broker=BrokerSettings(url=broker.url),
        timeouts=TimeoutSettings(),
        clock=RealClock(),
    )
    sink = ListSink()
    up = asyncio.Event()
    task = asyncio.create_task(driver.run(sink, up.set))
    try:
        async with asyncio.timeout(10):
            await up.wait()
        async with MqttClient(broker.host, broker.port, identifier="mon1") as monitor:
            doc = {"t": time.time(), "param": "SPO2", "value": 97, "valid": True}
            await monitor.publish("m/1", json.dumps({**doc, "device_id": "mon1"}), qos=1)
            async with asyncio.timeout(10):
                await sink.grew.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(s.param, s.value) for s in sink.samples] == [("SPO2", 97.0)]
