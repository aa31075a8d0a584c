"""Nurse commands on `…/cmd` (docs/ARCHITECTURE.md "MQTT"), validated at the edge.

A command is a JSON object `{"cmd": NAME, "request_id": str, "user": str, ...}`. `parse_command`
turns a payload into a typed command, or raises `CommandRejectedError` with a reason for the
result topic.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "ABSOLUTE_CONTRAINDICATIONS",
    "RELATIVE_CONTRAINDICATIONS",
    "Ack",
    "AudioPause",
    "Checklist",
    "Command",
    "CommandRejectedError",
    "Discharge",
    "OpenSession",
    "Override",
    "RecordScore",
    "StartInfusion",
    "StopInfusion",
    "parse_command",
]

_TEXT = Annotated[str, Field(min_length=1, max_length=200)]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=100)]
    user: _TEXT


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


class Checklist(BaseModel):
    """The contraindication checklist, each item answered true or false."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    uncontrolled_hypertension: bool
    severe_cardiovascular_disease: bool
    raised_intracranial_pressure: bool
    active_psychosis_or_mania: bool
    substance_use_disorder: bool
    severe_hepatic_impairment: bool
    pregnancy: bool
    suicidal_intent_without_safety_plan: bool
    # benzodiazepines, opioids: not a contraindication, raises respiratory-depression vigilance
    concomitant_cns_depressants: bool

    def absolute(self) -> list[str]:
        """The absolute contraindications ticked."""
        return [k for k in ABSOLUTE_CONTRAINDICATIONS if getattr(self, k)]

    def relative(self) -> list[str]:
        """The relative contraindications ticked."""
        return [k for k in RELATIVE_CONTRAINDICATIONS if getattr(self, k)]


class OpenSession(_Cmd):
    """Open a session (phase `pre`)."""

    cmd: Literal["open_session"]
    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    # The weight range is checked by the session (docs/PROTOCOL.md: refused out of 30-250 kg) so the
    # refusal carries the clinical reason rather than a schema message.
    weight_kg: float
    concentration_mg_per_ml: Annotated[float, Field(gt=0, le=100)]
    checklist: Checklist


class StartInfusion(_Cmd):
    """Start the infusion (phase `infusion`)."""

    cmd: Literal["start_infusion"]


class StopInfusion(_Cmd):
    """Stop the infusion (phase `post`)."""

    cmd: Literal["stop_infusion"]


class Discharge(_Cmd):
    """Discharge the patient and end the session (phase `none`)."""

    cmd: Literal["discharge"]


class Override(_Cmd):
    """A clinician's recorded override of one gate, with a reason."""

    cmd: Literal["override"]
    what: Literal["bp_pre_gate", "early_discharge", "relative_contraindication"]
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class Ack(_Cmd):
    """Acknowledge one alarm."""

    cmd: Literal["ack"]
    alarm_id: Annotated[str, Field(min_length=1, max_length=200)]


class AudioPause(_Cmd):
    """Pause the audible alarm signal (docs/ALARMS.md: 120 s)."""

    cmd: Literal["audio_pause"]


class RecordScore(_Cmd):
    """Record a PTSD score (CAPS-5, PCL-5 or IES-R)."""

    cmd: Literal["record_score"]
    scale: Literal["CAPS-5", "PCL-5", "IES-R", "CADSS"]
    value: Annotated[float, Field(ge=0, le=200)]


Command = Annotated[
    OpenSession
    | StartInfusion
    | StopInfusion
    | Discharge
    | Override
    | Ack
    | AudioPause
    | RecordScore,
    Field(discriminator="cmd"),
]
_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class CommandRejectedError(Exception):
    """A command that is refused; `request_id` is echoed when it could be read."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        self.reason = reason
        self.request_id = request_id
        super().__init__(reason)


def parse_command(payload: bytes) -> Command:
    """Validate a command payload.

    Raises:
        CommandRejectedError: with a reason naming the field at fault.
    """
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer literal over the
        # interpreter's digit limit; RecursionError is nesting deeper than the decoder's stack.
        raise CommandRejectedError(f"not JSON: {exc}") from None
    request_id = data.get("request_id") if isinstance(data, dict) else None
    request_id = request_id if isinstance(request_id, str) else None
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        reasons = []
        for err in exc.errors():
            # pydantic puts the command name (the union's tag) first in the location
            path = err["loc"][1:] if err["loc"] and err["loc"][0] in _CMD_NAMES else err["loc"]
            loc = ".".join(str(p) for p in path) or "(command)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "union_tag_invalid":
                loc, msg = "cmd", f"unknown command {err.get('ctx', {}).get('tag')!r}"
            elif err["type"] == "union_tag_not_found":
                loc, msg = "cmd", "missing field"
            reasons.append(f"{loc}: {msg}")
        raise CommandRejectedError("; ".join(reasons), request_id) from None


_CMD_NAMES = frozenset(
    {
        "open_session",
        "start_infusion",
        "stop_infusion",
        "discharge",
        "override",
        "ack",
        "audio_pause",
        "record_score",
    }
)
