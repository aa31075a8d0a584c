"""scripts/install into a temporary root (`--prefix`): a working non-editable Vigil, the unit, and a
config that a second run leaves alone."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install"


def run_install(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--prefix", str(prefix), "--no-systemctl"],
        capture_output=True, text=True, timeout=280, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.timeout(300)
def test_install_into_a_prefix_then_reinstall(tmp_path: Path) -> None:
    first = run_install(tmp_path)
    assert first.returncode == 0, first.stderr
    venv = tmp_path / "opt" / "vigil" / "venv"
    vigil = venv / "bin" / "vigil"
    unit = tmp_path / "etc" / "systemd" / "system" / "vigil.service"
    etc = tmp_path / "etc" / "vigil"

    assert unit.read_text() == (ROOT / "systemd" / "vigil.service").read_text()
    assert (etc / "alarms.toml").read_text() == (ROOT / "config" / "alarms.toml").read_text()
    assert mode(etc / "bed.toml") == 0o644  # read by the service's DynamicUser
    assert mode(etc / "vigil.env") == 0o600  # the broker password goes here
    assert "VIGIL_BROKER__PASSWORD" in (etc / "vigil.env").read_text()
    for step in (
        "systemctl daemon-reload",
        "systemctl enable --now vigil",
        "journalctl -u vigil -f",
        "curl -s 127.0.0.1:9464/metrics",
    ):
        assert step in first.stdout

    # Not editable: the installed package lives in the venv, not in this checkout.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import monitor; print(monitor.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv)

    help_ = subprocess.run(
        [str(vigil), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert help_.returncode == 0, help_.stderr
    assert "check-config" in help_.stdout

    check = subprocess.run(
        [str(vigil), "check-config", str(etc / "bed.toml")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    # the installed config uses the installed policy copy, not one inside the venv
    assert f"policy {etc / 'alarms.toml'}" in check.stdout

    # An edited config survives a second run; the unit is refreshed.
    edited = (etc / "bed.toml").read_text().replace('bed = "b3"', 'bed = "b7"')
    assert edited != (etc / "bed.toml").read_text()
    (etc / "bed.toml").write_text(edited)
    (etc / "alarms.toml").write_text("# site policy\n")
    (etc / "vigil.env").write_text("VIGIL_BROKER__PASSWORD=secret\n")
    unit.write_text("stale\n")

    second = run_install(tmp_path)
    assert second.returncode == 0, second.stderr
    assert (etc / "bed.toml").read_text() == edited
    assert (etc / "alarms.toml").read_text() == "# site policy\n"
    assert (etc / "vigil.env").read_text() == "VIGIL_BROKER__PASSWORD=secret\n"
    assert unit.read_text() == (ROOT / "systemd" / "vigil.service").read_text()
    assert os.access(vigil, os.X_OK)


def test_install_refuses_unknown_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(INSTALL), "--prefix", str(tmp_path), "--frobnicate"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--frobnicate" in result.stderr
    assert not (tmp_path / "opt").exists()
