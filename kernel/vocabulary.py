"""The fixed vocabulary of Vigil: parameters, phases, samples, alarm events.

Every other module speaks these words (docs/ARCHITECTURE.md "Data flow", docs/ALARMS.md
"Vocabulary"). Times are epoch seconds UTC as floats everywhere inside; conversion to ISO 8601
with an offset happens only at the edges (`iso8601`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

__all__ = [
    "ABSOLUTE_CONTRAINDICATIONS",
    "CHECKLIST_ITEMS",
    "CONTINUOUS_PARAMS",
    "MDC_CODES",
    "NIBP_PARAMS",
    "PHYSIOLOGICAL_RANGE",
    "PRIORITY_ORDER",
    "RELATIVE_CONTRAINDICATIONS",
    "SYSTEM_ALARM_CODES",
    "TOPIC_ROOT",
    "UNITS",
    "AlarmEvent",
    "AlarmKind",
    "AlarmState",
    "Param",
    "Phase",
    "Priority",
    "ProtocolCode",
    "Sample",
    "ScenarioItem",
    "SessionEvent",
    "Step",
    "SystemAlarm",
    "in_range",
    "iso8601",
    "system_alarm",
]

# The first topic level of every bed unless a config says otherwise (`[broker] prefix` of a
# bed, `[hl7] prefix` of the gateway, `--topic-root` of `vigil watch`; docs/ARCHITECTURE.md
# "MQTT"): the one place the default is written.
TOPIC_ROOT: Final = "vigil"


class Param(StrEnum):
    """A physiological parameter (docs/ALARMS.md "Vocabulary")."""

    HR = "HR"  # ECG heart rate, /min
    PR = "PR"  # pulse rate from the oximeter, /min
    SPO2 = "SPO2"  # %
    NIBP_SYS = "NIBP_SYS"  # cuff pressure, mmHg
    NIBP_DIA = "NIBP_DIA"
    NIBP_MEAN = "NIBP_MEAN"
    ABP_SYS = "ABP_SYS"  # arterial line, mmHg
    ABP_DIA = "ABP_DIA"
    ABP_MEAN = "ABP_MEAN"
    RR = "RR"  # /min
    ETCO2 = "ETCO2"  # mmHg


NIBP_PARAMS: Final = frozenset({Param.NIBP_SYS, Param.NIBP_DIA, Param.NIBP_MEAN})
CONTINUOUS_PARAMS: Final = frozenset(set(Param) - NIBP_PARAMS)

# docs/ALARMS.md "Vocabulary": a value outside these ranges is an invalid sample, not a value.
PHYSIOLOGICAL_RANGE: Final[dict[Param, tuple[float, float]]] = {
    Param.HR: (20.0, 300.0),
    Param.PR: (20.0, 300.0),
    Param.SPO2: (50.0, 100.0),
    Param.NIBP_SYS: (10.0, 300.0),
    Param.NIBP_DIA: (10.0, 300.0),
    Param.NIBP_MEAN: (10.0, 300.0),
    Param.ABP_SYS: (10.0, 300.0),
    Param.ABP_DIA: (10.0, 300.0),
    Param.ABP_MEAN: (10.0, 300.0),
    Param.RR: (0.0, 80.0),
    Param.ETCO2: (0.0, 150.0),
}

# UCUM units, as carried in Sample JSON `unit`.
UNITS: Final[dict[Param, str]] = {
    Param.HR: "/min",
    Param.PR: "/min",
    Param.SPO2: "%",
    Param.NIBP_SYS: "mm[Hg]",
    Param.NIBP_DIA: "mm[Hg]",
    Param.NIBP_MEAN: "mm[Hg]",
    Param.ABP_SYS: "mm[Hg]",
    Param.ABP_DIA: "mm[Hg]",
    Param.ABP_MEAN: "mm[Hg]",
    Param.RR: "/min",
    Param.ETCO2: "mm[Hg]",
}

# IEEE 11073-10101 numeric codes (partition * 65536 + term), docs/ARCHITECTURE.md "Sample JSON".
MDC_CODES: Final[dict[Param, int]] = {
    Param.HR: 147842,  # MDC_ECG_HEART_RATE
    Param.PR: 149530,  # MDC_PULS_OXIM_PULS_RATE
    Param.SPO2: 150456,  # MDC_PULS_OXIM_SAT_O2
    Param.NIBP_SYS: 150021,  # MDC_PRESS_BLD_NONINV_SYS
    Param.NIBP_DIA: 150022,  # MDC_PRESS_BLD_NONINV_DIA
    Param.NIBP_MEAN: 150023,  # MDC_PRESS_BLD_NONINV_MEAN
    Param.ABP_SYS: 150037,  # MDC_PRESS_BLD_ART_ABP_SYS
    Param.ABP_DIA: 150038,  # MDC_PRESS_BLD_ART_ABP_DIA
    Param.ABP_MEAN: 150039,  # MDC_PRESS_BLD_ART_ABP_MEAN
    Param.RR: 151562,  # MDC_RESP_RATE
    Param.ETCO2: 151708,  # MDC_AWAY_CO2_ET
}


def in_range(param: Param, value: float) -> bool:
    """Whether `value` is a finite number inside the physiological range of `param`."""
    lo, hi = PHYSIOLOGICAL_RANGE[param]
    return math.isfinite(value) and lo <= value <= hi


class Phase(StrEnum):
    """Session phase (docs/ALARMS.md "Phases")."""

    NONE = "none"
    PRE = "pre"
    INFUSION = "infusion"
    POST = "post"


class SessionEvent(StrEnum):
    """A session step as it appears in a recording (`EVENT` rows)."""

    SESSION_START = "session_start"
    INFUSION_START = "infusion_start"
    INFUSION_STOP = "infusion_stop"
    DISCHARGE = "discharge"


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priority."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for high, 1 medium, 2 low: the place in `PRIORITY_ORDER`."""
        return PRIORITY_ORDER.index(self)


class AlarmKind(StrEnum):
    """What raised the alarm."""

    PHYSIOLOGICAL = "physiological"
    TECHNICAL = "technical"
    ADVISORY = "advisory"


class AlarmState(StrEnum):
    """The state an alarm event announces."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    CLEARED = "cleared"


# docs/PROTOCOL.md step 1. Every item must be answered: an unanswered item is not a "no".
ABSOLUTE_CONTRAINDICATIONS = (
    "uncontrolled_hypertension",
    "severe_cardiovascular_disease",
    "raised_intracranial_pressure",
    "active_psychosis_or_mania",
)
RELATIVE_CONTRAINDICATIONS = (
    "substance_use_disorder",
    "severe_hepatic_impairment",
    "pregnancy",
    "suicidal_intent_without_safety_plan",
)
# Every item of the contraindication checklist `open_session` carries, in order: the absolute
# and relative contraindications, then what is recorded without being one. The command model
# (monitor/commands.py `Checklist`) has exactly these fields (tests/monitor/test_commands.py).
CHECKLIST_ITEMS: Final = (
    *ABSOLUTE_CONTRAINDICATIONS,
    *RELATIVE_CONTRAINDICATIONS,
    "concomitant_cns_depressants",
)


# The one order of priorities, most urgent first: lists of alarms (`…/alarms/active`, the
# console), reports and the policy's nesting check all sort by it (IEC 60601-1-8 6.1.2).
PRIORITY_ORDER: Final = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)


@dataclass(frozen=True, slots=True)
class _SystemTraits:
    priority: Priority
    kind: AlarmKind
    # latching: the alarm records an occurrence that is already over and stays until a nurse
    # acknowledges it; otherwise it clears when its condition ends, acknowledged or not
    latching: bool = False
    # about the bed rather than the session: a discharge does not clear it
    of_bed: bool = True


class SystemAlarm(StrEnum):
    """The technical and advisory alarms about the bedside system itself, not the patient.

    The daemon sees their conditions (a monitor unplugged, the ward broker unreachable); the
    engine keeps them with the policy's alarms, so acknowledgement, `alarms/active` and the
    outbox treat them alike (docs/ARCHITECTURE.md "System alarms"). Each member carries its
    priority, kind and latching; this enumeration is the one list of them.
    """

    DEVICE_DISCONNECTED = "DEVICE_DISCONNECTED"
    WARD_LINK_DOWN = "WARD_LINK_DOWN"
    MONITORING_GAP = "MONITORING_GAP"
    INFUSION_LONG = "INFUSION_LONG"
    DEVICE_CLOCK_OFF = "DEVICE_CLOCK_OFF"
    JOURNAL_FAILED = "JOURNAL_FAILED"
    JOURNAL_SPACE_LOW = "JOURNAL_SPACE_LOW"
    SAMPLES_SHED = "SAMPLES_SHED"

    @property
    def priority(self) -> Priority:
        """The alarm's IEC 60601-1-8 priority."""
        return _SYSTEM_TRAITS[self].priority

    @property
    def kind(self) -> AlarmKind:
        """Technical, or advisory (`INFUSION_LONG`)."""
        return _SYSTEM_TRAITS[self].kind

    @property
    def latching(self) -> bool:
        """Whether it stays until acknowledged once its condition is over."""
        return _SYSTEM_TRAITS[self].latching

    @property
    def of_bed(self) -> bool:
        """About the bed rather than the session: a discharge does not clear it."""
        return _SYSTEM_TRAITS[self].of_bed


# Medium, as a lost data source is in docs/ALARMS.md (`SPO2_NO_DATA`); in every phase, because a
# monitor unplugged before a session opens is worth fixing before it does.
_SYSTEM_TRAITS: Final[dict[SystemAlarm, _SystemTraits]] = {
    SystemAlarm.DEVICE_DISCONNECTED: _SystemTraits(Priority.MEDIUM, AlarmKind.TECHNICAL),
    SystemAlarm.WARD_LINK_DOWN: _SystemTraits(Priority.MEDIUM, AlarmKind.TECHNICAL),
    # the daemon was not running for a while during a session (a crash, a power cut): latched
    # until a nurse acknowledges that the bed went unwatched (issue 4, recovery)
    SystemAlarm.MONITORING_GAP: _SystemTraits(
        Priority.MEDIUM, AlarmKind.TECHNICAL, latching=True, of_bed=False
    ),
    # docs/PROTOCOL.md step 3: the infusion takes 40 min; past 45 min the pump or the plan is off
    SystemAlarm.INFUSION_LONG: _SystemTraits(Priority.LOW, AlarmKind.ADVISORY, of_bed=False),
    # a monitor's clock is off the bed's: its samples are re-stamped with the bed's time
    # (monitor/timekeeper.py), so monitoring goes on, but the clock wants setting
    SystemAlarm.DEVICE_CLOCK_OFF: _SystemTraits(Priority.LOW, AlarmKind.TECHNICAL),
    # the bed's disk refuses its journal or outbox (full, failing): monitoring and alarms go
    # on in memory, but a restart now would lose them; high, as the bed can no longer
    # guarantee delivery (issue 17, item 4)
    SystemAlarm.JOURNAL_FAILED: _SystemTraits(Priority.HIGH, AlarmKind.TECHNICAL),
    # free space on the journal's disk below `[journal] min_free_mb`: fix it before it is full
    SystemAlarm.JOURNAL_SPACE_LOW: _SystemTraits(Priority.LOW, AlarmKind.TECHNICAL),
    # more samples arrive than the bed can take: some are shed (counted), so a run may be
    # seen late or broken (issue 17, item 5); medium, as a lost data source is
    SystemAlarm.SAMPLES_SHED: _SystemTraits(Priority.MEDIUM, AlarmKind.TECHNICAL),
}
SYSTEM_ALARM_CODES: Final[frozenset[str]] = frozenset(a.value for a in SystemAlarm)


def system_alarm(code: str) -> SystemAlarm:
    """The system alarm named `code`.

    Raises:
        KeyError: `code` names no system alarm.
    """
    if code not in SYSTEM_ALARM_CODES:
        raise KeyError(code)
    return SystemAlarm(code)


class ProtocolCode(StrEnum):
    """Policy alarm codes the session protocol acts on by name (monitor/session.py).

    A policy without one of them, or with it in another kind of rule, would silently remove
    a safety step; the bed refuses such a policy when it loads it
    (`monitor.session.load_bed_policy`, `vigil check-config`).
    """

    # docs/PROTOCOL.md step 2: two determinations at or over 140/90 gate start_infusion
    BP_PRE_GATE = "BP_PRE_GATE"
    # docs/PROTOCOL.md step 5: a discharge needs HR and SpO2 flowing
    SPO2_NO_DATA = "SPO2_NO_DATA"
    HR_NO_DATA = "HR_NO_DATA"

    @property
    def section(self) -> str:
        """The policy table its rule must be in (config/alarms.toml)."""
        return "determination" if self is ProtocolCode.BP_PRE_GATE else "no_data"

    @property
    def why(self) -> str:
        """What the session protocol does with it."""
        if self is ProtocolCode.BP_PRE_GATE:
            return "it gates start_infusion (docs/PROTOCOL.md step 2)"
        return "a discharge needs it clear (docs/PROTOCOL.md step 5)"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one parameter from one device.

    `t` is epoch seconds UTC from the injectable clock. `value` is NaN when the device sent no
    value. `valid` is the device's own verdict; a value outside the physiological range is
    treated as invalid by the alarm core whatever the device says. `reason` says why a sample
    is invalid when the device told us (e.g. "sensor off").
    """

    t: float
    param: Param
    value: float
    valid: bool
    device_id: str
    unit: str | None = None
    mdc: int | None = None
    reason: str | None = None

    @property
    def usable(self) -> bool:
        """Valid per device and inside the physiological range: a value the policy may use."""
        return self.valid and in_range(self.param, self.value)

    def to_json(self) -> dict[str, Any]:
        """The Sample JSON object of docs/ARCHITECTURE.md (NaN becomes null)."""
        out: dict[str, Any] = {
            "t": self.t,
            "param": self.param.value,
            "value": self.value if math.isfinite(self.value) else None,
            "valid": self.valid,
            "device_id": self.device_id,
        }
        if self.unit is not None:
            out["unit"] = self.unit
        if self.mdc is not None:
            out["mdc"] = self.mdc
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Step:
    """A session step at time `t` (epoch seconds UTC): an `EVENT` row of a recording."""

    t: float
    event: SessionEvent


# What a recording holds, in time order (docs/ARCHITECTURE.md "Recording CSV"): the samples
# and the session steps; scenarios build it, `vigil export` reads it from the journal.
ScenarioItem: TypeAlias = Sample | Step


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A state change of one alarm (docs/ARCHITECTURE.md "Alarm event JSON").

    The live fields (`bed`, `alarm_id`, `session_id`, `seq`) are added by the daemon; replay
    leaves them unset.
    """

    t: float
    code: str
    priority: Priority
    kind: AlarmKind
    state: AlarmState
    param: str | None
    value: float | None
    limit: float | None
    phase: Phase
    message: str
    level: int | None = None
    user: str | None = None
    # the broker login the command came from (monitor/authority.py), beside the asserted `user`
    principal: str | None = None
    bed: str | None = None
    alarm_id: str | None = None
    session_id: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The payload object, with only the fields that are set."""
        out: dict[str, Any] = {
            "t": self.t,
            "code": self.code,
            "priority": self.priority.value,
            "kind": self.kind.value,
            "state": self.state.value,
            "param": self.param,
            "value": _json_float(self.value),
            "limit": _json_float(self.limit),
            "phase": self.phase.value,
            "message": self.message,
        }
        for key in ("level", "user", "principal", "bed", "alarm_id", "session_id", "seq"):
            val = getattr(self, key)
            if val is not None:
                out[key] = val
        return out


def _json_float(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def iso8601(t: float) -> str:
    """Epoch seconds UTC as ISO 8601 with an explicit offset (the edges' format)."""
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="milliseconds")
