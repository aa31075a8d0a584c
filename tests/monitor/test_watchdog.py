"""The daemon under systemd's notify protocol, observed on a real NOTIFY_SOCKET.

READY=1 after the first processed tick, STATUS= on changes (at most once a second), WATCHDOG=1
only while the alarm core ticks, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from alarms.policy import load_policy
from monitor.daemon import WATCHDOG_MARGIN_S, Daemon
from monitor.sdnotify import SdNotifier
from monitor.settings import Settings
from tests.helpers import NotifyReceiver, bed_settings, open_session_command

WATCHDOG_USEC = 500_000
W = WATCHDOG_USEC / 1e6
INTERVAL = W / 2
# the daemon's staleness limit for the real clock (one tick a second)
LIMIT = INTERVAL + 1.0 + WATCHDOG_MARGIN_S


@pytest.fixture
def closed_port_url() -> str:
    """A broker URL nobody listens on: the ward link just backs off."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"mqtt://127.0.0.1:{port}"


def settings_for(url: str, tmp_path: Path) -> Settings:
    return bed_settings(url, tmp_path, timeouts={"backoff_max_s": 1.0}, drivers=[])


async def collect(receiver: NotifyReceiver, seconds: float) -> list[tuple[float, list[str]]]:
    """Every notification in the next `seconds`, with its arrival time (monotonic)."""
    got = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            lines = await receiver.next(left)
        except TimeoutError:
            break
        got.append((time.monotonic(), lines))
    return got


def pings(got: list[tuple[float, list[str]]]) -> list[float]:
    return [t for t, lines in got if "WATCHDOG=1" in lines]


def max_gap(times: list[float], start: float) -> float:
    return max(b - a for a, b in itertools.pairwise([start, *times]))


async def _cancel_tick_task(daemon: Daemon) -> Callable[[], None] | None:
    (ticks,) = [t for t in asyncio.all_tasks() if t.get_name() == "bed.ticks"]
    ticks.cancel()
    return None  # the tick task is gone for good


async def _wedge_bed_loop(daemon: Daemon) -> Callable[[], None] | None:
    # The bed loop parks on its wake event; swapping the event leaves it waiting on one that
    # nothing sets any more, while the tick task (and everything else) keeps running. If the
    # old event was already set (a tick had just been signalled), the loop wakes once and
    # parks on the new one: swap again.
    for _ in range(10):
        wake = daemon.bed._wake
        daemon.bed._wake = asyncio.Event()
        await asyncio.sleep(0.05)
        if not wake.is_set():

            def release(wake: asyncio.Event = wake) -> None:
                daemon.bed._wake = wake
                wake.set()

            return release
    raise AssertionError("could not park the bed loop")


@pytest.mark.broker_incidental
@pytest.mark.parametrize("stall", [_cancel_tick_task, _wedge_bed_loop], ids=["ticks", "loop"])
async def test_watchdog_pings_only_while_the_core_ticks(
    closed_port_url: str,
    tmp_path: Path,
    receiver: NotifyReceiver,
    stall: Callable[[Daemon], Awaitable[Callable[[], None] | None]],
) -> None:
    notifier = SdNotifier.from_env(
        {"NOTIFY_SOCKET": receiver.env_address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    )
    settings = settings_for(closed_port_url, tmp_path)
    async with Daemon(settings, load_policy(), notifier=notifier) as daemon:
        first = await receiver.next(5.0)
        assert first[0] == "READY=1"
        assert daemon.bed.last_tick_monotonic is not None  # ready means the core has ticked
        assert first[1].startswith("STATUS=phase=none ward=")
        assert first[1].endswith(" devices=0/0")

        # healthy: pings every half interval, across several ticks, never a gap systemd minds
        ready_t = time.monotonic()
        healthy = pings(await collect(receiver, 3.0))
        assert len(healthy) >= 8
        assert max_gap(healthy, ready_t) < W

        stalled_t = time.monotonic()
        release = await stall(daemon)
        after = pings(await collect(receiver, LIMIT + INTERVAL + 0.3 + 3 * W))
        # the pings stop once the last tick is older than the limit ...
        assert [t - stalled_t for t in after if t > stalled_t + LIMIT + INTERVAL + 0.3] == []
        # ... for longer than WATCHDOG_USEC: systemd would restart the daemon
        assert time.monotonic() - max(after, default=stalled_t) > 3 * W
        # while the process itself keeps running
        alive = {t.get_name() for t in asyncio.all_tasks() if not t.done()}
        assert {"bed", "ward", "watchdog", "sdnotify"} <= alive

        if release is not None:
            release()
            resumed = pings(await collect(receiver, 1.0 + 2 * INTERVAL + 0.5))
            assert resumed, "pings resume once the core ticks again"


async def test_status_follows_phase_and_link_changes_at_most_once_a_second(
    closed_port_url: str, tmp_path: Path, receiver: NotifyReceiver
) -> None:
    notifier = SdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_address})
    settings = settings_for(closed_port_url, tmp_path)
    async with Daemon(settings, load_policy(), notifier=notifier) as daemon:
        assert (await receiver.next(5.0))[0] == "READY=1"
        result = daemon.bed.command(json.dumps(open_session_command("r1")).encode())
        assert result["ok"] is True
        changed_t = time.monotonic()
        got = await collect(receiver, 4.0)
    statuses = [(t, line) for t, lines in got for line in lines if line.startswith("STATUS=")]
    # no watchdog without WATCHDOG_USEC
    assert not any("WATCHDOG=1" in lines for _, lines in got)
    pre = [t for t, line in statuses if line.startswith("STATUS=phase=pre ward=")]
    assert pre
    assert pre[0] - changed_t < 2.0
    # the ward link flips between connecting and backing_off many times a second; STATUS
    # follows at most once a second
    assert {line.split()[1] for _, line in statuses} <= {"ward=connecting", "ward=backing_off"}
    times = [t for t, _ in statuses]
    assert all(b - a > 0.9 for a, b in itertools.pairwise(times))
    # STOPPING=1 when the block ends the daemon
    assert receiver.pending()[-1] == ["STOPPING=1"]


async def test_vigil_run_notifies_ready_status_watchdog_and_stopping(
    mqtt_broker_url: str, tmp_path: Path, receiver: NotifyReceiver
) -> None:
    config = tmp_path / "bed.toml"
    config.write_text(
        f"""
[bed]
ward = "w1"
bed = "b1"
[broker]
url = "{mqtt_broker_url}"
protocol = "3.1.1"
[journal]
path = "{tmp_path / "journal.sqlite"}"
[metrics]
enabled = false
"""
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"},
        "NOTIFY_SOCKET": receiver.env_address,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        got = [await receiver.next(15.0)]
        assert got[0][0] == "READY=1"
        assert got[0][1].startswith("STATUS=phase=none ward=")
        # the broker is up: STATUS reports the ward link connected, and the watchdog pings
        async with asyncio.timeout(15.0):
            while not any("STATUS=phase=none ward=connected devices=0/0" in m for m in got):
                got.append(await receiver.next(15.0))
            while sum("WATCHDOG=1" in m for m in got) < 3:
                got.append(await receiver.next(15.0))
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15.0):
            while (lines := await receiver.next(15.0)) != ["STOPPING=1"]:
                assert "READY=1" not in lines
            output, _ = await proc.communicate()
        assert proc.returncode == 0, output.decode()
        assert b"event=ready" in output
        assert b"event=stopped" in output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
