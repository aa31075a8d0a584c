"""Fixtures of the daemon's tests under systemd's notify protocol (test_sdnotify, test_watchdog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.helpers import NotifyReceiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[NotifyReceiver]:
    """What systemd holds: a datagram socket at a NOTIFY_SOCKET path, closed afterwards."""
    r = NotifyReceiver(str(tmp_path / "notify"))
    yield r
    r.close()
