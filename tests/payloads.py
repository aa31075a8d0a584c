"""What beds publish, built for the tests and benches of ward-level readers (the HL7 gateway,
the metrics): alarm events and their `…/alarms` payloads (docs/ARCHITECTURE.md "Alarm event JSON").
"""

from __future__ import annotations

import json
import time
from typing import Any

from kernel.vocabulary import AlarmEvent, AlarmKind, AlarmState, Phase, Priority

__all__ = ["alarm_event", "alarm_payload"]


def alarm_event(**fields: Any) -> AlarmEvent:
    """An alarm event for a test to feed a ward-level reader: SpO2 88 under its limit 92 in
    the infusion (DESAT, medium, active, now) unless `fields` say otherwise."""
    event: dict[str, Any] = {
        "t": time.time(),
        "code": "DESAT",
        "priority": Priority.MEDIUM,
        "kind": AlarmKind.PHYSIOLOGICAL,
        "state": AlarmState.ACTIVE,
        "param": "SPO2",
        "value": 88.0,
        "limit": 92.0,
        "phase": Phase.INFUSION,
        "message": "SpO2 low",
    }
    return AlarmEvent(**(event | fields))


def alarm_payload(bed: str, seq: int, state: AlarmState = AlarmState.ACTIVE) -> bytes:
    """The `…/alarms` payload of bed `bed`'s `seq`-th live alarm (`alarm_event`), its own
    alarm id, in session "s"."""
    event = alarm_event(
        state=state, bed=bed, alarm_id=f"{bed}-alarm-{seq}", session_id="s", seq=seq
    )
    return json.dumps(event.to_json()).encode()
