"""Crash and resume: `kill -9` of a real `vigil run` mid-infusion, then a restart.

The hypertensive-surge scenario is played by the MQTT monitor simulator (which also plays the
nurse) against a real daemon process on a real broker. Once `BP_CRISIS` (high, latching) is
active, the daemon is killed with SIGKILL — no shutdown code runs — and started again on the
same journal. The restarted daemon must have the same session (id, phase, baseline, dose), the
latched alarm with its `alarm_id`, and report the gap; the journal must hold every alarm event
once, `seq` without gaps or repeats.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.mqtt.client import Client as MqttClient
from tests.helpers import BrokerProcess, stop_process, write_bed_config

PREFIX = "vigil/w1/b1"
SPEED = 250.0


def write_config(path: Path, broker: BrokerProcess, anchor: float) -> Path:
    extra = "[timeouts]\nbackoff_max_s = 1.0\n"
    return write_bed_config(path, broker, speed=SPEED, anchor=anchor, extra=extra)


async def start_daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def retained(client: aiomqtt.Client, topic: str, want: Any) -> Any:
    """The first JSON payload on `topic` for which `want(payload)` holds."""
    async with asyncio.timeout(30):
        async for message in client.messages:
            if str(message.topic) == topic:
                assert isinstance(message.payload, bytes)
                data = json.loads(message.payload)
                if want(data):
                    return data
    raise AssertionError("stream ended")


@pytest.mark.broker_incidental
@pytest.mark.timeout(150)
async def test_kill_9_mid_infusion_and_the_session_comes_back(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    anchor = time.time()
    config = write_config(tmp_path / "bed.toml", mqtt_broker, anchor)
    daemon = await start_daemon(config)
    simulator: asyncio.subprocess.Process | None = None
    again: asyncio.subprocess.Process | None = None
    try:
        async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="obs") as obs:
            await obs.subscribe(f"{PREFIX}/status", qos=1)
            await retained(obs, f"{PREFIX}/status", lambda s: s["status"] == "online")
            await obs.subscribe(f"{PREFIX}/alarms", qos=1)
            await obs.subscribe(f"{PREFIX}/session", qos=1)
            # the nurse (the simulator's --bed commands) starts once the bed listens
            simulator = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor.cli", "simulate", "mqtt-monitor",
                "--mqtt", mqtt_broker.url, "--scenario", "hypertensive-surge",
                "--speed", str(SPEED), "--anchor", str(anchor), "--bed", PREFIX, "--batch",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            crisis: dict[str, Any] | None = None
            before: dict[str, Any] = {}
            async with asyncio.timeout(60):
                async for message in obs.messages:
                    assert isinstance(message.payload, bytes)
                    data = json.loads(message.payload)
                    if str(message.topic) == f"{PREFIX}/session":
                        before = data
                    elif (data["code"], data["state"]) == ("BP_CRISIS", "active"):
                        crisis = data
                    if crisis is not None and before.get("phase") in {"infusion", "post"}:
                        break
        assert crisis is not None
        daemon.send_signal(signal.SIGKILL)
        assert await daemon.wait() == -signal.SIGKILL
        killed_at = time.time()
        await asyncio.sleep(1.0)  # the bed goes unwatched for a moment
        again = await start_daemon(config)
        async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="obs3") as obs:
            await obs.subscribe(f"{PREFIX}/alarms", qos=1)
            gap = await retained(obs, f"{PREFIX}/alarms", lambda e: e["code"] == "MONITORING_GAP")
            await obs.subscribe(f"{PREFIX}/session", qos=1)
            await obs.subscribe(f"{PREFIX}/alarms/active", qos=1)
            after = await retained(
                obs, f"{PREFIX}/session", lambda s: s["t"] > gap["t"] - 1 and s["phase"] != "none"
            )
            active: list[dict[str, Any]] = await retained(
                obs,
                f"{PREFIX}/alarms/active",
                lambda a: any(x["code"] == "MONITORING_GAP" for x in a),
            )
    finally:
        if simulator is not None:
            await stop_process(simulator)
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        if again is not None:
            await stop_process(again)

    # the same session, with its baseline and dose, in the phase the scenario is in
    assert after["session"]["session_id"] == before["session"]["session_id"]
    assert after["baseline"] == before["baseline"]
    assert after["session"]["dose_mg"] == before["session"]["dose_mg"]
    assert after["phase"] in {"infusion", "post"}
    # the latched alarm is still there, the same alarm
    by_code = {a["code"]: a for a in active}
    assert by_code["BP_CRISIS"]["alarm_id"] == crisis["alarm_id"]
    # the gap is reported with its length (simulated seconds at SPEED)
    assert gap["state"] == "active"
    assert gap["kind"] == "technical"
    assert gap["value"] >= 1.0 * SPEED * 0.8
    assert gap["t"] >= crisis["t"]
    assert killed_at > 0
    # the journal: every event once, seq 1..N without a gap
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    rows = db.execute("SELECT seq, code, state, t FROM events ORDER BY seq").fetchall()
    db.close()
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1))
    keys = [(code, state, t) for _, code, state, t in rows]
    assert len(keys) == len(set(keys)), ("an event was written twice", rows)
    assert ("BP_CRISIS", "active", crisis["t"]) in keys
