"""The daemon acquires its resources in `__aenter__` and leaves none open (docs/DESIGN.md P7).

Observed from the operating system: the file descriptors of this process that point at the
journal's SQLite file (its -wal and -shm too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alarms.policy import load_policy
from monitor.daemon import Daemon
from monitor.settings import Settings
from tests.helpers import bed_settings, free_port


def settings_for(tmp_path: Path, drivers: list[dict[str, str]]) -> Settings:
    # nobody listens there: the ward link only backs off
    url = f"mqtt://127.0.0.1:{free_port()}"
    return bed_settings(url, tmp_path, broker={"protocol": "3.1.1"}, drivers=drivers)


def open_on(folder: Path) -> list[str]:
    """What this process has open in `folder`, by /proc/self/fd."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue  # the directory's own descriptor, closed by now
        if target.is_relative_to(folder):
            found.append(str(target))
    return found


async def test_nothing_is_opened_before_the_block_and_nothing_stays_open_after(
    tmp_path: Path,
) -> None:
    mqtt = [{"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}]
    daemon = Daemon(settings_for(tmp_path, mqtt), load_policy())
    assert open_on(tmp_path) == []
    assert not (tmp_path / "journal.sqlite").exists()
    async with daemon:
        assert open_on(tmp_path) != []
    assert open_on(tmp_path) == []


async def test_a_driver_that_cannot_be_created_leaves_nothing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a dependency missing from this installation (`vigil check-config` names it too): the
    # serial drivers' module cannot be imported
    monkeypatch.setitem(sys.modules, "serial_asyncio_fast", None)
    for name in ("drivers.serialport", "drivers.masimo.driver"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    masimo = [{"kind": "masimo", "device_id": "ox", "port": "/dev/ttyUSB0"}]
    daemon = Daemon(settings_for(tmp_path, masimo), load_policy())
    with pytest.raises(ImportError):
        async with daemon:
            pytest.fail("the daemon started without its driver")
    assert open_on(tmp_path) == []
