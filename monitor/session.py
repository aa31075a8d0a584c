"""One bed's state: the alarm engine, the infusion session, and the nurse commands that steer it.

`BedCore` is pure (no I/O, no clock of its own): the daemon hands it samples, ticks and commands
with their times and publishes what comes back. Commands follow docs/PROTOCOL.md; a command
that is not allowed now is refused with a reason and changes nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, assert_never

from alarms.engine import ActiveAlarm, AlarmEngine, Rows
from alarms.policy import Policy, load_policy
from kernel.vocabulary import (
    SYSTEM_ALARM_CODES,
    AlarmEvent,
    AlarmState,
    Param,
    Phase,
    Priority,
    ProtocolCode,
    Sample,
    SessionEvent,
    SystemAlarm,
    iso8601,
)
from monitor.commands import (
    Ack,
    AudioPause,
    Command,
    Discharge,
    OpenSession,
    Override,
    RecordScore,
    StartInfusion,
    StopInfusion,
)

__all__ = [
    "BedCore",
    "CommandOutcome",
    "OverrideRecord",
    "SessionInfo",
    "load_bed_policy",
    "protocol_problems",
]

_Result = tuple[str | None, list["AlarmEvent"], dict[str, Any] | None]

DOSE_MG_PER_KG = 0.5  # docs/PROTOCOL.md "Course": ketamine 0.5 mg/kg IV ...
INFUSION_MIN = 40.0  # ... over 40 minutes
WEIGHT_RANGE_KG = (30.0, 250.0)  # docs/PROTOCOL.md: a weight outside 30-250 kg is refused
OBSERVATION_S = 7200.0  # docs/PROTOCOL.md step 4: at least 120 min of observation
# issue 4: a reminder when the infusion runs past 45 min (5 min over the plan)
INFUSION_REMINDER_S = 45 * 60.0
_BP_GATE: Final = ProtocolCode.BP_PRE_GATE
# the overrides a discharge can need, in the order its refusal names them
_DISCHARGE_OVERRIDES: Final = ("discharge_without_vitals", "early_discharge")
# docs/PROTOCOL.md step 5: the bed must have vitals to judge a discharge by: HR and SpO2 flowing
# and a valid cuff determination at most 20 min old.
NO_DATA_CODES: Final = (ProtocolCode.SPO2_NO_DATA, ProtocolCode.HR_NO_DATA)
DETERMINATION_MAX_AGE_S: Final = 20 * 60.0


def protocol_problems(policy: Policy) -> list[tuple[str, str]]:
    """(dotted key, reason) for each code the session protocol needs that `policy` lacks.

    The protocol acts on some policy codes by name (`ProtocolCode`: `BP_PRE_GATE` gates
    start_infusion, the no-data alarms hold a discharge); renaming one in the policy file
    must not silently remove a safety step, so the bed refuses such a policy.
    """
    sections = ("continuous", "determination", "no_data")
    found: list[tuple[str, str]] = []
    for code in ProtocolCode:
        where = [
            (section, i)
            for section in sections
            for i, rule in enumerate(getattr(policy, section))
            if rule.code == code
        ]
        if any(section == code.section for section, _ in where):
            continue
        if where:
            section, i = where[0]
            found.append(
                (f"{section}[{i}].code", f"{code} must be a [[{code.section}]] rule: {code.why}")
            )
        else:
            found.append(
                (
                    code.section,
                    f"no rule has code {code}, which the session protocol needs: {code.why}",
                )
            )
    return found


def load_bed_policy(path: Path | None = None) -> Policy:
    """`load_policy`, and the codes the session protocol needs checked (`protocol_problems`).

    Raises:
        ConfigError: with the file, key and reason of every problem.
    """
    return load_policy(path, checks=(protocol_problems,))


@dataclass
class OverrideRecord:
    """One accepted clinician override: who, why, when, what it was given for, what it let pass.

    `overrode` is what blocked the step when the override was given; `let_through` and
    `let_through_t` are the step it then allowed and when (None: the step never needed it,
    e.g. the gate had cleared by then).
    """

    what: str
    reason: str
    user: str
    t: float
    overrode: str
    let_through: str | None = None
    let_through_t: float | None = None
    # the broker login that sent it (monitor/authority.py), beside the asserted `user`
    principal: str | None = None


@dataclass
class SessionInfo:
    """What the session knows beyond the alarm engine's phase and baseline."""

    session_id: str
    patient_id: str
    weight_kg: float
    concentration_mg_per_ml: float
    dose_mg: float
    rate_ml_per_h: float
    opened_t: float
    opened_by: str
    cns_depressants: bool
    relative_contraindications: list[str]
    infusion_start_t: float | None = None
    infusion_stop_t: float | None = None
    overrides: list[OverrideRecord] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CommandOutcome:
    """The answer to one command and the alarm events it caused."""

    request_id: str | None
    ok: bool
    error: str | None = None
    events: tuple[AlarmEvent, ...] = ()
    detail: dict[str, Any] | None = None
    # events of the ticks that were due before the command was judged (not caused by it)
    ticked: tuple[AlarmEvent, ...] = ()
    # the broker login the command came from (monitor/authority.py)
    principal: str | None = None

    def result_json(self) -> dict[str, Any]:
        """The payload for `…/cmd/result`."""
        out: dict[str, Any] = {"request_id": self.request_id, "ok": self.ok}
        if self.principal is not None:
            out["principal"] = self.principal
        if self.error is not None:
            out["error"] = self.error
        if self.detail:
            out.update(self.detail)
        return out


class BedCore:
    """Engine + session + commands for one bed; pure and deterministic."""

    def __init__(self, policy: Policy, *, ward: str, bed: str, seq: int = 0) -> None:
        self.policy = policy
        self.engine = AlarmEngine(policy)
        self.ward = ward
        self.bed = bed
        self.session: SessionInfo | None = None
        self.seq = seq
        # the principal of the command being applied (`command`), for what it records
        self._principal: str | None = None
        self.audio_paused_until: float | None = None
        self._alarm_ids: dict[str, str] = {}
        # accepted overrides not used yet, by `what`; those of an open session are also in
        # its `overrides` (the same objects, so using one updates the session's record)
        self._pending_overrides: dict[str, OverrideRecord] = {}
        # the latest valid cuff determination (NIBP_SYS), for the discharge check
        self.last_determination_t: float | None = None

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self.engine.phase

    @property
    def idle(self) -> bool:
        """No session and no active patient alarm (system alarms aside, see `restore`)."""
        return (
            self.session is None
            and self.phase is Phase.NONE
            and all(code in SYSTEM_ALARM_CODES for code in self.engine.active)
        )

    def restore(self, event: dict[str, Any]) -> None:
        """Make a system alarm active again as the journal last announced it, without an event.

        A restart replays the journal only from the last idle moment, and system alarms (a
        monitor unplugged, the broker away) do not stop a bed from being idle; the alarm the
        ward was told about is restored whole (`alarm_id`, times, acknowledgement), so it clears
        under its own id when its condition ends.
        """
        code = event["code"]
        if code not in SYSTEM_ALARM_CODES or code in self.engine.active:
            return
        system = SystemAlarm(code)
        self.engine.restore(ActiveAlarm(
            code=code,
            priority=system.priority,
            kind=system.kind,
            activated_t=float(event["t"]),
            param=event.get("param"),
            value=event.get("value"),
            limit=None,
            latching=system.latching,
            acknowledged=event["state"] == "acknowledged",
            condition=not system.latching,
        ))  # fmt: skip
        self._alarm_ids[code] = event["alarm_id"]

    # ------------------------------------------------------------------ inputs

    def samples(self, batch: Iterable[Sample]) -> list[AlarmEvent]:
        """Feed samples (in arrival order); return the stamped events."""
        batch = list(batch)
        for s in batch:
            if s.param is Param.NIBP_SYS and s.valid and math.isfinite(s.value):
                last = self.last_determination_t
                self.last_determination_t = s.t if last is None else max(last, s.t)
        rows = Rows.of((s.t, s.param, s.value, s.valid) for s in batch)
        return self._stamp(self.engine.rows(rows))

    def tick(self, now: float) -> list[AlarmEvent]:
        """Run the ticks due up to `now`, then the session's own reminders."""
        events = self.engine.tick(now)
        s = self.session
        if (
            s is not None
            and s.infusion_start_t is not None
            and s.infusion_stop_t is None
            and now - s.infusion_start_t >= INFUSION_REMINDER_S
            and SystemAlarm.INFUSION_LONG not in self.engine.active
        ):
            events += self.engine.condition(
                SystemAlarm.INFUSION_LONG,
                active=True,
                t=now,
                message=f"infusion running {(now - s.infusion_start_t) / 60:.0f} min "
                f"(planned {INFUSION_MIN:.0f}): check the pump",
            )
        return self._stamp(events)

    def condition(
        self,
        code: str,
        *,
        active: bool,
        now: float,
        message: str,
        param: str | None = None,
        value: float | None = None,
        latching: bool | None = None,
    ) -> list[AlarmEvent]:
        """Raise or clear the system alarm `code` at `now`, after the ticks due up to `now`.

        `latching`, when given (a journal row's), must be the alarm's own (`SystemAlarm`).
        """
        events = self.engine.tick(now)
        events += self.engine.condition(
            code,
            active=active,
            t=now,
            message=message,
            param=param,
            value=value,
            latching=latching,
        )
        return self._stamp(events)

    def command(self, cmd: Command, now: float, *, principal: str | None = None) -> CommandOutcome:
        """Apply a validated command at time `now`, or refuse it with a reason.

        The ticks due up to `now` run first, so a command is judged on the state the alarm
        system has at `now` (e.g. a discharge check due a moment ago); their events are part
        of the outcome (`ticked`) whether the command is accepted or not.
        """
        ticked = self.tick(now)
        self._principal = principal
        try:
            refusal, events, detail = self._dispatch(cmd, now)
        finally:
            self._principal = None
        if refusal is not None:
            return CommandOutcome(
                cmd.request_id, ok=False, error=refusal, events=tuple(ticked), principal=principal
            )
        return CommandOutcome(
            cmd.request_id,
            ok=True,
            events=(*ticked, *events),
            detail=detail,
            principal=principal,
        )

    # ------------------------------------------------------------------ state for the ward

    def active_alarms(self) -> list[dict[str, Any]]:
        """The retained `…/alarms/active` list, highest priority first."""
        out: list[dict[str, Any]] = []
        for code, a in self.engine.active.items():
            out.append(
                {
                    "alarm_id": self._alarm_ids.get(code),
                    "code": code,
                    "priority": a.priority.value,
                    "kind": a.kind.value,
                    "state": "acknowledged" if a.acknowledged else "active",
                    "since": a.activated_t,
                    "since_iso": iso8601(a.activated_t),
                    "param": a.param,
                    "value": a.value,
                    "limit": a.limit,
                    "level": a.level,
                    # a latching alarm whose condition has ended, and since when (bed time):
                    # no alarm event says it (docs/ALARMS.md "States")
                    "latched": a.latching and not a.condition,
                    "latched_t": a.ended_t if a.latching and not a.condition else None,
                }
            )
        out.sort(key=lambda d: (Priority(d["priority"]).rank, d["since"]))
        return out

    def session_state(self, now: float) -> dict[str, Any]:
        """The retained `…/session` payload: phase, baseline, dose and timers."""
        state: dict[str, Any] = {"t": now, "time": iso8601(now), "phase": self.phase.value}
        s = self.session
        if s is not None:
            state["session"] = asdict(s)
        # given but not used yet (a relative-contraindication override waits for the open)
        state["pending_overrides"] = [asdict(o) for o in self._pending_overrides.values()]
        bl = self.engine.baseline
        state["baseline"] = asdict(bl) if bl is not None else None
        state["audio_paused_until"] = self.audio_paused_until
        if s is not None and s.infusion_start_t is not None and s.infusion_stop_t is None:
            state["infusion_elapsed_s"] = now - s.infusion_start_t
        if s is not None and s.infusion_stop_t is not None:
            state["observation_elapsed_s"] = now - s.infusion_stop_t
        return state

    # ------------------------------------------------------------------ commands

    def _dispatch(self, cmd: Command, now: float) -> _Result:  # noqa: PLR0911 - one arm a command
        # one arm per member of the command union; mypy checks that none is missing
        match cmd:
            case OpenSession():
                return self._cmd_open_session(cmd, now)
            case StartInfusion():
                return self._cmd_start_infusion(cmd, now)
            case StopInfusion():
                return self._cmd_stop_infusion(cmd, now)
            case Discharge():
                return self._cmd_discharge(cmd, now)
            case Override():
                return self._cmd_override(cmd, now)
            case Ack():
                return self._cmd_ack(cmd, now)
            case AudioPause():
                return self._cmd_audio_pause(cmd, now)
            case RecordScore():
                return self._cmd_record_score(cmd, now)
            case _:
                assert_never(cmd)

    def _cmd_open_session(self, cmd: OpenSession, now: float) -> _Result:
        if self.phase is not Phase.NONE:
            return f"a session is already open (phase {self.phase})", [], None
        lo, hi = WEIGHT_RANGE_KG
        if not (math.isfinite(cmd.weight_kg) and lo <= cmd.weight_kg <= hi):
            return f"weight {cmd.weight_kg} kg is outside {lo:g}-{hi:g} kg", [], None
        absolute = cmd.checklist.absolute()
        if absolute:
            return f"absolute contraindication: {', '.join(absolute)}", [], None
        relative = cmd.checklist.relative()
        override = self._pending_overrides.get("relative_contraindication")
        if relative and override is None:
            return (
                (
                    f"relative contraindication ({', '.join(relative)}): needs a clinician "
                    "override (override what=relative_contraindication)"
                ),
                [],
                None,
            )
        dose = DOSE_MG_PER_KG * cmd.weight_kg
        rate = dose / cmd.concentration_mg_per_ml / (INFUSION_MIN / 60.0)
        session = SessionInfo(
            # derived, not random: replaying the journal after a crash must give the same id
            session_id=uuid.uuid5(
                uuid.NAMESPACE_URL, f"vigil:{self.ward}/{self.bed}/{now!r}/{cmd.request_id}"
            ).hex,
            patient_id=cmd.patient_id,
            weight_kg=cmd.weight_kg,
            concentration_mg_per_ml=cmd.concentration_mg_per_ml,
            dose_mg=round(dose, 2),
            rate_ml_per_h=round(rate, 2),
            opened_t=now,
            opened_by=cmd.user,
            cns_depressants=cmd.checklist.concomitant_cns_depressants,
            relative_contraindications=relative,
        )
        if override is not None:
            # recorded whether or not this patient needed it: every accepted override is listed
            if relative:
                override.let_through = f"open_session with {', '.join(relative)}"
                override.let_through_t = now
            session.overrides.append(override)
        self.session = session
        # an override is for the gate it names in this session; none carries over to another
        self._pending_overrides.clear()
        events = self._step(SessionEvent.SESSION_START, now)
        detail = {
            "session_id": session.session_id,
            "dose_mg": session.dose_mg,
            "rate_ml_per_h": session.rate_ml_per_h,
        }
        return None, events, detail

    def _cmd_start_infusion(self, _cmd: StartInfusion, now: float) -> _Result:
        if self.phase is not Phase.PRE or self.session is None:
            return f"start_infusion needs phase pre (phase is {self.phase})", [], None
        if _BP_GATE in self.engine.active:
            override = self._pending_overrides.pop("bp_pre_gate", None)
            if override is None:
                return (
                    (
                        f"{_BP_GATE} is active (BP >= 140/90 twice): needs a clinician override "
                        "(override what=bp_pre_gate)"
                    ),
                    [],
                    None,
                )
            override.let_through = f"start_infusion with {_BP_GATE} active"
            override.let_through_t = now
        self.session.infusion_start_t = now
        return None, self._step(SessionEvent.INFUSION_START, now), None

    def _cmd_stop_infusion(self, _cmd: StopInfusion, now: float) -> _Result:
        if self.phase is not Phase.INFUSION or self.session is None:
            return f"stop_infusion needs phase infusion (phase is {self.phase})", [], None
        self.session.infusion_stop_t = now
        events = self._step(SessionEvent.INFUSION_STOP, now)
        events += self._stamp(
            self.engine.condition(
                SystemAlarm.INFUSION_LONG, active=False, t=now, message="infusion stopped"
            )
        )
        return None, events, None

    def _cmd_discharge(self, _cmd: Discharge, now: float) -> _Result:
        s = self.session
        if self.phase is not Phase.POST or s is None or s.infusion_stop_t is None:
            return f"discharge needs phase post (phase is {self.phase})", [], None
        waiting = self._unacknowledged_latched()
        if waiting:
            # docs/PROTOCOL.md step 5: a latched alarm is acknowledged first; no override skips that
            return (
                (
                    f"{', '.join(waiting)} latched and not acknowledged: acknowledge "
                    f"{'it' if len(waiting) == 1 else 'them'} first (no override allows this)"
                ),
                [],
                None,
            )
        missing: list[str] = []
        used: list[tuple[OverrideRecord, list[str]]] = []
        for what in _DISCHARGE_OVERRIDES:
            reasons = self._discharge_blockers(what, now)
            if not reasons:
                continue
            override = self._pending_overrides.get(what)
            if override is None:
                missing.append(
                    f"{'; '.join(reasons)}: needs a clinician override (override what={what})"
                )
            else:
                used.append((override, reasons))
        if missing:
            return "; and ".join(missing), [], None
        for override, reasons in used:
            override.let_through = f"discharge with {'; '.join(reasons)}"
            override.let_through_t = now
        events = self._step(SessionEvent.DISCHARGE, now)
        self.session = None
        self._pending_overrides.clear()
        return None, events, None

    def _cmd_override(self, cmd: Override, now: float) -> _Result:
        """Accept an override only while it has something to override (issue 11 item 10)."""
        given = self._pending_overrides.get(cmd.what)
        if given is not None:
            return (
                (
                    f"{cmd.what} is already overridden (by {given.user} at {iso8601(given.t)}), "
                    "not used yet"
                ),
                [],
                None,
            )
        refusal, overrode = self._override_target(cmd.what, now)
        if refusal is not None:
            return f"nothing to override: {refusal}", [], None
        record = OverrideRecord(
            what=cmd.what,
            reason=cmd.reason,
            user=cmd.user,
            t=now,
            overrode=overrode,
            principal=self._principal,
        )
        self._pending_overrides[cmd.what] = record
        if self.session is not None:
            self.session.overrides.append(record)
        return None, [], {"override": asdict(record)}

    def _override_target(self, what: str, now: float) -> tuple[str | None, str]:
        """(why `what` has nothing to override now, or None; what it overrides)."""
        phase = self.phase
        why: str | None = None
        overrode = ""
        if what == "relative_contraindication":
            if phase is not Phase.NONE:
                why = f"it is for opening a session and one is open (phase {phase})"
            overrode = "a relative contraindication at open_session"
        elif what == "bp_pre_gate":
            if phase is not Phase.PRE:
                why = f"{_BP_GATE} gates start_infusion in phase pre (phase is {phase})"
            elif _BP_GATE not in self.engine.active:
                why = f"{_BP_GATE} is not active"
            overrode = f"{_BP_GATE} active"
        elif phase is not Phase.POST or self.session is None:
            why = f"{what} is for a discharge in phase post (phase is {phase})"
        else:
            overrode = "; ".join(self._discharge_blockers(what, now))
            if not overrode:
                why = f"discharge is not blocked by what {what} overrides"
        return why, overrode

    def _discharge_blockers(self, what: str, now: float) -> list[str]:
        """What keeps a discharge at `now` from going ahead that override `what` can lift."""
        s = self.session
        assert s is not None
        reasons: list[str] = []
        if what == "early_discharge":
            assert s.infusion_stop_t is not None
            observed = now - s.infusion_stop_t
            if observed < OBSERVATION_S:
                reasons.append(
                    f"observation {observed / 60:.0f} min < {OBSERVATION_S / 60:.0f} min"
                )
            dc = self.policy.discharge
            if dc is not None and dc.code in self.engine.active:
                reasons.append(f"{dc.code} is active")
        else:  # discharge_without_vitals
            reasons += [f"{code} is active" for code in NO_DATA_CODES if code in self.engine.active]
            last = self.last_determination_t
            if last is None or last < s.opened_t:
                reasons.append("no valid cuff determination in this session")
            elif now - last > DETERMINATION_MAX_AGE_S:
                reasons.append(
                    f"the latest valid cuff determination is {(now - last) / 60:.0f} min old "
                    f"(> {DETERMINATION_MAX_AGE_S / 60:.0f} min)"
                )
        return reasons

    def _unacknowledged_latched(self) -> list[str]:
        return [c for c, a in self.engine.active.items() if a.latching and not a.acknowledged]

    def _cmd_ack(self, cmd: Ack, now: float) -> _Result:
        if cmd.code is not None:
            code = cmd.code
            if code not in self.engine.active:
                active = ", ".join(self.engine.active) or "none"
                return f"no active alarm with code {code!r} (active: {active})", [], None
        else:
            found = next((c for c, a in self._alarm_ids.items() if a == cmd.alarm_id), None)
            if found is None or found not in self.engine.active:
                return f"no active alarm {cmd.alarm_id!r}", [], None
            code = found
        if self.engine.active[code].acknowledged:
            return f"{code} is already acknowledged", [], None
        acknowledged = [
            replace(e, principal=self._principal) if e.state is AlarmState.ACKNOWLEDGED else e
            for e in self.engine.acknowledge(code, now, cmd.user)
        ]
        return None, self._stamp(acknowledged), None

    def _cmd_audio_pause(self, _cmd: AudioPause, now: float) -> _Result:
        self.audio_paused_until = now + self.policy.general.audio_pause_s
        return None, [], {"audio_paused_until": self.audio_paused_until}

    def _cmd_record_score(self, cmd: RecordScore, now: float) -> _Result:
        if self.session is None:
            return "record_score needs an open session", [], None
        self.session.scores.append(
            {"scale": cmd.scale, "value": cmd.value, "t": now, "user": cmd.user}
            | ({} if self._principal is None else {"principal": self._principal})
        )
        return None, [], None

    # ------------------------------------------------------------------ internals

    def _stamp(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """Add the live fields: bed, stable alarm_id, session_id, monotonic seq."""
        out = []
        for e in events:
            alarm_id = self._alarm_ids.get(e.code)
            if e.state is AlarmState.ACTIVE or alarm_id is None:
                alarm_id = f"{self.ward}/{self.bed}/{e.code}/{round(e.t * 1000)}"
                self._alarm_ids[e.code] = alarm_id
            if e.state is AlarmState.CLEARED:
                self._alarm_ids.pop(e.code, None)
            self.seq += 1
            out.append(
                replace(
                    e,
                    bed=f"{self.ward}/{self.bed}",
                    alarm_id=alarm_id,
                    session_id=self.session.session_id if self.session else None,
                    seq=self.seq,
                )
            )
        return out

    def _step(self, event: SessionEvent, now: float) -> list[AlarmEvent]:
        return self._stamp(self.engine.row(now, event, math.nan))
