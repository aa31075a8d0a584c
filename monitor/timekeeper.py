"""Time is the bed's: samples whose own time is off the bed's clock are re-stamped on arrival.

A sample carries the time its monitor gave it. The alarm engine's notion of now follows the
rows it is fed (docs/ALARMS.md Reading 1), so one sample dated ten years ahead would move every
deadline of the session at once, and a monitor whose clock is an hour behind would put every
sample outside the baseline window and make the no-data alarms flap. Neither may happen
because of what one device says.

The rule (pure, no I/O; the bed loop applies it to every batch before it is journaled, so a
resume replays only times the live path accepted):

- A sample within `max_ahead_s` ahead of and `max_behind_s` behind the bed's clock keeps its
  time.
- Otherwise the device's clock is taken to be off: its offset (sample time minus bed time) is
  measured on that sample, and that sample and every later one of the device are re-stamped by
  subtracting the offset, so the rows of one determination (one time) stay one determination
  and the device's samples keep their spacing. The offset is measured again when a re-stamped
  sample would still be out of bounds, and dropped as soon as the device's own times are
  within bounds again.
- A re-stamped time is never later than the bed's now.

Every re-stamped sample is counted by device and direction (`ahead`, `behind`); `changes`
reports when a device's clock goes off or comes back, so the bed can raise or clear its
technical alarm naming the device and the offset.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from kernel.vocabulary import Sample

__all__ = ["ClockChange", "Timekeeper"]


@dataclass(frozen=True)
class ClockChange:
    """A device's clock went off the bed's (`offset_s` not None) or came back (None)."""

    device_id: str
    offset_s: float | None


class Timekeeper:
    """Re-stamps samples whose time is off the bed's clock (see the module docstring)."""

    def __init__(self, *, max_ahead_s: float, max_behind_s: float) -> None:
        if max_ahead_s < 0 or max_behind_s < 0:
            raise ValueError("the bounds are seconds, not negative")
        self.max_ahead_s = max_ahead_s
        self.max_behind_s = max_behind_s
        # device id -> offset (device time minus bed time, s) applied to its samples
        self.offsets: dict[str, float] = {}
        self.restamped: Counter[tuple[str, str]] = Counter()

    def _within(self, t: float, now: float) -> bool:
        return now - self.max_behind_s <= t <= now + self.max_ahead_s

    def stamp(self, batch: list[Sample], now: float) -> tuple[list[Sample], list[ClockChange]]:
        """The batch with the bed's times, and the device clock changes it showed."""
        out: list[Sample] = []
        changes: list[ClockChange] = []
        for s in batch:
            dev = s.device_id
            offset = self.offsets.get(dev)
            if self._within(s.t, now):
                if offset is not None:
                    del self.offsets[dev]
                    changes.append(ClockChange(dev, None))
                out.append(s)
                continue
            if offset is None or not self._within(s.t - offset, now):
                offset = s.t - now
                self.offsets[dev] = offset
                changes.append(ClockChange(dev, offset))
            self.restamped[dev, "ahead" if offset > 0 else "behind"] += 1
            out.append(dataclasses.replace(s, t=min(s.t - offset, now)))
        return out, _net(changes)


def _net(changes: list[ClockChange]) -> list[ClockChange]:
    """The last change per device, in the order devices first changed."""
    last: dict[str, ClockChange] = {}
    for c in changes:
        last[c.device_id] = c
    return list(last.values())
