"""`vigil report SESSION --out FILE.png|.html`: one journaled session as a chart and its facts.

Two steps. `build_report` is pure data: from a `Journal` and a session id (or a unique prefix
of one) it gathers the samples the bed processed during the session (one `Series` per
parameter), the phases (`pre`: open -> infusion start, `infusion`: start -> stop, `post`:
stop -> discharge or the last input), every alarm that became `active` (with when it was
escalated and cleared), and the text facts: patient, weight, dose and pump rate, baseline,
overrides, the discharge decision and alarm counts. `render_png` and `render_html` draw it
with matplotlib (an optional extra, ``pip install 'vigil[report]'``, imported only here and
only when drawing, on the Agg canvas: no display is needed).

Times are shown in one time zone (the machine's, unless the caller passes `tz`): clock times
as ISO 8601 with their offset, the chart's x axis as minutes since the session opened, its
label naming the clock time and offset of minute 0.

Baseline: the report replays the session's journaled inputs through a fresh bed core with the
bed's policy (`monitor.inputs.apply`, the function live and resume use), so its baseline is the
alarm engine's own (docs/ALARMS.md "Baseline": the policy's window, HRE), never re-derived. Only
when the replay takes none (no infusion start) is a baseline the session record kept shown.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import importlib
import io
import json
import math
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from alarms.engine import Baseline as EngineBaseline
from alarms.policy import Policy, load_policy
from kernel.configfile import ConfigError
from kernel.vocabulary import AlarmState, Param
from monitor import sessions
from monitor.export import UsageError, open_journal
from monitor.inputs import apply, decode
from monitor.journal import Journal, SessionRecord
from monitor.session import BedCore
from monitor.settings import load_settings
from monitor.wire import WireAlarmEvent

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "HONESTY",
    "AlarmMark",
    "Baseline",
    "Override",
    "PhaseSpan",
    "ReportData",
    "ReportError",
    "Series",
    "build_report",
    "lane_span",
    "person_message",
    "render_html",
    "render_png",
    "report_facts",
    "report_main",
]

HONESTY: Final = "Decision support, not a certified medical device"
INSTALL_HINT: Final = "pip install 'vigil[report]'"
PRIORITY_COLOURS: Final = {"high": "#d62728", "medium": "#f39c12", "low": "#17becf"}
PHASE_COLOURS: Final = {"pre": "#9e9e9e", "infusion": "#ab47bc", "post": "#42a5f5"}
_DPI: Final = 110
# the overrides a discharge can go through on, and how the discharge decision names each
_DISCHARGE_OVERRIDES: Final = {
    "early_discharge": "EARLY discharge",
    "discharge_without_vitals": "discharge WITHOUT VITALS",
}
_SECONDS_SHOWN_BELOW_S: Final = 30 * 60.0  # a shorter session's clock axis shows seconds
# legends right of the plots, so they never hide a reading or a phase label
_LEGEND_OUTSIDE: Final[dict[str, Any]] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.0, 1.0),
    "fontsize": 8,
}


class ReportError(Exception):
    """The report cannot be made; `status` is the exit status for `vigil report`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Series:
    """One parameter's samples in time order; an invalid sample has value NaN (a gap)."""

    t: tuple[float, ...]
    value: tuple[float, ...]


@dataclass(frozen=True)
class PhaseSpan:
    """A phase of the session from `start` to `end` (epoch s)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class AlarmMark:
    """An alarm that became active at `t`, and when it was escalated and cleared (if it was)."""

    t: float
    code: str
    priority: str
    phase: str
    message: str
    alarm_id: str | None
    escalated: tuple[float, ...] = ()
    acknowledged_t: float | None = None
    cleared_t: float | None = None


@dataclass(frozen=True)
class Baseline:
    """Baseline values and where they come from (`source`, shown with them)."""

    source: str
    sys: float | None
    dia: float | None
    hr: float | None
    spo2: float | None
    determinations: int | None


@dataclass(frozen=True)
class Override:
    """A clinician's recorded override (`monitor.session.OverrideRecord`).

    `overrode` is what blocked the step when it was given; `let_through` the step it allowed
    and `let_through_t` when (None: never needed). Journals written before these were kept
    have neither: there an early-discharge override counts as the one the discharge used.
    """

    what: str
    reason: str
    user: str
    t: float
    overrode: str | None = None
    principal: str | None = None
    let_through: str | None = None
    let_through_t: float | None = None
    recorded_use: bool = True  # False: an older journal that did not record the use


@dataclass(frozen=True)
class ReportData:
    """Everything one session's report shows, gathered from the journal (no drawing)."""

    session_id: str
    patient_id: str
    weight_kg: float
    concentration_mg_per_ml: float
    dose_mg: float
    rate_ml_per_h: float
    opened_t: float
    opened_by: str
    infusion_start_t: float | None
    infusion_stop_t: float | None
    discharge_t: float | None
    discharge_user: str | None
    end_t: float
    series: Mapping[Param, Series]
    phases: tuple[PhaseSpan, ...]
    alarms: tuple[AlarmMark, ...]
    baseline: Baseline
    overrides: tuple[Override, ...]
    scores: tuple[Mapping[str, Any], ...]
    cns_depressants: bool
    relative_contraindications: tuple[str, ...]
    tz: dt.tzinfo | None = None

    @property
    def alarm_counts(self) -> dict[str, int]:
        """How often each code became active, most frequent first (then by code)."""
        counts = Counter(a.code for a in self.alarms)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def early_discharge_override(self) -> Override | None:
        """The override that allowed an early discharge, if the discharge needed one."""
        return next((o for o in self.discharge_overrides if o.what == "early_discharge"), None)

    @property
    def discharge_overrides(self) -> tuple[Override, ...]:
        """The overrides the discharge went through on (early, without vitals), in order."""
        if self.discharge_t is None:
            return ()
        return tuple(
            o
            for o in self.overrides
            if o.what in _DISCHARGE_OVERRIDES
            and (
                o.let_through_t == self.discharge_t
                if o.recorded_use
                else o.what == "early_discharge"
            )
        )

    def local(self, t: float) -> dt.datetime:
        """`t` (epoch s) as an aware datetime in the report's time zone."""
        return _local(t, self.tz)

    def iso(self, t: float) -> str:
        """`t` as ISO 8601 with its offset, to the second."""
        return self.local(t).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- the data step


def find_session(journal: Journal, session: str) -> SessionRecord:
    """The session whose id is `session` or starts with it (`monitor.sessions.find_session`).

    Raises:
        ReportError: none matches, or the prefix matches more than one (the message lists
            the known, or the matching, sessions as `vigil sessions` does).
    """
    try:
        return sessions.find_session(journal, session)
    except sessions.UnknownSessionError as exc:
        raise ReportError(str(exc), status=1) from None


def build_report(
    journal: Journal,
    session: str,
    *,
    tz: dt.tzinfo | None = None,
    policy: Policy | None = None,
) -> ReportData:
    """Gather the report of `session` (an id or a unique prefix of one) from `journal`.

    The samples are those of the journal's inputs from the session's first input (the
    `open_session` command) to its last (the `discharge` command; for a session still open,
    up to the next session's first input or the journal's end), as the bed processed them.
    `tz` is the time zone the facts are given in (None: the machine's local rules). `policy`
    is the bed's alarm policy (None: the shipped one), which the inputs are replayed with.

    Raises:
        ReportError: no such session, or an ambiguous prefix.
    """
    record = find_session(journal, session)
    info = record.info
    until = record.last_input
    if until is None:
        later = [r.first_input for r in journal.sessions() if r.first_input > record.first_input]
        until = min(later) - 1 if later else None
    raw: dict[Param, tuple[list[float], list[float]]] = {}
    discharge_user: str | None = None
    last_t = record.opened_t
    core = BedCore(policy or load_policy(), ward="report", bed="report")
    for item in journal.inputs(after=record.first_input - 1, until=until):
        last_t = max(last_t, item.t)
        if core.engine.baseline is None:
            # the engine takes its baseline at infusion start: the rest need not be replayed
            apply(core, decode(item))
        if item.kind == "samples":
            for t, param, value, valid, *_ in item.data:
                ts, vs = raw.setdefault(Param(param), ([], []))
                ts.append(float(t))
                vs.append(float(value) if valid and value is not None else math.nan)
        elif item.kind == "command" and record.last_input == item.id:
            discharge_user = _command_user(item.data, "discharge")
    series = {p: Series(tuple(ts), tuple(vs)) for p, (ts, vs) in sorted(raw.items())}
    start = _opt_float(info.get("infusion_start_t"))
    stop = _opt_float(info.get("infusion_stop_t"))
    discharge = _opt_float(info.get("discharge_t", record.closed_t))
    end = discharge if discharge is not None else last_t
    return ReportData(
        session_id=record.session_id,
        patient_id=record.patient_id,
        weight_kg=float(info["weight_kg"]),
        concentration_mg_per_ml=float(info["concentration_mg_per_ml"]),
        dose_mg=float(info["dose_mg"]),
        rate_ml_per_h=float(info["rate_ml_per_h"]),
        opened_t=record.opened_t,
        opened_by=str(info.get("opened_by", "")),
        infusion_start_t=start,
        infusion_stop_t=stop,
        discharge_t=discharge,
        discharge_user=discharge_user,
        end_t=end,
        series=series,
        phases=_phases(record.opened_t, start, stop, end),
        alarms=_alarm_marks(journal.events(record.session_id)),
        baseline=_baseline(core.engine.baseline, info.get("baseline")),
        overrides=tuple(_override(o) for o in info.get("overrides", [])),
        scores=tuple(info.get("scores", [])),
        cns_depressants=bool(info.get("cns_depressants", False)),
        relative_contraindications=tuple(info.get("relative_contraindications", [])),
        tz=tz,
    )


def _override(o: Mapping[str, Any]) -> Override:
    return Override(
        what=str(o["what"]),
        reason=str(o["reason"]),
        user=str(o["user"]),
        principal=None if o.get("principal") is None else str(o["principal"]),
        t=float(o["t"]),
        overrode=None if o.get("overrode") is None else str(o["overrode"]),
        let_through=None if o.get("let_through") is None else str(o["let_through"]),
        let_through_t=_opt_float(o.get("let_through_t")),
        recorded_use="let_through" in o,
    )


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _command_user(data: Mapping[str, Any], cmd: str) -> str | None:
    """Who gave a journaled command if it is command `cmd` (`who`: user and broker login)."""
    try:
        payload = json.loads(data["payload"])
    except (KeyError, TypeError, ValueError):
        return None
    if isinstance(payload, dict) and payload.get("cmd") == cmd and "user" in payload:
        return who(str(payload["user"]), data.get("principal"))
    return None


def who(user: object, principal: object) -> str:
    """`ann`, or `ann via console-station1` when the broker login that sent it is another.

    The login is what the broker authenticated (monitor/authority.py); `user` is what the
    command asserted, trusted only as far as `[commands]` lets that login speak for others.
    """
    if principal is None or principal == user:
        return str(user)
    return f"{user} via {principal}"


def _phases(
    opened: float, start: float | None, stop: float | None, end: float
) -> tuple[PhaseSpan, ...]:
    if start is None:
        return (PhaseSpan("pre", opened, end),)
    if stop is None:
        return (PhaseSpan("pre", opened, start), PhaseSpan("infusion", start, end))
    return (
        PhaseSpan("pre", opened, start),
        PhaseSpan("infusion", start, stop),
        PhaseSpan("post", stop, end),
    )


def _alarm_marks(events: Iterable[Mapping[str, Any]]) -> tuple[AlarmMark, ...]:
    """One mark per `active` event, with the later states of the same alarm (`alarm_id`).

    Each journaled event is read with the one alarm-event model (`monitor.wire`); a row that is
    not one (never written by a bed) is left out.
    """
    marks: list[dict[str, Any]] = []
    open_by_id: dict[str, dict[str, Any]] = {}
    for raw in events:
        try:
            e = WireAlarmEvent.model_validate(raw)
        except ValidationError:
            continue
        alarm_id = e.alarm_id or e.code
        if e.state is AlarmState.ACTIVE:
            mark: dict[str, Any] = {
                "t": e.t,
                "code": e.code,
                "priority": e.priority.value,
                "phase": e.phase.value,
                "message": e.message,
                "alarm_id": e.alarm_id,
                "escalated": [],
                "acknowledged_t": None,
                "cleared_t": None,
            }
            marks.append(mark)
            open_by_id[alarm_id] = mark
            continue
        mark_or_none = open_by_id.get(alarm_id)
        if mark_or_none is None:
            continue  # an alarm raised before the session (not this session's)
        if e.state is AlarmState.ESCALATED:
            mark_or_none["escalated"].append(e.t)
        elif e.state is AlarmState.ACKNOWLEDGED and mark_or_none["acknowledged_t"] is None:
            mark_or_none["acknowledged_t"] = e.t
        elif e.state is AlarmState.CLEARED:
            mark_or_none["cleared_t"] = e.t
            del open_by_id[alarm_id]
    return tuple(
        AlarmMark(**(m | {"escalated": tuple(m["escalated"])}))
        for m in sorted(marks, key=lambda m: m["t"])
    )


def _baseline(replayed: EngineBaseline | None, stored: Any) -> Baseline:
    if replayed is not None:
        return Baseline(
            source="session baseline",
            sys=replayed.sys0,
            dia=replayed.dia0,
            hr=replayed.hr0,
            spo2=replayed.spo2_0,
            determinations=replayed.pre_determinations,
        )
    if isinstance(stored, Mapping):
        return Baseline(
            source="session baseline",
            sys=_opt_float(stored.get("sys0")),
            dia=_opt_float(stored.get("dia0")),
            hr=_opt_float(stored.get("hr0")),
            spo2=_opt_float(stored.get("spo2_0")),
            determinations=stored.get("pre_determinations"),
        )
    return Baseline(
        source="none taken: no infusion started",
        sys=None,
        dia=None,
        hr=None,
        spo2=None,
        determinations=None,
    )


def _local(t: float, tz: dt.tzinfo | None) -> dt.datetime:
    if tz is not None:
        return dt.datetime.fromtimestamp(t, tz)
    return dt.datetime.fromtimestamp(t).astimezone()  # the local rules in force at `t`


def _offset(d: dt.datetime) -> str:
    """``UTC+01:00`` for an aware datetime."""
    off = d.utcoffset() or dt.timedelta(0)
    sign = "-" if off < dt.timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _num(x: float | None, unit: str, fmt: str = ".0f") -> str:
    return "n/a" if x is None else f"{x:{fmt}} {unit}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def report_facts(data: ReportData) -> list[tuple[str, str]]:
    """The text block: (label, value) rows, the same in the PNG and the HTML."""
    d = data
    rows: list[tuple[str, str]] = [
        ("Patient", d.patient_id),
        ("Session", d.session_id),
        ("Opened", f"{d.iso(d.opened_t)} by {d.opened_by or 'unknown'}"),
        ("Weight", f"{d.weight_kg:g} kg"),
        (
            "Dose",
            (
                f"{d.dose_mg:g} mg ({d.dose_mg / d.weight_kg:.2g} mg/kg) at "
                f"{d.concentration_mg_per_ml:g} mg/mL"
            ),
        ),
        ("Pump rate", f"{d.rate_ml_per_h:g} mL/h"),
    ]
    if d.infusion_start_t is None:
        rows.append(("Infusion", "not started"))
    else:
        stop = d.infusion_stop_t
        rows.append(
            (
                "Infusion",
                f"{d.iso(d.infusion_start_t)} to "
                + ("(still running)" if stop is None else d.iso(stop))
                + ("" if stop is None else f", {_duration(stop - d.infusion_start_t)}"),
            )
        )
    if d.discharge_t is None:
        rows.append(("Discharge", "not discharged (session open at the journal's end)"))
    else:
        observed = (
            f", {_duration(d.discharge_t - d.infusion_stop_t)} after the infusion stopped"
            if d.infusion_stop_t is not None
            else ""
        )
        used = d.discharge_overrides
        decision = (
            "; ".join(
                f"{_DISCHARGE_OVERRIDES[o.what]} by override of {who(o.user, o.principal)}: "
                f"{o.reason}" + (f" ({o.let_through})" if o.let_through else "")
                for o in used
            )
            or "no override needed"
        )
        rows.append(
            (
                "Discharge",
                f"{d.iso(d.discharge_t)} by {d.discharge_user or 'unknown'}{observed}; {decision}",
            )
        )
    b = d.baseline
    rows.append(
        (
            f"Baseline ({b.source})",
            f"BP {_num(b.sys, '', '.0f').strip()}/{_num(b.dia, 'mmHg', '.0f')}"
            + (f" ({b.determinations} determinations)" if b.determinations is not None else "")
            + f", HR {_num(b.hr, '/min')}, SpO2 {_num(b.spo2, '%')}",
        )
    )
    rows.append(
        (
            "CNS depressants",
            "yes (respiratory-depression vigilance)" if d.cns_depressants else "no",
        )
    )
    if d.relative_contraindications:
        rows.append(("Relative contraindications", ", ".join(d.relative_contraindications)))
    if d.overrides:
        rows.extend(("Override", _override_fact(d, o)) for o in d.overrides)
    else:
        rows.append(("Overrides", "none"))
    counts = d.alarm_counts
    rows.append(
        (
            "Alarms (times active)",
            ", ".join(f"{code} x{n}" for code, n in counts.items()) if counts else "none",
        )
    )
    rows.extend(
        (
            "Score",
            (
                f"{s.get('scale')} {s.get('value')} "
                f"(by {who(s.get('user'), s.get('principal'))}, "
                f"{d.iso(float(s.get('t', 0.0)))})"
            ),
        )
        for s in d.scores
    )
    rows.append(("Time zone", _offset(d.local(d.opened_t))))
    rows.append(("Note", HONESTY))
    return rows


def _override_fact(d: ReportData, o: Override) -> str:
    """Who, why, when, what it was given for and what it let through."""
    text = f"{o.what}: {o.reason} (by {who(o.user, o.principal)}, {d.iso(o.t)})"
    if o.overrode:
        text += f"; given for {o.overrode}"
    if o.let_through is not None and o.let_through_t is not None:
        text += f"; let through {o.let_through} at {d.iso(o.let_through_t)}"
    elif o.recorded_use:
        text += "; not used (the step did not need it)"
    return text


# ---------------------------------------------------------------------- the rendering step


def _require_matplotlib() -> None:
    """Raise `ReportError` (exit 2) when the optional matplotlib is not installed."""
    try:
        importlib.import_module("matplotlib")  # the optional extra, only when drawing
    except ImportError:
        raise ReportError(
            f"vigil report needs matplotlib, an optional extra: {INSTALL_HINT}", status=2
        ) from None


def render_figure(data: ReportData) -> Figure:
    """The chart: BP, HR/PR and SpO2 against minutes since open, phases, alarms, the facts.

    Raises:
        ReportError: matplotlib is not installed (status 2).
    """
    _require_matplotlib()
    from matplotlib.figure import Figure  # noqa: PLC0415 - optional extra

    fig = Figure(figsize=(16, 10.5), layout="constrained")
    lane_rows = max(2, len({a.code for a in data.alarms}))
    grid = fig.add_gridspec(
        4, 2, width_ratios=(3.3, 1.0), height_ratios=(3.0, 2.0, 1.6, 0.35 * lane_rows + 0.6)
    )
    ax_bp = fig.add_subplot(grid[0, 0])
    ax_hr = fig.add_subplot(grid[1, 0], sharex=ax_bp)
    ax_spo2 = fig.add_subplot(grid[2, 0], sharex=ax_bp)
    ax_lane = fig.add_subplot(grid[3, 0], sharex=ax_bp)
    ax_text = fig.add_subplot(grid[:, 1])

    opened = data.local(data.opened_t)
    vitals = (ax_bp, ax_hr, ax_spo2)
    for ax in (*vitals, ax_lane):
        _shade_phases(ax, data, labelled=ax is ax_bp)
    for ax in vitals:
        for a in data.alarms:
            ax.axvline(
                (a.t - data.opened_t) / 60.0,
                color=PRIORITY_COLOURS.get(a.priority, "k"),
                linestyle="--",
                linewidth=1.1,
                alpha=0.9,
                zorder=1,
            )
        ax.grid(visible=True, alpha=0.3)
        ax.tick_params(labelbottom=False)

    _plot_bp(ax_bp, data)
    _plot_rates(ax_hr, data)
    _plot_spo2(ax_spo2, data)
    _plot_alarm_lane(ax_lane, data)
    ax_lane.set_xlim(0.0, max(1.0, (data.end_t - data.opened_t) / 60.0))
    ax_lane.set_xlabel(
        f"minutes since {opened:%H:%M:%S} on {opened:%Y-%m-%d} ({_offset(opened)}), "
        "when the session opened"
    )
    top = ax_bp.secondary_xaxis("top")
    clock = "%H:%M" if data.end_t - data.opened_t > _SECONDS_SHOWN_BELOW_S else "%H:%M:%S"
    top.xaxis.set_major_formatter(
        lambda m, _pos: data.local(data.opened_t + m * 60.0).strftime(clock)
    )
    top.set_xlabel(f"clock time ({_offset(opened)})")

    _draw_facts(ax_text, data)
    fig.suptitle(
        f"Vigil session report: patient {data.patient_id}, {opened:%Y-%m-%d}, "
        f"ketamine {data.dose_mg:g} mg IV\n{HONESTY}",
        fontsize=13,
    )
    return fig


def _shade_phases(ax: Axes, data: ReportData, *, labelled: bool) -> None:
    for p in data.phases:
        a, b = (p.start - data.opened_t) / 60.0, (p.end - data.opened_t) / 60.0
        ax.axvspan(a, b, color=PHASE_COLOURS.get(p.name, "#cccccc"), alpha=0.12, zorder=0)
        if labelled:
            ax.text(
                (a + b) / 2,
                0.98,
                f"{p.name}\n{(p.end - p.start) / 60:.0f} min",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=9,
                color="#444444",
                fontweight="bold",
            )
    for p in data.phases[1:]:
        ax.axvline((p.start - data.opened_t) / 60.0, color="#555555", linewidth=0.8, zorder=1)


def _plot_bp(ax: Axes, data: ReportData) -> None:
    sys_s, dia_s = data.series.get(Param.NIBP_SYS), data.series.get(Param.NIBP_DIA)
    if sys_s is not None and dia_s is not None and len(sys_s.t) == len(dia_s.t):
        ax.vlines(
            minutes_of(sys_s.t, data), dia_s.value, sys_s.value, color="#8d1c1c", linewidth=1.2
        )
    if sys_s is not None:
        ax.plot(minutes_of(sys_s.t, data), sys_s.value, "v-", color="#b71c1c", ms=7, lw=1.0,
                label="NIBP systolic")  # fmt: skip
    if dia_s is not None:
        ax.plot(minutes_of(dia_s.t, data), dia_s.value, "^-", color="#e57373", ms=7, lw=1.0,
                label="NIBP diastolic")  # fmt: skip
    for param, colour, label in (
        (Param.ABP_SYS, "#6a1b9a", "ABP systolic"),
        (Param.ABP_DIA, "#ba68c8", "ABP diastolic"),
    ):
        s = data.series.get(param)
        if s is not None:
            ax.plot(minutes_of(s.t, data), s.value, "-", color=colour, lw=0.8, label=label)
    b = data.baseline
    label = f"baseline ({b.source}) {_num(b.sys, '', '.0f').strip()}/{_num(b.dia, 'mmHg')}"
    for value in (b.sys, b.dia):
        if value is not None:
            ax.axhline(value, color="#555555", linestyle=":", linewidth=1.2, label=label)
            label = "_"  # one legend entry for both lines
    ax.set_ylabel("blood pressure (mmHg)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + (hi - lo) * 0.12)  # room for the phase labels above the readings
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**_LEGEND_OUTSIDE)
    else:
        ax.text(0.5, 0.5, "no BP readings", transform=ax.transAxes, ha="center")


def _plot_rates(ax: Axes, data: ReportData) -> None:
    for param, colour, lw, label in (
        (Param.PR, "#ff8f00", 0.6, "PR (oximeter)"),
        (Param.HR, "#2e7d32", 0.9, "HR (ECG)"),
    ):
        s = data.series.get(param)
        if s is not None:
            ax.plot(
                minutes_of(s.t, data), s.value, "-", color=colour, lw=lw, label=label, alpha=0.9
            )
    if data.baseline.hr is not None:
        ax.axhline(
            data.baseline.hr,
            color="#555555",
            linestyle=":",
            linewidth=1.2,
            label=f"baseline HR {data.baseline.hr:.0f} /min",
        )
    ax.set_ylabel("heart / pulse rate (/min)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**_LEGEND_OUTSIDE)


def _plot_spo2(ax: Axes, data: ReportData) -> None:
    s = data.series.get(Param.SPO2)
    if s is not None:
        ax.plot(minutes_of(s.t, data), s.value, "-", color="#0277bd", lw=1.0, label="SpO2")
        finite = [v for v in s.value if math.isfinite(v)]
        low = min([*finite, 90.0])
        ax.set_ylim(max(50.0, math.floor(low) - 2.0), 100.8)
        ax.legend(**_LEGEND_OUTSIDE)
    ax.set_ylabel("SpO2 (%)")


def _plot_alarm_lane(ax: Axes, data: ReportData) -> None:
    from matplotlib.lines import Line2D  # noqa: PLC0415 - optional extra

    # an alarm raised after the chart's end is in the alarm table only
    drawn = [(a, span) for a in data.alarms if (span := lane_span(a, data)) is not None]
    codes = sorted({a.code for a, _ in drawn}, key=lambda c: min(
        a.t for a, _ in drawn if a.code == c))  # fmt: skip
    row = {c: i for i, c in enumerate(reversed(codes))}
    end_m = (data.end_t - data.opened_t) / 60.0
    for a, (x0, x1, goes_on) in drawn:
        colour = PRIORITY_COLOURS.get(a.priority, "k")
        y = row[a.code]
        ax.hlines(y, x0, x1, color=colour, linewidth=6, alpha=0.55)
        ax.plot([x0], [y], "o", color=colour, ms=8, markeredgecolor="k")
        if goes_on:
            # still active where the chart ends (discharge): say so, the bar stops here
            ax.plot([x1], [y], ">", color=colour, ms=7, markeredgecolor="k", clip_on=False)
        escalated = [m for m in minutes_of(a.escalated, data) if m <= end_m]
        if escalated:
            ax.plot(escalated, [y] * len(escalated), "x", color="k", ms=6)
        if a.acknowledged_t is not None and a.acknowledged_t <= data.end_t:
            ax.plot([(a.acknowledged_t - data.opened_t) / 60.0], [y], "s", color="k", ms=5)
    ax.set_yticks(range(len(codes)), list(reversed(codes)), fontsize=8)
    ax.set_ylim(-0.7, max(len(codes), 1) - 0.3)
    ax.set_ylabel("alarms")
    ax.grid(visible=True, axis="x", alpha=0.3)
    if not codes:
        ax.text(0.5, 0.5, "no alarms", transform=ax.transAxes, ha="center", va="center")
    handles = [
        Line2D([], [], color=c, marker="o", lw=4, label=f"{p} priority")
        for p, c in PRIORITY_COLOURS.items()
    ]
    handles += [
        Line2D([], [], color="k", marker="x", lw=0, label="escalated"),
        Line2D([], [], color="k", marker="s", lw=0, label="acknowledged"),
        Line2D([], [], color="k", marker=">", lw=0, label="active at the end"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
              title="active until cleared", title_fontsize=7)  # fmt: skip


def lane_span(a: AlarmMark, data: ReportData) -> tuple[float, float, bool] | None:
    """Where `a`'s bar lies on the chart, in minutes since open, clipped to the session.

    (start, end, still active at the chart's end), or None for an alarm raised after the
    session ended. An alarm cleared after the discharge, or never, ends at the discharge: the
    chart shows the session, not what followed it.
    """
    end_m = (data.end_t - data.opened_t) / 60.0
    x0 = (a.t - data.opened_t) / 60.0
    if x0 > end_m:
        return None
    cleared_m = None if a.cleared_t is None else (a.cleared_t - data.opened_t) / 60.0
    goes_on = cleared_m is None or cleared_m > end_m
    return max(0.0, x0), end_m if cleared_m is None else min(cleared_m, end_m), goes_on


def minutes_of(ts: Iterable[float], data: ReportData) -> list[float]:
    """Epoch times as minutes since the session opened."""
    return [(t - data.opened_t) / 60.0 for t in ts]


def _draw_facts(ax: Axes, data: ReportData) -> None:
    ax.axis("off")
    lines: list[str] = []
    for label, value in report_facts(data):
        lines.append(f"{label}:")
        lines.extend(textwrap.wrap(value, 44, initial_indent="  ", subsequent_indent="    "))
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9,
            transform=ax.transAxes)  # fmt: skip


def render_png(data: ReportData) -> bytes:
    """The chart as PNG bytes.

    Raises:
        ReportError: matplotlib is not installed (status 2).
    """
    fig = render_figure(data)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


# A driver's exception text inside a message ("…: DeviceError: ox: port …: [Errno 5] …"), as
# journals written before DEVICE_DISCONNECTED was worded for a person hold it: the log has it
_EXCEPTION_TEXT: Final = re.compile(r"(?::\s*|\s*\()?\b[A-Z]\w*(?:Error|Exception): [^;)]*\)?")
# A decimal number standing alone: not part of a clock time, an address or a version
_DECIMAL: Final = re.compile(r"(?<![\w.:/])(\d+\.\d+)(?![\w.:])")


def person_message(message: str) -> str:
    """An alarm message as the report's table shows it: no exception text, whole numbers.

    Every number an alarm message carries is a time in seconds or a vital sign that monitors
    give in whole units (mmHg, /min, %), so a fraction (``30.9505 s``, a median of
    ``141.5``) is rounded half up to a whole number.
    """
    text = _EXCEPTION_TEXT.sub("", message).strip()
    text = _DECIMAL.sub(lambda m: str(math.floor(float(m[1]) + 0.5)), text)
    return text or message


def _message_cell(message: str) -> str:
    """The table cell: the person's message; the full text, if it differs, on hover."""
    shown = person_message(message)
    if shown == message:
        return f"<td>{html.escape(shown)}</td>"
    return f'<td title="{html.escape(message)}">{html.escape(shown)}</td>'


def render_html(data: ReportData) -> str:
    """A self-contained page: the chart as an embedded PNG, the facts and the alarms as tables.

    Raises:
        ReportError: matplotlib is not installed (status 2).
    """
    png = base64.b64encode(render_png(data)).decode("ascii")
    e = html.escape
    facts = "\n".join(
        f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in report_facts(data)
    )
    alarms = (
        "\n".join(
            "<tr>"
            f"<td>{e(data.iso(a.t))}</td><td>{e(a.code)}</td>"
            f'<td><span class="p {e(a.priority)}">{e(a.priority)}</span></td>'
            f"<td>{e(a.phase)}</td>{_message_cell(a.message)}"
            f"<td>{e(data.iso(a.cleared_t)) if a.cleared_t is not None else 'not cleared'}</td>"
            "</tr>"
            for a in data.alarms
        )
        or '<tr><td colspan="6">no alarms</td></tr>'
    )
    title = f"Vigil session report: patient {data.patient_id}, {data.iso(data.opened_t)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.honesty {{ font-weight: bold; color: #8d1c1c; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ccc; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
.p {{ padding: 0 0.4em; border-radius: 3px; }}
.high {{ background: {PRIORITY_COLOURS["high"]}; color: #fff; }}
.medium {{ background: {PRIORITY_COLOURS["medium"]}; }}
.low {{ background: {PRIORITY_COLOURS["low"]}; }}
</style>
</head>
<body>
<h1>{e(title)}</h1>
<p class="honesty">{e(HONESTY)}</p>
<img alt="vital signs, phases and alarms of session {e(data.session_id)}"
 src="data:image/png;base64,{png}">
<h2>Session</h2>
<table>
{facts}
</table>
<h2>Alarms</h2>
<table>
<tr><th>active at</th><th>code</th><th>priority</th><th>phase</th><th>message</th>
<th>cleared at</th></tr>
{alarms}
</table>
</body>
</html>
"""


# ---------------------------------------------------------------------- the command


def write_report(
    journal: Journal, session: str, out: Path, *, policy: Policy | None = None
) -> ReportData:
    """Build the report of `session` and write it to `out` (``.png`` or ``.html``).

    Raises:
        ReportError: unknown or ambiguous session (1), unwritable file (1), unsupported suffix
            or matplotlib missing (2).
    """
    suffix = out.suffix.lower()
    if suffix not in {".png", ".html", ".htm"}:
        raise ReportError(f"--out must end in .png or .html, not {out.name!r}", status=2)
    _require_matplotlib()
    data = build_report(journal, session, policy=policy)
    try:
        if suffix == ".png":
            out.write_bytes(render_png(data))
        else:
            out.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc}") from None
    return data


def _policy_of(args: argparse.Namespace) -> Policy:
    """The alarm policy of the bed config ``--config`` names, else the shipped one.

    Raises:
        ReportError: the config or its policy is invalid (2).
    """
    try:
        config = getattr(args, "config", None)
        return load_policy(load_settings(config).alarms.policy if config is not None else None)
    except ConfigError as exc:
        raise ReportError(str(exc), status=2) from None


def report_main(args: argparse.Namespace) -> int:
    """`vigil report SESSION --out FILE [--config FILE | --journal PATH]`; the exit status.

    The journal is found as `vigil export` finds it (`monitor.export.open_journal`). 0 written;
    1 no such session (the known ids are listed) or an unwritable output; 2 matplotlib missing
    (with the install hint), no journal, an invalid config, or an output suffix other than
    .png/.html.
    """
    out = Path(args.out)
    try:
        if out.suffix.lower() in {".png", ".html", ".htm"}:
            _require_matplotlib()  # before any work: say what to install at once
        try:
            with open_journal(args) as journal:
                data = write_report(journal, args.session, out, policy=_policy_of(args))
        except UsageError as exc:
            raise ReportError(str(exc), status=2) from None
    except ReportError as exc:
        print(f"vigil report: {exc}", file=sys.stderr)
        return exc.status
    print(f"{out}: session {data.session_id} of patient {data.patient_id}")
    return 0
