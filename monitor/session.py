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
from typing import Any

from alarms.engine import SYSTEM_ALARMS, ActiveAlarm, AlarmEngine, Rows
from alarms.policy import Policy
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
from monitor.vocabulary import AlarmEvent, AlarmState, Phase, Sample, SessionEvent, iso8601

__all__ = ["BedCore", "CommandOutcome", "SessionInfo"]

_Result = tuple[str | None, list["AlarmEvent"], dict[str, Any] | None]

DOSE_MG_PER_KG = 0.5  # docs/PROTOCOL.md "Course": ketamine 0.5 mg/kg IV ...
INFUSION_MIN = 40.0  # ... over 40 minutes
WEIGHT_RANGE_KG = (30.0, 250.0)  # docs/PROTOCOL.md: a weight outside 30-250 kg is refused
OBSERVATION_S = 7200.0  # docs/PROTOCOL.md step 4: at least 120 min of observation
# issue 4: a reminder when the infusion runs past 45 min (5 min over the plan)
INFUSION_REMINDER_S = 45 * 60.0
INFUSION_LONG = "INFUSION_LONG"


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
    overrides: list[dict[str, Any]] = field(default_factory=list)
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

    def result_json(self) -> dict[str, Any]:
        """The payload for `…/cmd/result`."""
        out: dict[str, Any] = {"request_id": self.request_id, "ok": self.ok}
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
        self.audio_paused_until: float | None = None
        self._alarm_ids: dict[str, str] = {}
        self._pending_overrides: dict[str, dict[str, Any]] = {}

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
            and all(code in SYSTEM_ALARMS for code in self.engine.active)
        )

    def restore(self, event: dict[str, Any]) -> None:
        """Make a system alarm active again as the journal last announced it, without an event.

        A restart replays the journal only from the last idle moment, and system alarms (a
        monitor unplugged, the broker away) do not stop a bed from being idle; the alarm the
        ward was told about is restored whole (`alarm_id`, times, acknowledgement), so it clears
        under its own id when its condition ends.
        """
        code = event["code"]
        if code not in SYSTEM_ALARMS or code in self.engine.active:
            return
        priority, kind = SYSTEM_ALARMS[code]
        self.engine.active[code] = ActiveAlarm(
            code=code,
            priority=priority,
            kind=kind,
            activated_t=float(event["t"]),
            param=event.get("param"),
            value=event.get("value"),
            limit=None,
            latching=code == "MONITORING_GAP",
            acknowledged=event["state"] == "acknowledged",
            condition=code != "MONITORING_GAP",
        )
        self._alarm_ids[code] = event["alarm_id"]

    # ------------------------------------------------------------------ inputs

    def samples(self, batch: Iterable[Sample]) -> list[AlarmEvent]:
        """Feed samples (in arrival order); return the stamped events."""
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
            and INFUSION_LONG not in self.engine.active
        ):
            events += self.engine.condition(
                INFUSION_LONG,
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
        latching: bool = False,
    ) -> list[AlarmEvent]:
        """Raise or clear the system alarm `code` at `now`, after the ticks due up to `now`."""
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

    def command(self, cmd: Command, now: float) -> CommandOutcome:
        """Apply a validated command at time `now`, or refuse it with a reason.

        The ticks due up to `now` run first, so a command is judged on the state the alarm
        system has at `now` (e.g. a discharge check due a moment ago); their events are part
        of the outcome (`ticked`) whether the command is accepted or not.
        """
        ticked = self.tick(now)
        refusal, events, detail = getattr(self, f"_cmd_{cmd.cmd}")(cmd, now)
        if refusal is not None:
            return CommandOutcome(cmd.request_id, ok=False, error=refusal, events=tuple(ticked))
        return CommandOutcome(cmd.request_id, ok=True, events=(*ticked, *events), detail=detail)

    # ------------------------------------------------------------------ state for the ward

    def active_alarms(self) -> list[dict[str, Any]]:
        """The retained `…/alarms/active` list, highest priority first."""
        rank = {"high": 0, "medium": 1, "low": 2}
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
                    "latched": a.latching and not a.condition,
                }
            )
        out.sort(key=lambda d: (rank[d["priority"]], d["since"]))
        return out

    def session_state(self, now: float) -> dict[str, Any]:
        """The retained `…/session` payload: phase, baseline, dose and timers."""
        state: dict[str, Any] = {"t": now, "time": iso8601(now), "phase": self.phase.value}
        s = self.session
        if s is not None:
            state["session"] = asdict(s)
        bl = self.engine.baseline
        state["baseline"] = asdict(bl) if bl is not None else None
        state["audio_paused_until"] = self.audio_paused_until
        if s is not None and s.infusion_start_t is not None and s.infusion_stop_t is None:
            state["infusion_elapsed_s"] = now - s.infusion_start_t
        if s is not None and s.infusion_stop_t is not None:
            state["observation_elapsed_s"] = now - s.infusion_stop_t
        return state

    # ------------------------------------------------------------------ commands

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
        override = self._pending_overrides.pop("relative_contraindication", None)
        if relative and override is None:
            return (
                f"relative contraindication ({', '.join(relative)}): needs a clinician override",
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
        gate = "BP_PRE_GATE"
        if gate in self.engine.active:
            override = self._pending_overrides.pop("bp_pre_gate", None)
            if override is None:
                return (
                    "BP_PRE_GATE is active (BP >= 140/90 twice): needs a clinician override",
                    [],
                    None,
                )
            self.session.overrides.append(override)
        self.session.infusion_start_t = now
        return None, self._step(SessionEvent.INFUSION_START, now), None

    def _cmd_stop_infusion(self, _cmd: StopInfusion, now: float) -> _Result:
        if self.phase is not Phase.INFUSION or self.session is None:
            return f"stop_infusion needs phase infusion (phase is {self.phase})", [], None
        self.session.infusion_stop_t = now
        events = self._step(SessionEvent.INFUSION_STOP, now)
        events += self._stamp(
            self.engine.condition(INFUSION_LONG, active=False, t=now, message="infusion stopped")
        )
        return None, events, None

    def _cmd_discharge(self, _cmd: Discharge, now: float) -> _Result:
        s = self.session
        if self.phase is not Phase.POST or s is None or s.infusion_stop_t is None:
            return f"discharge needs phase post (phase is {self.phase})", [], None
        reasons = []
        observed = now - s.infusion_stop_t
        if observed < OBSERVATION_S:
            reasons.append(f"observation {observed / 60:.0f} min < {OBSERVATION_S / 60:.0f} min")
        dc = self.policy.discharge
        if dc is not None and dc.code in self.engine.active:
            reasons.append(f"{dc.code} is active")
        if reasons:
            override = self._pending_overrides.pop("early_discharge", None)
            if override is None:
                return "; ".join(reasons) + ": needs a clinician override", [], None
            s.overrides.append(override)
        events = self._step(SessionEvent.DISCHARGE, now)
        self.session = None
        self._pending_overrides.clear()
        return None, events, None

    def _cmd_override(self, cmd: Override, now: float) -> _Result:
        self._pending_overrides[cmd.what] = {
            "what": cmd.what,
            "reason": cmd.reason,
            "user": cmd.user,
            "t": now,
        }
        return None, [], None

    def _cmd_ack(self, cmd: Ack, now: float) -> _Result:
        code = next((c for c, a in self._alarm_ids.items() if a == cmd.alarm_id), None)
        if code is None or code not in self.engine.active:
            return f"no active alarm {cmd.alarm_id!r}", [], None
        if self.engine.active[code].acknowledged:
            return f"{code} is already acknowledged", [], None
        return None, self._stamp(self.engine.acknowledge(code, now, cmd.user)), None

    def _cmd_audio_pause(self, _cmd: AudioPause, now: float) -> _Result:
        self.audio_paused_until = now + self.policy.general.audio_pause_s
        return None, [], {"audio_paused_until": self.audio_paused_until}

    def _cmd_record_score(self, cmd: RecordScore, now: float) -> _Result:
        if self.session is None:
            return "record_score needs an open session", [], None
        self.session.scores.append(
            {"scale": cmd.scale, "value": cmd.value, "t": now, "user": cmd.user}
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
