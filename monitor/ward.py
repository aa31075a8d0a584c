"""The link to the ward broker: publishes status, vitals, alarms and state; receives commands.

Topics and payloads are docs/ARCHITECTURE.md "MQTT" under the bed prefix `vigil/<ward>/<bed>`:
- `status`: retained QoS 1 JSON `{"status": "online", ...birth info}` published on every
  (re)connect, and the Last Will `{"status": "offline", ...}` (retained) if the bed dies. A clean
  shutdown publishes `offline` itself, since a clean DISCONNECT suppresses the will.
- `vitals`: Sample JSON, QoS 0, MQTT 5 message expiry so stale vitals are never replayed.
- `alarms`: alarm events, QoS 1, in order; an event leaves the pending queue only once the
  broker has acknowledged it (PUBACK), so a dropped link loses none.
- `alarms/active`, `session`: retained QoS 1 snapshots, re-published on every (re)connect.
- `cmd` and `cmd/<login>` in (the sender's broker login, monitor/authority.py), `cmd/result`
  out (QoS 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, cast

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.mqtt import client as mqtt_client
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import Clock
from kernel.settings import BrokerSettings, Endpoint
from kernel.tasks import raise_if_cancelled
from kernel.vocabulary import NIBP_PARAMS, AlarmEvent, Param, Sample, iso8601
from monitor.authority import principal_of
from monitor.outbox import Outbox, OutboxEntry
from monitor.settings import Settings
from monitor.supervisor import Backoff, LinkState, LinkStatus, supervise
from monitor.wire import (
    WireStatus,
    encode_active_alarms,
    encode_alarm_event,
    encode_command_result,
    encode_sample,
    encode_session,
    encode_status,
)

__all__ = [
    "NO_DELAY",
    "WardLink",
    "broker_client",
    "connect_ward",
    "make_client",
    "tls_context_for",
]

log = logging.getLogger("vigil.ward")

# Nagle's algorithm holds a small alarm publish back until the ACK of the vitals message before
# it, which the broker delays (~40 ms); an alarm must not wait for that (bench/latency.py).
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

# Alarm publishes in flight at once: below paho's default of 20 in-flight QoS 1 messages.
PIPELINE = 16

# (payload, principal): the broker login the topic carries (`monitor.authority`), or None
CommandHandler = Callable[[bytes, str | None], dict[str, Any]]
StateProvider = Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]]


def tls_context_for(b: BrokerSettings) -> ssl.SSLContext | None:
    """The TLS context for `b`: None for mqtt://; for mqtts:// the CA and client certificate."""
    if not b.tls:
        return None
    context = ssl.create_default_context(cafile=str(b.ca_file) if b.ca_file else None)
    if b.cert_file is not None:
        context.load_cert_chain(str(b.cert_file), str(b.key_file) if b.key_file else None)
    return context


def broker_client(
    broker: BrokerSettings,
    protocol: aiomqtt.ProtocolVersion,
    endpoint: Endpoint,
    *,
    identifier: str,
    session_expiry_s: int,
    timeout: float,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """An aiomqtt client for `endpoint` of the ward broker `broker`.

    Its credentials, TLS and keep-alive, Nagle off, and a session the broker keeps for
    `session_expiry_s` (0: a clean one). For every program on the ward broker: the bed
    (`make_client`), the HL7 gateway, the station.
    """
    return MqttClient(
        endpoint.host,
        endpoint.port,
        username=broker.username,
        password=broker.password.get_secret_value() if broker.password else None,
        identifier=identifier,
        protocol=protocol,
        will=will,
        keepalive=broker.keepalive_s,
        tls_context=tls_context_for(broker),
        timeout=timeout,
        socket_options=NO_DELAY,
        **mqtt_client.session_options(protocol, session_expiry_s),
    )


def make_client(
    settings: Settings,
    protocol: aiomqtt.ProtocolVersion,
    endpoint: Endpoint,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    on_refused: Callable[[], None] | None = None,
) -> aiomqtt.Client:
    """An aiomqtt client for `endpoint`, a ward broker of `settings` (TLS and credentials)."""
    client = broker_client(
        settings.broker,
        protocol,
        endpoint,
        identifier=identifier,
        session_expiry_s=settings.broker.session_expiry_s,
        timeout=settings.timeouts.broker_connect_s,
        will=will,
    )
    _refused_is_not_delivered(client, on_refused)
    # a backlog goes out PIPELINE publishes at a time (`WardLink._publish_alarms`): expected,
    # not worth aiomqtt's warning at its default of 10 pending calls
    client.pending_calls_threshold = 2 * PIPELINE
    return client


def connect_ward(
    settings: Settings,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    on_refused: Callable[[], None] | None = None,
) -> contextlib.AbstractAsyncContextManager[aiomqtt.Client]:
    """A connected client for the ward broker, in the version ``broker.protocol`` names.

    `async with connect_ward(...) as client`: ``auto`` falls back from MQTT 5 to 3.1.1 on a
    broker that refuses 5, and ``url`` falls over to the ``failover`` brokers in order
    (`drivers.mqtt.client.connect`).
    """
    return mqtt_client.connect(
        settings.broker.protocol,
        settings.broker.endpoints,
        functools.partial(
            make_client, settings, identifier=identifier, will=will, on_refused=on_refused
        ),
    )


def _refused_is_not_delivered(
    client: aiomqtt.Client, on_refused: Callable[[], None] | None = None
) -> None:
    """Make a PUBACK that refuses a publish fail the publish instead of confirming it.

    MQTT 5 lets the broker answer a QoS 1 publish with a failure reason (§3.4.2.1, e.g. 0x87
    Not authorized from an ACL). aiomqtt 2.5 confirms every PUBACK alike, so an alarm the
    broker refused would leave the outbox as delivered and reach nobody. Here a refusal is
    logged and drops the connection: the pending publish fails with `MqttError`, the event
    stays in the outbox, the supervisor reconnects and tries again with backoff, and after
    `ward_link_down_s` the bed raises WARD_LINK_DOWN locally. A misconfigured ACL is loud, and
    loses nothing.
    """
    paho = client._client  # noqa: SLF001 - aiomqtt exposes no hook for PUBACK reason codes
    # aiomqtt's own handler, with paho's version 2 callback signature
    confirm = cast("Callable[..., None] | None", paho.on_publish)

    def on_publish(
        c: Any,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("event=publish_refused mid=%s reason=%r", mid, str(reason_code))
            if on_refused is not None:
                on_refused()
            c.disconnect()
            return
        assert confirm is not None
        confirm(c, userdata, mid, reason_code, properties)

    paho.on_publish = on_publish


class WardLink:
    """Keeps the ward informed; owns its MQTT client, reconnected by the supervisor."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        on_command: CommandHandler,
        state: StateProvider,
        birth: dict[str, Any],
        outbox: Outbox,
        vitals_maxlen: int = 1000,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_command = on_command
        self._state = state
        self._birth = birth
        self.prefix = settings.prefix
        self.status = LinkStatus(name="ward")
        self.status.listeners.append(self._log_link)
        self._lost_logged = False
        # monotonic time since when the oldest waiting alarm has made no progress
        self._waiting_since: float | None = None
        self._outbox = outbox
        self._vitals: deque[Sample] = deque(maxlen=vitals_maxlen)
        self.vitals_dropped = 0
        self._vitals_last_t: dict[Param, float] = {}
        self._wake = asyncio.Event()
        self._state_dirty = True
        self._identifier = settings.client_id
        # the broker refused an alarm since the last one it took (an ACL): reconnecting fast
        # would not help
        self._refused = False
        # the broker of `broker.endpoints` serving the link now (None: not connected)
        self.broker: Endpoint | None = None

    def _note_refused(self) -> None:
        self._refused = True

    def _log_link(self, status: LinkStatus) -> None:
        """Name the broker (host:port, never the credentials) once when the link fails.

        The supervisor's retry lines say only `link=ward`; this line, one per outage, says
        which broker the bed could not reach or lost.
        """
        if status.state is LinkState.BACKING_OFF and not self._lost_logged:
            self._lost_logged = True
            brokers = ",".join(map(str, self._settings.broker.endpoints))
            log.warning("event=ward_link_lost broker=%s error=%r", brokers, status.last_error)
        elif status.state is LinkState.CONNECTED:
            self._lost_logged = False

    # ------------------------------------------------------------------ producer side

    @property
    def pending_alarms(self) -> int:
        """Alarm events not yet acknowledged by the broker (the outbox depth)."""
        return len(self._outbox)

    def stalled_s(self) -> float:
        """How long alarms have waited without the broker acknowledging any (0: none waiting)."""
        since = self._waiting_since
        if since is None or not len(self._outbox):
            return 0.0
        return time.monotonic() - since

    def publish_alarm(self, event: AlarmEvent) -> None:
        """Store an alarm event durably, then let it go out; it is never dropped."""
        assert event.seq is not None  # stamped by the bed
        if not len(self._outbox):
            self._waiting_since = time.monotonic()
        self._outbox.append(event.seq, event.to_json())
        self._state_dirty = True
        self._wake.set()

    def publish_vital(self, sample: Sample) -> None:
        """Queue a sample for `…/vitals`; when the queue is full the oldest is dropped, counted.

        With `broker.vitals_interval_s` set, continuous parameters are thinned to one sample per
        parameter per interval (sample time); cuff determinations always go out.
        """
        interval = self._settings.broker.vitals_interval_s
        if interval > 0 and sample.param not in NIBP_PARAMS:
            last = self._vitals_last_t.get(sample.param)
            if last is not None and 0 <= sample.t - last < interval:
                return
            self._vitals_last_t[sample.param] = sample.t
        if len(self._vitals) == self._vitals.maxlen:
            self.vitals_dropped += 1
        self._vitals.append(sample)
        self._wake.set()

    def state_changed(self) -> None:
        """The retained state (active alarms, session) must be re-published."""
        self._state_dirty = True
        self._wake.set()

    # ------------------------------------------------------------------ the link

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff, forever; cancellation says goodbye first."""
        t = self._settings.timeouts
        await supervise(
            self.status,
            self._serve,
            errors=(aiomqtt.MqttError, TimeoutError, OSError),
            # Alarms waiting: back within about a second of the broker, not after a backoff
            # grown during the outage; a broker that refuses them is not hammered
            # (issue 17, item 9).
            backoff=Backoff(
                cap=t.backoff_max_s,
                urgent=lambda: self.pending_alarms > 0 and not self._refused,
            ),
            now=self._clock.now,
        )

    def _payload_status(self, status: Literal["online", "offline"]) -> bytes:
        body: dict[str, Any] = {"status": status, **self._birth}
        if status == "online":
            now = self._clock.now()
            body |= {"t": now, "time": iso8601(now)}
        return encode_status(WireStatus.model_validate(body))

    async def _serve(self, connected: Callable[[], None]) -> None:
        will = aiomqtt.Will(
            f"{self.prefix}/status", self._payload_status("offline"), qos=1, retain=True
        )
        # one client id for the bed, across reconnects and restarts: its persistent session
        # keeps the commands published while it was away (`session_options`)
        async with connect_ward(
            self._settings, identifier=self._identifier, will=will, on_refused=self._note_refused
        ) as client:
            try:
                await self._birth_messages(client)
                self.broker = mqtt_client.endpoint_of(client)
                connected()
                log.info("event=ward_connected broker=%s prefix=%s", self.broker, self.prefix)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._receive(client), name="ward.receive")
                    tg.create_task(self._send(client), name="ward.send")
            except asyncio.CancelledError:
                await self._goodbye(client)
                raise
            finally:
                self.broker = None

    async def _birth_messages(self, client: aiomqtt.Client) -> None:
        # Re-publish birth and every retained state on each CONNACK, never before it
        # (docs/DESIGN.md "MQTT conventions": zigbee2mqtt #4854, #3625).
        t = self._settings.timeouts.publish_s
        await client.publish(
            f"{self.prefix}/status", self._payload_status("online"), qos=1, retain=True, timeout=t
        )
        raise_if_cancelled()
        # `…/cmd` (no principal) and `…/cmd/<login>` (the broker login that sent it; the ACL
        # lets each login write only its own, monitor/authority.py)
        for topic in (f"{self.prefix}/cmd", f"{self.prefix}/cmd/+"):
            await client.subscribe(topic, qos=1, timeout=t)
            raise_if_cancelled()
        self._state_dirty = True
        self._wake.set()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.timeout(self._settings.timeouts.shutdown_s):
                await client.publish(
                    f"{self.prefix}/status", self._payload_status("offline"), qos=1, retain=True
                )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("event=goodbye_failed error=%r", exc)

    async def _publish_alarms(self, client: aiomqtt.Client, entries: list[OutboxEntry]) -> None:
        """Publish `entries` with their PUBACKs awaited together; forget those acknowledged.

        One TCP connection keeps them in order at the broker (MQTT 3.1.1 §4.6), so several in
        flight cost no ordering; waiting for each PUBACK before the next publish would make a
        backlog drain at one broker round trip per event. Only the acknowledged prefix leaves
        the outbox: after a failure the rest goes again, in `seq` order (at least once).
        """
        timeout = self._settings.timeouts.publish_s
        results = await asyncio.gather(
            *(
                client.publish(
                    f"{self.prefix}/alarms",
                    encode_alarm_event(entry.payload),
                    qos=1,
                    timeout=timeout,
                )
                for entry in entries
            ),
            return_exceptions=True,
        )
        raise_if_cancelled()
        delivered: list[int] = []
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                self._outbox.remove_many(delivered)
                raise result
            delivered.append(entry.seq)
        self._outbox.remove_many(delivered)  # only after PUBACK
        if delivered:
            self._refused = False
        # progress: the next wait is measured from now
        self._waiting_since = time.monotonic()

    async def _send(self, client: aiomqtt.Client) -> None:
        timeout = self._settings.timeouts.publish_s
        expiry = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped
        expiry.MessageExpiryInterval = self._settings.broker.vitals_expiry_s
        # message expiry is MQTT 5's: with "auto" it is the version the broker took
        v5 = mqtt_client.speaks_v5(client)
        while True:
            await self._wake.wait()
            self._wake.clear()
            # alarms first: they outrank vitals (docs/DESIGN.md P12)
            # the backlog of a broken link or of a restart first, in seq order, then live ones
            while entries := self._outbox.peek(PIPELINE):
                await self._publish_alarms(client, entries)
            if self._state_dirty:
                self._state_dirty = False
                active, session = self._state()
                for kind, payload in (
                    ("alarms/active", encode_active_alarms(active)),
                    ("session", encode_session(session)),
                ):
                    await client.publish(
                        f"{self.prefix}/{kind}", payload, qos=1, retain=True, timeout=timeout
                    )
                    raise_if_cancelled()
            while self._vitals and not self.pending_alarms:
                sample = self._vitals.popleft()
                await client.publish(
                    f"{self.prefix}/vitals",
                    encode_sample(sample),
                    qos=0,
                    properties=expiry if v5 else None,
                    timeout=timeout,
                )
                raise_if_cancelled()

    async def _receive(self, client: aiomqtt.Client) -> None:
        timeout = self._settings.timeouts.publish_s
        async for message in client.messages:
            is_command, principal = principal_of(self.prefix, str(message.topic))
            if not is_command:
                continue  # our own `…/cmd/result`, which `…/cmd/+` matches
            payload = (
                message.payload
                if isinstance(message.payload, bytes)
                else str(message.payload).encode()
            )
            if message.retain:
                # A retained command would run again at every restart and for every new
                # subscriber (issue 17, item 7): refused, never applied.
                log.warning("event=command_refused reason='retained' topic=%s", message.topic)
                result = {
                    "request_id": _request_id(payload),
                    "ok": False,
                    "error": "retained command ignored: publish commands without retain",
                }
            else:
                result = self._on_command(payload, principal)
            self.state_changed()
            await client.publish(
                f"{self.prefix}/cmd/result",
                encode_command_result(result),
                qos=1,
                timeout=timeout,
            )
            raise_if_cancelled()


def _request_id(payload: bytes) -> str | None:
    """The `request_id` of a command payload, for a refusal that does not parse it further."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    return rid[:100] if isinstance(rid, str) else None
