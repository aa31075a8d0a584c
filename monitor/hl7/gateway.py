"""`vigil hl7`: the ward's link to the hospital, IHE PCD-01 vitals and PCD-04 alarms over MLLP.

One gateway per ward reads every bed on the ward broker (`<prefix>/<ward>/<bed>/…`) and keeps
one MLLP connection to the receiver (an interface engine, an alarm manager):

- each alarm event on `…/alarms` becomes a PCD-04 ORU^R40, queued at once;
- a latching alarm whose condition ends (or holds again) while it waits for acknowledgement is
  no alarm event (docs/ALARMS.md "States"): the bed's retained `…/alarms/active` list says so
  (`latched`, `latched_t`), and it becomes a PCD-04 `update` with the state facet `latched`
  (or `active` again), queued once (its key in the queue, what was sent a note in the file);
- each bed's observations become a PCD-01 ORU^R01 every `interval_s`, and at once when a
  cuff determination is complete (its three rows share one time);
- the queue (SQLite, `monitor.hl7.queue`) sends alarms first, one message at a time, and a
  message leaves it only on MSA-1 AA or CA. AE, AR, CE, CR are logged and the message is sent
  again after a jittered backoff; no ACK within `ack_timeout_s` drops the connection, which is
  made again with capped jittered backoff (`monitor.supervisor`), and the message goes again
  with its control id unchanged (at least once, in order per bed);
- when the oldest queued alarm is older than `link_down_s`, the technical alarm
  `HL7_LINK_DOWN` is published on the ward under `<prefix>/<ward>/hl7/…` (the consoles show it
  as a bed named `hl7`), cleared when the queue catches up.

The MQTT session is persistent (a fixed client id, no clean start), so alarm events published
while the gateway was away are handed over by the broker when it comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import sqlite3
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Self

import aiomqtt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers.mqtt import client as mqtt_client
from kernel.configfile import ConfigError
from kernel.settings import Endpoint
from kernel.tasks import TaskGroupService, raise_if_cancelled, stop_on_signals
from kernel.vocabulary import NIBP_PARAMS, AlarmState, Param, iso8601
from monitor.hl7.messages import (
    METRICS,
    BedContext,
    Header,
    alarm_message,
    eui64,
    side_of,
    state_message,
    vitals_message,
)
from monitor.hl7.messages import Metric as Observation
from monitor.hl7.mllp import MllpDecoder, frame, read_message
from monitor.hl7.queue import Hl7Queue, Kind, QueuedMessage
from monitor.hl7.settings import GatewayConfig, load_gateway_config, parse_destination
from monitor.logs import setup_logging
from monitor.metrics import Metrics, MetricsListenError, MetricsServer
from monitor.supervisor import Backoff, LinkState, LinkStatus, all_connected, supervise
from monitor.ward import broker_client
from monitor.wire import (
    WireActiveAlarm,
    WireError,
    decode_active_alarms,
    decode_alarm_event,
    decode_sample,
    decode_session,
    decode_status,
)

__all__ = ["GATEWAY_BED", "LINK_DOWN", "AckError", "Gateway", "QueueError", "hl7_main", "parse_ack"]

log = logging.getLogger("vigil.hl7")

# the gateway's own level under the ward, where HL7_LINK_DOWN is published
GATEWAY_BED = "hl7"
LINK_DOWN = "HL7_LINK_DOWN"
ACCEPTED = frozenset({"AA", "CA"})
# how often the watch task looks at the queue's age (and an idle sender at the queue)
_POLL_S = 0.5
_PUBLISH_S = 10.0
_CANCEL_RETRY_S = 0.5


class QueueError(RuntimeError):
    """The queue file cannot be opened (its folder is missing or not writable)."""


class AckError(ValueError):
    """A reply that is no ACK: no MSA segment, or not HL7 at all."""


def parse_ack(raw: bytes) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, the error text of MSA-3 and ERR) of an ACK.

    Raises:
        AckError: not an HL7 message with an MSA segment.
    """
    import hl7  # noqa: PLC0415 - the optional extra, checked by `hl7_main`

    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    try:
        message = hl7.parse(text.strip("\r"))
        msa = message.segment("MSA")
    except (KeyError, IndexError, ValueError, hl7.ParseException) as exc:
        raise AckError(f"not an ACK: {exc!r}") from None
    code = str(msa[1]).strip() if len(msa) > 1 else ""
    control_id = str(msa[2]).strip() if len(msa) > 2 else ""
    errors = [str(msa[3])] if len(msa) > 3 and str(msa[3]) else []
    with contextlib.suppress(KeyError, IndexError):
        errors.append(str(message.segment("ERR")))
    return code, control_id, "; ".join(errors)


@dataclass
class _Bed:
    """What the gateway knows of one bed."""

    ward: str
    bed: str
    patient_id: str | None = None
    audio_paused_until: float | None = None
    online: bool | None = None
    latest: dict[Param, Observation] = field(default_factory=dict)
    reported: dict[Param, float] = field(default_factory=dict)
    # alarm_id -> the side of its limit its start event showed (`side` of alarm_message)
    sides: dict[str, str] = field(default_factory=dict)
    # alarm_id -> latched_t of the `latched` state the receiver was sent last (kept in the
    # queue's file: `Gateway._latched_note`)
    latched: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.ward}/{self.bed}"

    def context(self) -> BedContext:
        return BedContext(ward=self.ward, bed=self.bed, patient_id=self.patient_id)

    def unreported(self, params: Iterable[Param] | None = None) -> list[Observation]:
        keep = self.latest if params is None else {p: self.latest[p] for p in params}
        return [m for p, m in keep.items() if m.t > self.reported.get(p, float("-inf"))]


@dataclass
class GatewayStats:
    """Counters for the metrics and the tests."""

    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    ack_timeouts: int = 0
    duplicates: int = 0
    no_patient: int = 0
    bad_payloads: int = 0


class Gateway(TaskGroupService):
    """The running gateway: `async with Gateway(config) as gw:`; one TaskGroup owns its tasks."""

    def __init__(self, config: GatewayConfig, *, now: Callable[[], float] = time.time) -> None:
        h = config.hl7
        if h.to is None:
            raise ValueError("no destination: give --to HOST:PORT or [hl7] to")
        self.config = config
        self.host, self.port = parse_destination(h.to)
        self._now = now
        # the MQTT version the ward broker took (`[broker] protocol`, `auto` by default)
        self.mqtt_version: str | None = None
        self.header = Header(
            application=h.application,
            facility=h.facility,
            receiving_application=h.receiving_application,
            receiving_facility=h.receiving_facility,
            processing_id=h.processing_id,
            patient_class=h.patient_class,
            gateway_eui64=h.eui64 or eui64(f"gateway:{h.ward or '*'}"),
        )
        self.mllp = LinkStatus(name="hl7")
        self.ward_link = LinkStatus(name="hl7.ward")
        self.stats = GatewayStats()
        self.queue: Hl7Queue | None = None
        self.link_alarm: dict[str, Any] | None = None
        self._beds: dict[tuple[str, str], _Bed] = {}
        self._wards: set[str] = {h.ward} if h.ward else set()
        self._wake = asyncio.Event()
        self._outgoing: deque[tuple[str, bytes, bool]] = deque()
        self._outgoing_wake = asyncio.Event()
        # a bed whose message was refused waits (its messages only, so the others go on and
        # its own stay in order): bed -> (its backoff, monotonic time it may send again)
        self._held: dict[str, tuple[Backoff, float]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: MetricsServer | None = None
        self._levels = len(h.prefix.split("/"))

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        h = self.config.hl7
        try:
            self.queue = Hl7Queue(h.queue, now=self._now)
        except (OSError, sqlite3.Error) as exc:
            raise QueueError(f"cannot open the queue {h.queue}: {exc}") from exc
        # an HL7_LINK_DOWN raised before a restart is still on the ward: it must clear, once
        # the queue has caught up, with its own alarm id
        noted = self.queue.note("link_alarm")
        self.link_alarm = None if noted is None else json.loads(noted)
        if h.metrics_listen:
            metrics = Metrics(version=version("vigil"))
            metrics.registry.register(_Collector(self))
            try:
                self._metrics_server = await metrics.serve(h.metrics_listen)
            except BaseException:
                self.queue.close()
                raise
        tg = await self._open_group()
        errors = (OSError, TimeoutError, aiomqtt.MqttError)
        # the two links, each supervised alike: retried on its own backoff while it fails
        self._tasks = [
            tg.create_task(
                supervise(
                    link,
                    serve,
                    errors=errors,
                    backoff=Backoff(base=h.retry_base_s, cap=h.retry_max_s),
                    now=self._now,
                ),
                name=name,
            )
            for link, serve, name in (
                (self.mllp, self._serve_mllp, "hl7.mllp"),
                (self.ward_link, self._serve_ward, "hl7.ward"),
            )
        ]
        self._tasks += [
            tg.create_task(self._report_loop(), name="hl7.vitals"),
            tg.create_task(self._watch_loop(), name="hl7.watch"),
        ]
        log.info(
            "event=hl7_started to=%s:%d ward=%s queued=%d",
            self.host,
            self.port,
            h.ward or "*",
            len(self.queue),
        )
        return self

    cancel_retry_s = _CANCEL_RETRY_S

    async def _release(self) -> None:
        if self._metrics_server is not None:
            await self._metrics_server.close()
        if self.queue is not None:
            self.queue.close()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where the metrics endpoint listens (None: off)."""
        if self._metrics_server is None or not self._metrics_server.sockets:
            return None
        return self._metrics_server.sockets[0]

    async def connected(self, timeout: float) -> None:  # noqa: ASYNC109 - a plain bound
        """Return once both links are up.

        Raises:
            TimeoutError: not within `timeout` seconds.
        """
        await all_connected((self.mllp, self.ward_link), timeout)

    def beds(self) -> list[_Bed]:
        """Every bed seen on the ward broker."""
        return list(self._beds.values())

    def patient_of(self, ward: str, bed: str) -> str | None:
        """The patient of the bed's open session, as the gateway knows it."""
        found = self._beds.get((ward, bed))
        return None if found is None else found.patient_id

    def _q(self) -> Hl7Queue:
        assert self.queue is not None, "use the gateway as `async with`"
        return self.queue

    # ------------------------------------------------------------------ ward side

    def _bed(self, ward: str, bed: str) -> _Bed:
        found = self._beds.get((ward, bed))
        if found is None:
            found = self._beds[ward, bed] = _Bed(ward=ward, bed=bed)
            self._wards.add(ward)
            noted = self._q().note(self._latched_note(found))
            if noted is not None:
                found.latched = {str(k): float(v) for k, v in json.loads(noted).items()}
        return found

    @staticmethod
    def _latched_note(b: _Bed) -> str:
        return f"latched:{b.key}"

    def handle(self, topic: str, payload: bytes) -> None:
        """One message from the ward broker."""
        parts = topic.split("/")
        n = self._levels
        if len(parts) not in (n + 3, n + 4) or parts[n + 1] == GATEWAY_BED:
            return
        ward, bed, what = parts[n], parts[n + 1], "/".join(parts[n + 2 :])
        try:
            if what == "alarms":
                self._on_alarm(self._bed(ward, bed), payload)
            elif what == "alarms/active":
                self._on_active(self._bed(ward, bed), payload)
            elif what == "vitals":
                self._on_sample(self._bed(ward, bed), payload)
            elif what == "session":
                session = decode_session(payload)
                b = self._bed(ward, bed)
                b.patient_id = session.patient_id
                b.audio_paused_until = session.audio_paused_until
            elif what == "status":
                self._on_status(self._bed(ward, bed), payload)
        except WireError as exc:
            self.stats.bad_payloads += 1
            log.warning("event=hl7_bad_payload topic=%s error=%r", topic, str(exc))

    def _on_status(self, b: _Bed, payload: bytes) -> None:
        online = decode_status(payload).status == "online"
        if online != b.online:
            # a bed that is offline sends nothing: say so here, the receiver cannot tell
            log.log(
                logging.INFO if online else logging.WARNING,
                "event=hl7_bed_%s bed=%s",
                "online" if online else "offline",
                b.key,
            )
        b.online = online

    def _on_alarm(self, b: _Bed, payload: bytes) -> None:
        event = decode_alarm_event(payload)
        paused = b.audio_paused_until is not None and b.audio_paused_until > event.t
        context = b.context()
        side = None
        if event.alarm_id is not None:
            if event.state is AlarmState.ACTIVE and side_of(event):
                b.sides[event.alarm_id] = side_of(event)
            side = b.sides.get(event.alarm_id)
            if event.state is AlarmState.CLEARED:
                b.sides.pop(event.alarm_id, None)
        # an alarm whose condition has ended stays `latched` in its later messages (an
        # escalation, the acknowledgement that clears it), as the active list said
        latched = event.alarm_id is not None and event.alarm_id in b.latched
        self._queue_alarm(
            b,
            lambda cid: alarm_message(
                self.header,
                context,
                event,
                control_id=cid,
                now=self._now(),
                audio_paused=paused,
                side=side,
                latched=latched,
            ),
            key=f"{b.key}/{event.session_id}/{event.alarm_id}/{event.seq}/{event.state}/{event.t!r}",
            code=event.code,
            state=event.state,
        )

    def _on_active(self, b: _Bed, payload: bytes) -> None:
        """A bed's active list: a PCD-04 `update` where an alarm's `latched` changed.

        At least once and at most once: the message's key (bed, alarm, the time its condition
        ended) is stored with it in one transaction, so a list handed over again (a redelivery,
        the retained copy after a restart) queues nothing twice, and the receiver's view
        (`_Bed.latched`) is kept in the file after it.
        """
        active = decode_active_alarms(payload)
        before = dict(b.latched)
        present = {a.alarm_id for a in active if a.alarm_id is not None}
        for alarm in active:
            if alarm.alarm_id is None:
                continue
            # the list's value is the activation's: the side of its limit for its messages,
            # known again from the retained list after a restart
            if side_of(alarm):
                b.sides.setdefault(alarm.alarm_id, side_of(alarm))
            sent = b.latched.get(alarm.alarm_id)
            if alarm.latched and alarm.latched_t is not None and sent != alarm.latched_t:
                self._state_update(b, alarm, t=alarm.latched_t, latched=True)
                b.latched[alarm.alarm_id] = alarm.latched_t
            elif not alarm.latched and sent is not None:
                # its condition holds again: `active` again; the list does not say since when,
                # so the time is the gateway's, when it learns it (docs/hl7.md)
                self._state_update(b, alarm, t=self._now(), latched=False, key=sent)
                del b.latched[alarm.alarm_id]
        for alarm_id in set(b.latched) - present:
            del b.latched[alarm_id]  # cleared: its end event said so
        for alarm_id in set(b.sides) - present:
            del b.sides[alarm_id]
        if b.latched != before:
            self._q().set_note(self._latched_note(b), json.dumps(b.latched) if b.latched else None)

    def _state_update(
        self, b: _Bed, alarm: WireActiveAlarm, *, t: float, latched: bool, key: float | None = None
    ) -> None:
        paused = b.audio_paused_until is not None and b.audio_paused_until > t
        context = b.context()
        state = "latched" if latched else "active"
        self._queue_alarm(
            b,
            lambda cid: state_message(
                self.header,
                context,
                alarm,
                t=t,
                latched=latched,
                control_id=cid,
                now=self._now(),
                audio_paused=paused,
            ),
            key=f"{b.key}/{alarm.alarm_id}/{state}/{(t if key is None else key)!r}",
            code=alarm.code,
            state=state,
        )

    def _queue_alarm(
        self, b: _Bed, build: Callable[[str], str], *, key: str, code: str, state: str
    ) -> None:
        """Queue one alarm message of `b` unless `key` was queued before (then it is counted)."""
        control_id = self._q().enqueue(Kind.ALARM, b.key, build, key=key)
        if control_id is None:
            self.stats.duplicates += 1
            return
        log.info(
            "event=hl7_queued kind=alarm bed=%s code=%s state=%s control_id=%s",
            b.key,
            code,
            state,
            control_id,
        )
        self._wake.set()

    def _on_sample(self, b: _Bed, payload: bytes) -> None:
        sample = decode_sample(payload)
        if sample.param not in METRICS:
            return
        old = b.latest.get(sample.param)
        if old is not None and old.t > sample.t:
            return
        b.latest[sample.param] = Observation(
            param=sample.param, value=sample.number, t=sample.t, device_id=sample.device_id
        )
        if sample.param in NIBP_PARAMS:
            cuff = [b.latest.get(p) for p in NIBP_PARAMS]
            if all(m is not None and m.t == sample.t for m in cuff):
                # a whole determination: reported at once, with its own time
                self._report(b, list(NIBP_PARAMS))

    def _report(self, b: _Bed, params: list[Param] | None = None) -> None:
        observations = b.unreported(params)
        if not observations:
            return
        for m in observations:
            b.reported[m.param] = m.t
        if b.patient_id is None:
            # a record without a patient would be filed nowhere: vitals wait for a session
            self.stats.no_patient += 1
            return
        context = b.context()
        control_id = self._q().enqueue(
            Kind.VITALS,
            b.key,
            lambda cid: vitals_message(
                self.header, context, observations, control_id=cid, now=self._now()
            ),
        )
        log.debug("event=hl7_queued kind=vitals bed=%s control_id=%s", b.key, control_id)
        self._wake.set()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.hl7.interval_s)
            for b in list(self._beds.values()):
                self._report(b)

    def _client(self, protocol: aiomqtt.ProtocolVersion, endpoint: Endpoint) -> aiomqtt.Client:
        """The ward client for `protocol` (`mqtt_client.connect` picks it: `auto` tries 5)."""
        b = self.config.broker
        h = self.config.hl7
        will = None
        if h.ward:
            will = aiomqtt.Will(
                f"{h.prefix}/{h.ward}/{GATEWAY_BED}/status",
                json.dumps({"status": "offline", "ward": h.ward, "bed": GATEWAY_BED}).encode(),
                qos=1,
                retain=True,
            )
        client = broker_client(
            b,
            protocol,
            endpoint,
            # fixed, and kept a week: the broker keeps the subscriptions and the alarm events
            # meanwhile
            identifier=b.client_id or f"vigil-hl7-{h.ward or 'all'}",
            session_expiry_s=7 * 86400,
            timeout=h.connect_timeout_s,
            will=will,
        )
        # PUBACK only once the event is in the queue (`_receive`): paho's default acknowledges
        # on arrival, and an event still in aiomqtt's queue when the gateway stops would be
        # lost; unacknowledged, the broker hands it over again on the next connection
        client._client.manual_ack_set(on=True)  # noqa: SLF001 - aiomqtt has no option for it
        return client

    async def _serve_ward(self, connected: Callable[[], None]) -> None:
        h = self.config.hl7
        ward = h.ward or "+"
        async with (
            mqtt_client.connect(
                self.config.broker.protocol, self.config.broker.endpoints, self._client
            ) as client,
            asyncio.TaskGroup() as tg,
        ):
            # Receiving (and acknowledging) starts before the first SUBSCRIBE: a broker may
            # hold the next SUBACK until the QoS 1 retained messages of the last subscription
            # are acknowledged (amqtt awaits their PUBACKs in the client's packet loop), and
            # PUBACKs are sent by `_receive` only (manual acknowledgement, see `_client`).
            # Receiving later deadlocked whenever a bed's retained status or session was on the
            # broker before the gateway subscribed.
            tg.create_task(self._receive(client), name="hl7.ward.receive")
            # the retained session before the alarms, so an alarm knows its patient
            topics = (("status", 1), ("session", 1), ("alarms", 1), ("alarms/active", 1))
            for what, qos in (*topics, ("vitals", 0)):
                await client.subscribe(f"{h.prefix}/{ward}/+/{what}", qos=qos, timeout=_PUBLISH_S)
                raise_if_cancelled()
            if h.ward:
                status = {
                    "status": "online",
                    "ward": h.ward,
                    "bed": GATEWAY_BED,
                    "version": version("vigil"),
                    "t": self._now(),
                    "time": iso8601(self._now()),
                }
                await client.publish(
                    f"{h.prefix}/{h.ward}/{GATEWAY_BED}/status",
                    json.dumps(status).encode(),
                    qos=1,
                    retain=True,
                    timeout=_PUBLISH_S,
                )
                raise_if_cancelled()
            self.mqtt_version = "5" if mqtt_client.speaks_v5(client) else "3.1.1"
            connected()
            log.info(
                "event=hl7_ward_connected broker=%s mqtt=%s",
                mqtt_client.endpoint_of(client),
                self.mqtt_version,
            )
            tg.create_task(self._publish(client), name="hl7.ward.publish")

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            self.handle(str(message.topic), data)
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)  # noqa: SLF001 - see `_client`

    async def _publish(self, client: aiomqtt.Client) -> None:
        self._outgoing_wake.set()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S * 4):
                    await self._outgoing_wake.wait()
            self._outgoing_wake.clear()
            while self._outgoing:
                topic, payload, retain = self._outgoing[0]
                await client.publish(topic, payload, qos=1, retain=retain, timeout=_PUBLISH_S)
                raise_if_cancelled()
                self._outgoing.popleft()

    # ------------------------------------------------------------------ HL7_LINK_DOWN

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL_S)
            self.check_link()

    def check_link(self) -> None:
        """Raise or clear HL7_LINK_DOWN from the age of the oldest queued alarm."""
        h = self.config.hl7
        now = self._now()
        oldest = self._q().oldest_t(Kind.ALARM)
        late = oldest is not None and now - oldest >= h.link_down_s
        if late and self.link_alarm is None:
            waiting = self._q().count(Kind.ALARM)
            self.link_alarm = self._link_event(
                "active",
                now,
                alarm_id=uuid.uuid4().hex,
                message=f"HL7 link to {self.host}:{self.port} down: {waiting} alarm(s) "
                f"waiting, the oldest for {now - (oldest or now):.0f} s",
            )
            log.error("event=hl7_link_down waiting=%d error=%r", waiting, self.mllp.last_error)
            self._q().set_note("link_alarm", json.dumps(self.link_alarm))
            entry = {
                "alarm_id": self.link_alarm["alarm_id"],
                "code": LINK_DOWN,
                "priority": "medium",
                "kind": "technical",
                "state": "active",
                "since": now,
                "since_iso": iso8601(now),
                "param": None,
                "value": None,
                "limit": None,
                "level": None,
                "latched": False,
            }
            # the same shape as a bed's retained list (`BedCore.active_alarms`)
            self._announce(self.link_alarm, active=[entry])
        elif not late and self.link_alarm is not None and self._wards:
            # (after a restart with no ward configured, wait to know where to say it)
            cleared = self._link_event(
                "cleared",
                now,
                alarm_id=self.link_alarm["alarm_id"],
                message=f"HL7 link to {self.host}:{self.port} delivering again",
            )
            self.link_alarm = None
            self._q().set_note("link_alarm", None)
            log.info("event=hl7_link_up")
            self._announce(cleared, active=[])

    def _link_event(self, state: str, now: float, *, alarm_id: str, message: str) -> dict[str, Any]:
        return {
            "t": now,
            "code": LINK_DOWN,
            "priority": "medium",
            "kind": "technical",
            "state": state,
            "param": None,
            "value": None,
            "limit": None,
            "phase": "none",
            "message": message,
            "bed": GATEWAY_BED,
            "alarm_id": alarm_id,
            "seq": self._q().next_number("link_alarm_seq"),
        }

    def _announce(self, event: dict[str, Any], *, active: list[dict[str, Any]]) -> None:
        prefix = self.config.hl7.prefix
        for ward in sorted(self._wards):
            base = f"{prefix}/{ward}/{GATEWAY_BED}"
            self._outgoing.append((f"{base}/alarms", json.dumps(event).encode(), False))
            self._outgoing.append((f"{base}/alarms/active", json.dumps(active).encode(), True))
        self._outgoing_wake.set()

    # ------------------------------------------------------------------ HL7 side

    async def _serve_mllp(self, connected: Callable[[], None]) -> None:
        h = self.config.hl7
        context = h.tls.context()
        async with asyncio.timeout(h.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=context,
                server_hostname=(h.tls.server_hostname or self.host) if context else None,
            )
        try:
            connected()
            log.info("event=hl7_connected to=%s:%d tls=%s", self.host, self.port, bool(context))
            decoder = MllpDecoder()
            while True:
                now = time.monotonic()
                held = {bed for bed, (_, until) in self._held.items() if until > now}
                message = self._q().head(skip=held)
                if message is None:
                    self._wake.clear()
                    wait = min([until - now for _, until in self._held.values()] + [_POLL_S])
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, wait)):
                            await self._wake.wait()
                    continue
                await self._send(reader, writer, decoder, message)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _send(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: MllpDecoder,
        message: QueuedMessage,
    ) -> None:
        h = self.config.hl7
        q = self._q()
        writer.write(frame(message.payload))
        try:
            async with asyncio.timeout(h.ack_timeout_s):
                await writer.drain()
                code, text = await self._ack_for(reader, decoder, message.control_id)
        except TimeoutError:
            self.stats.ack_timeouts += 1
            q.failed(message.id, f"no ACK within {h.ack_timeout_s:g} s")
            log.warning(
                "event=hl7_ack_timeout control_id=%s kind=%s timeout_s=%g",
                message.control_id,
                message.kind,
                h.ack_timeout_s,
            )
            # the connection's state is unknown now (a late ACK may still come): start afresh
            raise TimeoutError(f"no ACK for {message.control_id}") from None
        except OSError as exc:
            q.failed(message.id, f"{type(exc).__name__}: {exc}")
            raise
        if code in ACCEPTED:
            q.delivered(message.id)
            self.stats.sent[message.kind] += 1
            self._held.pop(message.bed, None)
            return
        self.stats.refused[code or "?"] += 1
        q.failed(message.id, f"{code}: {text}")
        h = self.config.hl7
        backoff, _ = self._held.get(message.bed) or (
            Backoff(base=h.retry_base_s, cap=h.retry_max_s),
            0.0,
        )
        delay = backoff.next()
        self._held[message.bed] = (backoff, time.monotonic() + delay)
        log.error(
            "event=hl7_refused control_id=%s kind=%s bed=%s ack=%s error=%r attempts=%d "
            "retry_in_s=%.2f",
            message.control_id,
            message.kind,
            message.bed,
            code,
            text,
            message.attempts + 1,
            delay,
        )

    async def _ack_for(
        self, reader: asyncio.StreamReader, decoder: MllpDecoder, control_id: str
    ) -> tuple[str, str]:
        """MSA-1 and the error text of the ACK of `control_id`; other ACKs are skipped."""
        while True:
            raw = await read_message(reader, decoder)
            try:
                code, acked, text = parse_ack(raw)
            except AckError as exc:
                return "AE", str(exc)
            if acked == control_id:
                return code, text
            if not acked:
                # one message is in flight, so an ACK that names none can only be its own; a
                # receiver that leaves MSA-2 empty would otherwise never be heard
                log.warning("event=hl7_ack_without_control_id expected=%s", control_id)
                return code, text
            log.warning("event=hl7_stale_ack control_id=%s expected=%s", acked, control_id)


class _Collector:
    """The gateway's series, read at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        gw = self._gw
        q = gw.queue
        now = gw._now()  # noqa: SLF001 - the gateway's own clock
        size = GaugeMetricFamily(
            "vigil_hl7_queue_messages", "HL7 messages waiting for an ACK.", labels=["kind"]
        )
        age = GaugeMetricFamily(
            "vigil_hl7_queue_oldest_age_seconds",
            "Age of the oldest HL7 message waiting (0: none).",
            labels=["kind"],
        )
        for kind in Kind:
            count = 0 if q is None else q.count(kind)
            oldest = None if q is None else q.oldest_t(kind)
            size.add_metric([kind.value], count)
            age.add_metric([kind.value], 0.0 if oldest is None else max(0.0, now - oldest))
        sent = CounterMetricFamily(
            "vigil_hl7_sent", "HL7 messages accepted (AA/CA).", labels=["kind"]
        )
        for kind in Kind:
            sent.add_metric([kind.value], gw.stats.sent[kind])
        refused = CounterMetricFamily(
            "vigil_hl7_refused", "HL7 messages answered AE/AR/CE/CR.", labels=["ack"]
        )
        for code, n in sorted(gw.stats.refused.items()):
            refused.add_metric([code], n)
        timeouts = CounterMetricFamily("vigil_hl7_ack_timeouts", "HL7 messages not answered.")
        timeouts.add_metric([], gw.stats.ack_timeouts)
        up = GaugeMetricFamily("vigil_hl7_link_up", "1 while the MLLP connection is up.")
        up.add_metric([], 1.0 if gw.mllp.state is LinkState.CONNECTED else 0.0)
        down = GaugeMetricFamily("vigil_hl7_link_down_alarm", "1 while HL7_LINK_DOWN is active.")
        down.add_metric([], 0.0 if gw.link_alarm is None else 1.0)
        beds = GaugeMetricFamily(
            "vigil_hl7_beds", "Beds seen on the ward broker, by status.", labels=["status"]
        )
        states = Counter(
            "unknown" if b.online is None else "online" if b.online else "offline"
            for b in gw.beds()
        )
        for status in ("online", "offline", "unknown"):
            beds.add_metric([status], states[status])
        return [size, age, sent, refused, timeouts, up, down, beds]


async def _serve_until_signalled(config: GatewayConfig) -> None:
    with stop_on_signals(log) as stopping:
        async with Gateway(config):
            await stopping.wait()
        log.info("event=hl7_stopped")


def hl7_main(args: argparse.Namespace) -> int:
    """`vigil hl7 --broker URL --to HOST:PORT [--config FILE]`."""
    try:
        importlib.import_module("hl7")
    except ImportError:
        print(  # noqa: T201
            "vigil hl7 needs python-hl7, an optional extra: pip install 'vigil[hl7]'",
            file=sys.stderr,
        )
        return 2
    setup_logging()
    try:
        config = load_gateway_config(args.config, to=args.to, broker_url=args.broker)
    except ConfigError as exc:
        print(f"vigil hl7: configuration refused:\n{exc}", file=sys.stderr)  # noqa: T201
        return 1
    if config.hl7.to is None:
        print("vigil hl7: no destination: --to HOST:PORT or [hl7] to", file=sys.stderr)  # noqa: T201
        return 1
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_until_signalled(config))
    except MetricsListenError as exc:
        print(f"vigil hl7: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except QueueError as exc:
        print(f"vigil hl7: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
