"""`vigil check-config FILE` run for real (docs/ARCHITECTURE.md "CLI"): located errors, exit 1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel.configfile import ConfigError
from monitor.session import load_bed_policy
from tests.helpers import run_vigil

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "bed.example.toml"
BED = '[bed]\nward = "w1"\nbed = "b3"\n'
MQTT_DRIVER = '[[drivers]]\nkind = "mqtt"\ndevice_id = "mon1"\ntopic = "monitors/mon1/samples"\n'


@dataclass
class Run:
    code: int
    out: str
    err: str


def check_config(path: Path, cwd: Path) -> Run:
    # VIGIL_* variables of the test environment must not leak into the config under test
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    proc = run_vigil("check-config", path, cwd=cwd, env=env)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def write(folder: Path, text: str, name: str = "bed.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def located(err: str, path: Path, key: str) -> list[str]:
    """Lines of `err` that name `path` and the dotted `key`."""
    return [line for line in err.splitlines() if line.startswith(f"{path}: {key}: ")]


def test_example_is_ok(tmp_path: Path) -> None:
    run = check_config(EXAMPLE, cwd=tmp_path)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{EXAMPLE}: ok")
    assert run.err == ""


def test_bad_file_gives_located_lines_and_exit_1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        BED
        + "colour = 'red'\n"
        + "[broker]\nurl = 'http://broker:1883'\nkeepalive_s = 'twenty'\n"
        + MQTT_DRIVER
        + '[[drivers]]\nkind = "philips"\ndevice_id = "mp50"\n',
    )
    run = check_config(path, cwd=tmp_path)
    assert run.code == 1
    assert run.out == ""
    for key in ("bed.colour", "broker.url", "broker.keepalive_s", "drivers[1].kind"):
        assert located(run.err, path, key), f"no line for {key}:\n{run.err}"
    assert "philips" in located(run.err, path, "drivers[1].kind")[0]
    assert "Traceback" not in run.err


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    run = check_config(path, cwd=tmp_path)
    assert run.code == 1
    assert any(line.startswith(f"{path}: ") for line in run.err.splitlines())
    assert "Traceback" not in run.err


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, BED + "[broker\n")
    run = check_config(path, cwd=tmp_path)
    assert run.code == 1
    assert any(line.startswith(f"{path}: ") for line in run.err.splitlines())
    assert "Traceback" not in run.err


def test_broken_policy_file_reports_the_policy_problems(tmp_path: Path) -> None:
    policy = write(
        tmp_path,
        "[general]\nrun_gap_s = -1.0\ncolour = 1\n"
        '[[continuous]]\ncode = "DESAT"\npriority = "urgent"\nsignal = "SPO2"\nop = "<"\n'
        "limit = 92.0\ndelay_s = 15.0\nlatching = false\nphases = ['infusion']\n",
        name="alarms.toml",
    )
    path = write(tmp_path, BED + MQTT_DRIVER + '[alarms]\npolicy = "alarms.toml"\n')
    run = check_config(path, cwd=tmp_path.parent)
    assert run.code == 1
    for key in ("general.run_gap_s", "general.colour", "continuous[0].priority"):
        assert located(run.err, policy, key), f"no line for {key}:\n{run.err}"
    assert not located(run.err, path, "alarms.policy")


def test_missing_policy_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, BED + '[alarms]\npolicy = "no-such-policy.toml"\n')
    run = check_config(path, cwd=tmp_path)
    assert run.code == 1
    assert str(tmp_path / "no-such-policy.toml") in run.err


def test_policy_toml_syntax_error_is_reported(tmp_path: Path) -> None:
    policy = write(tmp_path, "[general\n", name="alarms.toml")
    path = write(tmp_path, BED + '[alarms]\npolicy = "alarms.toml"\n')
    run = check_config(path, cwd=tmp_path)
    assert run.code == 1
    assert any(line.startswith(f"{policy}: ") for line in run.err.splitlines())


def serial_driver(port: str, kind: str = "masimo", device_id: str = "spo2") -> str:
    return f'[[drivers]]\nkind = "{kind}"\ndevice_id = "{device_id}"\nport = "{port}"\n'


def test_a_serial_port_that_does_not_exist_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    absent = tmp_path / "ttyUSB9"
    path = write(tmp_path, BED + serial_driver(str(absent)))
    run = check_config(path, cwd=tmp_path)
    assert run.code == 0, run.err  # the adapter may be plugged in later
    [warning] = located(run.err, path, "drivers[0].port")
    assert "warning" in warning
    assert str(absent) in warning
    assert "does not exist" in warning
    assert run.out.startswith(f"{path}: ok")
    assert "1 warning" in run.out


def test_serial_ports_that_exist_or_are_urls_give_no_warning(tmp_path: Path) -> None:
    present = tmp_path / "ttyUSB0"
    present.touch()
    path = write(
        tmp_path,
        BED
        + serial_driver(str(present))
        + serial_driver("socket://10.0.0.9:4001", kind="ge-s5", device_id="s5")
        + serial_driver("rfc2217://10.0.0.9:4002", kind="intellivue", device_id="mp50"),
    )
    run = check_config(path, cwd=tmp_path)
    assert (run.code, run.err) == (0, "")
    assert "warning" not in run.out


SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "config" / "alarms.toml"


def test_a_policy_without_the_infusion_gate_is_refused(tmp_path: Path) -> None:
    # docs/PROTOCOL.md step 2: BP_PRE_GATE gates start_infusion; renaming it in the policy file
    # must not silently remove the gate
    text = SHIPPED_POLICY.read_text(encoding="utf-8")
    assert text.count('code = "BP_PRE_GATE"') == 1
    policy = write(
        tmp_path, text.replace('code = "BP_PRE_GATE"', 'code = "BP_PRE_CHECK"'), "alarms.toml"
    )
    path = write(tmp_path, BED + MQTT_DRIVER + '[alarms]\npolicy = "alarms.toml"\n')
    run = check_config(path, cwd=tmp_path.parent)
    assert run.code == 1
    lines = located(run.err, policy, "determination")
    assert len(lines) == 1, run.err
    assert "BP_PRE_GATE" in lines[0]
    assert "start_infusion" in lines[0]


def test_a_protocol_code_in_the_wrong_kind_of_rule_is_located(tmp_path: Path) -> None:
    # HR_NO_DATA is the no-data alarm a discharge waits on (docs/PROTOCOL.md step 5); as a
    # continuous rule it would never say that HR is missing
    text = SHIPPED_POLICY.read_text(encoding="utf-8")
    text = text.replace('code = "HR_NO_DATA"', 'code = "HR_NO_DATA_OLD"')
    text += (
        '\n[[continuous]]\ncode = "HR_NO_DATA"\npriority = "low"\nsignal = "HR"\nop = "<"\n'
        "limit = 25.0\ndelay_s = 10.0\nlatching = false\nphases = ['infusion']\n"
    )
    policy = write(tmp_path, text, "alarms.toml")
    with pytest.raises(ConfigError) as err:
        load_bed_policy(policy)
    (problem,) = err.value.problems
    assert problem.file == str(policy)
    assert problem.key.startswith("continuous[")
    assert problem.key.endswith("].code")
    assert "[[no_data]]" in problem.reason
