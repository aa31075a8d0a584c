"""An IntelliVue monitor on the LAN: the serial simulator's monitor side, served over UDP.

`IntelliVueLanMonitor` is `simulators.serial_monitor.SerialMonitor` with a UDP socket for a
cable, as `simulators.tcp_monitor.TcpMonitor` is with a TCP one: the scenario plays as on the
serial link, the side is `simulators.intellivue.IntelliVueLanSide` (one message a datagram, no
framing; docs/intellivue.md §10), each datagram a client sends is answered to where it came
from, and what the monitor sends by itself goes to the last client heard. Every `announce_s`
of real time a connect indication goes to `discovery` (a broadcast address and port 24005 on a
ward; a loopback port in tests). Ports are given (0: any free one; `address` says which).

Faults are the serial monitor's: garbage, truncate and corrupt damage the next datagram,
silence sends and answers nothing, and unplug is a silence waited out (UDP has no connection to
lose, so a pulled cable shows only as silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Self, cast

from drivers.intellivue.messages import connect_indication
from simulators.intellivue import IntelliVueLanSide
from simulators.serial_monitor import Fault, MonitorSide, SerialMonitor

if TYPE_CHECKING:
    from kernel.clock import Clock

__all__ = ["IntelliVueLanMonitor"]

_MAC: Final = bytes.fromhex("00 09 FB 00 00 01")


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, monitor: IntelliVueLanMonitor) -> None:
        self._monitor = monitor

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._monitor.heard(data, (str(addr[0]), cast("int", addr[1])))


class IntelliVueLanMonitor(SerialMonitor):
    """A monitor serving Data Export on a UDP port and announcing itself; async context manager.

    Args:
        clock: scenario time; the scenario starts at `t0` (default `clock.now()`).
        scenario: a name from `simulators.scenarios.SCENARIOS`.
        host, port: where it listens (port 0: a free one, see `address`).
        discovery: where its connect indications go, or None for none.
        announce_s: real seconds between connect indications.
        seed: the scenario's noise seed; faults draw from their own generator.
        side: the monitor side (default `IntelliVueLanSide`).
    """

    def __init__(  # noqa: PLR0913 - keyword-only options of a simulator
        self,
        *,
        clock: Clock,
        scenario: str,
        host: str = "127.0.0.1",
        port: int = 0,
        discovery: tuple[str, int] | None = None,
        announce_s: float = 1.0,
        seed: int = 1,
        t0: float | None = None,
        side: Callable[[], MonitorSide] = IntelliVueLanSide,
    ) -> None:
        super().__init__(
            side, clock=clock, scenario=scenario, port=f"udp {host}:{port}", seed=seed, t0=t0
        )
        self._host = host
        self._udp_port = port
        self._discovery = discovery
        self._announce_s = announce_s
        self._transport: asyncio.DatagramTransport | None = None
        self._client: tuple[str, int] | None = None
        self._announcing: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the monitor listens on."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._discovery is not None:
            self._announcing = asyncio.create_task(self._announce(), name="intellivue-lan.announce")
        return self

    async def _stop(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
        await super()._stop()

    # ------------------------------------------------------------------ the UDP cable

    async def _plug(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self), local_addr=(self._host, self._udp_port), allow_broadcast=True
        )
        self._transport = transport
        self._plugged.set()

    def _unplug(self) -> None:
        self._plugged.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def unplug(self, seconds: float) -> None:
        """The network cable pulled for `seconds` of real time: nothing sent or answered."""
        self.stats.faults.append(Fault.UNPLUG.value)
        self._quiet_until = asyncio.get_running_loop().time() + seconds
        await asyncio.sleep(seconds)

    async def _listen(self) -> None:
        """Nothing to do: the socket's protocol hands each datagram to `heard`."""
        await asyncio.Event().wait()

    def heard(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from a client: answered to where it came from."""
        if self._quiet():
            return
        self._client = addr
        self._answer(data)

    def _raw(self, data: bytes) -> bool:
        if self._transport is None or self._client is None or not data:
            return False
        self._transport.sendto(data, self._client)
        return True

    async def _announce(self) -> None:
        assert self._discovery is not None
        ip = socket.inet_aton(self._host) if self._host.count(".") == 3 else bytes(4)
        while True:
            if self._transport is not None and not self._quiet():
                message = connect_indication(ip=ip, mac=_MAC, event_time=0)
                with contextlib.suppress(OSError):
                    self._transport.sendto(message, self._discovery)
            await asyncio.sleep(self._announce_s)
