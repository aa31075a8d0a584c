"""Nurse commands on `…/cmd` (docs/ARCHITECTURE.md "MQTT"), validated at the edge.

A command is a JSON object `{"cmd": NAME, "request_id": str, "user": str, ...}`. `parse_command`
turns a payload into a typed command, or raises `CommandRejectedError` with a reason for the
result topic.
"""

from __future__ import annotations

import json
import textwrap
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from kernel.vocabulary import ABSOLUTE_CONTRAINDICATIONS, RELATIVE_CONTRAINDICATIONS

__all__ = [
    "OVERRIDE_MEANINGS",
    "Ack",
    "AudioPause",
    "Checklist",
    "Command",
    "CommandRejectedError",
    "Discharge",
    "OpenSession",
    "Override",
    "OverrideWhat",
    "RecordScore",
    "StartInfusion",
    "StopInfusion",
    "checklist_help",
    "commands_help",
    "parse_command",
]

_TEXT = Annotated[str, Field(min_length=1, max_length=200)]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=100)]
    user: _TEXT


def _item(meaning: str) -> Any:
    # the description is what `vigil cmd --help` and `checklist_help` show for the item
    return Field(description=meaning)


class Checklist(BaseModel):
    """The contraindication checklist, each item answered true or false."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    uncontrolled_hypertension: bool = _item(
        "absolute: blood pressure not under control; the session cannot open"
    )
    severe_cardiovascular_disease: bool = _item(
        "absolute: severe heart or vascular disease; the session cannot open"
    )
    raised_intracranial_pressure: bool = _item(
        "absolute: raised pressure inside the skull; the session cannot open"
    )
    active_psychosis_or_mania: bool = _item(
        "absolute: current psychosis or mania; the session cannot open"
    )
    substance_use_disorder: bool = _item(
        "relative: a substance use disorder; opens only after "
        "override what=relative_contraindication"
    )
    severe_hepatic_impairment: bool = _item(
        "relative: severe liver impairment; opens only after "
        "override what=relative_contraindication"
    )
    pregnancy: bool = _item(
        "relative: the patient is pregnant; opens only after "
        "override what=relative_contraindication"
    )
    suicidal_intent_without_safety_plan: bool = _item(
        "relative: active suicidal intent and no safety plan; opens only after "
        "override what=relative_contraindication"
    )
    # not a contraindication: recorded, and the staff watch breathing more closely
    concomitant_cns_depressants: bool = _item(
        "not a contraindication: benzodiazepines or opioids taken too; recorded, "
        "watch for respiratory depression"
    )

    def absolute(self) -> list[str]:
        """The absolute contraindications ticked."""
        return [k for k in ABSOLUTE_CONTRAINDICATIONS if getattr(self, k)]

    def relative(self) -> list[str]:
        """The relative contraindications ticked."""
        return [k for k in RELATIVE_CONTRAINDICATIONS if getattr(self, k)]


def checklist_help() -> str:
    """Every checklist item with its meaning, from the `Checklist` model itself."""
    return "\n".join(
        f"  checklist.{name}=true|false\n{_wrapped(str(info.description))}"
        for name, info in Checklist.model_fields.items()
    )


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=78, initial_indent=" " * 6, subsequent_indent=" " * 6)


def commands_help() -> str:
    """`vigil cmd --help`'s epilog: each command's fields, the overrides and the checklist."""
    scales = "|".join(get_args(RecordScore.model_fields["scale"].annotation))
    overrides = "\n".join(f"  what={w}\n{_wrapped(m)}" for w, m in OVERRIDE_MEANINGS.items())
    return f"""commands (CMD) and their fields:
  open_session patient_id=ID weight_kg=KG concentration_mg_per_ml=MG_PER_ML
               checklist.ITEM=true|false (every item below, each answered)
  start_infusion | stop_infusion | discharge | audio_pause   (no fields)
  override what=WHAT reason=TEXT    (a clinician's decision, recorded with who and why)
  ack code=CODE | ack alarm_id=ID   (CODE: the bed's active alarm of that code, e.g. BP_CRISIS)
  record_score scale={scales} value=N

override what= (accepted only while its gate is closed):
{overrides}

open_session checklist (an item left out is refused, not taken as false):
{checklist_help()}

example:
  vigil cmd --config /etc/vigil/bed.toml ack code=BP_CRISIS

exit status: 0 accepted, 1 refused (the reason is printed), 2 usage error or no answer"""


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


OverrideWhat = Literal[
    "bp_pre_gate", "early_discharge", "relative_contraindication", "discharge_without_vitals"
]
# what each override lets through (docs/PROTOCOL.md steps 1, 2 and 5); shown by `vigil cmd --help`.
# The bed accepts one only while its gate is closed (`monitor.session`).
OVERRIDE_MEANINGS: dict[str, str] = {
    "relative_contraindication": "open a session with a relative contraindication ticked",
    "bp_pre_gate": "start the infusion while BP_PRE_GATE is active (BP >= 140/90 twice)",
    "early_discharge": "discharge before 120 min of observation or with DISCHARGE_NOT_READY",
    "discharge_without_vitals": (
        "discharge while SPO2_NO_DATA or HR_NO_DATA is active or the latest valid cuff "
        "determination is over 20 min old"
    ),
}


class Override(_Cmd):
    """A clinician's recorded override of one gate, with a reason."""

    cmd: Literal["override"]
    what: OverrideWhat
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class Ack(_Cmd):
    """Acknowledge one alarm, named by its `alarm_id` or by the `code` of the bed's active one.

    A bed has at most one active alarm per code, so the code names it as surely as the id and
    is what a nurse at a shell can see and type (issue 11 item 8).
    """

    cmd: Literal["ack"]
    alarm_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9_]+$")] | None = None

    @model_validator(mode="after")
    def _one_name(self) -> Ack:
        if (self.alarm_id is None) == (self.code is None):
            raise ValueError("give exactly one of alarm_id and code")
        return self


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
        data: Any = json.loads(payload, parse_constant=_no_constant)
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
            loc = ".".join(_short(str(p)) for p in path) or "(command)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "union_tag_invalid":
                loc, msg = "cmd", f"unknown command {err.get('ctx', {}).get('tag')!r}"
            elif err["type"] == "union_tag_not_found":
                loc, msg = "cmd", "missing field"
            reasons.append(f"{loc}: {msg}")
        raise CommandRejectedError("; ".join(reasons), request_id) from None


def _short(text: str, most: int = 40) -> str:
    """A field name as a refusal quotes it: a hostile one is not echoed whole."""
    return text if len(text) <= most else f"{text[:most]}… ({len(text)} characters)"


def _no_constant(name: str) -> float:
    # RFC 8259 §6: NaN and Infinity are not JSON numbers (Python's decoder accepts them)
    raise ValueError(f"{name} is not a JSON number (RFC 8259 section 6)")


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
