"""`vigil cmd`: building commands from KEY=VALUE fields, and its exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.commands import Checklist, OpenSession, parse_command
from monitor.remote import build_command
from tests.helpers import free_port


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
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", "cmd", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


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
