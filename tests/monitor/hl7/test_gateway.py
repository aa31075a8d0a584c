"""The gateway end to end with real parts: a bed daemon, a broker, `vigil hl7`, an MLLP receiver.

The receiver is python-hl7's asyncio MLLP server (tests/monitor/hl7/receiver.py). Faults are the
receiver's: away for a while, answering AE, answering nothing, closing with a message unanswered.
In every case nothing is lost, each bed's messages arrive in order, and a message arrives twice
only as a resend with the same control id (MSH-10).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import ssl
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import hl7
import pytest

from alarms.policy import load_policy
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import SimulatedClock
from monitor.daemon import Daemon
from monitor.hl7.gateway import Gateway
from monitor.hl7.mllp import MllpDecoder, MllpError, frame, read_message
from monitor.hl7.settings import GatewayConfig
from monitor.settings import Settings
from monitor.supervisor import LinkState
from monitor.wire import decode_active_alarms
from tests.helpers import (
    BrokerProcess,
    mosquitto_path,
    next_json,
    open_session_command,
    stop_process,
)
from tests.monitor.hl7.conformance import validate
from tests.monitor.hl7.receiver import Receiver
from tests.monitor.test_broker_security import make_certificates
from tests.payloads import alarm_payload

pytestmark = pytest.mark.timeout(60)

TOPIC = "monitors/mon1/samples"


def gateway_config(
    broker: BrokerProcess, receiver: Receiver, tmp_path: Path, **hl7: Any
) -> GatewayConfig:
    # fast retries and reports for the tests; the broker protocol `auto`, the default: MQTT 5
    # where the broker speaks it (mosquitto), else 3.1.1
    fast = {"facility": "CLINIC", "interval_s": 0.5, "retry_base_s": 0.05, "retry_max_s": 0.5}
    queue = tmp_path / "hl7-queue.sqlite"
    return receiver.gateway_config(queue, {"url": broker.url}, **(fast | hl7))


async def start_vigil_hl7(
    broker: BrokerProcess, receiver: Receiver, tmp_path: Path, hl7_extra: str = ""
) -> asyncio.subprocess.Process:
    """`vigil hl7` in a child process for ward w1, sending to `receiver` (output on stdout).

    Its config: a queue in `tmp_path`, no metrics, `hl7_extra` lines in `[hl7]`, and the
    broker's own MQTT version.
    """
    config = tmp_path / "hl7.toml"
    protocol = "5" if broker.implementation == "mosquitto" else "3.1.1"
    config.write_text(
        f'[hl7]\nward = "w1"\nqueue = "q.sqlite"\nmetrics_listen = ""\n{hl7_extra}'
        f'[broker]\nprotocol = "{protocol}"\n'
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "hl7", "--broker", broker.url,
        "--to", receiver.to, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def gateway_with_beds(
    broker: BrokerProcess, receiver: Receiver, tmp_path: Path, **hl7: Any
) -> AsyncIterator[tuple[Gateway, MqttClient]]:
    """`receiver` listening, a gateway (`gateway_config` with `hl7`) connected to it and the
    broker, and a client of the broker playing the beds."""
    config = gateway_config(broker, receiver, tmp_path, **hl7)
    async with (
        receiver,
        Gateway(config) as gw,
        MqttClient(broker.host, broker.port, identifier="beds") as beds,
    ):
        await gw.connected(10)
        yield gw, beds


def bed_settings(broker: BrokerProcess, tmp_path: Path, bed: str = "b1") -> Settings:
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": bed},
            "broker": {
                "url": broker.url,
                "protocol": "5" if broker.implementation == "mosquitto" else "3.1.1",
            },
            "journal": {"path": str(tmp_path / f"journal-{bed}.sqlite")},
            "metrics": {"enabled": False},
            "drivers": [{"kind": "mqtt", "device_id": "mon1", "topic": f"{TOPIC}/{bed}"}],
        }
    )


def fields(message: hl7.Message) -> dict[str, str]:
    """The fields the assertions read, from the message as received."""
    text = str(message)
    segs = {s.split("|")[0]: s.split("|") for s in text.split("\r") if s}
    obr = segs["OBR"]
    return {
        "type": segs["MSH"][8],
        "control_id": segs["MSH"][9],
        "bed": segs["PV1"][3].split("^")[2],
        "patient": segs["PID"][3].split("^")[0],
        "obr3": obr[3],
        "text": text,
    }


def obx_rows(message: hl7.Message) -> list[list[str]]:
    return [s.split("|") for s in str(message).split("\r") if s.startswith("OBX")]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Until `predicate()` holds: state of the gateway that has no event to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polled, see above
            await asyncio.sleep(0.02)


# ---------------------------------------------------------------------- with a real bed


async def test_an_alarm_raised_latched_acknowledged_and_cleared_arrives_as_start_update_end(
    mqtt_broker: BrokerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    clock = SimulatedClock(speed=10.0)
    settings = bed_settings(mqtt_broker, tmp_path)
    config = gateway_config(mqtt_broker, receiver, tmp_path)
    async with (
        Daemon(settings, load_policy(), clock=clock) as daemon,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="nurse") as nurse,
    ):
        await daemon.connected(10)
        for topic in ("vigil/w1/b1/alarms", "vigil/w1/b1/alarms/active", "vigil/w1/b1/cmd/result"):
            await nurse.subscribe(topic, qos=1)

        def pcd04(code: str) -> list[hl7.Message]:
            return [m for m in receiver.received if f"|{code}|" in str(m)]

        async def feed(hr: float, until: Any) -> None:
            async with asyncio.timeout(20):
                while not until():
                    sample = {"t": clock.now(), "param": "HR", "value": hr, "valid": True,
                              "device_id": "mon1"}  # fmt: skip
                    await nurse.publish(f"{TOPIC}/b1", json.dumps(sample).encode(), qos=1)
                    await asyncio.sleep(0.1)

        async with Gateway(config) as gw:
            await gw.connected(10)
            # `[broker] protocol` auto: MQTT 5 on mosquitto, 3.1.1 on the embedded broker
            version = "5" if mqtt_broker.implementation == "mosquitto" else "3.1.1"
            assert gw.mqtt_version == version
            # HR 150 for 10 s (1 real second at 10x): TACHY_SEVERE, latching (config/alarms.toml)
            await feed(150.0, lambda: len(pcd04("TACHY_SEVERE")) >= 1)
            alarm_id = fields(pcd04("TACHY_SEVERE")[0])["obr3"].split("^")[0]
            # HR back at 80: 5 s later its condition has ended; no alarm event says so
            # (docs/ALARMS.md "States"), the active list does, and the gateway sends it on
            await feed(80.0, lambda: len(pcd04("TACHY_SEVERE")) >= 2)
        # a restart: the retained list (still latched) comes again and nothing is sent twice,
        # not even offered to the queue again (what was sent is kept in the queue's file)
        async with Gateway(config) as gw:
            await gw.connected(10)
            ack = {"cmd": "ack", "alarm_id": alarm_id, "request_id": "r1", "user": "ann"}
            await nurse.publish("vigil/w1/b1/cmd", json.dumps(ack).encode(), qos=1)
            await receiver.wait_for(lambda _: len(pcd04("TACHY_SEVERE")) >= 4, timeout=10)
            assert gw.stats.duplicates == 0
        # what the bed published, as the ward saw it, in order: its events, and its active
        # list's entry for the alarm (absent, or its `latched`), each change once
        on_wire: list[tuple[str, object]] = []
        async with asyncio.timeout(10):
            async for message in nurse.messages:
                assert isinstance(message.payload, bytes)
                topic = str(message.topic)
                if topic.endswith("/cmd/result"):
                    assert json.loads(message.payload)["ok"] is True
                    continue
                if topic.endswith("/alarms/active"):
                    entry = [a for a in decode_active_alarms(message.payload)
                             if a.code == "TACHY_SEVERE"]  # fmt: skip
                    item: tuple[str, object] = ("list", entry[0].latched if entry else None)
                else:
                    data = json.loads(message.payload)
                    if data["code"] != "TACHY_SEVERE":
                        continue
                    item = ("event", data["state"])
                if not on_wire or on_wire[-1] != item:
                    on_wire.append(item)
                if on_wire[-2:] == [("event", "cleared"), ("list", None)]:
                    break

    assert on_wire == [
        ("list", None),
        ("event", "active"),
        ("list", False),
        ("list", True),  # its condition over: no event
        ("event", "acknowledged"),
        ("event", "cleared"),
        ("list", None),
    ]
    messages = pcd04("TACHY_SEVERE")
    for m in receiver.received:
        validate(str(m))
    phases = [obx_rows(m)[2][5] for m in messages]
    states = [obx_rows(m)[3][5] for m in messages]
    inactivation = [obx_rows(m)[4][5] for m in messages]
    # raised; latched (its condition over); acknowledged while latched; cleared by the ack
    assert phases == ["start", "update", "update", "end"]
    assert states == ["active", "latched", "latched", "inactive"]
    assert inactivation == ["enabled", "enabled", "alert-acknowledged", "enabled"]
    # still about HR above its limit, though HR is back in range
    assert {obx_rows(m)[0][3] for m in messages} == {"196650^MDC_EVT_HI_VAL_GT_LIM^MDC"}
    ids = {fields(m)["obr3"].split("^")[0] for m in messages}
    assert ids == {alarm_id}
    # the bed's events carry its seq; the latched update is no event and has none
    seqs = [fields(m)["obr3"].split("^")[1] for m in messages]
    assert seqs[1] == ""
    events = [int(seqs[i]) for i in (0, 2, 3)]
    assert events == sorted(events)
    assert len(set(events)) == 3
    assert {fields(m)["type"] for m in messages} == {"ORU^R40^ORU_R40"}
    # no session: the patient is unknown, the bed is the location
    assert {fields(m)["patient"] for m in messages} == {"UNKNOWN"}
    assert {fields(m)["bed"] for m in messages} == {"b1"}


async def test_vitals_of_a_session_arrive_periodically_and_at_each_determination(
    mqtt_broker: BrokerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    settings = bed_settings(mqtt_broker, tmp_path)
    async with (
        Gateway(gateway_config(mqtt_broker, receiver, tmp_path, interval_s=0.5)) as gw,
        Daemon(settings, load_policy()) as daemon,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="nurse") as nurse,
    ):
        await daemon.connected(10)
        await gw.connected(10)
        await nurse.subscribe("vigil/w1/b1/cmd/result", qos=1)
        opening = open_session_command("o1", patient_id="MRN777")
        await nurse.publish("vigil/w1/b1/cmd", json.dumps(opening).encode(), qos=1)
        assert (await next_json(nurse, "vigil/w1/b1/cmd/result"))["ok"] is True

        def vitals() -> list[hl7.Message]:
            return [m for m in receiver.received if "ORU^R01" in str(m)]

        # the gateway must know the patient before vitals mean anything
        await eventually(lambda: gw.patient_of("w1", "b1") == "MRN777")
        now = time.time()
        cuff_t = now - 20.0
        samples = [
            {"t": now, "param": "HR", "value": 72.0},
            {"t": now, "param": "SPO2", "value": 97.0},
            {"t": cuff_t, "param": "NIBP_SYS", "value": 121.0},
            {"t": cuff_t, "param": "NIBP_DIA", "value": 79.0},
            {"t": cuff_t, "param": "NIBP_MEAN", "value": 93.0},
        ]
        for s in samples:
            payload = {**s, "valid": True, "device_id": "mon1"}
            await nurse.publish(f"{TOPIC}/b1", json.dumps(payload).encode(), qos=1)
        await receiver.wait_for(
            lambda _: sum(str(m).count("|NM|") for m in vitals()) >= 5, timeout=10
        )
        count_at_rest = len(vitals())
        await asyncio.sleep(1.2)  # two more intervals: nothing new, nothing sent

    reports = vitals()
    for m in reports:
        validate(str(m))
        assert fields(m)["patient"] == "MRN777"
    codes = [[row[3].split("^")[0] for row in obx_rows(m) if row[2] == "NM"] for m in reports]
    # each observation reported once (a tick may fall between HR and SpO2: 2 or 3 reports)
    assert sorted(c for report in codes for c in report) == sorted(
        ["147842", "150456", "150021", "150022", "150023"]
    )
    assert count_at_rest == len(reports)
    # the determination went in a report of its own, not waiting for the interval
    cuff = next(report for report in codes if "150021" in report)
    assert sorted(cuff) == ["150021", "150022", "150023"]
    rows = {row[3].split("^")[0]: row for m in reports for row in obx_rows(m) if row[2] == "NM"}
    # the determination keeps its own time
    cuff_stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(cuff_t))
    assert (rows["150021"][5], rows["150022"][5], rows["150023"][5]) == ("121", "79", "93")
    assert rows["150021"][14].startswith(cuff_stamp)
    assert rows["147842"][5] == "72"
    assert rows["150456"][5] == "97"


# ---------------------------------------------------------------------- the command line


async def open_session(nurse: aiomqtt.Client, bed: str, patient: str) -> None:
    opening = open_session_command(f"open-{bed}", patient_id=patient)
    await nurse.publish(f"vigil/w1/{bed}/cmd", json.dumps(opening).encode(), qos=1)
    result = await next_json(nurse, f"vigil/w1/{bed}/cmd/result")
    assert result["ok"] is True, result


async def test_vigil_hl7_command_reports_two_bed_daemons_and_stops_on_sigterm(
    mqtt_broker: BrokerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    proc = await start_vigil_hl7(
        mqtt_broker, receiver, tmp_path, 'facility = "CLINIC"\ninterval_s = 0.5\n'
    )
    try:
        async with (
            Daemon(bed_settings(mqtt_broker, tmp_path, "b1"), load_policy()) as bed1,
            Daemon(bed_settings(mqtt_broker, tmp_path, "b2"), load_policy()) as bed2,
            MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="nurse") as nurse,
        ):
            await bed1.connected(10)
            await bed2.connected(10)
            # the gateway announces itself on the ward once subscribed
            await nurse.subscribe("vigil/w1/hl7/status", qos=1)
            assert (await next_json(nurse, "vigil/w1/hl7/status", 20))["status"] == "online"
            await nurse.subscribe("vigil/w1/+/cmd/result", qos=1)
            await open_session(nurse, "b1", "MRN-ONE")
            await open_session(nurse, "b2", "MRN-TWO")

            def reported() -> set[str]:
                return {fields(m)["bed"] for m in receiver.received if "ORU^R01" in str(m)}

            # vitals that reach the gateway before the session are not sent (no patient yet):
            # the monitors go on measuring until each bed has been reported
            async with asyncio.timeout(20):
                while reported() < {"b1", "b2"}:
                    for bed, value in (("b1", 61.0), ("b2", 62.0)):
                        sample = {"t": time.time(), "param": "HR", "value": value,
                                  "valid": True, "device_id": "mon1"}  # fmt: skip
                        await nurse.publish(f"{TOPIC}/{bed}", json.dumps(sample).encode(), qos=1)
                    await asyncio.sleep(0.3)
    finally:
        status = await stop_process(proc)
        output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert status == 0, output
    assert "event=hl7_started" in output
    reports = {fields(m)["bed"]: m for m in receiver.received if "ORU^R01" in str(m)}
    for bed, patient, expected in (("b1", "MRN-ONE", "61"), ("b2", "MRN-TWO", "62")):
        validate(str(reports[bed]))
        assert fields(reports[bed])["patient"] == patient
        [row] = [r for r in obx_rows(reports[bed]) if r[3].startswith("147842^")]
        assert row[5] == expected
    assert (tmp_path / "q.sqlite").exists()


async def test_vigil_hl7_command_forwards_published_alarms(
    mqtt_broker: BrokerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    proc = await start_vigil_hl7(mqtt_broker, receiver, tmp_path)
    try:
        async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="bed") as bed:
            await bed.subscribe("vigil/w1/hl7/status", qos=1)
            assert (await next_json(bed, "vigil/w1/hl7/status", 20))["status"] == "online"
            for seq in range(1, 6):
                await bed.publish("vigil/w1/b2/alarms", alarm_payload("b2", seq), qos=1)
            await receiver.wait_for(lambda r: len(r) >= 5, timeout=20)
    finally:
        assert await stop_process(proc) == 0
        assert proc.stdout is not None
        await proc.stdout.read()
    assert [int(fields(m)["obr3"].split("^")[1]) for m in receiver.received] == [1, 2, 3, 4, 5]


async def test_vigil_hl7_refuses_a_bad_config_with_a_located_error(tmp_path: Path) -> None:
    config = tmp_path / "hl7.toml"
    config.write_text('[hl7]\nto = "engine:2575"\ninterval_s = -1\nbogus = 1\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "hl7", "--broker", "mqtt://127.0.0.1:1",
        "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 1
    text = err.decode()
    assert f"{config}: hl7.interval_s: Input should be greater than 0" in text
    assert f"{config}: hl7.bogus: unknown key" in text
    assert "Traceback" not in text


async def test_vigil_hl7_says_why_it_cannot_open_its_queue(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "hl7.toml"
    config.write_text(f'[hl7]\nqueue = "{blocker}/q.sqlite"\nmetrics_listen = ""\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "hl7", "--broker", "mqtt://127.0.0.1:1",
        "--to", "127.0.0.1:9", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert f"vigil hl7: cannot open the queue {blocker}/q.sqlite" in err.decode()
    assert "Traceback" not in err.decode()


# ---------------------------------------------------------------------- faults


def check_delivery(received: list[hl7.Message], published: dict[str, list[int]]) -> int:
    """Nothing lost, in order per bed, duplicates only as resends; the number of duplicates."""
    seen: dict[str, list[int]] = defaultdict(list)
    control_of: dict[tuple[str, int], str] = {}
    text_of: dict[str, str] = {}
    for m in received:
        f = fields(m)
        validate(f["text"])
        seq = int(f["obr3"].split("^")[1])
        seen[f["bed"]].append(seq)
        # one event, one control id; a resend is the same message byte for byte
        assert control_of.setdefault((f["bed"], seq), f["control_id"]) == f["control_id"]
        assert text_of.setdefault(f["control_id"], f["text"]) == f["text"]
    for bed, seqs in published.items():
        assert sorted(set(seen[bed])) == seqs, f"{bed}: lost {set(seqs) - set(seen[bed])}"
        assert seen[bed] == sorted(seen[bed]), f"{bed} out of order: {seen[bed]}"
    return len(received) - len(control_of)


async def publish_alarms(
    client: aiomqtt.Client, beds: list[str], per_bed: int, start: int = 1
) -> dict[str, list[int]]:
    published: dict[str, list[int]] = {}
    for seq in range(start, start + per_bed):
        for bed in beds:
            await client.publish(f"vigil/w1/{bed}/alarms", alarm_payload(bed, seq), qos=1)
            published.setdefault(bed, []).append(seq)
    return published


# issue 16 asks for a receiver down for 30 s; the short outage runs on both brokers, the long one
# once (its subject is the MLLP side, not the broker)
@pytest.mark.parametrize("outage_s", [1.5, pytest.param(30.0, marks=pytest.mark.broker_incidental)])
async def test_receiver_down_for_a_while_loses_nothing_and_raises_hl7_link_down(
    mqtt_broker: BrokerProcess, tmp_path: Path, outage_s: float
) -> None:
    receiver = Receiver()  # not listening yet: the hospital's engine is down
    config = gateway_config(mqtt_broker, receiver, tmp_path, link_down_s=1.0)
    async with (
        Gateway(config) as gw,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds,
    ):
        await eventually(lambda: gw.ward_link.state is LinkState.CONNECTED, 10)
        await beds.subscribe("vigil/w1/hl7/alarms", qos=1)
        published = await publish_alarms(beds, ["b1", "b2", "b3"], 4)
        down = await next_json(beds, "vigil/w1/hl7/alarms", timeout=10)
        assert (down["code"], down["state"], down["kind"]) == (
            "HL7_LINK_DOWN",
            "active",
            "technical",
        )
        # what a console that connects now finds: the retained list, in a bed's own shape
        async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="late") as late:
            await late.subscribe("vigil/w1/hl7/alarms/active", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(late.messages))
            assert isinstance(message.payload, bytes)
            [active] = decode_active_alarms(message.payload)
            assert (active.code, active.alarm_id) == ("HL7_LINK_DOWN", down["alarm_id"])
        await asyncio.sleep(max(0.0, outage_s - 1.0))
        assert gw.queue is not None
        assert gw.queue.count() == 12
        async with receiver:
            await receiver.wait_for(lambda r: len({fields(m)["control_id"] for m in r}) >= 12, 20)
            cleared = await next_json(beds, "vigil/w1/hl7/alarms", timeout=10)
            assert (cleared["state"], cleared["alarm_id"]) == ("cleared", down["alarm_id"])
            # new events after the outage follow the backlog, still in order
            published_after = await publish_alarms(beds, ["b1", "b2", "b3"], 2, start=5)
            await receiver.wait_for(lambda r: len({fields(m)["control_id"] for m in r}) >= 18, 20)
    for bed, seqs in published_after.items():
        published[bed] += seqs
    assert check_delivery(receiver.received, published) == 0
    assert gw.mllp.reconnects >= 1


async def test_answers_ae_are_logged_and_retried_until_accepted(
    mqtt_broker: BrokerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refusals: dict[str, int] = defaultdict(int)
    order: list[str] = []

    def policy(message: hl7.Message) -> str | None:
        control_id = str(message.segment("MSH")[10])
        if control_id not in order:
            order.append(control_id)
        # the 2nd and 4th distinct messages are refused twice before they are taken
        if order.index(control_id) in (1, 3) and refusals[control_id] < 2:
            refusals[control_id] += 1
            return "AE"
        return "AA"

    receiver = Receiver(policy)
    async with gateway_with_beds(mqtt_broker, receiver, tmp_path) as (gw, beds):
        published = await publish_alarms(beds, ["b1", "b2"], 3)
        await receiver.wait_for(lambda r: len(r) >= 10, 20)
        await eventually(lambda: gw.queue is not None and not len(gw.queue), 5)
    assert check_delivery(receiver.received, published) == 4
    assert gw.stats.refused["AE"] == 4
    assert sum(gw.stats.sent.values()) == 6
    assert caplog.text.count("event=hl7_refused") == 4


async def test_no_answer_times_out_reconnects_and_sends_the_same_message_again(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    ignored: set[str] = set()

    def policy(message: hl7.Message) -> str | None:
        control_id = str(message.segment("MSH")[10])
        if len(ignored) < 2 and control_id not in ignored:
            ignored.add(control_id)
            return None  # silence: the gateway's ACK timeout
        return "AA"

    receiver = Receiver(policy)
    async with gateway_with_beds(mqtt_broker, receiver, tmp_path, ack_timeout_s=1.0) as (gw, beds):
        published = await publish_alarms(beds, ["b1", "b2"], 3)
        await receiver.wait_for(lambda r: len(r) >= 8, 20)
        await eventually(lambda: gw.queue is not None and not len(gw.queue), 5)
    # a loaded machine may time out more than the two ignored: more resends, never a loss
    assert check_delivery(receiver.received, published) >= 2
    assert gw.stats.ack_timeouts >= 2
    assert receiver.connections >= 3


async def test_receiver_closing_with_a_message_unanswered_loses_nothing(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    dropped: set[str] = set()
    distinct: list[str] = []

    def policy(message: hl7.Message) -> str | None:
        control_id = str(message.segment("MSH")[10])
        if control_id not in distinct:
            distinct.append(control_id)
        if distinct.index(control_id) in (0, 4) and control_id not in dropped:
            dropped.add(control_id)
            return "close"
        return "AA"

    receiver = Receiver(policy)
    async with gateway_with_beds(mqtt_broker, receiver, tmp_path) as (gw, beds):
        published = await publish_alarms(beds, ["b1", "b2", "b3"], 3)
        await receiver.wait_for(lambda r: len(r) >= 11, 20)
        await eventually(lambda: gw.queue is not None and not len(gw.queue), 5)
    assert check_delivery(receiver.received, published) == 2
    assert receiver.connections >= 3


# a gateway restart relies on the broker keeping its persistent session, which the embedded
# amqtt broker does not do
@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="a persistent session needs mosquitto")
async def test_queued_messages_survive_a_gateway_restart_with_their_control_ids(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    receiver = Receiver()  # away during the first run
    config = gateway_config(mqtt_broker, receiver, tmp_path)
    path = tmp_path / "hl7-queue.sqlite"
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds:
        async with Gateway(config) as gw:
            await eventually(lambda: gw.ward_link.state is LinkState.CONNECTED, 10)
            await publish_alarms(beds, ["b1"], 3)
            await eventually(lambda: gw.queue is not None and gw.queue.count() >= 3, 10)
        with sqlite3.connect(path) as db:
            before = [r[0] for r in db.execute("SELECT control_id FROM messages ORDER BY id")]
        db.close()
        assert len(set(before)) == 3
        async with receiver, Gateway(config) as gw:
            await gw.connected(10)
            await receiver.wait_for(lambda r: len(r) >= 3, 20)
            await publish_alarms(beds, ["b1"], 2, start=4)
            await receiver.wait_for(lambda r: len(r) >= 5, 20)
    received = [fields(m)["control_id"] for m in receiver.received]
    # the backlog of the first run goes with the ids it was given, then new ids follow
    assert received[:3] == before
    assert len(set(received)) == 5
    assert received == sorted(received)
    assert check_delivery(receiver.received, {"b1": [1, 2, 3, 4, 5]}) == 0


async def scrape(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        body = await reader.read()
    writer.close()
    await writer.wait_closed()
    return body.decode()


async def test_queue_size_and_age_are_in_the_metrics(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    receiver = Receiver()  # away: the alarms wait
    config = gateway_config(mqtt_broker, receiver, tmp_path, metrics_listen="127.0.0.1:0")
    async with (
        Gateway(config) as gw,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds,
    ):
        await eventually(lambda: gw.ward_link.state is LinkState.CONNECTED)
        await beds.publish("vigil/w1/b2/status", b'{"status": "offline", "ward": "w1"}', qos=1)
        await publish_alarms(beds, ["b1"], 2)
        await eventually(lambda: gw.queue is not None and gw.queue.count() == 2)
        await eventually(lambda: any(b.online is False for b in gw.beds()))
        await asyncio.sleep(0.3)
        address = gw.metrics_address
        assert address is not None
        text = await scrape(*address)
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("vigil_hl7_"))
    assert lines['vigil_hl7_queue_messages{kind="alarm"}'] == "2.0"
    assert lines['vigil_hl7_queue_messages{kind="vitals"}'] == "0.0"
    assert float(lines['vigil_hl7_queue_oldest_age_seconds{kind="alarm"}']) >= 0.3
    assert lines["vigil_hl7_link_up"] == "0.0"
    assert lines['vigil_hl7_beds{status="offline"}'] == "1.0"  # b2
    assert lines['vigil_hl7_beds{status="unknown"}'] == "1.0"  # b1: alarms, no status yet


@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="a persistent session needs mosquitto")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_mllp_over_tls_delivers_and_refuses_an_unknown_certificate(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    make_certificates(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    receiver = Receiver(ssl=server)
    trusted = gateway_config(
        mqtt_broker, receiver, tmp_path / "a",
        tls={"enabled": True, "ca_file": str(tmp_path / "ca.crt")},
    )  # fmt: skip
    # the system's CAs only: the receiver's certificate is not one they vouch for
    untrusted = gateway_config(
        mqtt_broker, receiver, tmp_path / "b", tls={"enabled": True}, retry_max_s=0.2
    )
    async with (
        receiver,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds,
    ):
        async with Gateway(untrusted) as gw:
            await eventually(lambda: gw.mllp.reconnects >= 2)
            assert "CERTIFICATE_VERIFY_FAILED" in (gw.mllp.last_error or "")
            assert gw.mllp.state is not LinkState.CONNECTED
        assert receiver.received == []
        async with Gateway(trusted) as gw:
            await gw.connected(10)
            published = await publish_alarms(beds, ["b1"], 2)
            await receiver.wait_for(lambda r: len(r) >= 2, 20)
    assert check_delivery(receiver.received, published) == 0


async def test_a_receiver_closing_in_the_middle_of_a_frame_gets_the_message_again_whole(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    receiver = Receiver()
    cut: list[bytes] = []
    accepted: list[asyncio.StreamWriter] = []

    async def half_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # takes the first bytes of the frame and hangs up: the message is torn in two
        accepted.append(writer)
        cut.append(await reader.read(40))
        writer.close()

    torn = await asyncio.start_server(half_reader, "127.0.0.1", receiver.port)
    async with (
        Gateway(gateway_config(mqtt_broker, receiver, tmp_path)) as gw,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds,
    ):
        await eventually(lambda: gw.ward_link.state is LinkState.CONNECTED)
        published = await publish_alarms(beds, ["b1", "b2"], 2)
        await eventually(lambda: len(cut) >= 1)
        torn.close()
        await torn.wait_closed()
        # Python 3.11's Server.close() leaves accepted connections open: a reconnect the
        # gateway made before the close would leak its socket
        for writer in accepted:
            writer.close()
        async with receiver:
            await receiver.wait_for(lambda r: len({fields(m)["control_id"] for m in r}) >= 4, 20)
    assert cut[0].startswith(b"\x0bMSH|")
    assert check_delivery(receiver.received, published) == 0
    # the torn message is the first one delivered whole
    assert ("\x0b" + receiver.raw[0]).encode().startswith(cut[0])
    assert 0 < len(cut[0]) <= 40 < len(receiver.raw[0])


async def test_a_bed_whose_messages_are_always_refused_does_not_stop_the_ward(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    def policy(message: hl7.Message) -> str | None:
        # e.g. a bed the engine has no record of: every message of b1 is rejected
        return "AR" if fields(message)["bed"] == "b1" else "AA"

    receiver = Receiver(policy)
    async with gateway_with_beds(mqtt_broker, receiver, tmp_path, retry_max_s=0.3) as (gw, beds):
        published = await publish_alarms(beds, ["b1", "b2", "b3"], 3)
        await eventually(lambda: sum(gw.stats.sent.values()) == 6, 20)
        await eventually(lambda: gw.stats.refused["AR"] >= 3, 20)
        assert gw.queue is not None
        assert gw.queue.count() == 3  # b1's wait, none lost
        held = gw.queue.head()
        assert held is not None
        assert held.bed == "w1/b1"
        assert held.attempts >= 3
    b1 = [
        int(fields(m)["obr3"].split("^")[1]) for m in receiver.received if fields(m)["bed"] == "b1"
    ]
    # only b1's first message is tried again and again: its later ones wait behind it
    assert set(b1) == {1}
    del published["b1"]
    others = [m for m in receiver.received if fields(m)["bed"] != "b1"]
    assert check_delivery(others, published) == 0


async def test_an_ack_that_names_no_control_id_is_taken_for_the_message_in_flight(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    receiver = Receiver()
    got: list[bytes] = []

    async def careless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # an engine that answers AA but leaves MSA-2 empty
        decoder = MllpDecoder()
        try:
            while True:
                got.append(await read_message(reader, decoder))
                writer.write(frame("MSH|^~\\&|E|H|||20250101||ACK|1|P|2.6\rMSA|AA|"))
                await writer.drain()
        except MllpError:
            writer.close()

    server = await asyncio.start_server(careless, "127.0.0.1", receiver.port)
    async with (
        server,
        Gateway(gateway_config(mqtt_broker, receiver, tmp_path, ack_timeout_s=2.0)) as gw,
        MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="beds") as beds,
    ):
        await gw.connected(10)
        await publish_alarms(beds, ["b1"], 3)
        await eventually(lambda: sum(gw.stats.sent.values()) == 3)
        server.close()
    assert len(got) == 3
    assert gw.stats.ack_timeouts == 0


# a gateway restart relies on the broker keeping its persistent session, which the embedded
# amqtt broker does not do
@pytest.mark.mosquitto_only
@pytest.mark.skipif(mosquitto_path() is None, reason="a persistent session needs mosquitto")
async def test_hl7_link_down_raised_before_a_restart_clears_after_it_with_its_id(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    receiver = Receiver()  # away during the first run
    config = gateway_config(mqtt_broker, receiver, tmp_path, link_down_s=0.5)
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="ward") as ward:
        await ward.subscribe("vigil/w1/hl7/alarms", qos=1)
        async with Gateway(config) as gw:
            await eventually(lambda: gw.ward_link.state is LinkState.CONNECTED)
            await publish_alarms(ward, ["b1"], 1)
            down = await next_json(ward, "vigil/w1/hl7/alarms")
            assert down["state"] == "active"
        async with receiver, Gateway(config) as gw:
            cleared = await next_json(ward, "vigil/w1/hl7/alarms")
            assert gw.link_alarm is None
    assert (cleared["code"], cleared["state"]) == ("HL7_LINK_DOWN", "cleared")
    assert cleared["alarm_id"] == down["alarm_id"]
    assert cleared["seq"] > down["seq"]
    assert len(receiver.received) == 1
