"""`vigil decode DEVICE FILE`: Sample JSON lines on stdout, a summary with drops on stderr."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from drivers.base import DriverStats
from drivers.intellivue.framing import encode_frame
from drivers.registry import SPECS
from drivers.spec import DeviceSpec, load
from kernel.vocabulary import NIBP_PARAMS, Step
from simulators.capture import record_capture
from simulators.scenarios import build_scenario
from tests.drivers.intellivue.test_intellivue_codec import (
    AARE,
    EXT_ROLRS,
    EXT_RORS,
    MDS_EVENT,
    UNUSED,
)
from tests.helpers import run_vigil

RAD8 = (
    b"02/15/24 14:03:22 SN=0000012345 SPO2=098% BPM=072 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)

SENSOR_OFF = b"02/15/24 14:03:23 SPO2=---% BPM=--- PI=--.--% ALARM=0000 EXC=000820\r\n"


def decode(*args: str) -> subprocess.CompletedProcess[str]:
    return run_vigil("decode", *args, env={**os.environ, "TZ": "UTC"})


def test_masimo_capture_decodes_to_sample_json_with_its_own_time(tmp_path: Path) -> None:
    capture = tmp_path / "rad8.raw"
    capture.write_bytes(RAD8 + b"\xff\xfe noise \r\n" + SENSOR_OFF)
    run = decode("masimo", str(capture), "--device-id", "ox1")
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    # 2024-02-15 14:03:22 UTC
    assert docs[:2] == [
        {"t": 1708005802.0, "param": "SPO2", "value": 98.0, "valid": True,
         "device_id": "ox1", "unit": "%", "mdc": 150456},
        {"t": 1708005802.0, "param": "PR", "value": 72.0, "valid": True,
         "device_id": "ox1", "unit": "/min", "mdc": 149530},
    ]  # fmt: skip
    assert [(d["param"], d["value"], d["valid"], d["reason"]) for d in docs[2:]] == [
        ("SPO2", None, False, "sensor_off"),
        ("PR", None, False, "sensor_off"),
    ]
    assert "2 frames, 4 samples, dropped: not_ascii 1" in run.stderr


def test_a_capture_of_something_else_exits_1_and_says_what_was_dropped(tmp_path: Path) -> None:
    capture = tmp_path / "printer.txt"
    # Rad-8's default output, ASCII 2 (printer format), is not ASCII 1
    capture.write_bytes(b"Time        SpO2 BPM\r\n14:03:22     98   72\r\n")
    run = decode("masimo", str(capture))
    assert run.returncode == 1
    assert run.stdout == ""
    assert "0 frames" in run.stderr
    assert "no_timestamp 2" in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pager", "x"], "unknown device 'pager'"),
        (["masimo", "/nonexistent/capture"], "No such file"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    run = decode(*args)
    assert run.returncode == 2
    assert message in run.stderr


T0 = 1767225600.0

# every device with a link, a decoder and a simulator: a capture made from the simulator (a LAN
# capture is a pcap file of datagrams: tests/drivers/intellivue_lan makes and decodes one)
CAPTURED = [
    s
    for s in SPECS
    if s.link and s.decode and s.simulator and s.kind != "masimo" and s.transport != "udp"
]
# ANSAR-B carries no clock, Mindray's periodic groups no time: their captures' time line is
# seconds from the first message
NO_CLOCK = {"ivy-450c", "mindray-hl7"}


@pytest.mark.parametrize("spec", CAPTURED, ids=lambda s: s.kind)
def test_a_simulated_capture_decodes_to_the_scenarios_values(
    spec: DeviceSpec, tmp_path: Path
) -> None:
    assert spec.link is not None
    assert spec.simulator is not None
    capture = record_capture(
        load(spec.link)("x", DriverStats()),
        load(spec.simulator)(),
        scenario="hypertensive-surge",
        t0=T0,
        seconds=900,
    )
    path = tmp_path / f"{spec.kind}.raw"
    # a line hit in the middle of the capture: dropped, counted, the rest decodes
    middle = len(capture) // 2
    path.write_bytes(capture[:middle] + b"\x00\x7e\x7d\xc0\xc1noise" + capture[middle:])
    run = decode(spec.kind, str(path))
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    scenario = build_scenario("hypertensive-surge", t0=T0, seed=1)
    items = [i for i in scenario if not isinstance(i, Step)]
    for param in sorted(spec.contract.params - NIBP_PARAMS):
        got = [d["value"] for d in docs if d["param"] == param.value]
        expected = [i.value for i in items if i.param is param]
        assert len(got) > 10
        it = iter(expected)
        assert all(any(g == e for e in it) for g in got), param
    if spec.contract.params >= NIBP_PARAMS:
        # the two baseline determinations of the first 15 minutes, once each
        sys_values = [d["value"] for d in docs if d["param"] == "NIBP_SYS"]
        expected_sys = [i.value for i in items if i.param.value == "NIBP_SYS" and i.t < T0 + 900]
        assert sys_values == expected_sys
    if spec.kind in NO_CLOCK:
        assert all(0 <= d["t"] < 900 for d in docs)
    else:
        assert all(T0 <= d["t"] < T0 + 900 for d in docs)
    assert "dropped: none" not in run.stderr


def test_an_intellivue_capture_names_every_message_it_did_not_use(tmp_path: Path) -> None:
    capture = tmp_path / "mp70.raw"
    messages = (AARE, MDS_EVENT, EXT_ROLRS, *UNUSED, *UNUSED[:2], EXT_RORS)
    capture.write_bytes(b"".join(encode_frame(m) for m in messages))
    run = decode("intellivue", str(capture))
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["param"] for line in run.stdout.splitlines()] == [
        "HR", "SPO2", "HR", "SPO2",
    ]  # fmt: skip
    assert run.stderr.endswith(
        "11 frames, 4 samples, dropped: remote_error 0x0009 1, unknown_object_class 0x0009 2, "
        "unsupported_action 0x0C17 2, unsupported_command 0x0003 1, unsupported_event 0x0D17 1\n"
    ), run.stderr


def test_the_handwritten_nellcor_printout(tmp_path: Path) -> None:
    run = decode(
        "nellcor", str(Path(__file__).parents[1] / "data" / "devices" / "nellcor_n595.txt")
    )
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    # 22-NOV-97 14:00:05 UTC (TZ=UTC), SpO2 100 and PR 120
    assert docs[0] == {
        "t": 880207205.0, "param": "SPO2", "value": 100.0, "valid": True,
        "device_id": "nellcor", "unit": "%", "mdc": 150456,
    }  # fmt: skip
    assert [(d["param"], d["reason"]) for d in docs if not d["valid"]] == [
        ("SPO2", "sensor_off"), ("PR", "sensor_off"),
        ("SPO2", "interference"), ("PR", "interference"),
    ]  # fmt: skip
    assert "10 frames, 14 samples, dropped: none" in run.stderr


def test_a_handwritten_ivy_message(tmp_path: Path) -> None:
    # docs/devices.md §2.5: FF "ANSAR-B " 400 waveform bytes, CR-ended lines, FE; the capture
    # begins in the middle of a message, which is dropped
    message = (
        b"\xffANSAR-B " + bytes(400)
        + b"HR=1;80;ECG-II-DIAG;\rSPO2=1;100;PR=80 ;\rNIBP=4;120;80;93;72;NIBP;0;\r\xfe"
    )  # fmt: skip
    path = tmp_path / "ivy.raw"
    path.write_bytes(message[250:] + message)
    run = decode("ivy-450c", str(path))
    assert run.returncode == 0, run.stderr
    docs = [(d["param"], d["value"], d["t"]) for d in map(json.loads, run.stdout.splitlines())]
    assert docs == [
        ("HR", 80.0, 0.0), ("SPO2", 100.0, 0.0), ("PR", 80.0, 0.0),
        ("NIBP_SYS", 120.0, 0.0), ("NIBP_DIA", 80.0, 0.0), ("NIBP_MEAN", 93.0, 0.0),
    ]  # fmt: skip
    assert "1 frames, 6 samples, dropped: partial 1" in run.stderr
