"""A whole session driven through a real `vigil run` by `vigil cmd`, over a real broker.

Each refusal the protocol demands (docs/PROTOCOL.md "One session, step by step") comes back on
`…/cmd/result` with its reason and changes nothing: a weight outside 30-250 kg, an absolute
contraindication, starting over `BP_PRE_GATE` without an override, an early discharge. The
overrides that unlock them are recorded with who gave them and why; the journal holds the
session and `vigil export` writes its recording.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt.client import Client as MqttClient
from monitor.commands import Checklist
from monitor.journal import Journal
from tests.helpers import BrokerProcess, stop_process, write_bed_config

PREFIX = "vigil/w1/b1"
TOPIC = "monitors/mon1/samples"
NO = {f"checklist.{k}=false" for k in Checklist.model_fields}
PATIENT = ["patient_id=P-0042", "weight_kg=70", "concentration_mg_per_ml=10"]


def write_config(path: Path, broker: BrokerProcess) -> Path:
    return write_bed_config(path, broker)


async def vigil(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Bed:
    """The test's view of the bed: commands through `vigil cmd`, state from retained topics."""

    def __init__(self, config: Path, watcher: aiomqtt.Client) -> None:
        self.config = config
        self.watcher = watcher
        self.session: dict[str, Any] = {}
        self.alarms: list[dict[str, Any]] = []

    async def cmd(self, name: str, *fields: str, user: str = "nurse-ana") -> dict[str, Any]:
        rc, out, err = await vigil(
            "cmd", "--config", str(self.config), "--user", user, "--json", name, *fields
        )
        assert rc in (0, 1), err
        result: dict[str, Any] = json.loads(out)
        assert (rc == 0) == result["ok"]
        await self.settle()
        return result

    async def say(self, name: str, *fields: str) -> tuple[int, list[str]]:
        """`vigil cmd` as a person runs it (no --json): the exit status and the lines printed."""
        rc, out, err = await vigil(
            "cmd", "--config", str(self.config), "--user", "nurse-ana", name, *fields
        )
        assert rc in (0, 1), err
        await self.settle()
        return rc, out.splitlines()

    async def settle(self) -> None:
        """Take in what the bed published until it has been quiet for a moment."""
        while True:
            try:
                async with asyncio.timeout(0.5):
                    message = await anext(aiter(self.watcher.messages))
            except TimeoutError:
                return
            assert isinstance(message.payload, bytes)
            data = json.loads(message.payload)
            if str(message.topic) == f"{PREFIX}/session":
                self.session = data
            elif str(message.topic) == f"{PREFIX}/alarms":
                self.alarms.append(data)

    async def refused(self, name: str, *fields: str, because: str) -> None:
        phase, alarms = self.session.get("phase"), len(self.alarms)
        session = self.session.get("session")
        result = await self.cmd(name, *fields)
        assert result["ok"] is False
        assert because in result["error"], result
        # changed nothing: same phase, same session, no alarm event
        assert (self.session.get("phase"), self.session.get("session")) == (phase, session)
        assert len(self.alarms) == alarms


async def vitals(client: aiomqtt.Client) -> None:
    """HR and SpO2 now: the bed has live vitals to judge a discharge by."""
    for param, value in (("HR", 72.0), ("SPO2", 98.0)):
        doc = {"t": time.time(), "param": param, "value": value, "valid": True,
               "device_id": "mon1"}  # fmt: skip
        await client.publish(TOPIC, json.dumps(doc), qos=1)


async def cuff(client: aiomqtt.Client, sys_: float, dia: float) -> None:
    t = time.time()
    for param, value in (
        ("NIBP_SYS", sys_),
        ("NIBP_DIA", dia),
        ("NIBP_MEAN", (sys_ + 2 * dia) / 3),
    ):
        doc = {"t": t, "param": param, "value": value, "valid": True, "device_id": "mon1"}
        await client.publish(TOPIC, json.dumps(doc), qos=1)


@pytest.mark.broker_incidental
@pytest.mark.timeout(120)
async def test_a_whole_session_with_every_refusal(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "bed.toml", mqtt_broker)
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="ward") as w:
            await w.subscribe(f"{PREFIX}/session", qos=1)
            await w.subscribe(f"{PREFIX}/alarms", qos=1)
            bed = Bed(config, w)
            async with asyncio.timeout(20):
                while bed.session.get("phase") != "none":
                    await bed.settle()

            await bed.refused(
                "open_session", *PATIENT[:1], "weight_kg=20", *PATIENT[2:], *NO,
                because="weight 20.0 kg is outside 30-250 kg",
            )  # fmt: skip
            contraindicated = NO - {"checklist.raised_intracranial_pressure=false"}
            await bed.refused(
                "open_session", *PATIENT, *contraindicated,
                "checklist.raised_intracranial_pressure=true",
                because="absolute contraindication: raised_intracranial_pressure",
            )  # fmt: skip
            # as a person reads it (issue 11 item 14): dose and pump rate on their own lines
            rc, lines = await bed.say("open_session", *PATIENT, *NO)
            assert rc == 0
            assert lines[0] == "open_session: accepted"
            assert "  dose: 35 mg" in lines
            assert "  pump rate: 5.25 mL/h" in lines
            assert "  course: infusion 1 of 6" in lines
            assert bed.session["phase"] == "pre"
            opened = {"session_id": bed.session["session"]["session_id"]}
            assert f"  session: {opened['session_id']}" in lines

            # two cuff readings over 140/90 in pre: the gate closes
            await cuff(w, 152, 94)
            await asyncio.sleep(1.2)
            await cuff(w, 150, 95)
            await asyncio.sleep(1.5)
            await bed.settle()
            assert any(a["code"] == "BP_PRE_GATE" and a["state"] == "active" for a in bed.alarms)
            await bed.refused("start_infusion", because="BP_PRE_GATE is active")
            override = await bed.cmd(
                "override", "what=bp_pre_gate", "reason=pain, rechecked manually", user="dr-lee"
            )
            assert override["ok"]
            started = await bed.cmd("start_infusion")
            assert started["ok"], started
            assert bed.session["phase"] == "infusion"
            assert await bed.cmd("stop_infusion")
            assert bed.session["phase"] == "post"

            await vitals(w)
            await bed.settle()
            rc, lines = await bed.say("discharge")
            assert rc == 1
            assert lines[:2] == [
                "discharge: REFUSED",
                (
                    "  reason: observation 0 min < 120 min: needs a clinician override "
                    "(override what=early_discharge)"
                ),
            ]
            await bed.refused("discharge", because="observation 0 min < 120 min")
            await bed.cmd("override", "what=early_discharge", "reason=transfer", user="dr-lee")
            discharged = await bed.cmd("discharge")
            assert discharged["ok"], discharged
            assert bed.session["phase"] == "none"
    finally:
        rc = await stop_process(daemon)
    assert rc == 0

    # the journal has the session with both overrides, who gave them and why
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        record = journal.session(opened["session_id"])
        assert record is not None
        assert record.closed_t is not None
        overrides = [(o["what"], o["user"], o["reason"]) for o in record.info["overrides"]]
        assert overrides == [
            ("bp_pre_gate", "dr-lee", "pain, rechecked manually"),
            ("early_discharge", "dr-lee", "transfer"),
        ]
        assert record.info["opened_by"] == "nurse-ana"
        # every command, refused or not, with its user
        commands = [json.loads(i.data["payload"]) for i in journal.inputs() if i.kind == "command"]
        assert len(commands) == 11  # 5 refused, 2 overrides, 4 steps
        assert {c["user"] for c in commands} == {"nurse-ana", "dr-lee"}
    finally:
        journal.close()
    out = tmp_path / "session.csv"
    code, _, err = await vigil(
        "export", opened["session_id"][:8], "--csv", "--journal", str(tmp_path / "journal.sqlite"),
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    rows = out.read_text().splitlines()
    assert rows[0] == "t,param,value"
    events = [r.split(",")[2] for r in rows if ",EVENT," in r]
    assert events == ["session_start", "infusion_start", "infusion_stop", "discharge"]
    assert sum(",NIBP_SYS," in r for r in rows) == 2
