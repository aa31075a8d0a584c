"""`vigil cmd`: building commands from KEY=VALUE fields, and its exit statuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from drivers.mqtt.client import Client as MqttClient
from kernel.vocabulary import ABSOLUTE_CONTRAINDICATIONS, RELATIVE_CONTRAINDICATIONS
from monitor.commands import (
    OVERRIDE_MEANINGS,
    Checklist,
    OpenSession,
    OverrideWhat,
    parse_command,
)
from monitor.remote import build_command, format_result
from tests.helpers import BrokerImplementation, BrokerProcess, free_port, mosquitto_path, run_vigil


def test_fields_are_json_when_they_parse_and_dotted_keys_nest() -> None:
    fields = [
        "patient_id=P-7",
        "weight_kg=70",
        "concentration_mg_per_ml=10.0",
        *(f"checklist.{k}=false" for k in Checklist.model_fields),
    ]
    command = build_command("open_session", fields, user="nurse-ana")
    assert command["weight_kg"] == 70
    assert command["checklist"]["pregnancy"] is False
    assert command["user"] == "nurse-ana"
    assert len(command["request_id"]) == 32
    # what the daemon will accept
    parsed = parse_command(json.dumps(command).encode())
    assert isinstance(parsed, OpenSession)


def test_text_stays_text() -> None:
    command = build_command("override", ["what=bp_pre_gate", "reason=pain, rechecked"], user="dr")
    assert command["reason"] == "pain, rechecked"


@pytest.mark.parametrize(
    ("fields", "message"),
    [(["weight_kg"], "is not KEY=VALUE"), (["a=1", "a.b=2"], "'a' already has a value")],
)
def test_bad_fields_are_refused(fields: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_command("x", fields, user="u")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_vigil("cmd", *argv, timeout=30)


async def cmd_async(*argv: str) -> tuple[int | None, bytes, bytes]:
    """`vigil cmd ARGV` in a child process, awaited: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "cmd", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode, out, err


def test_no_bed_named_is_a_usage_error() -> None:
    out = run("discharge")
    assert out.returncode == 2
    assert "give --config FILE, or --broker URL and --bed PREFIX" in out.stderr


def test_no_answer_exits_2_with_the_reason(mqtt_broker_url: str) -> None:
    # a broker, but no daemon watching bed w1/b9
    out = run("--broker", mqtt_broker_url, "--bed", "vigil/w1/b9", "--timeout", "1", "discharge")
    assert out.returncode == 2
    assert "no answer from vigil/w1/b9 within 1 s" in out.stderr


def test_an_unreachable_broker_exits_2() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    out = run("--broker", url, "--bed", "vigil/w1/b1", "--timeout", "5", "discharge")
    assert out.returncode == 2
    assert "broker 127.0.0.1" in out.stderr


# ---------------------------------------------------------------- issue 11 item 14: for a person

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_an_accepted_open_session_reads_line_by_line() -> None:
    result = {
        "request_id": "r1",
        "ok": True,
        "session_id": "4f2c9a",
        "dose_mg": 35.0,
        "rate_ml_per_h": 5.25,
        "course": {
            "infusion_number": 2,
            "of": 6,
            "course_start_t": T,
            "flags": ["4 infusions within 7 days (the course has 3)"],
            "maintenance_plan_due": False,
            "response": {"PCL-5": {"baseline": 60.0, "latest": 39.0, "fall": 0.35,
                                   "responder": True}},
        },
    }  # fmt: skip
    assert format_result("open_session", result, tz=IST).splitlines() == [
        "open_session: accepted",
        "  session: 4f2c9a",
        "  dose: 35 mg",
        "  pump rate: 5.25 mL/h",
        "  course: infusion 2 of 6",
        "  course flag: 4 infusions within 7 days (the course has 3)",
        "  response PCL-5: 60 -> 39 (35% fall), responder",
    ]


def test_times_are_iso_8601_with_the_offset() -> None:
    result = {"request_id": "r", "ok": True, "audio_paused_until": T + 120.5}
    assert format_result("audio_pause", result, tz=IST).splitlines() == [
        "audio_pause: accepted",
        "  audio paused until: 2026-01-01T05:32:00+05:30",
    ]


def test_an_accepted_override_says_who_why_when_and_for_what() -> None:
    override = {
        "what": "bp_pre_gate",
        "reason": "rechecked",
        "user": "dr.lee",
        "t": T,
        "overrode": "BP_PRE_GATE active",
        "let_through": None,
        "let_through_t": None,
    }
    result = {"request_id": "r", "ok": True, "override": override}
    assert format_result("override", result, tz=dt.UTC).splitlines() == [
        "override: accepted",
        "  override: bp_pre_gate by dr.lee at 2026-01-01T00:00:00+00:00",
        "  reason: rechecked",
        "  given for: BP_PRE_GATE active",
    ]


def test_a_refusal_gives_its_reason() -> None:
    result = {"request_id": "r", "ok": False, "error": "BP_PRE_GATE is active"}
    assert format_result("start_infusion", result) == (
        "start_infusion: REFUSED\n  reason: BP_PRE_GATE is active"
    )


# ---------------------------------------------------------------- issue 11 item 7: the checklist


def test_help_lists_every_checklist_item_with_its_meaning() -> None:
    out = run("--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # the help wraps its lines
    for name, info in Checklist.model_fields.items():
        assert f"checklist.{name}=true|false {info.description}" in text
    # what the items mean, in words a nurse reads (not only the field names)
    assert "absolute: raised pressure inside the skull; the session cannot open" in text
    assert "relative: the patient is pregnant" in text
    for what, meaning in OVERRIDE_MEANINGS.items():
        assert f"what={what} {meaning}" in text
    assert "ack code=CODE" in text


def test_every_override_and_checklist_item_has_a_meaning() -> None:
    assert set(OVERRIDE_MEANINGS) == set(get_args(OverrideWhat))
    for name, info in Checklist.model_fields.items():
        assert info.description, name
        kind = info.description.split(":", 1)[0]
        expected = (
            "absolute"
            if name in ABSOLUTE_CONTRAINDICATIONS
            else "relative"
            if name in RELATIVE_CONTRAINDICATIONS
            else "not a contraindication"
        )
        assert kind == expected, name


def test_the_readme_names_every_checklist_item_and_override() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for name in Checklist.model_fields:
        assert f"`{name}`" in readme, name
    for what in OVERRIDE_MEANINGS:
        assert f"`{what}`" in readme, what


# Both brokers the README names, whatever VIGIL_TEST_BROKER says: mosquitto (MQTT 5 and 3.1.1)
# where installed, and the embedded amqtt broker (3.1.1 only) everywhere.
BROKERS: list[BrokerImplementation] = (
    ["mosquitto", "amqtt"] if mosquitto_path() is not None else ["amqtt"]
)


async def _answer_one_command(
    broker: BrokerProcess, ready: asyncio.Event, prefix: str = "vigil/w1/b1", noise: bool = False
) -> dict[str, Any]:
    """Play the bed at `prefix`: answer the first command on its cmd topic; return it.

    With `noise`, a payload that is no command result goes to the result topic first.
    """
    async with MqttClient(broker.host, broker.port, identifier="bed-b1") as bed:
        await bed.subscribe(f"{prefix}/cmd", qos=1)
        ready.set()
        async with asyncio.timeout(20):
            async for message in bed.messages:
                command: dict[str, Any] = json.loads(message.payload)
                if noise:
                    await bed.publish(f"{prefix}/cmd/result", b"{not json", qos=1)
                result = {"request_id": command["request_id"], "ok": True, "result": {}}
                await bed.publish(f"{prefix}/cmd/result", json.dumps(result), qos=1)
                return command
    raise AssertionError("message stream ended")


@pytest.mark.parametrize("implementation", BROKERS)
@pytest.mark.parametrize("version", [[], ["--mqtt-version", "auto"], ["--mqtt-version", "3.1.1"]])
async def test_cmd_reaches_either_broker(
    tmp_path: Path, implementation: BrokerImplementation, version: list[str]
) -> None:
    with BrokerProcess(tmp_path / "broker", implementation=implementation) as broker:
        ready = asyncio.Event()
        bed = asyncio.create_task(_answer_one_command(broker, ready))
        await ready.wait()
        status, out, err = await cmd_async(
            "--broker", broker.url, "--bed", "vigil/w1/b1", "--timeout", "10", "--json",
            *version, "discharge",
        )  # fmt: skip
        command = await bed
    assert status == 0, err.decode()
    assert command["cmd"] == "discharge"
    assert command["request_id"] in out.decode()


async def test_cmd_goes_to_a_bed_under_any_topic_root(mqtt_broker: BrokerProcess) -> None:
    # a site whose beds live under `hospital/icu` rather than `vigil`: `--bed` is the whole
    # prefix, and the command and its answer travel under it; garbage on the result topic
    # before the answer is reported and waited past
    prefix = "hospital/icu/w1/b1"
    ready = asyncio.Event()
    bed = asyncio.create_task(_answer_one_command(mqtt_broker, ready, prefix, noise=True))
    await ready.wait()
    status, out, err = await cmd_async(
        "--broker", mqtt_broker.url, "--bed", prefix, "--timeout", "10", "--json", "discharge"
    )
    command = await bed
    assert status == 0, err.decode()
    assert command["cmd"] == "discharge"
    assert json.loads(out) == {"request_id": command["request_id"], "ok": True, "result": {}}
    assert f"ignored a message on {prefix}/cmd/result that is not a command result" in err.decode()


def test_mqtt5_only_at_the_embedded_broker_is_refused_with_the_reason(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "broker", implementation="amqtt") as broker:
        out = run(
            "--broker", broker.url, "--bed", "vigil/w1/b1", "--timeout", "5",
            "--mqtt-version", "5", "discharge",
        )  # fmt: skip
    assert out.returncode == 2
    assert f"broker 127.0.0.1:{broker.port}: [code:132] Unsupported protocol version" in out.stderr
    assert "the broker does not speak MQTT 5: try --mqtt-version auto" in out.stderr
    assert "Traceback" not in out.stderr


async def test_cmd_and_its_result_under_a_configured_root(
    tmp_path: Path, mqtt_broker_url: str
) -> None:
    # `[broker] prefix` with a root of two levels (docs/ARCHITECTURE.md "MQTT"): the command goes
    # to that bed's cmd topic and the answer is read from its cmd/result, nothing under `vigil/`
    host, port = mqtt_broker_url.removeprefix("mqtt://").rsplit(":", 1)
    config = tmp_path / "bed.toml"
    config.write_text(
        f'[bed]\nward = "w2"\nbed = "b7"\n[broker]\nurl = "{mqtt_broker_url}"\n'
        'prefix = "site/north/w2/b7"\n'
    )
    seen: list[str] = []
    ready = asyncio.Event()

    async def bed() -> dict[str, Any]:
        async with MqttClient(host, int(port), identifier="bed-b7") as client:
            await client.subscribe("#", qos=1)
            ready.set()
            async with asyncio.timeout(20):
                async for message in client.messages:
                    seen.append(str(message.topic))
                    if str(message.topic) != "site/north/w2/b7/cmd":
                        continue
                    assert isinstance(message.payload, bytes)
                    command: dict[str, Any] = json.loads(message.payload)
                    result = {"request_id": command["request_id"], "ok": True, "dose_mg": 35.0}
                    await client.publish("site/north/w2/b7/cmd/result", json.dumps(result), qos=1)
                    return command
        raise AssertionError("message stream ended")

    answering = asyncio.create_task(bed())
    await ready.wait()
    status, out, err = await cmd_async("--config", str(config), "--timeout", "10", "discharge")
    command = await answering
    assert status == 0, err.decode()
    assert command["cmd"] == "discharge"
    assert out.decode().splitlines() == ["discharge: accepted", "  dose: 35 mg"]
    assert not [t for t in seen if t.startswith("vigil/")]
