"""HL7 v2.6 messages of the IHE PCD profiles, built from Vigil's vitals and alarm events.

Pure: no I/O, no clock, no randomness. Every input (the time of the message, its control id)
is an argument, so the same input always gives the same bytes (tests/data/hl7 holds golden
files written by hand from the profile).

- PCD-01 `ORU^R01^ORU_R01`: a bed's latest observations in the MDS.VMD.channel.metric
  containment tree (docs/hl7.md "PCD-01").
- PCD-04 `ORU^R40^ORU_R40`: one alarm event as one OBR with one OBX per facet, the facet number
  the last part of OBX-4 (docs/hl7.md "PCD-04").

Segments are separated by a carriage return, as HL7 v2 requires; MLLP framing is
`monitor.hl7.mllp`'s business.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from kernel.vocabulary import AlarmKind, AlarmState, Param, Phase, Priority
from monitor.wire import WireActiveAlarm, WireAlarmEvent

__all__ = [
    "EVENT_ALARM",
    "METRICS",
    "PROFILE_PCD01",
    "PROFILE_PCD04",
    "BedContext",
    "Header",
    "Metric",
    "MetricCode",
    "alarm_message",
    "escape",
    "eui64",
    "hl7_time",
    "side_of",
    "state_message",
    "vitals_message",
]

PROFILE_PCD01: Final = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
PROFILE_PCD04: Final = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO"
EVENT_ALARM: Final = "196616^MDC_EVT_ALARM^MDC"
# OBR-4 of a PCD-01 report: SNOMED CT "monitoring of patient"
_OBR4_VITALS: Final = "182777000^monitoring of patient^SCT"
_MDS: Final = ("69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC", "1.0.0.0")
# OBX-17: the observation was measured by the device, not entered by hand
_AUTO: Final = "AMEAS^auto-measurement^MDC"
_LOCAL_CODES: Final = "99VIGIL"


@dataclass(frozen=True, slots=True)
class Unit:
    """An MDC unit with its UCUM twin, as OBX-6 carries both."""

    code: int
    mdc: str
    ucum: str

    @property
    def field(self) -> str:
        """OBX-6: `code^MDC_DIM_…^MDC^ucum^ucum^UCUM`."""
        ucum = escape(self.ucum)
        return f"{self.code}^{self.mdc}^MDC^{ucum}^{ucum}^UCUM"


_BPM: Final = Unit(264864, "MDC_DIM_BEAT_PER_MIN", "/min")
_PERCENT: Final = Unit(262688, "MDC_DIM_PERCENT", "%")
_MMHG: Final = Unit(266016, "MDC_DIM_MMHG", "mm[Hg]")
_RESP_PER_MIN: Final = Unit(264928, "MDC_DIM_RESP_PER_MIN", "/min")


@dataclass(frozen=True, slots=True)
class MetricCode:
    """Where a parameter sits in the containment tree, and its MDC code and unit."""

    code: int
    name: str
    unit: Unit
    path: str  # OBX-4, MDS.VMD.channel.metric

    @property
    def identifier(self) -> str:
        """OBX-3: `code^MDC_…^MDC`."""
        return f"{self.code}^{self.name}^MDC"

    @property
    def vmd(self) -> str:
        """The containment path of the metric's VMD (`1.2.0.0`)."""
        mds, vmd, _, _ = self.path.split(".")
        return f"{mds}.{vmd}.0.0"

    @property
    def channel(self) -> str:
        """The containment path of the metric's channel (`1.3.1.0`)."""
        mds, vmd, chan, _ = self.path.split(".")
        return f"{mds}.{vmd}.{chan}.0"


# The MDC codes are those of kernel.vocabulary.MDC_CODES; ETCO2 is not reported yet (no VMD
# code for a capnograph could be verified, docs/hl7.md).
METRICS: Final[dict[Param, MetricCode]] = {
    Param.HR: MetricCode(147842, "MDC_ECG_HEART_RATE", _BPM, "1.1.1.1"),
    Param.SPO2: MetricCode(150456, "MDC_PULS_OXIM_SAT_O2", _PERCENT, "1.2.1.1"),
    Param.PR: MetricCode(149530, "MDC_PULS_OXIM_PULS_RATE", _BPM, "1.2.1.2"),
    Param.NIBP_SYS: MetricCode(150021, "MDC_PRESS_BLD_NONINV_SYS", _MMHG, "1.3.1.1"),
    Param.NIBP_DIA: MetricCode(150022, "MDC_PRESS_BLD_NONINV_DIA", _MMHG, "1.3.1.2"),
    Param.NIBP_MEAN: MetricCode(150023, "MDC_PRESS_BLD_NONINV_MEAN", _MMHG, "1.3.1.3"),
    Param.ABP_SYS: MetricCode(150037, "MDC_PRESS_BLD_ART_ABP_SYS", _MMHG, "1.4.1.1"),
    Param.ABP_DIA: MetricCode(150038, "MDC_PRESS_BLD_ART_ABP_DIA", _MMHG, "1.4.1.2"),
    Param.ABP_MEAN: MetricCode(150039, "MDC_PRESS_BLD_ART_ABP_MEAN", _MMHG, "1.4.1.3"),
    Param.RR: MetricCode(151562, "MDC_RESP_RATE", _RESP_PER_MIN, "1.5.1.1"),
}

# device rows (OBX-11 `X`, no value) by containment path
_DEVICES: Final[dict[str, str]] = {
    "1.1.0.0": "69798^MDC_DEV_ECG_VMD^MDC",
    "1.2.0.0": "69642^MDC_DEV_ANALY_SAT_O2_VMD^MDC",
    "1.3.0.0": "69854^MDC_DEV_METER_PRESS_BLD_VMD^MDC",
    "1.3.1.0": "70687^MDC_DEV_PRESS_BLD_NONINV_CHAN^MDC",
    "1.4.0.0": "70668^MDC_DEV_PRESS_BLD_ART_VMD^MDC",
    "1.5.0.0": "69722^MDC_DEV_ANALY_RESP_RATE_VMD^MDC",
}

# PCD-04 facets 3-7: attribute codes 68481-68485 (partition 1, terms 2945-2949); 68480 is the
# alert source, used when the source is no metric
_SOURCE: Final = "68480^MDC_ATTR_ALERT_SOURCE^MDC"
_PHASE: Final = "68481^MDC_ATTR_EVENT_PHASE^MDC"
_STATE: Final = "68482^MDC_ATTR_ALARM_STATE^MDC"
_INACTIVATION: Final = "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC"
_PRIORITY: Final = "68484^MDC_ATTR_ALARM_PRIORITY^MDC"
_TYPE: Final = "68485^MDC_ATTR_ALERT_TYPE^MDC"
_EVT_LO: Final = "196674^MDC_EVT_LO_VAL_LT_LIM^MDC"
_EVT_HI: Final = "196650^MDC_EVT_HI_VAL_GT_LIM^MDC"

_PHASES: Final[dict[AlarmState, str]] = {
    AlarmState.ACTIVE: "start",
    AlarmState.ACKNOWLEDGED: "update",
    AlarmState.ESCALATED: "escalate",
    AlarmState.CLEARED: "end",
}
_PRIORITIES: Final[dict[Priority, str]] = {
    Priority.HIGH: "PH",
    Priority.MEDIUM: "PM",
    Priority.LOW: "PL",
}
_TYPES: Final[dict[AlarmKind, str]] = {
    AlarmKind.PHYSIOLOGICAL: "SP",
    AlarmKind.TECHNICAL: "ST",
    AlarmKind.ADVISORY: "SA",
}


@dataclass(frozen=True, slots=True)
class Header:
    """Who sends to whom (MSH-3 to MSH-6, MSH-11) and how the visit is classed (PV1-2)."""

    application: str = "VIGIL"
    facility: str = "VIGIL"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    patient_class: str = "O"
    gateway_eui64: str = "0200000000000000"


@dataclass(frozen=True, slots=True)
class BedContext:
    """The bed a message is about: its place (PV1-3) and its patient (PID-3) if one is known."""

    ward: str
    bed: str
    patient_id: str | None = None

    @property
    def eui64(self) -> str:
        """The bed's stable device identity (the MDS of the containment tree)."""
        return eui64(f"bed:{self.ward}/{self.bed}")


@dataclass(frozen=True, slots=True)
class Metric:
    """One observation for PCD-01: `value` None when it is invalid (sent without a number)."""

    param: Param
    value: float | None
    t: float
    device_id: str


def eui64(name: str) -> str:
    """A stable EUI-64 for `name`: 16 hex digits, locally administered, unicast.

    Vigil's device ids are names ("mon1"), not hardware addresses; OBX-18 and MSH-3 want an
    EUI-64, so one is derived from the name (IEEE: the U/L bit set marks it as local).
    """
    digest = bytearray(hashlib.sha256(name.encode()).digest()[:8])
    digest[0] = (digest[0] | 0x02) & 0xFE
    return digest.hex().upper()


def hl7_time(t: float) -> str:
    """Epoch seconds as an HL7 DTM in UTC with its offset; milliseconds when there are any."""
    stamp = dt.datetime.fromtimestamp(t, tz=dt.UTC)
    text = stamp.strftime("%Y%m%d%H%M%S")
    ms = round((t - math.floor(t)) * 1000)
    if ms and ms < 1000:
        text += f".{ms:03d}"
    return text + "+0000"


def escape(text: str) -> str:
    """`text` safe inside a field: HL7 escape sequences for the delimiters, no line breaks."""
    out = text.replace("\\", "\\E\\")
    for char, seq in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(char, seq)
    return " ".join(out.splitlines())


def _number(value: float) -> str:
    """An NM: no exponent, no trailing zeros (`97`, `36.6`)."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def _segment(name: str, fields: Sequence[str]) -> str:
    """`name|f1|f2…` without trailing empty fields."""
    items = list(fields)
    while items and not items[-1]:
        items.pop()
    return "|".join([name, *items])


def _obx(  # noqa: PLR0913 - the OBX fields this profile uses, by name
    set_id: int,
    *,
    value_type: str = "",
    identifier: str,
    sub_id: str,
    value: str = "",
    units: str = "",
    reference_range: str = "",
    abnormal: str = "",
    status: str = "R",
    t: float | None = None,
    method: str = "",
    equipment: str = "",
) -> str:
    fields = [""] * 18
    fields[0] = str(set_id)
    fields[1] = value_type
    fields[2] = identifier
    fields[3] = sub_id
    fields[4] = value
    fields[5] = units
    fields[6] = reference_range
    fields[7] = abnormal
    fields[10] = status
    fields[13] = "" if t is None else hl7_time(t)
    fields[16] = method
    fields[17] = equipment
    return _segment("OBX", fields)


def _msh(header: Header, *, message_type: str, control_id: str, now: float, profile: str) -> str:
    fields = [""] * 20
    fields[0] = "^~\\&"
    fields[1] = f"{escape(header.application)}^{header.gateway_eui64}^EUI-64"
    fields[2] = escape(header.facility)
    fields[3] = escape(header.receiving_application)
    fields[4] = escape(header.receiving_facility)
    fields[5] = hl7_time(now)
    fields[7] = message_type
    fields[8] = control_id
    fields[9] = header.processing_id
    fields[10] = "2.6"
    fields[13] = "AL"
    fields[14] = "NE"
    fields[16] = "UNICODE UTF-8"
    fields[19] = profile
    # MSH-1 is the field separator itself: MSH|^~\&|…
    return "MSH|" + _segment("", fields)[1:]


def _patient(header: Header, bed: BedContext) -> list[str]:
    """PID and PV1.

    Without an open session the patient is unknown: PID-3 says so, and the receiver routes by
    the location in PV1-3 (docs/hl7.md "Patient").
    """
    facility = escape(header.facility)
    if bed.patient_id:
        pid3 = f"{escape(bed.patient_id)}^^^{facility}^MR"
    else:
        pid3 = f"UNKNOWN^^^{facility}"
    pid = _segment("PID", ["", "", pid3, "", "^^^^^^U"])
    location = f"{escape(bed.ward)}^^{escape(bed.bed)}^{facility}"
    pv1 = _segment("PV1", ["", header.patient_class, location])
    return [pid, pv1]


def vitals_message(
    header: Header, bed: BedContext, metrics: Iterable[Metric], *, control_id: str, now: float
) -> str:
    """A PCD-01 ORU^R01: the bed's observations, each with its own time (OBX-14).

    Only parameters with an MDC mapping (`METRICS`) are reported; an invalid observation is
    reported without a number (OBX-2, OBX-5 and OBX-6 empty, OBX-11 `X`). Raises ValueError if
    nothing is left to report.
    """
    rows = sorted(
        ((METRICS[m.param], m) for m in metrics if m.param in METRICS),
        key=lambda row: [int(x) for x in row[0].path.split(".")],
    )
    if not rows:
        raise ValueError("no observation with an MDC code to report")
    order = f"{control_id}^{escape(header.application)}"
    segments = [
        _msh(
            header,
            message_type="ORU^R01^ORU_R01",
            control_id=control_id,
            now=now,
            profile=PROFILE_PCD01,
        ),
        *_patient(header, bed),
        _segment(
            "OBR",
            ["1", order, f"{order}^{bed.eui64}^EUI-64", _OBR4_VITALS, "", "", hl7_time(now)],
        ),
    ]
    obx = [_obx(1, identifier=_MDS[0], sub_id=_MDS[1], status="X", equipment=f"{bed.eui64}^EUI-64")]
    shown: set[str] = set()
    for code, m in rows:
        for path in (code.vmd, code.channel):
            if path in _DEVICES and path not in shown:
                shown.add(path)
                obx.append(_obx(len(obx) + 1, identifier=_DEVICES[path], sub_id=path, status="X"))
        equipment = f"{eui64(f'device:{bed.ward}/{bed.bed}/{m.device_id}')}^EUI-64"
        valid = m.value is not None and math.isfinite(m.value)
        obx.append(
            _obx(
                len(obx) + 1,
                value_type="NM" if valid else "",
                identifier=code.identifier,
                sub_id=code.path,
                value=_number(m.value) if valid and m.value is not None else "",
                units=code.unit.field if valid else "",
                status="R" if valid else "X",
                t=m.t,
                method=_AUTO,
                equipment=equipment,
            )
        )
    return "\r".join(segments + obx)


def _metric_of(param: str | None) -> MetricCode | None:
    if param is None:
        return None
    try:
        return METRICS.get(Param(param))
    except ValueError:
        return None


def side_of(event: WireAlarmEvent | WireActiveAlarm) -> str:
    """`L`: the event's value is below its limit, `H` above it; empty without value and limit."""
    if event.value is None or event.limit is None:
        return ""
    if event.value < event.limit:
        return "L"
    if event.value > event.limit:
        return "H"
    return ""


def alarm_message(
    header: Header,
    bed: BedContext,
    event: WireAlarmEvent,
    *,
    control_id: str,
    now: float,
    audio_paused: bool = False,
    side: str | None = None,
    latched: bool = False,
) -> str:
    """A PCD-04 ORU^R40 for one alarm event: OBR-3 `alarm_id^seq^bed EUI-64^EUI-64`, 7 facets.

    The mapping of Vigil's states (docs/hl7.md): active → start, acknowledged → update with
    alert-acknowledged, escalated → escalate, cleared → end (state inactive).

    `audio_paused`: the bed's audio is paused now, reported as the inactivation state of an
    unacknowledged alarm. `side`: which side of its limit the alarm is about (`L` below, `H`
    above), as its start event showed it; later events carry the latest reading, which may be
    back in range (a cleared alarm), so the event identification must not come from them.
    None: taken from this event's value. `latched`: the alarm's condition has ended while it
    waits for acknowledgement (the bed's active list, docs/ALARMS.md "States"): state facet
    `latched` instead of `active`.
    """
    if event.state is AlarmState.ACKNOWLEDGED:
        inactivation = "alert-acknowledged"
    elif event.state is not AlarmState.CLEARED and audio_paused:
        inactivation = "audio-paused"
    else:
        inactivation = "enabled"
    state = "latched" if latched else "active"
    if event.state is AlarmState.CLEARED:
        state = "inactive"
    return _pcd04(
        header,
        bed,
        event,
        control_id=control_id,
        now=now,
        side=side,
        facets=(_PHASES[event.state], state, inactivation),
    )


def state_message(
    header: Header,
    bed: BedContext,
    alarm: WireActiveAlarm,
    *,
    t: float,
    latched: bool,
    control_id: str,
    now: float,
    audio_paused: bool = False,
) -> str:
    """A PCD-04 `update` for a change of an active alarm's state facet, no alarm event.

    `latched`: its condition ended at `t` (state `latched`), else it holds again (`active`);
    the bed's active list says so (docs/ALARMS.md "States", docs/hl7.md). The identification
    and the limit's side are the activation's (`alarm.value` is the crossing value); the
    source row has no reading, as the list carries none of that moment, and OBR-3 no `seq`,
    which numbers the bed's events.
    """
    event = WireAlarmEvent(
        t=t,
        code=alarm.code,
        priority=alarm.priority,
        kind=alarm.kind,
        state=AlarmState.ACTIVE,
        param=alarm.param,
        limit=alarm.limit,
        phase=Phase.NONE,
        alarm_id=alarm.alarm_id,
    )
    side = side_of(alarm)
    inactivation = "audio-paused" if audio_paused else "enabled"
    return _pcd04(
        header,
        bed,
        event,
        control_id=control_id,
        now=now,
        side=side,
        facets=("update", "latched" if latched else "active", inactivation),
    )


def _pcd04(
    header: Header,
    bed: BedContext,
    event: WireAlarmEvent,
    *,
    control_id: str,
    now: float,
    side: str | None,
    facets: tuple[str, str, str],
) -> str:
    """The ORU^R40 of `event`; `facets`: its phase, state and inactivation state."""
    metric = _metric_of(event.param)
    base = metric.path if metric is not None else _MDS[1]
    direction = side if side is not None else side_of(event)
    # the source's own abnormality: is this reading still beyond the limit?
    beyond = direction if side_of(event) == direction else ""
    priority = _PRIORITIES[event.priority]
    alert_type = _TYPES[event.kind]
    alarm_id = escape(event.alarm_id or event.code)
    update = "" if event.seq is None else str(event.seq)
    segments = [
        _msh(
            header,
            message_type="ORU^R40^ORU_R40",
            control_id=control_id,
            now=now,
            profile=PROFILE_PCD04,
        ),
        *_patient(header, bed),
        _segment(
            "OBR",
            [
                "1",
                f"{control_id}^{escape(header.application)}",
                # the alarm's identity (ST, up to 199) first, then its update: Vigil's ids
                # are longer than the 20 characters EI.2 allows
                f"{alarm_id}^{update}^{bed.eui64}^EUI-64",
                EVENT_ALARM,
                "",
                "",
                hl7_time(event.t),
            ],
        ),
    ]
    if metric is not None and direction:
        event_id = _EVT_LO if direction == "L" else _EVT_HI
    else:
        code = escape(event.code)
        event_id = f"{code}^{code}^{_LOCAL_CODES}"
    flags = "~".join(x for x in (direction, priority, alert_type) if x)
    obx = [
        _obx(
            1,
            value_type="ST",
            identifier=event_id,
            sub_id=f"{base}.1",
            value=escape(event.code),
            abnormal=flags,
            t=event.t,
            equipment=f"{bed.eui64}^EUI-64",
        ),
    ]
    if metric is not None:
        value = event.value if event.value is not None and math.isfinite(event.value) else None
        limit = "" if event.limit is None else _number(event.limit)
        reference = {"L": f">{limit}", "H": f"<{limit}"}.get(direction, "")
        obx.append(
            _obx(
                2,
                value_type="" if value is None else "NM",
                identifier=metric.identifier,
                sub_id=f"{base}.2",
                value="" if value is None else _number(value),
                units="" if value is None else metric.unit.field,
                reference_range=escape(reference),
                abnormal=beyond,
                t=event.t,
            )
        )
    else:
        obx.append(
            _obx(
                2,
                value_type="ST",
                identifier=_SOURCE,
                sub_id=f"{base}.2",
                value=escape(event.param or event.message or event.code),
                t=event.t,
            )
        )
    phase, state, inactivation = facets
    for facet, (identifier, text) in enumerate(
        (
            (_PHASE, phase),
            (_STATE, state),
            (_INACTIVATION, inactivation),
            (_PRIORITY, priority),
            (_TYPE, alert_type),
        ),
        start=3,
    ):
        obx.append(
            _obx(
                facet,
                value_type="ST",
                identifier=identifier,
                sub_id=f"{base}.{facet}",
                value=text,
                t=event.t,
            )
        )
    return "\r".join(segments + obx)
