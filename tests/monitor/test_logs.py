"""Logs: one structured line per event on stdout, and no secrets in them."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.logs import setup_logging
from tests.helpers import free_port

SECRET = "s3cr3t-broker-pass"  # noqa: S105 - a value the test looks for in the output
LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 level=(debug|info|warning|error) "
)


def run_briefly(config: Path, env: dict[str, str], seconds: float) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    return proc.returncode, out.decode()


def test_password_never_appears_in_the_logs(tmp_path: Path) -> None:
    # a broker on a port nobody listens on: the ward link fails and logs its errors
    config = tmp_path / "bed.toml"
    config.write_text(
        f'[bed]\nward = "w1"\nbed = "b1"\n[broker]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
        f'username = "bed-w1-b1"\n[journal]\npath = "{tmp_path}/j.sqlite"\n'
        "[metrics]\nenabled = false\n"
    )
    env = {"PATH": "/usr/bin:/bin", "VIGIL_BROKER__PASSWORD": SECRET}
    rc, out = run_briefly(config, env, 3.0)
    assert rc == 0, out
    assert "state=backing_off" in out  # it did try, and said so
    assert SECRET not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines
    assert all(LINE.match(line) for line in lines), lines


def test_values_are_quoted_so_every_line_splits_into_its_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("vigil")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    setup_logging()
    try:
        logging.getLogger("vigil.test").warning(
            "event=device_lost device=%s connection=%s error=%r n=%d lag_s=%.1f",
            "ox",
            "port /dev/ttyUSB0",
            "ENOENT: No such file",
            3,
            0.25,
        )
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    line = capsys.readouterr().out.strip()
    fields = line.split(" ", 3)[3]  # after the time, level and logger
    assert fields == (
        'event=device_lost device=ox connection="port /dev/ttyUSB0" '
        'error="ENOENT: No such file" n=3 lag_s=0.2'
    )
    # every field reads back as key=value by logfmt's rule (a quoted value may hold spaces)
    pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', fields)
    assert [k for k, _ in pairs] == ["event", "device", "connection", "error", "n", "lag_s"]
