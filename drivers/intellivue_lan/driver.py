"""The IntelliVue LAN driver: the codec's `IntelliVueLanLink` over a UDP socket.

The session loop (start, receive, replies, the 1 s timer, the quiet time, `DeviceError` on
loss) is `drivers.serialport.SerialDriver`'s, run over a datagram socket made to look like the
port's reader and writer (`_Datagrams`): a read is one datagram, a write sends one. The socket
is connected to the monitor's Data Export port, so only its datagrams are read, and an ICMP
"port unreachable" (the monitor gone) ends the run as a lost device.

Without a configured host the driver first listens for a connect indication (`discover`), for
its quiet time at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final, cast

from drivers.base import DeviceError, SampleSink, nothing
from drivers.intellivue.codec import CuffMemory, PollMode
from drivers.intellivue_lan.codec import IntelliVueLanLink, is_connect_indication
from drivers.intellivue_lan.spec import SPEC
from drivers.link import ProtocolError
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

if TYPE_CHECKING:
    from drivers.intellivue_lan.spec import IntelliVueLanSettings
    from drivers.spec import SerialSettings
    from kernel.clock import Clock
    from kernel.settings import BrokerSettings, TimeoutSettings

__all__ = ["IntelliVueLanDriver", "discover"]

_log = logging.getLogger("vigil.drivers")

# Datagrams waiting to be read: a monitor sends about one a second, so a full queue means the
# loop is stalled; beyond it the newest are dropped and counted (`overload`).
_QUEUE: Final = 256


class _Datagrams(asyncio.DatagramProtocol):
    """A connected UDP socket as a reader (`read`: the next datagram) and writer (`write`)."""

    def __init__(self, on_drop: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(_QUEUE)
        self._on_drop = on_drop
        self.transport: asyncio.DatagramTransport | None = None
        self._closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:  # noqa: ARG002 - connected: the monitor's
        self._put(data)

    def error_received(self, exc: Exception) -> None:
        self._put(exc)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - closed by us
        self._closed.set()

    def _put(self, item: bytes | Exception) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._on_drop()

    # the StreamReader / StreamWriter side SerialDriver._serve uses

    async def read(self, _n: int) -> bytes:
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item or b"\x00"  # an empty datagram is no end of stream: a message too short

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(data)

    async def drain(self) -> None:
        return

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class _Listener(asyncio.DatagramProtocol):
    """Hears connect indications; `found` is set with the first monitor's address."""

    def __init__(self) -> None:
        self.found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.found.done() and is_connect_indication(data):
            self.found.set_result(str(addr[0]))


async def discover(listen: str, port: int, timeout_s: float) -> str:
    """The address of the first monitor whose connect indication reaches `listen`:`port`.

    Raises:
        DeviceError: none within `timeout_s`, or the port cannot be listened on.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, listener = await loop.create_datagram_endpoint(
            _Listener, local_addr=(listen, port), reuse_port=True, allow_broadcast=True
        )
    except OSError as exc:
        raise DeviceError(f"cannot listen for connect indications on {port}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            return await listener.found
    except TimeoutError as exc:
        raise DeviceError(f"no connect indication on port {port} for {timeout_s:g} s") from exc
    finally:
        transport.close()


class IntelliVueLanDriver(SerialDriver):
    """A Philips IntelliVue monitor on the LAN (`[[drivers]] kind = "intellivue-lan"`)."""

    spec: ClassVar[DeviceSpec] = SPEC
    timer_s: ClassVar[float] = 1.0

    def __init__(
        self,
        settings: IntelliVueLanSettings,
        /,
        *,
        broker: BrokerSettings,
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> None:
        # SerialDriver reads device_id and quiet_s only; the "port" it names is `port` below
        super().__init__(
            cast("SerialSettings", settings), broker=broker, timeouts=timeouts, clock=clock
        )
        self._lan = settings
        self._host = settings.host
        self._cuff = CuffMemory()
        self._poll = PollMode(settings.poll)

    @property
    def port(self) -> str:
        """Where the monitor is: host and Data Export port, as messages name it."""
        return f"udp {self._host or '?'}:{self._lan.udp_port}"

    def protocol(self) -> IntelliVueLanLink:
        """A fresh session (association and polling); counters go to the driver's `stats`."""
        return IntelliVueLanLink(self.device_id, self.stats, self._cuff, poll=self._poll)

    async def run(self, sink: SampleSink, connected: Callable[[], None] = nothing) -> None:
        """Find the monitor if need be, associate over UDP, stream until cancelled.

        Raises:
            DeviceError: no monitor found, the network or the monitor is gone, it stayed silent
                past the quiet time, or it ended the session.
        """
        settings = self._lan
        if settings.host is None:
            self._host = await discover(settings.listen, settings.discovery_port, self._quiet_s)
            _log.info("event=monitor_found device=%s host=%s", self.device_id, self._host)
        host = self._host
        assert host is not None
        loop = asyncio.get_running_loop()
        try:
            _, link = await loop.create_datagram_endpoint(
                lambda: _Datagrams(lambda: self.stats.drop("overload")),
                remote_addr=(host, settings.udp_port),
                family=socket.AF_INET,
            )
        except OSError as exc:
            raise DeviceError(f"{self.device_id}: {self.port}: cannot connect: {exc}") from exc
        _log.info("event=udp_open device=%s to=%s", self.device_id, self.port)
        try:
            await self._serve(link, link, sink, connected)  # type: ignore[arg-type]
        except OSError as exc:
            raise DeviceError(f"{self.device_id}: {self.port}: {exc}") from exc
        except ProtocolError as exc:
            raise DeviceError(f"{self.device_id}: {self.port}: {exc}") from exc
        finally:
            link.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await link.wait_closed()
