"""drivers.mqtt.driver against a real broker (the `mqtt_broker` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiomqtt
import pytest

from drivers.base import DeviceError, Driver
from drivers.mqtt.client import Client as MqttClient
from drivers.mqtt.codec import encode_vigil, encode_vscapture
from drivers.mqtt.driver import MqttMonitorDriver
from drivers.mqtt.spec import MqttSettings as MqttDriver
from kernel.clock import ManualClock
from kernel.settings import BrokerSettings, TimeoutSettings
from kernel.vocabulary import MDC_CODES, UNITS, Param, Sample
from tests.helpers import ListSink, free_port, running_driver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.helpers import BrokerProcess

DEVICE = "mon1"
TOPIC = "monitors/mon1/samples"
T0 = 1_764_200_000.0
# Short, so a test that fails by waiting fails fast; loopback answers in milliseconds.
TIMEOUTS = TimeoutSettings(broker_connect_s=2.0)
WAIT_S = 10.0


def make_driver(
    url: str,
    *,
    fmt: str = "vigil",
    broker_url: str | None = None,
    clock: ManualClock | None = None,
    timeouts: TimeoutSettings = TIMEOUTS,
) -> MqttMonitorDriver:
    settings = MqttDriver.model_validate(
        {
            "kind": "mqtt",
            "device_id": DEVICE,
            "topic": TOPIC,
            "format": fmt,
            "broker_url": broker_url,
        }
    )
    return MqttMonitorDriver(
        settings,
        broker=BrokerSettings(url=url, keepalive_s=5),
        timeouts=timeouts,
        clock=clock or ManualClock(T0),
    )


def hr(value: float | None, t: float = T0) -> Sample:
    return Sample(
        t=t,
        param=Param.HR,
        value=math.nan if value is None else value,
        valid=value is not None,
        device_id=DEVICE,
        unit=UNITS[Param.HR],
        mdc=MDC_CODES[Param.HR],
        reason=None if value is not None else "no_value",
    )


@contextlib.asynccontextmanager
async def publisher(url: str) -> AsyncIterator[aiomqtt.Client]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    async with MqttClient(parts.hostname, parts.port or 1883, identifier="test-pub") as pub:
        yield pub


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def until_subscribed(pub: aiomqtt.Client, driver: Driver, sink: ListSink) -> None:
    """Publish a probe until one arrives (the subscription is then live); forget the probes."""
    probe = encode_vigil(hr(61.0))
    deadline = time.monotonic() + WAIT_S
    while not sink.samples:
        if time.monotonic() > deadline:
            pytest.fail("the driver never received a probe")
        await pub.publish(TOPIC, probe, qos=1)
        await asyncio.sleep(0.05)
    # let stray probes still in flight land before the test starts counting
    await asyncio.sleep(0.2)
    sink.samples.clear()
    driver.stats.frames = driver.stats.samples = 0
    driver.stats.dropped.clear()


async def test_published_samples_arrive_in_the_sink(mqtt_broker_url: str) -> None:
    driver, sink = make_driver(mqtt_broker_url), ListSink()
    async with publisher(mqtt_broker_url) as pub, running_driver(driver, sink):
        await until_subscribed(pub, driver, sink)
        await pub.publish(TOPIC, encode_vigil(hr(72.0, T0 + 1)), qos=1)
        await pub.publish(
            TOPIC,
            b'{"t":1764200002,"param":"SPO2","value":97,"valid":true,"device_id":"mon1"}',
            qos=1,
        )
        await eventually(lambda: len(sink.samples) == 2, "two samples")
    assert sink.samples[0] == hr(72.0, T0 + 1)
    assert (sink.samples[1].param, sink.samples[1].value, sink.samples[1].unit) == (
        Param.SPO2,
        97.0,
        "%",
    )
    assert (driver.stats.frames, driver.stats.samples) == (2, 2)
    assert not driver.stats.dropped


async def test_bad_payloads_are_counted_and_the_next_good_sample_arrives(
    mqtt_broker_url: str,
) -> None:
    driver, sink = make_driver(mqtt_broker_url), ListSink()
    good = {"t": T0, "param": "HR", "value": 60, "valid": True, "device_id": DEVICE}
    bad = [
        b"\x00 not json",
        json.dumps({**good, "value": "60"}).encode(),  # wrong type
        json.dumps({**good, "t": True}).encode(),  # wrong type
        json.dumps({k: v for k, v in good.items() if k != "valid"}).encode(),  # missing field
        json.dumps({**good, "param": "TEMP"}).encode(),
        json.dumps([]).encode(),  # an empty array carries no sample
    ]
    async with publisher(mqtt_broker_url) as pub, running_driver(driver, sink) as task:
        await until_subscribed(pub, driver, sink)
        for payload in bad:
            await pub.publish(TOPIC, payload, qos=1)
        await pub.publish(TOPIC, json.dumps({**good, "value": 900}).encode(), qos=1)
        await pub.publish(TOPIC, json.dumps({**good, "t": T0 + 1, "value": 64}).encode(), qos=1)
        await eventually(lambda: len(sink.samples) == 2, "the out-of-range and the good sample")
        assert not task.done()
    high, ok = sink.samples
    assert (high.value, high.valid, high.reason) == (900.0, False, "out_of_range")
    assert ok == hr(64.0, T0 + 1)
    stats = driver.stats
    assert (stats.frames, stats.samples) == (len(bad) + 2, 2)
    assert stats.dropped == {
        "not_json": 1,
        "wrong_type": 2,
        "missing_field": 1,
        "unknown_param": 1,
        "not_object": 1,
        "out_of_range": 1,  # delivered, counted
    }


async def test_vscapture_export_is_decoded(mqtt_broker_url: str) -> None:
    clock = ManualClock(T0 + 50)
    driver, sink = make_driver(mqtt_broker_url, fmt="vscapture", clock=clock), ListSink()
    sent = [hr(72.0, T0), hr(None, T0)]
    payload = json.loads(encode_vscapture(sent))
    payload.append({**payload[0], "PhysioID": "NOM_TEMP", "Value": "36.9"})
    payload.append({**payload[0], "Timestamp": "01-01-0001 00:00:01.000", "Value": "75"})
    async with publisher(mqtt_broker_url) as pub, running_driver(driver, sink):
        # the probe of until_subscribed is Vigil JSON; this driver reads VSCapture lists
        deadline = time.monotonic() + WAIT_S
        while not sink.samples:
            assert time.monotonic() < deadline, "the driver never received a probe"
            await pub.publish(TOPIC, encode_vscapture([hr(61.0)]), qos=1)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        sink.samples.clear()
        driver.stats.dropped.clear()
        # VSCaptureMP publishes with retain=true; live delivery clears the flag (MQTT §3.3.1.3)
        await pub.publish(f"{TOPIC}", json.dumps(payload).encode(), qos=1, retain=True)
        await eventually(lambda: len(sink.samples) == 3, "three samples")
    first, no_value, retimed = sink.samples
    assert first == hr(72.0, T0)
    assert (math.isnan(no_value.value), no_value.valid, no_value.reason) == (
        True,
        False,
        "no_value",
    )
    assert (retimed.value, retimed.t) == (75.0, T0 + 50)  # the clock's time at receipt
    assert driver.stats.dropped == {"unmapped_physio_id": 1, "retimed": 1}


async def test_retained_message_from_before_the_subscription_is_dropped(
    mqtt_broker_url: str,
) -> None:
    driver, sink = make_driver(mqtt_broker_url), ListSink()
    async with publisher(mqtt_broker_url) as pub:
        await pub.publish(TOPIC, encode_vigil(hr(50.0, T0 - 3600)), qos=1, retain=True)
        async with running_driver(driver, sink):
            await eventually(lambda: driver.stats.frames == 1, "the retained message")
            assert driver.stats.dropped == {"retained": 1}
            await pub.publish(TOPIC, encode_vigil(hr(80.0)), qos=1)
            await eventually(lambda: len(sink.samples) == 1, "a live sample")
        await pub.publish(TOPIC, b"", qos=1, retain=True)  # clear the retained message
    assert sink.samples == [hr(80.0)]


async def test_broker_going_away_raises_device_error(mqtt_broker: BrokerProcess) -> None:
    driver, sink = make_driver(mqtt_broker.url), ListSink()
    async with running_driver(driver, sink) as task:
        async with publisher(mqtt_broker.url) as pub:
            await until_subscribed(pub, driver, sink)
        await asyncio.to_thread(mqtt_broker.stop)
        with pytest.raises(DeviceError, match=r"mon1: broker 127\.0\.0\.1"):
            await asyncio.wait_for(task, WAIT_S)


async def test_a_new_run_after_the_broker_returns_delivers_again(
    mqtt_broker: BrokerProcess,
) -> None:
    driver, sink = make_driver(mqtt_broker.url), ListSink()
    async with running_driver(driver, sink) as task:
        async with publisher(mqtt_broker.url) as pub:
            await until_subscribed(pub, driver, sink)
            await pub.publish(TOPIC, b"junk", qos=1)
            await eventually(lambda: driver.stats.frames == 1, "the junk")
        await asyncio.to_thread(mqtt_broker.stop)
        with pytest.raises(DeviceError):
            await asyncio.wait_for(task, WAIT_S)
    with pytest.raises(DeviceError):  # what the supervisor sees while the broker is down
        await driver.run(sink)
    await asyncio.to_thread(mqtt_broker.start)
    async with running_driver(driver, sink), publisher(mqtt_broker.url) as pub:
        deadline = time.monotonic() + WAIT_S
        while not sink.samples:
            assert time.monotonic() < deadline, "no sample after the broker came back"
            await pub.publish(TOPIC, encode_vigil(hr(70.0)), qos=1)
            await asyncio.sleep(0.05)
    assert sink.samples[0] == hr(70.0)
    assert driver.stats.dropped["not_json"] == 1  # counters are kept across runs


async def test_nothing_listening_raises_device_error() -> None:
    driver = make_driver(f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(DeviceError, match=r"mon1: broker 127\.0\.0\.1"):
        await asyncio.wait_for(driver.run(ListSink()), WAIT_S)


async def test_a_broker_that_never_answers_raises_device_error_after_the_timeout() -> None:
    """A TCP peer that accepts and never sends CONNACK: connect must give up on time."""
    connections: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    timeouts = TimeoutSettings(broker_connect_s=0.5)
    driver = make_driver(f"mqtt://127.0.0.1:{port}", timeouts=timeouts)
    try:
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"mon1: broker 127\.0\.0\.1"):
            await asyncio.wait_for(driver.run(ListSink()), WAIT_S)
        assert time.monotonic() - started < 0.5 + 1.0
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_cancellation_while_streaming_propagates(mqtt_broker_url: str) -> None:
    driver, sink = make_driver(mqtt_broker_url), ListSink()
    task = asyncio.create_task(driver.run(sink), name="test-driver[cancel]")
    try:
        async with publisher(mqtt_broker_url) as pub:
            await until_subscribed(pub, driver, sink)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_cancellation_while_connecting_propagates() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = make_driver(f"mqtt://127.0.0.1:{port}")
    task = asyncio.create_task(driver.run(ListSink()), name="test-driver[connecting]")
    await eventually(lambda: bool(connections), "the connection attempt")
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_broker_url_of_the_driver_wins_over_the_ward_broker(mqtt_broker_url: str) -> None:
    port = urlsplit(mqtt_broker_url).port
    driver = make_driver(
        f"mqtt://127.0.0.1:{free_port()}",  # the ward broker: nothing there
        broker_url=f"mqtt://someone:p%40ss@127.0.0.1:{port}",
    )
    sink = ListSink()
    async with publisher(mqtt_broker_url) as pub, running_driver(driver, sink):
        await until_subscribed(pub, driver, sink)


def test_client_identifiers_differ_per_driver_and_name_the_device() -> None:
    a = make_driver("mqtt://127.0.0.1:1883").identifier
    b = make_driver("mqtt://127.0.0.1:1883").identifier
    assert a != b
    assert a.startswith(f"vigil-{DEVICE}-")


def test_bad_broker_url_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="scheme"):
        make_driver("mqtt://127.0.0.1:1883", broker_url="http://127.0.0.1")


def test_driver_satisfies_the_driver_protocol() -> None:
    driver: Driver = make_driver("mqtt://127.0.0.1:1883")
    assert driver.device_id == DEVICE
    assert driver.stats.frames == 0
