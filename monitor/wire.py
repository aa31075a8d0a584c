"""The one encoder and decoder of every payload on the ward broker, and of its topic names.

A bed publishes, and a ward-level program (the HL7 gateway, the central station, the nurse
console) reads, under `<root>/<ward>/<bed>/…` (docs/ARCHITECTURE.md "MQTT"; the root is
`TOPIC_ROOT` unless configured). These models say what each payload holds; each `encode_*`
function is what the bed's publisher (monitor/ward.py) sends, and each `decode_*` function turns
the raw MQTT payload into a model or raises `WireError` saying why not. The bed's producers are
`Sample.to_json` and `AlarmEvent.to_json` (kernel/vocabulary.py), `BedCore.active_alarms` and
`BedCore.session_state` (monitor/session.py) and the birth and will of monitor/ward.py.

Readers must tolerate what they do not know: a newer bed may add fields, so unknown keys are
kept (`extra="allow"`) and never an error; a missing or mistyped known field is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kernel.vocabulary import TOPIC_ROOT, AlarmKind, AlarmState, Param, Phase, Priority, Sample
from monitor.commands import Command, parse_command

__all__ = [
    "TOPIC_KINDS",
    "TOPIC_ROOT",
    "BedTopic",
    "WireActiveAlarm",
    "WireAlarmEvent",
    "WireBaseline",
    "WireCommandResult",
    "WireError",
    "WireSample",
    "WireSession",
    "WireSessionInfo",
    "WireStatus",
    "bed_prefix",
    "decode_active_alarms",
    "decode_alarm_event",
    "decode_command",
    "decode_command_result",
    "decode_sample",
    "decode_session",
    "decode_status",
    "encode_active_alarms",
    "encode_alarm_event",
    "encode_command",
    "encode_command_result",
    "encode_sample",
    "encode_session",
    "encode_status",
    "parse_topic",
    "topic_filters",
]

# What a bed publishes or reads under its prefix (docs/ARCHITECTURE.md "MQTT").
TOPIC_KINDS: Final = ("status", "session", "vitals", "alarms", "alarms/active", "cmd", "cmd/result")


def bed_prefix(ward: str, bed: str, root: str = TOPIC_ROOT) -> str:
    """`<root>/<ward>/<bed>`: the topic prefix of one bed."""
    return f"{root}/{ward}/{bed}"


def topic_filters(
    kinds: Sequence[str], *, ward: str | None = None, root: str = TOPIC_ROOT
) -> list[str]:
    """The subscriptions for `kinds` of every bed of `ward` (of every ward when None)."""
    return [f"{root}/{ward or '+'}/+/{kind}" for kind in kinds]


class BedTopic(NamedTuple):
    """A topic under `<root>/<ward>/<bed>/`, split."""

    ward: str
    bed: str
    kind: str

    @property
    def key(self) -> str:
        """`<ward>/<bed>`: the bed's name on the ward."""
        return f"{self.ward}/{self.bed}"


def parse_topic(topic: str, root: str = TOPIC_ROOT) -> BedTopic | None:
    """`topic` split into ward, bed and one of `TOPIC_KINDS`; None for any other topic."""
    levels = root.count("/") + 1
    parts = topic.split("/")
    if len(parts) < levels + 3 or "/".join(parts[:levels]) != root:
        return None
    kind = "/".join(parts[levels + 2 :])
    if kind not in TOPIC_KINDS:
        return None
    return BedTopic(parts[levels], parts[levels + 1], kind)


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
    principal: str | None = None
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
    # its condition has ended, it waits for acknowledgement (docs/ALARMS.md "States"); since
    # `latched_t` (None for a system alarm's occurrence, over as it is announced)
    latched: bool = False
    latched_t: float | None = None


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
    `audio_pause` adds `audio_paused_until`; the rest is kept as extra fields. `request_id` is
    None when the command could not be read.
    """

    request_id: str | None = None
    ok: bool
    error: str | None = None
    # the broker login the command came from (monitor/authority.py)
    principal: str | None = None
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
    return _validate(model, data, what)


def _validate(model: type[_M], data: Any, what: str) -> _M:
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


def decode_session(payload: bytes | str) -> WireSession:
    """A `…/session` payload.

    Raises:
        WireError: not a session state JSON object.
    """
    return _decode(WireSession, payload, "session")


def decode_active_alarms(
    payload: bytes | str, *, skip: Callable[[str], None] | None = None
) -> list[WireActiveAlarm]:
    """A `…/alarms/active` payload: the bed's active alarms, highest priority first.

    With `skip`, an entry that is not an active alarm is left out and `skip(reason)` called
    (a console shows the rest); without, it is an error.

    Raises:
        WireError: not a JSON list; or, without `skip`, an entry that is not an active alarm.
    """
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"active alarms: not JSON: {exc}") from None
    if not isinstance(data, list):
        raise WireError(f"active alarms: expected a JSON list, got {type(data).__name__}")
    out: list[WireActiveAlarm] = []
    for i, item in enumerate(data):
        try:
            out.append(_validate(WireActiveAlarm, item, f"active alarms[{i}]"))
        except WireError as exc:
            if skip is None:
                raise
            skip(str(exc))
    return out


def decode_status(payload: bytes | str) -> WireStatus:
    """A `…/status` payload; a bare `online`/`offline` (older beds, other tools) is accepted.

    Raises:
        WireError: neither a status object nor a bare status word.
    """
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    if text.strip().lower() in {"online", "offline"}:
        return WireStatus(status="online" if text.strip().lower() == "online" else "offline")
    return _decode(WireStatus, payload, "status")


def decode_command_result(payload: bytes | str) -> WireCommandResult:
    """A `…/cmd/result` payload.

    Raises:
        WireError: not a command result JSON object.
    """
    return _decode(WireCommandResult, payload, "command result")


def decode_command(payload: bytes | str) -> Command:
    """A `…/cmd` payload, validated as the bed validates it (`monitor.commands.parse_command`).

    Raises:
        monitor.commands.CommandRejectedError: the reason, for the result topic.
    """
    data = payload.encode() if isinstance(payload, str) else payload
    return parse_command(data)


# ------------------------------------------------------------------------------ encoding
# Only the fields that are set are written: a payload carries what its producer said, and a
# reader's defaults stand for the rest.


def _encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_unset=True).encode()


def _encode_any(item: BaseModel | Mapping[str, Any]) -> bytes:
    return _encode(item) if isinstance(item, BaseModel) else json.dumps(dict(item)).encode()


def encode_sample(sample: Sample) -> bytes:
    """The `…/vitals` payload of `sample` (Sample JSON, `Sample.to_json`)."""
    return json.dumps(sample.to_json()).encode()


def encode_alarm_event(event: Mapping[str, Any]) -> bytes:
    """The `…/alarms` payload of an event as the outbox holds it (`AlarmEvent.to_json`).

    Not validated again: an alarm waiting in the outbox is published as it was recorded, never
    refused at the last step (docs/DESIGN.md "Never lose an alarm").
    """
    return json.dumps(dict(event)).encode()


def encode_active_alarms(active: Sequence[WireActiveAlarm | Mapping[str, Any]]) -> bytes:
    """The retained `…/alarms/active` payload, in the order given (highest priority first).

    Entries are models, or the core's own mappings (`BedCore.active_alarms`), written as they
    are: tests/monitor/test_wire.py checks that they decode.
    """
    return b"[" + b",".join(_encode_any(a) for a in active) + b"]"


def encode_session(state: WireSession | Mapping[str, Any]) -> bytes:
    """The retained `…/session` payload (a model, or `BedCore.session_state` as it is)."""
    return _encode_any(state)


def encode_status(status: WireStatus) -> bytes:
    """The retained `…/status` payload: the birth message or the Last Will."""
    return _encode(status)


def encode_command_result(result: WireCommandResult | Mapping[str, Any]) -> bytes:
    """The `…/cmd/result` payload."""
    model = (
        result
        if isinstance(result, WireCommandResult)
        else WireCommandResult.model_validate(result)
    )
    return _encode(model)


def encode_command(command: Command) -> bytes:
    """The `…/cmd` payload of `command` (what `decode_command` reads back)."""
    return command.model_dump_json(exclude_none=True).encode()
