"""Typed models of the payloads a bed publishes on the ward broker, for the ward's readers.

A ward-level program (the HL7 gateway, the central station, the nurse console) reads what the
beds publish under `vigil/<ward>/<bed>/…` (docs/ARCHITECTURE.md "MQTT"). These models say what each
payload holds, and each `decode_*` function turns the raw MQTT payload into one or raises
`WireError` saying why not. They describe what the daemon publishes today: `Sample.to_json`
and `AlarmEvent.to_json` (kernel/vocabulary.py), the birth and will of monitor/ward.py, and
`SessionCore.session_state` (monitor/session.py).

Readers must tolerate what they do not know: a newer bed may add fields, so unknown keys are
kept (`extra="allow"`) and never an error; a missing or mistyped known field is.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kernel.vocabulary import AlarmKind, AlarmState, Param, Phase, Priority

__all__ = [
    "WireActiveAlarm",
    "WireAlarmEvent",
    "WireBaseline",
    "WireCommandResult",
    "WireError",
    "WireSample",
    "WireSession",
    "WireSessionInfo",
    "WireStatus",
    "decode_active_alarms",
    "decode_alarm_event",
    "decode_command_result",
    "decode_sample",
    "decode_session",
    "decode_status",
]


class WireError(ValueError):
    """A payload that is not what its topic carries; the message says what is wrong."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class WireSample(_Wire):
    """Sample JSON (`…/vitals`): one reading; `value` None when the device sent none."""

    t: float
    param: Param
    value: float | None
    valid: bool
    device_id: str
    unit: str | None = None
    mdc: int | None = None
    reason: str | None = None

    @property
    def number(self) -> float | None:
        """The value if it is a finite number the device calls valid, else None."""
        if not self.valid or self.value is None or not math.isfinite(self.value):
            return None
        return self.value


class WireAlarmEvent(_Wire):
    """Alarm event JSON (`…/alarms`); live events carry `bed`, `alarm_id`, `session_id`, `seq`."""

    t: float
    code: str
    priority: Priority
    kind: AlarmKind
    state: AlarmState
    param: str | None = None
    value: float | None = None
    limit: float | None = None
    phase: Phase
    message: str = ""
    level: int | None = None
    user: str | None = None
    bed: str | None = None
    alarm_id: str | None = None
    session_id: str | None = None
    seq: int | None = None


class WireActiveAlarm(_Wire):
    """One entry of the retained `…/alarms/active` list (`BedCore.active_alarms`)."""

    alarm_id: str | None = None
    code: str
    priority: Priority
    kind: AlarmKind
    state: Literal["active", "acknowledged"]
    since: float
    since_iso: str | None = None
    param: str | None = None
    value: float | None = None
    limit: float | None = None
    level: int | None = None
    latched: bool = False


class WireBaseline(_Wire):
    """The baseline taken at infusion start (alarms.engine.Baseline)."""

    t: float
    sys0: float | None = None
    dia0: float | None = None
    hr0: float | None = None
    spo2_0: float | None = None
    pre_determinations: int = 0


class WireSessionInfo(_Wire):
    """The open session (monitor.session.SessionInfo): who, how much, when."""

    session_id: str
    patient_id: str
    weight_kg: float | None = None
    concentration_mg_per_ml: float | None = None
    dose_mg: float | None = None
    rate_ml_per_h: float | None = None
    opened_t: float | None = None
    opened_by: str | None = None
    cns_depressants: bool | None = None
    relative_contraindications: list[str] = Field(default_factory=list)
    infusion_start_t: float | None = None
    infusion_stop_t: float | None = None
    overrides: list[dict[str, Any]] = Field(default_factory=list)
    scores: list[dict[str, Any]] = Field(default_factory=list)


class WireSession(_Wire):
    """The retained `…/session` payload: phase, the session if one is open, baseline, timers."""

    t: float
    time: str | None = None
    phase: Phase
    session: WireSessionInfo | None = None
    pending_overrides: list[dict[str, Any]] = Field(default_factory=list)
    baseline: WireBaseline | None = None
    audio_paused_until: float | None = None
    infusion_elapsed_s: float | None = None
    observation_elapsed_s: float | None = None
    course: dict[str, Any] | None = None

    @property
    def patient_id(self) -> str | None:
        """The patient of the open session, if any."""
        return None if self.session is None else self.session.patient_id


class WireStatus(_Wire):
    """The retained `…/status`: the birth message (`online`) or the Last Will (`offline`)."""

    status: Literal["online", "offline"]
    ward: str | None = None
    bed: str | None = None
    version: str | None = None
    devices: list[str] = Field(default_factory=list)
    t: float | None = None
    time: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class WireCommandResult(_Wire):
    """The bed's answer on `…/cmd/result` (docs/ARCHITECTURE.md "Commands").

    An accepted `open_session` adds `session_id`, `dose_mg` and `rate_ml_per_h`; an accepted
    `audio_pause` adds `audio_paused_until`; the rest is kept as extra fields.
    """

    request_id: str | None = None
    ok: bool
    error: str | None = None
    session_id: str | None = None
    dose_mg: float | None = None
    rate_ml_per_h: float | None = None
    audio_paused_until: float | None = None


_M = TypeVar("_M", bound=BaseModel)


def _decode(model: type[_M], payload: bytes | str, what: str) -> _M:
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"{what}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(object)'}: {e['msg']}" for e in exc.errors()
        )
        raise WireError(f"{what}: {reasons}") from None


def decode_sample(payload: bytes | str) -> WireSample:
    """A `…/vitals` payload.

    Raises:
        WireError: not a Sample JSON object.
    """
    return _decode(WireSample, payload, "sample")


def decode_alarm_event(payload: bytes | str) -> WireAlarmEvent:
    """A `…/alarms` payload.

    Raises:
        WireError: not an alarm event JSON object.
    """
    return _decode(WireAlarmEvent, payload, "alarm event")


def decode_command_result(payload: bytes | str) -> WireCommandResult:
    """A `…/cmd/result` payload.

    Raises:
        WireError: not a command result JSON object.
    """
    return _decode(WireCommandResult, payload, "command result")


def decode_session(payload: bytes | str) -> WireSession:
    """A `…/session` payload.

    Raises:
        WireError: not a session state JSON object.
    """
    return _decode(WireSession, payload, "session")


def decode_active_alarms(payload: bytes | str) -> list[WireActiveAlarm]:
    """A `…/alarms/active` payload: the bed's active alarms, highest priority first.

    Raises:
        WireError: not a JSON list of active alarms.
    """
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"active alarms: not JSON: {exc}") from None
    if not isinstance(data, list):
        raise WireError(f"active alarms: expected a JSON list, got {type(data).__name__}")
    return [
        _decode(WireActiveAlarm, json.dumps(item), f"active alarms[{i}]")
        for i, item in enumerate(data)
    ]


def decode_status(payload: bytes | str) -> WireStatus:
    """A `…/status` payload; a bare `online`/`offline` (older beds, other tools) is accepted.

    Raises:
        WireError: neither a status object nor a bare status word.
    """
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    if text.strip().lower() in {"online", "offline"}:
        return WireStatus(status="online" if text.strip().lower() == "online" else "offline")
    return _decode(WireStatus, payload, "status")
