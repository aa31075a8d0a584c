"""An IntelliVue monitor on the LAN: the serial simulator's monitor side, served over UDP.

The side is `simulators.intellivue.IntelliVueSide` with ``framed=False``: each datagram a
client sends is one message, each answer one datagram back to where the request came from
(docs/intellivue.md §10). The scenario plays in the clock's time as on the serial link, one
`second` a scenario second (and idle seconds before it starts, the monitor's own clock);
what the side sends then goes to the last client heard. Every `announce_s` of real time a
connect indication goes to `discovery` (a broadcast address and port 24005 on a ward; a
loopback port in tests). Ports are given (0: any free one; `address` says which).

Faults: `silence(seconds)` answers and sends nothing for that long, and `unplug(seconds)` does
so and waits it out (a cable pulled: UDP has no connection to lose).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from types import TracebackType
from typing import Final, Self, cast

from drivers.intellivue.messages import connect_indication
from kernel.clock import Clock
from kernel.vocabulary import Sample, Step
from simulators.intellivue import IntelliVueSide
from simulators.scenarios import build_scenario

__all__ = ["IntelliVueLanMonitor"]

_MAC: Final = bytes.fromhex("00 09 FB 00 00 01")


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, monitor: IntelliVueLanMonitor) -> None:
        self._monitor = monitor

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._monitor.heard(data, (str(addr[0]), cast("int", addr[1])))


class IntelliVueLanMonitor:
    """A monitor serving Data Export on a UDP port and announcing itself; async context manager.

    Args:
        clock: scenario time; the scenario starts at `t0` (default `clock.now()`).
        scenario: a name from `simulators.scenarios.SCENARIOS`.
        host, port: where it listens (port 0: a free one, see `address`).
        discovery: where its connect indications go, or None for none.
        announce_s: real seconds between connect indications.
        seed: the scenario's noise seed.
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
        side: IntelliVueSide | None = None,
    ) -> None:
        self._clock = clock
        self._host = host
        self._port = port
        self._discovery = discovery
        self._announce_s = announce_s
        self.t0 = clock.now() if t0 is None else t0
        self._items = build_scenario(scenario, t0=self.t0, seed=seed, device_id="mon1")
        self.side = side if side is not None else IntelliVueSide(framed=False)
        self._transport: asyncio.DatagramTransport | None = None
        self._client: tuple[str, int] | None = None
        self._quiet_until = 0.0
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0  # datagrams sent
        self.done = asyncio.Event()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the monitor listens on."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self), local_addr=(self._host, self._port), allow_broadcast=True
        )
        self._transport = transport
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._tasks = [self._group.create_task(self._play(), name="intellivue-lan.play")]
        if self._discovery is not None:
            self._tasks.append(
                self._group.create_task(self._announce(), name="intellivue-lan.announce")
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._group is not None
        for task in self._tasks:
            task.cancel()
        try:
            await self._group.__aexit__(None, None, None)
        finally:
            if self._transport is not None:
                self._transport.close()

    def silence(self, seconds: float) -> None:
        """Answer and send nothing for `seconds` of real time."""
        self._quiet_until = asyncio.get_running_loop().time() + seconds

    def inject(self, datagram: bytes) -> None:
        """Send `datagram` to the client as it is (damage: garbage, a message cut short)."""
        self._send([datagram], self._client)

    async def unplug(self, seconds: float) -> None:
        """The network cable pulled for `seconds` of real time: nothing sent or answered."""
        self.silence(seconds)
        await asyncio.sleep(seconds)

    def _quiet(self) -> bool:
        return asyncio.get_running_loop().time() < self._quiet_until

    def heard(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from a client: answered to where it came from."""
        if self._quiet():
            return
        self._client = addr
        self._send(self.side.receive(data, self._clock.now()), addr)

    def _send(self, messages: list[bytes], addr: tuple[str, int] | None) -> None:
        if addr is None or self._transport is None or self._quiet():
            return
        for message in messages:
            self._transport.sendto(bytes(message), addr)
            self.sent += 1

    async def _play(self) -> None:
        clock = self._clock
        first = next((i.t for i in self._items if not isinstance(i, Step)), math.inf)
        t = math.floor(clock.now()) + 1.0
        while t < first:  # the monitor's own clock runs before the scenario does
            await clock.sleep_until(t)
            self._send(self.side.idle(t), self._client)
            t += 1.0
        group: list[Sample] = []
        for item in self._items:
            if isinstance(item, Step):
                continue
            if group and item.t != group[0].t:
                self._send(self.side.second(group, group[0].t), self._client)
                group = []
            await clock.sleep_until(item.t)
            group.append(item)
        if group:
            self._send(self.side.second(group, group[0].t), self._client)
        self.done.set()

    async def _announce(self) -> None:
        assert self._discovery is not None
        ip = socket.inet_aton(self._host) if self._host.count(".") == 3 else bytes(4)
        while True:
            if self._transport is not None and not self._quiet():
                message = connect_indication(ip=ip, mac=_MAC, event_time=0)
                with contextlib.suppress(OSError):
                    self._transport.sendto(message, self._discovery)
            await asyncio.sleep(self._announce_s)
