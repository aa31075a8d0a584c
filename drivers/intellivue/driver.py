"""The IntelliVue driver: the codec's `IntelliVueLink` over a 115200 8N1 serial port."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from drivers.intellivue.codec import CuffMemory, IntelliVueLink, PollMode
from drivers.intellivue.spec import SPEC
from drivers.serialport import SerialDriver
from drivers.spec import DeviceSpec

if TYPE_CHECKING:
    from drivers.intellivue.spec import IntelliVueSettings
    from kernel.clock import Clock
    from kernel.settings import BrokerSettings, TimeoutSettings

__all__ = ["IntelliVueDriver"]


class IntelliVueDriver(SerialDriver):
    """A Philips IntelliVue monitor's MIB/RS232 port (`[[drivers]] kind = "intellivue"`).

    Line settings (115200 8N1) and quiet time: `drivers/intellivue/spec.py`
    (docs/intellivue.md §1). The driver associates, then polls numerics: the extended poll,
    renewed every 5 s, or (``poll = "single"``) a single poll every second of daemon time
    (`timer_s` is the link's clock either way).

    The last NIBP determination passed on is remembered across connections (`CuffMemory`), so a
    reconnect does not hand the alarm core the same cuff reading as a new one.
    """

    spec: ClassVar[DeviceSpec] = SPEC
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
        self._poll = PollMode(settings.poll)

    def protocol(self) -> IntelliVueLink:
        """A fresh session (association and polling); counters go to the driver's `stats`."""
        return IntelliVueLink(self.device_id, self.stats, self._cuff, poll=self._poll)
