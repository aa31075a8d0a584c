"""The MQTT driver: a monitor that publishes its numerics to an MQTT broker.

The driver *has* a transport, one `aiomqtt.Client` per `run`, and decodes every message with
the sans-I/O `drivers.mqtt.codec` (docs/DESIGN.md P1, P7). It never reconnects by itself: when the
broker cannot be reached, or the connection is lost, `run` raises `DeviceError` and the
supervisor decides when to try again (docs/DESIGN.md P9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from drivers.base import DeviceError, DriverBase, DriverStats, nothing
from drivers.mqtt import client as mqtt_client
from drivers.mqtt.client import Client as MqttClient
from drivers.mqtt.codec import DecodeResult, decode_vigil, decode_vscapture
from drivers.mqtt.spec import MqttSettings
from kernel.settings import BrokerSettings, Endpoint, TimeoutSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import SampleSink
    from kernel.clock import Clock

__all__ = ["MqttMonitorDriver"]

_log = logging.getLogger("vigil.drivers")

# Counted in `DriverStats.dropped` although the sample *is* delivered (invalid, or with an
# approximate time): they are data-quality counters that belong next to the real drops.
NOTE_OUT_OF_RANGE: Final = "out_of_range"
NOTE_RETIMED: Final = "retimed"
NOTE_DEVICE_ID_MISMATCH: Final = "device_id_mismatch"
# A real drop: a retained message is the last value of some earlier moment, replayed by the
# broker because we subscribed, not a reading of now (MQTT 3.1.1 §3.3.1.3 sets RETAIN only then).
DROP_RETAINED: Final = "retained"
DROP_OVERLOAD: Final = "overload"  # shed from a full incoming queue (`_shedding_queue`)

# The subscription QoS: the broker keeps QoS 1 messages for us in flight, QoS 0 it may lose.
_QOS: Final = 1
# Packets read per readable-socket callback (`_read_in_bursts`).
READ_BURST: Final = 64


class MqttMonitorDriver(DriverBase):
    """Reads one monitor's samples from an MQTT topic (`[[drivers]] kind = "mqtt"`).

    `run` connects to the broker (``broker_url`` of the driver if set, else the ward broker),
    subscribes to ``topic`` with QoS 1, and puts every decoded sample into the sink. Counters
    (`stats`, kept across runs): ``frames`` counts MQTT messages, ``samples`` delivered
    samples, ``dropped`` the codec's drop reasons per rejected item plus ``retained`` for
    retained messages (ignored, see `DROP_RETAINED`). Three keys of ``dropped`` count samples
    that *are* delivered: ``out_of_range`` (delivered with ``valid=False``), ``retimed``
    (vscapture, stamped with the receive time) and ``device_id_mismatch`` (vigil).

    Broker: the driver's own ``broker_url`` takes host, port and TLS from that URL and the
    username and password from its user-info part; only the ward broker's CA file is reused
    (trust, not identity), never its credentials or client certificate. Without ``broker_url``
    the ward broker's settings are used whole.

    Timeouts: connecting (TCP, TLS, CONNACK) and subscribing (SUBACK) must finish within
    ``timeouts.broker_connect_s``. While streaming, the MQTT keep-alive
    (``broker.keepalive_s``) detects a silent broker; a monitor that stops publishing while
    the broker lives is the supervisor's business, not a transport error.

    Format ``vscapture``: the monitor's zone-less ``Timestamp`` is read in the host's local
    zone (the monitor and this daemon keep ward time); see `codec.decode_vscapture`.

    The client identifier is ``<bed client id>-<device_id>`` when the daemon gives the bed's
    (``broker.client_id``): stable across restarts, with a persistent session
    (``broker.session_expiry_s``) so QoS 1 samples published while the bed is down are
    delivered when it is back. Without one (a driver used alone) it is
    ``vigil-<device_id>-<8 hex>`` with a clean session. Either way a reconnect replaces our
    own half-open connection at the broker.

    Args:
        settings: this driver's config entry.
        broker: the ward broker.
        timeouts: the bed's timeouts.
        clock: the daemon's clock; stamps vscapture samples that carry no usable time.
    """

    _settings: MqttSettings

    def __init__(
        self,
        settings: MqttSettings,
        /,
        *,
        broker: BrokerSettings,
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._broker = _driver_broker(settings, broker)
        self._timeouts = timeouts
        self._clock = clock
        self._stats = DriverStats()
        # With the bed's client id (the daemon passes it in `broker.client_id`) the driver's
        # id is stable and its session persistent, so a determination published while the
        # bed restarts is delivered after it (issue 17, item 3); alone, a fresh id each time.
        self._persistent = broker.client_id is not None
        self._identifier = (
            f"{broker.client_id}-{settings.device_id}"
            if broker.client_id is not None
            else f"vigil-{settings.device_id}-{secrets.token_hex(4)}"
        )
        self._decode: Callable[[bytes], DecodeResult]
        if settings.format == "vigil":
            self._decode = partial(decode_vigil, device_id=settings.device_id)
        else:
            self._decode = self._decode_vscapture

    @property
    def identifier(self) -> str:
        """The MQTT client identifier this driver connects with."""
        return self._identifier

    async def run(self, sink: SampleSink, connected: Callable[[], None] = nothing) -> None:
        """Connect, subscribe, call `connected()`, then stream into `sink` until cancelled.

        Cancellation disconnects from the broker and propagates.

        Raises:
            DeviceError: the broker refused or did not answer within
                ``timeouts.broker_connect_s``, refused the subscription, or the connection
                was lost.
        """
        brokers = self._broker.endpoints
        where = f"{self.device_id}: broker {','.join(map(str, brokers))}"
        # each broker of a failover list gets its own connect timeout (drivers/mqtt/client.py)
        connect_s = self._timeouts.broker_connect_s * len(brokers)
        try:
            async with contextlib.AsyncExitStack() as stack:
                # aiomqtt bounds CONNACK and SUBACK itself; this also bounds DNS and TCP/TLS.
                # The ward broker's protocol setting: MQTT 5, else 3.1.1 where 5 is refused.
                async with asyncio.timeout(connect_s):
                    client = await stack.enter_async_context(
                        mqtt_client.connect(self._broker.protocol, brokers, self._client)
                    )
                    await self._subscribe(client)
                _log.info(
                    "event=broker_connected device=%s broker=%s client_id=%s",
                    self.device_id,
                    mqtt_client.endpoint_of(client),
                    self._identifier,
                )
                connected()
                async for message in client.messages:
                    self._handle(message, sink)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            if _cancelling():
                # the error came from disconnecting on the way out of a cancellation, which
                # must win: the supervisor is stopping us, not asking for a reconnect
                raise asyncio.CancelledError from exc
            if isinstance(exc, aiomqtt.MqttError):
                raise DeviceError(f"{where}: {exc}") from exc
            raise DeviceError(f"{where}: no answer within {connect_s} s") from exc
        # `messages` only ends by raising MqttError; an end without one is a lost link too
        raise DeviceError(f"{where}: message stream ended")

    def _client(self, protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        broker = self._broker
        password = broker.password.get_secret_value() if broker.password is not None else None
        tls = None
        if broker.tls:
            # paho loads the files in aiomqtt's connect thread, not on the event loop
            tls = aiomqtt.TLSParameters(
                ca_certs=_str_or_none(broker.ca_file),
                certfile=_str_or_none(broker.cert_file),
                keyfile=_str_or_none(broker.key_file),
            )
        client = MqttClient(
            endpoint.host,
            endpoint.port,
            username=broker.username,
            password=password,
            identifier=self._identifier,
            protocol=protocol,
            keepalive=broker.keepalive_s,
            tls_params=tls,
            # bounds CONNACK, SUBACK and the DISCONNECT on the way out
            timeout=self._timeouts.broker_connect_s,
            # samples go straight to the alarm engine: no Nagle delay on our ACKs and requests
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            logger=_log,
            queue_type=_shedding_queue(self._stats),
            max_queued_incoming_messages=self._settings.max_queued,
            **mqtt_client.session_options(
                protocol, broker.session_expiry_s if self._persistent else 0
            ),
        )
        _read_in_bursts(client._client)  # noqa: SLF001 - aiomqtt does not expose the read loop
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        topic = self._settings.topic
        granted = await client.subscribe(topic, qos=_QOS)
        # SUBACK 0x80 (3.1.1) or a v5 reason >= 0x80: refused, typically by the broker's ACL;
        # without this check the driver would wait forever for messages that never come.
        if any((c.value if isinstance(c, ReasonCode) else c) >= 0x80 for c in granted):
            raise DeviceError(f"{self.device_id}: broker refused the subscription to {topic!r}")
        _log.info("event=subscribed device=%s topic=%s", self.device_id, topic)

    def _handle(self, message: aiomqtt.Message, sink: SampleSink) -> None:
        stats = self._stats
        stats.frames += 1
        if message.retain:
            stats.drop(DROP_RETAINED)
            return
        result = self._decode(message.payload)
        for sample in result.samples:
            sink.put(sample)
        stats.samples += len(result.samples)
        for reason in result.dropped:
            stats.drop(reason)
        for note, n in (
            (NOTE_OUT_OF_RANGE, result.out_of_range),
            (NOTE_RETIMED, result.retimed),
            (NOTE_DEVICE_ID_MISMATCH, result.device_id_mismatch),
        ):
            if n:
                stats.drop(note, n)
        if result.dropped:
            _log.debug("%s: dropped %s", self.device_id, ", ".join(result.dropped))

    def _decode_vscapture(self, payload: bytes) -> DecodeResult:
        return decode_vscapture(
            payload, device_id=self._settings.device_id, received_t=self._clock.now()
        )


def _shedding_queue(stats: DriverStats) -> type[asyncio.Queue[aiomqtt.Message]]:
    """The incoming queue of aiomqtt, bounded: when full the oldest message goes, counted.

    aiomqtt discards the *newest* message of a full queue with only a log line; here the
    newest samples are kept (they are what the alarms are judged on now) and every message
    shed is counted under `overload` (docs/ARCHITECTURE.md: samples may be dropped under overload,
    bounded and counted).
    """

    class SheddingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            if self.full():
                self.get_nowait()
                stats.drop(DROP_OVERLOAD)
            super().put_nowait(item)

    return SheddingQueue


def _read_in_bursts(paho: PahoClient, most: int = READ_BURST) -> None:
    """Make `paho` read up to `most` packets each time its socket is readable, not one.

    aiomqtt calls paho's `loop_read` once per readable event of the event loop, and paho then
    reads one packet (its `max_packets` is ignored for incoming QoS 0/1 messages). So the
    driver read one sample per turn of the event loop, at whatever pace the rest of the bed
    left it: a monitor publishing faster than that (5,000 samples/s against a bed that takes
    ~3,000) built its backlog in the socket and the broker's queue for this client, ahead of
    the shedding queue, uncounted, and a zero-delay alarm waited behind all of it (issue 17,
    item 5: 3.8-8.8 s at 5,000/s, measured by tests/monitor/test_overload.py). Reading until
    the socket is empty (or `most` packets) moves the backlog into the bounded queue
    (`_shedding_queue`), where the oldest are shed and counted and the newest samples go on
    (0.05-0.8 s then, same test, same machine).

    Uses paho's own `_packet_read`, as `loop_read` does (paho-mqtt 2.x, which aiomqtt 2
    requires); tests/drivers/mqtt exercise it on every connect, reconnect and message.
    """

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:  # noqa: ARG001 - paho's signature
        read = 0
        for _ in range(most):
            if paho._sock is None:  # noqa: SLF001 - see above
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = paho._packet_read()  # noqa: SLF001
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc > 0:
                return paho._loop_rc_handle(rc)  # noqa: SLF001
            read += 1
        # only after a burst of messages on an established session, never after the CONNACK
        # alone: writing from here right after it broke reconnecting
        # (tests/drivers/mqtt/test_mqtt_driver.py, the broker coming back)
        if read > 1 and paho.is_connected() and paho.want_write():
            # The PUBACKs of what was just read go out now, not at the next writable turn
            # of the event loop: the broker sends a QoS 1 subscriber only so many messages
            # unacknowledged (mosquitto's max_inflight_messages, 20), so a late PUBACK
            # throttles the stream and the backlog waits in the broker's queue instead.
            return paho.loop_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    paho.loop_read = loop_read  # type: ignore[method-assign]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _str_or_none(x: object | None) -> str | None:
    return None if x is None else str(x)


def _driver_broker(settings: MqttSettings, ward: BrokerSettings) -> BrokerSettings:
    """The broker this driver talks to (see `MqttMonitorDriver`, "Broker").

    Raises:
        pydantic.ValidationError: `settings.broker_url` is not an mqtt:// or mqtts:// URL.
    """
    if settings.broker_url is None:
        return ward
    parts = urlsplit(settings.broker_url)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerSettings.model_validate(
        {
            "url": settings.broker_url,
            "username": username,
            "password": password,
            "ca_file": ward.ca_file,
            "keepalive_s": ward.keepalive_s,
            "protocol": ward.protocol,
            "client_id": ward.client_id,
            "session_expiry_s": ward.session_expiry_s,
        }
    )
