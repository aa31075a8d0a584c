"""The ward link's log names the broker it talks to (host:port), and never its credentials."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import RealClock
from monitor.outbox import Outbox
from monitor.settings import Settings
from monitor.supervisor import LinkState
from monitor.ward import WardLink
from tests.helpers import BrokerProcess, free_port

PASSWORD = "s3cret-pw"  # noqa: S105 - a test broker password that must not reach the log


def settings_for(url: str, tmp_path: Path, **broker: Any) -> Settings:
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b1"},
            "broker": {"url": url, **broker},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "timeouts": {"backoff_max_s": 0.2},
        }
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, tmp_path: Path) -> AsyncIterator[WardLink]:
    outbox = Outbox(tmp_path / "journal.sqlite")
    ward = WardLink(
        settings,
        clock=RealClock(),
        on_command=lambda _payload, _principal: {},
        state=lambda: ([], {}),
        birth={"ward": "w1", "bed": "b1"},
        outbox=outbox,
    )
    task = asyncio.create_task(ward.run())
    try:
        yield ward
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        outbox.close()


async def until_state(ward: WardLink, state: LinkState, *, reconnects: int = 0) -> None:
    async with asyncio.timeout(10):
        while ward.status.state is not state or ward.status.reconnects < reconnects:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


async def test_a_broker_out_of_reach_is_named_once_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = settings_for(
        f"mqtt://127.0.0.1:{port}", tmp_path, username="bed1", password=PASSWORD
    )
    caplog.set_level(logging.INFO)
    async with running(settings, tmp_path) as ward:
        await until_state(ward, LinkState.BACKING_OFF, reconnects=3)
    lost = [line for line in lines(caplog) if "event=ward_link_lost" in line]
    assert len(lost) == 1, lost  # three failed attempts, one outage
    assert f"broker=127.0.0.1:{port}" in lost[0]
    assert "Connection refused" in lost[0]
    assert not [line for line in lines(caplog) if PASSWORD in line or "bed1" in line]


async def test_the_connection_line_names_host_and_port(
    mqtt_broker: BrokerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    protocol = "5" if mqtt_broker.implementation == "mosquitto" else "3.1.1"
    settings = settings_for(mqtt_broker.url, tmp_path, protocol=protocol)
    caplog.set_level(logging.INFO)
    async with running(settings, tmp_path) as ward:
        await until_state(ward, LinkState.CONNECTED)
        async with asyncio.timeout(10):
            while not [line for line in lines(caplog) if "event=ward_connected" in line]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    [connected] = [line for line in lines(caplog) if "event=ward_connected" in line]
    assert f"broker={mqtt_broker.host}:{mqtt_broker.port} " in connected
