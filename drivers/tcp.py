"""The async TCP driver: any device's `LinkProtocol` (drivers/link.py) over a TCP connection.

Network monitors either connect to a server they are configured with (Mindray BeneView and ePM
monitors push HL7 that way) or wait for a client; `mode` says which side Vigil takes
(`drivers.spec.TcpSettings`). One connection per run: listening, the first monitor to connect
is served and the listening socket is closed, so a second one is refused until the run ends;
the supervisor starts the next run (docs/DESIGN.md P9). The serving loop is
`drivers.stream.StreamDriver`'s, the same as for serial ports.

Besides what `StreamDriver` raises: a connection that cannot be made (or, listening, no monitor
that connects within the quiet time, or an address that cannot be bound) raises `DeviceError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from drivers.base import DeviceError, nothing
from drivers.spec import TcpSettings
from drivers.stream import StreamDriver

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import SampleSink

__all__ = ["TcpDriver"]

_log = logging.getLogger("vigil.drivers")

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class TcpDriver(StreamDriver[TcpSettings]):
    """Runs a device's `LinkProtocol` over TCP; subclasses name the device (see module)."""

    async def run(self, sink: SampleSink, connected: Callable[[], None] = nothing) -> None:
        """Connect or wait for the monitor, then run the protocol until cancelled.

        `connected()` is called at the first valid frame. Cancellation closes the connection
        and goes on.

        Raises:
            DeviceError: no connection, the connection closed, the device stayed silent past
                its quiet time, a write was held past ``timeouts.serial_write_s``, or the
                device ended the session.
        """
        where = f"{self.device_id}: {self._settings.connection()}"
        if self._settings.mode == "connect":
            reader, writer = await self._connect(where)
            await self._serve_then_close(
                reader, writer, sink, connected, where, errors=(OSError,), held="a write was held"
            )
            return
        accepted: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.done():
                writer.close()  # one monitor per driver: a second connection is refused
            else:
                accepted.set_result((reader, writer))

        try:
            server = await asyncio.start_server(
                accept, self._settings.host, self._settings.port, reuse_address=True
            )
        except OSError as exc:
            raise DeviceError(f"{where}: cannot listen: {exc}") from exc
        try:
            try:
                async with asyncio.timeout(self._quiet_s):
                    reader, writer = await accepted
            except TimeoutError as exc:
                raise DeviceError(
                    f"{where}: no monitor connected within {self._quiet_s:g} s"
                ) from exc
            finally:
                server.close()  # stop listening; the accepted connection stays open
            peer = writer.get_extra_info("peername")
            _log.info("event=monitor_connected device=%s peer=%s", self.device_id, peer)
            await self._serve_then_close(
                reader, writer, sink, connected, where, errors=(OSError,), held="a write was held"
            )
        finally:
            if not accepted.done():
                accepted.cancel()
            elif not accepted.cancelled():
                accepted.result()[1].close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeouts.serial_write_s):
                    await server.wait_closed()

    async def _connect(self, where: str) -> Connection:
        try:
            async with asyncio.timeout(self._timeouts.serial_write_s):
                return await asyncio.open_connection(self._settings.host, self._settings.port)
        except OSError as exc:
            raise DeviceError(f"{where}: cannot connect: {exc}") from exc
        except TimeoutError as exc:
            raise DeviceError(
                f"{where}: no connection within {self._timeouts.serial_write_s} s"
            ) from exc
