"""The embedded amqtt broker, driven by aiomqtt (MQTT 3.1.1) as Vigil's own clients would."""

from __future__ import annotations

import asyncio
import gc
import os
import struct
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest
from amqtt.errors import BrokerError

from monitor.embedded_broker import embedded_broker
from tests.helpers import client_of, first_message, free_port


async def _drain(client: aiomqtt.Client) -> None:
    async with asyncio.timeout(5):
        async for _ in client.messages:
            pass


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


async def _connect_with_will(
    url: str, *, client_id: str, will_topic: str, will_payload: str
) -> asyncio.StreamWriter:
    """Open a raw MQTT 3.1.1 session with a retained QoS 1 will; return its socket's writer.

    Raw bytes rather than aiomqtt, because the point is a client that vanishes without DISCONNECT.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    clean_session, will, will_qos1, will_retain = 0x02, 0x04, 0x08, 0x20
    variable_header = (
        _utf8("MQTT")
        + bytes([4, clean_session | will | will_qos1 | will_retain])
        + struct.pack("!H", 30)  # keep-alive seconds
    )
    payload = _utf8(client_id) + _utf8(will_topic) + _utf8(will_payload)
    body = variable_header + payload
    writer.write(bytes([0x10, len(body)]) + body)  # CONNECT, remaining length < 128
    await writer.drain()
    async with asyncio.timeout(5):
        connack = await reader.readexactly(4)
    assert connack == b"\x20\x02\x00\x00", connack  # session not present, accepted
    return writer


async def test_yields_a_loopback_url_with_the_bound_port() -> None:
    async with embedded_broker() as url:
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("mqtt", "127.0.0.1")
        assert parts.port not in (None, 0)


async def test_listens_on_the_port_asked_for() -> None:
    port = free_port()
    async with embedded_broker(port=port) as url:
        assert url == f"mqtt://127.0.0.1:{port}"
        async with client_of(url):
            pass


async def test_port_in_use_is_an_error() -> None:
    async with embedded_broker() as url:
        port = urlsplit(url).port
        assert port is not None
        with pytest.raises(BrokerError):
            async with embedded_broker(port=port):
                pass


async def test_qos1_publish_subscribe() -> None:
    async with (
        embedded_broker() as url,
        client_of(url) as subscriber,
        client_of(url) as publisher,
    ):
        await subscriber.subscribe("vigil/w1/b1/alarms", qos=1)
        await publisher.publish("vigil/w1/b1/alarms", b'{"code": "DESAT"}', qos=1)
        message = await first_message(subscriber)
    assert str(message.topic) == "vigil/w1/b1/alarms"
    assert message.payload == b'{"code": "DESAT"}'
    assert message.qos == 1
    assert not message.retain


async def test_retained_message_reaches_a_later_subscriber_at_its_qos() -> None:
    async with embedded_broker() as url:
        async with client_of(url) as publisher:
            await publisher.publish("vigil/w1/b1/status", b"online", qos=1, retain=True)
        async with client_of(url) as subscriber:
            await subscriber.subscribe("vigil/w1/b1/status", qos=1)
            message = await first_message(subscriber)
    assert message.payload == b"online"
    assert message.retain
    assert message.qos == 1


async def test_connecting_client_gets_no_retained_messages_it_did_not_subscribe_to() -> None:
    # Regression guard for amqtt 0.12.1, which pushes retained messages of other clients'
    # filters to every newly connected client (see monitor/embedded_broker.py).
    async with embedded_broker() as url, client_of(url) as ward:
        await ward.subscribe("vigil/#", qos=1)
        await ward.publish("vigil/w1/b1/status", b"online", qos=1, retain=True)
        assert (await first_message(ward)).payload == b"online"
        async with client_of(url) as other:
            await other.subscribe("elsewhere/ping", qos=1)
            await other.publish("elsewhere/ping", b"1", qos=1)
            message = await first_message(other)
    assert str(message.topic) == "elsewhere/ping"


async def test_last_will_is_sent_when_a_client_drops_its_socket() -> None:
    async with embedded_broker() as url, client_of(url) as ward:
        await ward.subscribe("vigil/w1/b1/status", qos=1)
        writer = await _connect_with_will(
            url, client_id="bed-b1", will_topic="vigil/w1/b1/status", will_payload="offline"
        )
        writer.transport.abort()  # no DISCONNECT packet: an abnormal disconnection
        message = await first_message(ward)
        assert message.payload == b"offline"
        assert message.qos == 1
        # The will was retained too: a console that connects later sees the bed offline.
        async with client_of(url) as console:
            await console.subscribe("vigil/w1/b1/status", qos=1)
            late = await first_message(console)
        assert late.payload == b"offline"
        assert late.retain


async def test_no_will_after_a_clean_disconnect() -> None:
    async with embedded_broker() as url, client_of(url) as ward:
        await ward.subscribe("vigil/#", qos=1)
        async with client_of(
            url, will=aiomqtt.Will("vigil/w1/b1/status", b"offline", qos=1, retain=True)
        ):
            pass
        await ward.publish("vigil/marker", b"1", qos=1)
        message = await first_message(ward)
    assert str(message.topic) == "vigil/marker"


@pytest.mark.parametrize("first_bytes", [b"", b"\x10"], ids=["nothing", "half-a-connect"])
async def test_connection_dropped_before_connect_is_closed(first_bytes: bytes) -> None:
    # amqtt 0.12.1 returns without closing such a connection; the socket then surfaces as a
    # ResourceWarning when collected (an error under pytest). A port probe does exactly this.
    async with embedded_broker() as url:
        parts = urlsplit(url)
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(first_bytes)
        writer.close()
        await writer.wait_closed()
        async with client_of(url):  # the broker serves on, and has handled the dropped one
            pass
        gc.collect()
    gc.collect()


async def test_mqtt5_clients_are_refused() -> None:
    # Documented limitation of amqtt 0.12; if this starts passing, revisit the module docstring.
    async with embedded_broker() as url:
        with pytest.raises(aiomqtt.MqttError):
            async with client_of(url, protocol=aiomqtt.ProtocolVersion.V5, timeout=5):
                pass


@pytest.mark.parametrize(
    "will",
    [
        None,
        aiomqtt.Will("vigil/w1/b1/status", b"offline", qos=1, retain=True),
        aiomqtt.Will("a/status", b"off", qos=1, retain=True),
    ],
    ids=["no-will", "bed-will", "short-will"],
)
async def test_mqtt5_is_refused_at_once_as_an_unacceptable_version(
    will: aiomqtt.Will | None,
) -> None:
    # the daemon's ward link connects with a will: amqtt alone misread that v5 CONNECT (the
    # properties shift every field after them) and never answered, so a client set to "auto"
    # timed out instead of going on with MQTT 3.1.1
    async with embedded_broker() as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(aiomqtt.MqttCodeError) as refused:
            async with client_of(
                url, identifier="x1", protocol=aiomqtt.ProtocolVersion.V5, will=will, timeout=5
            ):
                pass
        assert loop.time() - started < 2
        assert "Unsupported protocol version" in str(refused.value)
        # and the broker goes on serving 3.1.1 clients
        async with client_of(url, will=will) as client:
            await client.publish("t", b"1", qos=1)


@pytest.mark.parametrize(("published", "granted"), [(0, 1), (1, 0), (1, 1), (0, 0)])
async def test_a_message_is_delivered_at_the_lower_of_its_qos_and_the_granted_qos(
    published: int, granted: int
) -> None:
    # MQTT 3.1.1 §3.8.4; amqtt 0.12.1 alone delivers at the granted QoS (a QoS 0 vital sign
    # reached a QoS 1 subscriber as QoS 1)
    async with embedded_broker() as url, client_of(url) as subscriber, client_of(url) as publisher:
        await subscriber.subscribe("monitors/mon1/samples", qos=granted)
        await publisher.publish("monitors/mon1/samples", b"{}", qos=published)
        message = await first_message(subscriber)
    assert message.qos == min(published, granted)


async def test_a_will_is_delivered_at_the_lower_of_its_qos_and_the_granted_qos() -> None:
    async with embedded_broker() as url, client_of(url) as ward:
        await ward.subscribe("vigil/w1/b1/status", qos=0)
        writer = await _connect_with_will(
            url, client_id="bed", will_topic="vigil/w1/b1/status", will_payload="offline"
        )
        writer.transport.abort()
        message = await first_message(ward)
    assert message.payload == b"offline"
    assert message.qos == 0


async def test_exit_disconnects_clients_and_stops_listening() -> None:
    async with embedded_broker() as url:
        client = client_of(url)
        await client.__aenter__()
    with pytest.raises(aiomqtt.MqttError):
        await _drain(client)
    await client.__aexit__(None, None, None)
    with pytest.raises(aiomqtt.MqttError):
        async with client_of(url, timeout=2):
            pass


async def test_writes_nothing_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with embedded_broker() as url, client_of(url) as client:
        await client.publish("vigil/w1/b1/status", b"online", qos=1, retain=True)
    assert await asyncio.to_thread(os.listdir, tmp_path) == []
