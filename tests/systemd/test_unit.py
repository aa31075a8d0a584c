"""systemd/vigil.service: `systemd-analyze verify` is clean, the exposure rating is 2.0 or lower,
its paths agree with the shipped config, and Vigil runs under its MemoryDenyWriteExecute=.

`systemd-analyze` (Debian package `systemd`) must be installed: these tests fail, never skip,
without it. None of them needs systemd to be running.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from drivers.mqtt.client import Client as MqttClient
from tests.helpers import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "vigil.service"
VIGIL = Path(sys.executable).parent / "vigil"
MAX_EXPOSURE = 2.0

# Runs argv[1:] with the kernel's MDWE set (Linux >= 6.3): what MemoryDenyWriteExecute= enforces
# with seccomp. It is inherited across execve, so the program never gets memory that is both
# writable and executable, nor makes writable memory executable.
MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed (needs Linux >= 6.3): " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""

# Asks for an anonymous read+write+exec mapping; prints the errno (0: granted).
RWX_MMAP = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
p = libc.mmap(None, 4096, 7, 0x22, -1, 0)   # PROT_READ|WRITE|EXEC, MAP_PRIVATE|ANONYMOUS
print(0 if p not in (None, ctypes.c_void_p(-1).value) else ctypes.get_errno())
"""


@pytest.fixture
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is not installed; install the Debian package `systemd` "
            "(apt-get install systemd). CI must install it too.",
            pytrace=False,
        )
    return found


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> every value given, in order (systemd allows repeated keys)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def verify(systemd_analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def with_exec_start(tmp_path: Path, text: str, binary: Path) -> Path:
    """A copy of the unit whose ExecStart runs `binary` (verify wants an existing executable)."""
    copy = tmp_path / "vigil.service"
    copy.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", text, count=1, flags=re.MULTILINE)
    )
    return copy


def test_verify_is_clean(systemd_analyze: str, tmp_path: Path) -> None:
    unit = with_exec_start(tmp_path, UNIT.read_text(), VIGIL)
    assert f"ExecStart={VIGIL} run --config /etc/vigil/bed.toml" in unit.read_text()
    result = verify(systemd_analyze, unit)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_would_report_a_broken_unit(systemd_analyze: str, tmp_path: Path) -> None:
    # The check above can fail: a misspelt directive is reported.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = verify(systemd_analyze, with_exec_start(tmp_path, broken, VIGIL))
    assert "ProtectSytem" in result.stderr


def test_security_exposure_is_at_most_2(systemd_analyze: str) -> None:
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for vigil\.service: (\d+(?:\.\d+)?)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_unit_is_a_notify_service_with_watchdog_and_serial_ports() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Service.Type"] == ["notify"]
    assert s["Service.NotifyAccess"] == ["main"]
    assert s["Service.WatchdogSec"] == ["10s"]
    assert s["Service.Restart"] == ["always"]
    assert s["Service.ExecStart"] == ["/opt/vigil/venv/bin/vigil run --config /etc/vigil/bed.toml"]
    assert s["Service.SupplementaryGroups"] == ["dialout"]
    assert s["Service.DevicePolicy"] == ["closed"]
    assert sorted(s["Service.DeviceAllow"]) == [
        "char-ttyACM rw", "char-ttyS rw", "char-ttyUSB rw",
    ]  # fmt: skip
    # A private /dev has no physical devices: it would hide the serial ports.
    assert s.get("Service.PrivateDevices", ["no"]) == ["no"]
    assert s["Service.MemoryDenyWriteExecute"] == ["yes"]
    assert s["Install.WantedBy"] == ["multi-user.target"]


def test_unit_paths_match_the_example_config() -> None:
    s = unit_settings(UNIT.read_text())
    example = tomllib.loads((ROOT / "config" / "bed.example.toml").read_text())
    (state_dir,) = s["Service.StateDirectory"]
    (config_dir,) = s["Service.ConfigurationDirectory"]
    assert Path(example["journal"]["path"]).parent == Path("/var/lib") / state_dir
    config_arg = s["Service.ExecStart"][0].split("--config", 1)[1].split()[0]
    assert Path(config_arg).parent == Path("/etc") / config_dir
    assert s["Service.EnvironmentFile"] == [f"-/etc/{config_dir}/vigil.env"]


def test_rwx_memory_is_refused_under_mdwe() -> None:
    # The premise of the next tests: in this setup W^X is really enforced.
    result = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, sys.executable, "-c", RWX_MMAP],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() not in ("", "0"), "an RWX mapping was granted under MDWE"


def test_replay_under_mdwe_gives_the_expected_events() -> None:
    # numpy (the alarm engine), pydantic-core and CPython need no writable+executable memory.
    recording = ROOT / "config" / "recordings" / "hypertensive-surge.csv"
    expected = recording.with_name("hypertensive-surge.expected.jsonl").read_text()
    result = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, str(VIGIL), "replay", str(recording)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.timeout(90)
async def test_daemon_under_mdwe_goes_online_and_stops_cleanly(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    protocol = "5" if mqtt_broker.implementation == "mosquitto" else "3.1.1"
    config = tmp_path / "bed.toml"
    config.write_text(
        f"""
[bed]
ward = "w1"
bed = "b9"
[broker]
url = "{mqtt_broker.url}"
protocol = "{protocol}"
[journal]
path = "{tmp_path / "journal.sqlite"}"
[metrics]
enabled = false
[[drivers]]
kind = "mqtt"
device_id = "mon1"
topic = "monitors/mon1/samples"
"""
    )
    statuses: list[str] = []
    async with MqttClient(mqtt_broker.host, mqtt_broker.port, identifier="mdwe-obs") as obs:
        await obs.subscribe("vigil/w1/b9/status", qos=1)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-c", MDWE_EXEC, str(VIGIL), "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

        async def until_status(wanted: str) -> None:
            async with asyncio.timeout(30):
                async for message in obs.messages:
                    assert isinstance(message.payload, bytes)
                    statuses.append(json.loads(message.payload)["status"])
                    if statuses[-1] == wanted:
                        return

        try:
            await until_status("online")
            daemon.send_signal(signal.SIGTERM)
            await until_status("offline")
        finally:
            try:
                async with asyncio.timeout(15):
                    rc = await daemon.wait()
            except TimeoutError:
                daemon.kill()
                rc = await daemon.wait()
    output = (await daemon.stdout.read()).decode() if daemon.stdout else ""
    assert rc == 0, output
    assert statuses[0] == "online", output
    assert statuses[-1] == "offline", output
