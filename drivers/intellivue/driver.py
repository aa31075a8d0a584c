"""The IntelliVue driver: the codec's `IntelliVueLink` over a 115200 8N1 serial port."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from drivers.intellivue.codec import CuffMemory, IntelliVueLink
from drivers.serialport import LineSettings, SerialDriver

if TYPE_CHECKING:
    from monitor.clock import Clock
    from monitor.settings import BrokerSettings, TimeoutSettings
    from monitor.settings import IntelliVueDriver as IntelliVueSettings

__all__ = ["IntelliVueDriver"]


class IntelliVueDriver(SerialDriver):
    """A Philips IntelliVue monitor's MIB/RS232 port (`[[drivers]] kind = "intellivue"`).

    115200 bit/s, 8 data bits, no parity, 1 stop bit, no handshake (docs/intellivue.md §1;
    VSCaptureMP, PERSEUS and OpenICE agree). The driver associates, then polls numerics every
    second of daemon time (`timer_s`); the monitor answers every poll, so ten seconds without a
    valid frame means the cable, the port or the association is gone (the monitor's own
    association timeout is 10 s too).

    The last NIBP determination passed on is remembered across connections (`CuffMemory`), so a
    reconnect does not hand the alarm core the same cuff reading as a new one.
    """

    line: ClassVar[LineSettings] = LineSettings(baudrate=115200)
    quiet_s: ClassVar[float] = 10.0
    timer_s: ClassVar[float] = 1.0

    def __init__(
        self,
        settings: IntelliVueSettings,
        /,
        *,
        broker: BrokerSettings,
        timeouts: TimeoutSettings,
        clock: Clock,
    ) -> None:
        super().__init__(settings, broker=broker, timeouts=timeouts, clock=clock)
        self._cuff = CuffMemory()

    def protocol(self) -> IntelliVueLink:
        """A fresh session (association and polling); counters go to the driver's `stats`."""
        return IntelliVueLink(self.device_id, self.stats, self._cuff)
