"""The Prometheus endpoint: what the daemon counts, and a small asyncio HTTP responder for it.

Names follow docs/DESIGN.md "Metrics": the `vigil_` prefix, base units (seconds), `_total`
on counters, `_info` for build metadata, and low-cardinality labels only (device ids, link
names, parameters, alarm codes and priorities, which are all bounded by the config and the
policy; never patient data or clinical values).

Two kinds of series:
- *live* series are read at scrape time from the objects that already keep them
  (`DriverStats`, `LinkStatus`, the ward link, the sample queue, the engine's active alarms) by
  one custom collector, so drivers stay metric-free and nothing is counted twice;
- *pushed* series are the ones only the daemon sees happen: samples reaching the alarm path,
  alarm events and their latency (`Metrics.record`, from `Daemon._emit`), and event-loop lag
  (`Metrics.watch_loop_lag`, a task in the daemon's TaskGroup).

Each `Metrics` owns its own `CollectorRegistry` (never the process-global one), so several
daemons in one process (tests) never collide. `_created` series are left out by that registry
rather than by `prometheus_client.disable_created_metrics()`, which would flip a process-wide
switch.

The endpoint (`Metrics.serve`) is an `asyncio` protocol on `loop.create_server`, not
`prometheus_client.start_http_server`: that one serves from a thread, and the live collector
would then read `DriverStats.dropped` (a `Counter` the event loop mutates) from another thread;
here a scrape runs on the loop, between two steps of the alarm path, in well under a
millisecond for a bed's few dozen series. It starts no task and no thread, binds in the caller
(so a bad or busy address fails start-up with `MetricsListenError`), and `close()` drops every
open connection.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, Self

from prometheus_client import CollectorRegistry, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from drivers.base import DriverStats
from kernel.vocabulary import AlarmEvent, AlarmState, Priority, Sample
from monitor.supervisor import LinkState, LinkStatus

__all__ = [
    "LATENCY_BUCKETS_S",
    "LOOP_LAG_INTERVAL_S",
    "Metrics",
    "MetricsListenError",
    "MetricsServer",
    "listen_address",
    "parse_listen",
]

log = logging.getLogger("vigil.metrics")

# 1 ms to 10 s: an alarm must reach the ward within seconds; the loop should never stall 1 ms.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The loop-lag probe sleeps this long and records how much later than asked it woke up.
LOOP_LAG_INTERVAL_S = 0.5

# The HTTP responder: a request head larger than this is refused, and a connection that has not
# sent a whole request head within the timeout is dropped.
_MAX_REQUEST_HEAD = 8192
_REQUEST_TIMEOUT_S = 10.0
_METRICS_PATHS = frozenset({"/metrics", "/"})


class MetricsListenError(OSError):
    """The metrics endpoint cannot listen on the configured address."""


class WardView(Protocol):
    """What the metrics read from the ward link (`monitor.ward.WardLink`)."""

    @property
    def pending_alarms(self) -> int:
        """Alarm events not yet acknowledged by the broker."""
        ...

    @property
    def vitals_dropped(self) -> int:
        """Vitals dropped because their queue was full."""
        ...

    @property
    def status(self) -> LinkStatus:
        """The supervised broker connection."""
        ...


class DroppedCount(Protocol):
    """A queue that counts what it dropped (`monitor.queues.SampleQueue`)."""

    @property
    def dropped(self) -> int:
        """How many items were dropped."""
        ...


@dataclass(frozen=True)
class _Device:
    device: str
    stats: DriverStats
    status: LinkStatus


class _CreatedFreeRegistry(CollectorRegistry):
    """A registry whose exposition leaves out the `_created` series of counters and histograms."""

    def collect(self) -> Iterator[Metric]:
        for metric in super().collect():
            kept = [s for s in metric.samples if not s.name.endswith("_created")]
            if len(kept) == len(metric.samples):
                yield metric
            else:
                trimmed = copy.copy(metric)
                trimmed.samples = kept
                yield trimmed


class _LiveCollector:
    """Reads the live counters and states at scrape time (custom collector)."""

    def __init__(self) -> None:
        self.devices: list[_Device] = []
        self.ward: WardView | None = None
        self.sample_queue: DroppedCount | None = None
        self.active_priorities: Callable[[], Iterable[str]] | None = None
        self.restamped: Mapping[tuple[str, str], int] | None = None
        self.lag: Callable[[], float] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families()[0]

    def collect(self) -> Iterable[Metric]:
        families, fill = self._families()
        fill()
        return families

    def _fill_clock(self, restamped: CounterMetricFamily, lag: GaugeMetricFamily) -> None:
        if self.lag is not None:
            lag.add_metric([], self.lag())
        if self.restamped is not None:
            for (device, direction), n in sorted(self.restamped.items()):
                restamped.add_metric([device, direction], n)

    def _families(self) -> tuple[list[Metric], Callable[[], None]]:
        frames = CounterMetricFamily(
            "vigil_frames", "Frames (messages) received from each device.", labels=["device"]
        )
        dropped = CounterMetricFamily(
            "vigil_frames_dropped",
            "Frames, or samples within them, each driver dropped, by reason.",
            labels=["device", "reason"],
        )
        connected = GaugeMetricFamily(
            "vigil_device_connected",
            "1 while the device link is connected, else 0.",
            labels=["device"],
        )
        reconnects = CounterMetricFamily(
            "vigil_reconnects",
            "Times a supervised link (a device, or the ward broker) was lost or failed to connect.",
            labels=["link"],
        )
        broker = GaugeMetricFamily(
            "vigil_broker_connected", "1 while the ward broker link is connected, else 0."
        )
        outbox = GaugeMetricFamily(
            "vigil_outbox_messages",
            "Alarm events not yet acknowledged by the ward broker.",
        )
        vitals_dropped = CounterMetricFamily(
            "vigil_vitals_dropped",
            "Vitals messages dropped because the ward link's vitals queue was full.",
        )
        queue_dropped = CounterMetricFamily(
            "vigil_samples_queue_dropped",
            "Samples dropped (oldest first) because the bed's sample queue was full.",
        )
        active = GaugeMetricFamily(
            "vigil_alarms_active",
            "Alarms currently present (acknowledged ones included), by priority.",
            labels=["priority"],
        )
        restamped = CounterMetricFamily(
            "vigil_samples_restamped",
            "Samples re-stamped with the bed's time because their own was off its clock, "
            "by device and direction (ahead, behind).",
            labels=["device", "direction"],
        )
        lag = GaugeMetricFamily(
            "vigil_sample_lag_seconds",
            "How far behind the newest sample of its last batch the bed processed it (bed s).",
        )
        families: list[Metric] = [
            frames, dropped, connected, reconnects, broker, outbox, vitals_dropped,
            queue_dropped, active, restamped, lag,
        ]  # fmt: skip

        def fill() -> None:
            for d in self.devices:
                frames.add_metric([d.device], d.stats.frames)
                for reason, n in sorted(d.stats.dropped.items()):
                    dropped.add_metric([d.device, reason], n)
                connected.add_metric([d.device], _up(d.status))
                reconnects.add_metric([d.status.name], d.status.reconnects)
            if self.ward is not None:
                reconnects.add_metric([self.ward.status.name], self.ward.status.reconnects)
                broker.add_metric([], _up(self.ward.status))
                outbox.add_metric([], self.ward.pending_alarms)
                vitals_dropped.add_metric([], self.ward.vitals_dropped)
            if self.sample_queue is not None:
                queue_dropped.add_metric([], self.sample_queue.dropped)
            if self.active_priorities is not None:
                by_priority = Counter(self.active_priorities())
                for p in Priority:
                    active.add_metric([p.value], by_priority[p.value])
            self._fill_clock(restamped, lag)

        return families, fill


def _up(status: LinkStatus) -> float:
    return 1.0 if status.state is LinkState.CONNECTED else 0.0


class Metrics:
    """The daemon's metrics, in a registry of their own; see the module docstring."""

    def __init__(self, *, version: str) -> None:
        self.registry = _CreatedFreeRegistry()
        self._live = _LiveCollector()
        self.registry.register(self._live)
        self._pushed = _PushedCollector()
        self.registry.register(self._pushed)
        self.alarm_latency = Histogram(
            "vigil_alarm_path_latency_seconds",
            "From a sample's time to the emission of the alarm event it caused (daemon clock).",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "vigil_event_loop_lag_seconds",
            f"How late the event loop woke a task that slept {LOOP_LAG_INTERVAL_S} s.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        Info("vigil_build", "The running build of vigil.", registry=self.registry).info(
            {"version": version}
        )

    # ------------------------------------------------------------------ what to read live

    def watch_device(self, device: str, stats: DriverStats, status: LinkStatus) -> None:
        """Export one driver's frame and drop counters and its link state."""
        self._live.devices.append(_Device(device, stats, status))

    def watch_ward(self, ward: WardView) -> None:
        """Export the ward link's state, outbox and vitals drops."""
        self._live.ward = ward

    def watch_sample_queue(self, queue: DroppedCount) -> None:
        """Export the bed's sample-queue drops."""
        self._live.sample_queue = queue

    def watch_lag(self, lag: Callable[[], float]) -> None:
        """Export the bed's lag behind its samples."""
        self._live.lag = lag

    def watch_restamped(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Export the samples re-stamped with the bed's time (`monitor.timekeeper`)."""
        self._live.restamped = counts

    def watch_active_alarms(self, priorities: Callable[[], Iterable[str]]) -> None:
        """Export the number of present alarms by priority; `priorities` lists one per alarm."""
        self._live.active_priorities = priorities

    # ------------------------------------------------------------------ what the daemon pushes

    def record(
        self, events: Iterable[AlarmEvent], samples: Iterable[Sample], *, now: float
    ) -> None:
        """Count what one step of the alarm path emitted (`Daemon._emit`).

        `samples` are the samples that step processed; when there are any, the events were
        caused by them and `now - event.t` (the sample's time to this emission, on the daemon
        clock) is observed as the alarm-path latency. Events from ticks and commands carry a
        tick or command time instead, so they are counted but not timed.
        """
        n = 0
        for sample in samples:
            self._pushed.samples[sample.device_id, sample.param.value] += 1
            n += 1
        for event in events:
            if event.state is AlarmState.ACTIVE:
                self._pushed.raised[event.code, event.priority.value] += 1
            if n:
                self.alarm_latency.observe(max(0.0, now - event.t))

    async def watch_loop_lag(self, interval: float = LOOP_LAG_INTERVAL_S) -> None:
        """Sleep `interval` again and again, recording how late each wake-up is; until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - start - interval))

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        """The text exposition (format 0.0.4) of every series."""
        return generate_latest(self.registry)

    async def serve(self, listen: str) -> MetricsServer:
        """Listen on `listen` ("HOST:PORT", IPv6 as "[::1]:PORT") and answer `GET /metrics`.

        Raises:
            MetricsListenError: the address is malformed, cannot be resolved, or cannot be bound.
        """
        host, port = parse_listen(listen)
        server = MetricsServer(self)
        loop = asyncio.get_running_loop()
        try:
            server.server = await loop.create_server(lambda: _ScrapeProtocol(server), host, port)
        except (OSError, socket.gaierror) as exc:
            raise MetricsListenError(
                f"metrics: cannot listen on {listen!r}: {exc.strerror or exc}"
            ) from exc
        log.info("event=metrics_listening listen=%s", listen)
        return server


class _PushedCollector:
    """The counters the daemon pushes (`Metrics.record`), exported as plain families."""

    def __init__(self) -> None:
        self.samples: Counter[tuple[str, str]] = Counter()
        self.raised: Counter[tuple[str, str]] = Counter()

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        samples, raised = self._families()
        for (device, param), n in sorted(self.samples.items()):
            samples.add_metric([device, param], n)
        for (code, priority), n in sorted(self.raised.items()):
            raised.add_metric([code, priority], n)
        return samples, raised

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "vigil_samples",
                "Samples that reached the bed's alarm path, by device and parameter.",
                labels=["device", "param"],
            ),
            CounterMetricFamily(
                "vigil_alarms_raised",
                "Alarms raised (events announcing state active), by alarm code and priority.",
                labels=["code", "priority"],
            ),
        )


def parse_listen(listen: str) -> tuple[str, int]:
    """("host", port) of "HOST:PORT" or "[V6]:PORT" (port 0: any free port).

    Raises:
        MetricsListenError: not HOST:PORT with a port in 0-65535.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise MetricsListenError(f"metrics: cannot listen on {listen!r}: expected HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def listen_address(v: str) -> str:
    """`v` if it is HOST:PORT as `parse_listen` reads it, for a config model's validator.

    Raises:
        ValueError: not HOST:PORT (pydantic reports it with the key).
    """
    try:
        parse_listen(v)
    except MetricsListenError:
        raise ValueError(f"expected HOST:PORT, got {v!r}") from None
    return v


class MetricsServer:
    """A listening metrics endpoint; `close()` (or `async with`) stops it and drops connections."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Transport] = set()

    @property
    def sockets(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs."""
        if self.server is None:
            return []
        return [s.getsockname()[:2] for s in self.server.sockets]

    async def close(self) -> None:
        """Stop listening and close every open connection; idempotent."""
        if self.server is not None:
            self.server.close()
            for transport in list(self.connections):
                transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _ScrapeProtocol(asyncio.Protocol):
    """One HTTP/1.x connection: read a request head, answer it, close. No task, no thread."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(transport)
        self._timer = asyncio.get_running_loop().call_later(_REQUEST_TIMEOUT_S, transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - the protocol's
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._server.connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_REQUEST_HEAD:
                self._answer(431, b"request head too large\n")
            return
        request_line = bytes(self._head[: self._head.find(b"\r\n")]).decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._answer(400, b"bad request\n")
            return
        method, target, _ = parts
        if method not in {"GET", "HEAD"}:
            self._answer(405, b"method not allowed\n", extra=(("Allow", "GET, HEAD"),))
            return
        if target.partition("?")[0] not in _METRICS_PATHS:
            self._answer(404, b"not found: try /metrics\n")
            return
        try:
            body = self._server.metrics.render()
        except Exception:
            log.exception("event=metrics_render_failed")
            self._answer(500, b"metrics could not be rendered\n")
            return
        self._answer(200, body, content_type=CONTENT_TYPE_PLAIN_0_0_4, head_only=method == "HEAD")

    def _answer(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        extra: tuple[tuple[str, str], ...] = (),
        head_only: bool = False,
    ) -> None:
        assert self._transport is not None
        self._answered = True
        reason = _REASONS[status]
        headers = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in extra),
        ]
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        self._transport.write(head if head_only else head + body)
        self._transport.close()  # after the buffered response is flushed


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
