"""The Prometheus endpoint, scraped over real HTTP: names, labels, values, help, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import socket
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from alarms.policy import load_policy
from drivers.base import DriverStats
from kernel.clock import RealClock
from kernel.vocabulary import AlarmEvent, AlarmState, Param, Priority, Sample
from monitor.daemon import Daemon
from monitor.metrics import LATENCY_BUCKETS_S, Metrics, MetricsListenError, MetricsServer
from monitor.outbox import Outbox
from monitor.queues import SampleQueue
from monitor.settings import Settings
from monitor.supervisor import LinkState, LinkStatus
from monitor.ward import WardLink
from tests.helpers import BrokerProcess, bed_settings, free_port, running_bed
from tests.payloads import alarm_event

# Every series of the brief, by family name as the text format declares it in # HELP / # TYPE.
FAMILIES = {
    "vigil_samples_total": "counter",
    "vigil_frames_total": "counter",
    "vigil_frames_dropped_total": "counter",
    "vigil_device_connected": "gauge",
    "vigil_reconnects_total": "counter",
    "vigil_broker_connected": "gauge",
    "vigil_alarms_raised_total": "counter",
    "vigil_alarms_active": "gauge",
    "vigil_outbox_messages": "gauge",
    "vigil_vitals_dropped_total": "counter",
    "vigil_samples_queue_dropped_total": "counter",
    "vigil_alarm_path_latency_seconds": "histogram",
    "vigil_event_loop_lag_seconds": "histogram",
    "vigil_build_info": "gauge",
}

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http to loopback
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


async def get(port: int, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
    """GET over real HTTP from a thread, so the endpoint on this loop can answer."""
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}")


async def scrape(port: int) -> str:
    status, headers, body = await get(port)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def series(text: str) -> Series:
    """{(sample name, labels): value} of a scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(s: Series, name: str, **labels: str) -> float:
    return s[name, frozenset(labels.items())]


def help_and_type(text: str) -> dict[str, tuple[str, str]]:
    """{family: (help, type)} from the # HELP and # TYPE lines."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line.removeprefix("# HELP ").partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, typ = line.removeprefix("# TYPE ").partition(" ")
            types[name] = typ
    return {n: (helps.get(n, ""), t) for n, t in types.items()}


def ward_link(tmp_path: Path) -> WardLink:
    """A real ward link that is never run: its outbox fills and nothing acknowledges it."""
    settings = Settings.model_validate(
        {"bed": {"ward": "w1", "bed": "b1"}, "journal": {"path": str(tmp_path / "j.sqlite")}}
    )
    return WardLink(
        settings,
        clock=RealClock(),
        on_command=lambda _payload, _principal: {},
        state=lambda: ([], {}),
        birth={},
        outbox=Outbox(tmp_path / "j.sqlite"),
        vitals_maxlen=2,
    )


def vital(t: float, param: Param, device: str = "mon1") -> Sample:
    return Sample(t=t, param=param, value=80.0, valid=True, device_id=device)


def event(t: float, code: str, priority: Priority, state: AlarmState) -> AlarmEvent:
    return alarm_event(t=t, code=code, priority=priority, state=state)


@contextlib.asynccontextmanager
async def serving(metrics: Metrics) -> Any:
    port = free_port()
    server = await metrics.serve(f"127.0.0.1:{port}")
    try:
        yield port
    finally:
        await server.close()


async def test_every_series_is_exported_with_help_and_the_values_fed(tmp_path: Path) -> None:
    metrics = Metrics(version="9.8.7")
    stats = DriverStats()
    status = LinkStatus(name="mon1")
    other = LinkStatus(name="ox1")
    metrics.watch_device("mon1", stats, status)
    metrics.watch_device("ox1", DriverStats(), other)
    ward = ward_link(tmp_path)
    metrics.watch_ward(ward)
    queue = SampleQueue(1)
    metrics.watch_sample_queue(queue)
    present = [Priority.HIGH, Priority.HIGH, Priority.LOW]
    metrics.watch_active_alarms(lambda: [p.value for p in present])

    # a device stream: 5 frames, 2 of them bad, 4 samples
    stats.frames += 5
    stats.samples += 4
    stats.drop("bad_json")
    stats.drop("not_object")
    # a message counted by what it is, with its code (docs/intellivue.md §8)
    stats.drop("unsupported_action 0x0C17")
    status.set(LinkState.CONNECTED, 1.0)
    other.reconnects += 3
    ward.status.reconnects += 2
    # the broker never acknowledges: both alarm events stay in the outbox; 3 vitals into 2 slots
    now = time.time()
    raised = event(now - 0.2, "DESAT_CRITICAL", Priority.HIGH, AlarmState.ACTIVE)
    acked = event(now - 0.2, "DESAT_CRITICAL", Priority.HIGH, AlarmState.ACKNOWLEDGED)
    ward.publish_alarm(dataclasses.replace(raised, seq=1))
    ward.publish_alarm(dataclasses.replace(acked, seq=2))
    for i in range(3):
        ward.publish_vital(vital(now + i, Param.HR))
    queue.put(vital(now, Param.HR))
    queue.put(vital(now, Param.HR))

    batch = [vital(now, Param.SPO2), vital(now, Param.SPO2), vital(now, Param.HR, "ox1")]
    metrics.record([raised, acked], batch, now=now)
    # a tick's events are counted but not timed; an escalation is not a new alarm
    metrics.record([event(now, "TACHY", Priority.MEDIUM, AlarmState.ACTIVE)], [], now=now + 30)
    metrics.record([event(now, "TACHY", Priority.MEDIUM, AlarmState.ESCALATED)], [], now=now)

    async with serving(metrics) as port:
        text = await scrape(port)

    declared = help_and_type(text)
    for name, typ in FAMILIES.items():
        assert name in declared, name
        doc, declared_type = declared[name]
        assert declared_type == typ, name
        assert len(doc) > 10, f"{name} has no help text"
    assert all(name.startswith("vigil_") for name in declared)
    assert "_created" not in text

    s = series(text)
    assert value(s, "vigil_samples_total", device="mon1", param="SPO2") == 2
    assert value(s, "vigil_samples_total", device="ox1", param="HR") == 1
    assert value(s, "vigil_frames_total", device="mon1") == 5
    assert value(s, "vigil_frames_total", device="ox1") == 0
    assert value(s, "vigil_frames_dropped_total", device="mon1", reason="bad_json") == 1
    assert value(s, "vigil_frames_dropped_total", device="mon1", reason="not_object") == 1
    assert (
        value(s, "vigil_frames_dropped_total", device="mon1", reason="unsupported_action 0x0C17")
        == 1
    )
    assert value(s, "vigil_device_connected", device="mon1") == 1
    assert value(s, "vigil_device_connected", device="ox1") == 0
    assert value(s, "vigil_reconnects_total", link="ox1") == 3
    assert value(s, "vigil_reconnects_total", link="ward") == 2
    assert value(s, "vigil_broker_connected") == 0
    assert value(s, "vigil_alarms_raised_total", code="DESAT_CRITICAL", priority="high") == 1
    assert value(s, "vigil_alarms_raised_total", code="TACHY", priority="medium") == 1
    assert value(s, "vigil_alarms_active", priority="high") == 2
    assert value(s, "vigil_alarms_active", priority="medium") == 0
    assert value(s, "vigil_alarms_active", priority="low") == 1
    assert value(s, "vigil_outbox_messages") == 2
    assert value(s, "vigil_vitals_dropped_total") == 1
    assert value(s, "vigil_samples_queue_dropped_total") == 1
    assert value(s, "vigil_build_info", version="9.8.7") == 1
    # the two events that came with samples, 0.2 s after the samples' time
    assert value(s, "vigil_alarm_path_latency_seconds_count") == 2
    assert value(s, "vigil_alarm_path_latency_seconds_sum") == pytest.approx(0.4)
    assert value(s, "vigil_alarm_path_latency_seconds_bucket", le="0.1") == 0
    assert value(s, "vigil_alarm_path_latency_seconds_bucket", le="0.25") == 2
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in s
        if name == "vigil_alarm_path_latency_seconds_bucket"
    )
    assert buckets == [*LATENCY_BUCKETS_S, math.inf]
    assert buckets[0] == 0.001
    assert buckets[-2] == 10.0


async def test_live_series_are_read_at_scrape_time_and_never_double_counted() -> None:
    metrics = Metrics(version="1")
    stats = DriverStats()
    status = LinkStatus(name="mon1")
    metrics.watch_device("mon1", stats, status)
    async with serving(metrics) as port:
        stats.frames = 3
        stats.drop("bad_json", 2)
        first = series(await scrape(port))
        second = series(await scrape(port))
        stats.frames += 1
        stats.drop("bad_json")
        status.set(LinkState.CONNECTED, 1.0)
        third = series(await scrape(port))
    assert first == second
    assert value(first, "vigil_frames_total", device="mon1") == 3
    assert value(first, "vigil_frames_dropped_total", device="mon1", reason="bad_json") == 2
    assert value(first, "vigil_device_connected", device="mon1") == 0
    assert value(third, "vigil_frames_total", device="mon1") == 4
    assert value(third, "vigil_frames_dropped_total", device="mon1", reason="bad_json") == 3
    assert value(third, "vigil_device_connected", device="mon1") == 1


async def test_two_metrics_in_one_process_do_not_collide() -> None:
    a, b = Metrics(version="a"), Metrics(version="b")
    a_stats, b_stats = DriverStats(frames=1), DriverStats(frames=2)
    # the same device id in both: separate registries, separate series
    a.watch_device("mon1", a_stats, LinkStatus(name="mon1"))
    b.watch_device("mon1", b_stats, LinkStatus(name="mon1"))
    now = time.time()
    a.record([event(now, "DESAT", Priority.MEDIUM, AlarmState.ACTIVE)], [], now=now)
    async with serving(a) as port_a, serving(b) as port_b:
        sa, sb = series(await scrape(port_a)), series(await scrape(port_b))
    assert value(sa, "vigil_frames_total", device="mon1") == 1
    assert value(sb, "vigil_frames_total", device="mon1") == 2
    assert value(sa, "vigil_build_info", version="a") == 1
    assert value(sb, "vigil_build_info", version="b") == 1
    assert ("vigil_build_info", frozenset({("version", "a")})) not in sb
    assert value(sa, "vigil_alarms_raised_total", code="DESAT", priority="medium") == 1
    assert not any(name == "vigil_alarms_raised_total" for name, _ in sb)


async def test_http_answers_only_get_of_metrics() -> None:
    metrics = Metrics(version="1")
    async with serving(metrics) as port:
        status, _, body = await get(port, "/nope")
        assert (status, body) == (404, b"not found: try /metrics\n")
        status, _, root = await get(port, "/")
        assert status == 200
        assert b"vigil_build_info" in root

        def post() -> tuple[int, str]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST"
            )
            try:
                urllib.request.urlopen(req, timeout=5)  # noqa: S310 - http to loopback
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.headers["Allow"]
            raise AssertionError("POST was accepted")

        assert await asyncio.to_thread(post) == (405, "GET, HEAD")

        def raw(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)

        head = await asyncio.to_thread(raw, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert head.endswith(b"\r\n\r\n")  # headers only
        assert b"Content-Length: " in head
        garbage = await asyncio.to_thread(raw, b"hello\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        huge = await asyncio.to_thread(raw, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
        assert huge.startswith(b"HTTP/1.1 431 ")


async def test_a_busy_or_bad_address_is_refused_clearly() -> None:
    metrics = Metrics(version="1")
    async with serving(metrics) as port:
        with pytest.raises(MetricsListenError, match=f"127.0.0.1:{port}.*address already in use"):
            await metrics.serve(f"127.0.0.1:{port}")
    with pytest.raises(MetricsListenError, match="expected HOST:PORT"):
        await metrics.serve("127.0.0.1")
    with pytest.raises(MetricsListenError, match=r"no-such-host\.invalid"):
        await metrics.serve("no-such-host.invalid:9464")


async def test_close_stops_listening_and_drops_idle_connections() -> None:
    metrics = Metrics(version="1")
    port = free_port()
    server: MetricsServer = await metrics.serve(f"127.0.0.1:{port}")
    assert server.sockets == [("127.0.0.1", port)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.05)  # let the server accept it
    assert len(server.connections) == 1
    await server.close()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # the server hung up without an answer
    writer.close()
    await writer.wait_closed()
    assert not server.connections
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await server.close()  # idempotent


async def test_loop_lag_is_measured_and_cancellation_ends_the_probe() -> None:
    metrics = Metrics(version="1")
    probe = asyncio.create_task(metrics.watch_loop_lag(0.01), name="test.loop_lag")
    await asyncio.sleep(0.03)
    time.sleep(0.15)  # noqa: ASYNC251 - the stall being measured
    await asyncio.sleep(0.05)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    s = series(metrics.render().decode())
    assert value(s, "vigil_event_loop_lag_seconds_count") >= 2
    # the stall made one wake-up at least 0.1 s late
    assert value(s, "vigil_event_loop_lag_seconds_sum") >= 0.1
    assert value(s, "vigil_event_loop_lag_seconds_bucket", le="0.1") < value(
        s, "vigil_event_loop_lag_seconds_count"
    )


# ---------------------------------------------------------------------- the daemon, wired


PREFIX = "vigil/w1/b1"
TOPIC = "monitors/mon1/samples"


def daemon_settings(broker: BrokerProcess, tmp_path: Path, listen: str) -> Settings:
    protocol = "5" if broker.implementation == "mosquitto" else "3.1.1"
    return bed_settings(
        broker.url,
        tmp_path,
        broker={"protocol": protocol},
        metrics={"enabled": True, "listen": listen},
    )


def spo2(t: float, value: float) -> bytes:
    return json.dumps(
        {"t": t, "param": "SPO2", "value": value, "valid": True, "device_id": "mon1"}
    ).encode()


async def test_the_daemon_serves_its_metrics(mqtt_broker: BrokerProcess, tmp_path: Path) -> None:
    port = free_port()
    settings = daemon_settings(mqtt_broker, tmp_path, f"127.0.0.1:{port}")
    async with running_bed(settings, mqtt_broker, "monitor") as (daemon, monitor):
        await monitor.publish(TOPIC, b"this is not json", qos=1)
        # SPO2 80 % (< 85) for over 5 s: DESAT_CRITICAL (high, every phase), raised by a sample
        start = time.time() - 7.0
        for i in range(8):
            await monitor.publish(TOPIC, spo2(start + i, 80.0), qos=1)
        async with asyncio.timeout(10):
            # polling the daemon's own state is the point: raised, then acknowledged by the broker
            while "DESAT_CRITICAL" not in daemon.core.engine.active:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            while daemon.ward.pending_alarms:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # one loop-lag probe at least
        text = await scrape(port)
    s = series(text)
    assert value(s, "vigil_samples_total", device="mon1", param="SPO2") == 8
    assert value(s, "vigil_frames_total", device="mon1") == 9
    assert sum(n for (name, _), n in s.items() if name == "vigil_frames_dropped_total") == 1
    assert value(s, "vigil_device_connected", device="mon1") == 1
    assert value(s, "vigil_broker_connected") == 1
    assert value(s, "vigil_reconnects_total", link="ward") == 0
    assert value(s, "vigil_alarms_raised_total", code="DESAT_CRITICAL", priority="high") == 1
    assert value(s, "vigil_alarms_active", priority="high") == 1
    assert value(s, "vigil_outbox_messages") == 0
    assert value(s, "vigil_samples_queue_dropped_total") == 0
    assert value(s, "vigil_vitals_dropped_total") == 0
    assert value(s, "vigil_alarm_path_latency_seconds_count") >= 1
    assert value(s, "vigil_event_loop_lag_seconds_count") >= 1
    assert value(s, "vigil_build_info", version=version("vigil")) == 1
    assert "_created" not in text
    # leaving the block closed the endpoint
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_busy_metrics_address_stops_the_daemon_from_starting(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = daemon_settings(mqtt_broker, tmp_path, f"127.0.0.1:{port}")
        with pytest.raises(MetricsListenError, match=f"127.0.0.1:{port}.*address already in use"):
            async with Daemon(settings, load_policy()):
                raise AssertionError("the daemon started")


_LINE_END = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
_REQUESTS = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda method, target, version, end, headers, tail: (
            method + b" " + target + b" " + version + end + b"".join(headers) + tail
        ),
        st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"", b"GET GET", b"\x00"]),
        st.sampled_from([b"/metrics", b"/", b"/metrics?x=1", b"", b"*", b"/%00", b"/" * 300]),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"http/1.1"]),
        _LINE_END,
        st.lists(
            st.builds(
                lambda k, v, e: k + b": " + v + e,
                st.binary(max_size=20),
                st.binary(max_size=40),
                _LINE_END,
            ),
            max_size=5,
        ),
        st.sampled_from([b"\r\n", b"\r\n\r\n", b"", b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]),
    ),
    st.integers(8000, 9000).map(lambda n: b"GET /metrics HTTP/1.1\r\nX: " + b"a" * n),
)
_STATUS = re.compile(rb"HTTP/1\.1 (200|400|404|405|431) [A-Za-z ]+\r\n")


async def test_malformed_requests_get_an_answer_or_a_close_and_never_break_the_server() -> None:
    # issue 18 item 6: the endpoint faces the ward network; whatever bytes arrive (hypothesis
    # makes them), over a real socket, it answers with a status line or hangs up, and serves
    # the next scrape as before
    metrics = Metrics(version="1")
    port = free_port()
    server = await metrics.serve(f"127.0.0.1:{port}")
    try:

        @settings(max_examples=150, deadline=None)
        @given(_REQUESTS)
        def probe(request: bytes) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)  # no more: an incomplete head ends here
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            answer = b"".join(chunks)
            if not answer:
                # hung up without a word: only a head that never ended may get that
                assert b"\r\n\r\n" not in request[: 8192 + 4]
                return
            assert _STATUS.match(answer), answer[:80]

        await asyncio.to_thread(probe)
        assert (await get(port, "/metrics"))[0] == 200
        async with asyncio.timeout(5):
            while server.connections:  # noqa: ASYNC110 - every probe's connection gone
                await asyncio.sleep(0.01)
    finally:
        await server.close()
