"""The evaluation as a document: JSON, CSV and an HTML page with charts for a committee.

`document(...)` gathers everything into one JSON-ready dict (the JSON file is that dict;
`run` holds what depends on the machine, such as the elapsed time, and nothing else does).
`write_csv` writes the burden table, one row per (group, scope); `write_sweep_csv` the sweeps;
`render_html` a self-contained page whose charts are PNGs drawn by matplotlib (the `report`
extra, on the Agg canvas) and embedded.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alarms.evaluate.sessions import SessionResult
from alarms.evaluate.stats import SCOPES, BurdenRow, DetectionRow, burden, detection
from kernel.vocabulary import PRIORITY_ORDER, Priority, iso8601

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TIMING_BIN_MIN",
    "burden_block",
    "document",
    "render_html",
    "write_csv",
    "write_sessions_csv",
    "write_sweep_csv",
]

TIMING_BIN_MIN = 5
_PRIORITY_COLOURS = {"high": "#c62828", "medium": "#f9a825", "low": "#00838f"}
_BURDEN_FIELDS = list(BurdenRow.__dataclass_fields__)


def burden_block(
    sessions: Sequence[SessionResult], codes: Sequence[str], window_s: float
) -> dict[str, Any]:
    """Burden rows, per-session distributions, timing and detection for one policy."""
    rows = burden(sessions, codes)
    det = detection(sessions, window_s)
    return {
        "burden": [asdict(r) for r in rows],
        "distribution": _distribution(sessions),
        "timing": _timing(sessions),
        "detection": [asdict(d) for d in det],
        "code_priorities": _code_priority(sessions),
        "crossed": _crossed(sessions),
    }


def _crossed(sessions: Sequence[SessionResult]) -> dict[str, dict[str, int]]:
    """Activations per code by the reading that crossed (`BP_HIGH`: SYS or DIA)."""
    out: dict[str, dict[str, int]] = {}
    for s in sessions:
        for a in s.activations:
            per = out.setdefault(a.code, {})
            key = a.param or "-"
            per[key] = per.get(key, 0) + 1
    return {code: dict(sorted(per.items())) for code, per in out.items()}


def _code_priority(sessions: Sequence[SessionResult]) -> dict[str, str]:
    """The priority each code was raised with first (the no-data alarms differ in `pre`)."""
    out: dict[str, str] = {}
    for s in sessions:
        for a in s.activations:
            out.setdefault(a.code, a.priority.value)
    return out


def _distribution(sessions: Sequence[SessionResult]) -> dict[str, list[int]]:
    """Sessions by number of activations: `counts[k]` sessions had k (any, per priority)."""
    out: dict[str, list[int]] = {}
    for name in ("any", *(p.value for p in Priority)):
        per = [sum(1 for a in s.activations if name in {"any", a.priority.value}) for s in sessions]
        out[name] = np.bincount(np.asarray(per, dtype=np.int64), minlength=1).tolist()
    return out


def _timing(sessions: Sequence[SessionResult]) -> dict[str, Any]:
    """Activations per `TIMING_BIN_MIN` minutes since infusion start, per priority and code."""
    offsets: list[tuple[float, str, str]] = [
        ((a.t - s.infusion_start) / 60.0, a.priority.value, a.code)
        for s in sessions
        if s.infusion_start is not None
        for a in s.activations
    ]
    if not offsets:
        return {"bin_min": TIMING_BIN_MIN, "first_min": 0, "by_priority": {}, "by_code": {}}
    lo = math.floor(min(o for o, _, _ in offsets) / TIMING_BIN_MIN) * TIMING_BIN_MIN
    hi = math.floor(max(o for o, _, _ in offsets) / TIMING_BIN_MIN) * TIMING_BIN_MIN
    bins = (hi - lo) // TIMING_BIN_MIN + 1
    by_priority: dict[str, list[int]] = {}
    by_code: dict[str, list[int]] = {}
    for off, pri, code in offsets:
        k = int((off - lo) // TIMING_BIN_MIN)
        by_priority.setdefault(pri, [0] * bins)[k] += 1
        by_code.setdefault(code, [0] * bins)[k] += 1
    return {
        "bin_min": TIMING_BIN_MIN,
        "first_min": lo,
        "by_priority": {p.value: by_priority[p.value] for p in Priority if p.value in by_priority},
        "by_code": by_code,
    }


def document(  # noqa: PLR0913 - keyword-only, one per part of the document
    *,
    command: str,
    policy: str,
    recordings: int,
    sessions: Sequence[SessionResult],
    rows: int,
    outside: int,
    block: dict[str, Any],
    window_s: float,
    sweeps: list[dict[str, Any]],
    run: dict[str, Any],
) -> dict[str, Any]:
    """The whole evaluation as one JSON-ready dict."""
    return {
        "vigil_evaluate": 1,
        "command": command,
        "policy": policy,
        "recordings": recordings,
        "sessions": len(sessions),
        "discharged": sum(1 for s in sessions if s.discharged),
        "first_start": iso8601(min(s.start for s in sessions)) if sessions else None,
        "last_end": iso8601(max(s.end for s in sessions)) if sessions else None,
        "rows": rows,
        "activations_outside_sessions": outside,
        "detect_window_s": window_s,
        **block,
        "sweeps": sweeps,
        "run": run,
    }


def write_csv(doc: dict[str, Any], path: Path) -> None:
    """The burden table: one row per (group, name, scope)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_BURDEN_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in doc["burden"]:
            w.writerow(row)


def write_sessions_csv(sessions: Sequence[SessionResult], codes: Sequence[str], path: Path) -> None:
    """One row per session, to find the sessions behind a figure.

    Where it is, when it ran (ISO 8601 with offset), and its activations, in all and per code.
    """
    seen = list(codes)
    for s in sessions:
        seen += [a.code for a in s.activations if a.code not in seen]
    head = ["file", "session", "start", "minutes", "infused", "discharged", "activations", *seen]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(head)
        for s in sessions:
            per = Counter(a.code for a in s.activations)
            w.writerow(
                [
                    s.file,
                    s.index,
                    iso8601(s.start),
                    f"{(s.end - s.start) / 60:.1f}",
                    int(s.infusion_start is not None),
                    int(s.discharged),
                    len(s.activations),
                    *(per.get(c, 0) for c in seen),
                ]
            )


def write_sweep_csv(doc: dict[str, Any], path: Path) -> None:
    """One row per (sweep, value, group): the whole-session burden and detection."""
    fields = ["sweep", "target", "value", *_BURDEN_FIELDS, "events", "detected", "sensitivity"]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for sw in doc["sweeps"]:
            for point in sw["points"]:
                det = point.get("detection")
                for row in point["burden"]:
                    extra = {"events": "", "detected": "", "sensitivity": ""}
                    if det is not None and row["name"] == sw["code"]:
                        extra = {k: det[k] for k in ("events", "detected", "sensitivity")}
                    w.writerow(
                        {"sweep": sw["sweep"], "target": sw["target"], "value": point["value"]}
                        | row
                        | extra
                    )


# ---------------------------------------------------------------------------- HTML


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415 - optional extra, only when drawing

    return Figure(figsize=(w, h), layout="constrained")


def _code_chart(doc: dict[str, Any]) -> str:
    rows = [
        r
        for r in doc["burden"]
        if r["group"] == "code" and r["scope"] == "session" and r["with_alarm"]
    ]
    priority = _code_priorities(doc)
    fig = _figure(8.5, max(2.2, 0.42 * len(rows) + 1.2))
    ax = fig.add_subplot()
    if not rows:
        ax.text(0.5, 0.5, "no alarm in any session", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    rows.reverse()  # the first code at the top
    y = np.arange(len(rows))
    share = np.array([r["share"] for r in rows]) * 100
    lo = share - np.array([r["share_low"] for r in rows]) * 100
    hi = np.array([r["share_high"] for r in rows]) * 100 - share
    colours = [_PRIORITY_COLOURS.get(priority.get(r["name"], ""), "#607d8b") for r in rows]
    ax.barh(y, share, color=colours, xerr=[lo, hi], capsize=3, ecolor="#333")
    ax.set_yticks(y, [r["name"] for r in rows])
    for yi, r in zip(y, rows, strict=True):
        ax.text(
            r["share_high"] * 100 + 0.3,
            float(yi),
            f"{r['share'] * 100:.1f} %  ({r['mean']:.2f}/session)",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("sessions with at least one activation (%), 95 % Wilson interval")
    ax.set_title("Alarm burden by code (colour: priority)")
    ax.set_xlim(0, max(5.0, float(np.max(share + hi)) * 1.35))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _code_priorities(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc.get("code_priorities", {}))


def _distribution_chart(doc: dict[str, Any]) -> str:
    dist = doc["distribution"]
    cap = 10
    fig = _figure(8.5, 3.2)
    ax = fig.add_subplot()
    names = ["any", *(p.value for p in PRIORITY_ORDER)]
    width = 0.2
    for i, name in enumerate(names):
        counts = dist.get(name, [0])
        capped = [*counts[:cap], sum(counts[cap:])]
        x = np.arange(len(capped)) + (i - 1.5) * width
        ax.bar(x, capped, width, label=name, color=_PRIORITY_COLOURS.get(name, "#455a64"))
    ax.set_xticks(np.arange(cap + 1), [*(str(k) for k in range(cap)), f"{cap}+"])
    ax.set_xlabel("activations in the session")
    ax.set_ylabel("sessions")
    ax.set_title("Activations per session")
    ax.legend(title="priority")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _timing_chart(doc: dict[str, Any]) -> str:
    timing = doc["timing"]
    fig = _figure(8.5, 5.6)
    ax, by_code = fig.subplots(2, 1, sharex=True)
    bottom: np.ndarray | None = None
    first, step = timing["first_min"], timing["bin_min"]
    for name, counts in timing["by_priority"].items():
        c = np.asarray(counts, dtype=np.float64)
        x = first + step * np.arange(len(c)) + step / 2
        ax.bar(
            x,
            c,
            step * 0.9,
            bottom=bottom,
            label=name,
            color=_PRIORITY_COLOURS.get(name, "#455a64"),
        )
        bottom = c if bottom is None else bottom + c
    # the codes that fire most, each on its own line: which alarm comes when
    top = sorted(timing["by_code"].items(), key=lambda kv: -sum(kv[1]))[:6]
    for code, counts in top:
        c = np.asarray(counts, dtype=np.float64)
        x = first + step * np.arange(len(c)) + step / 2
        by_code.plot(x, c, marker=".", label=code)
    for a in (ax, by_code):
        a.axvline(0, color="#333", lw=1, ls="--")
        a.grid(axis="y", alpha=0.3)
        a.set_ylabel("activations")
    ax.text(0.5, 1.0, " infusion start", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    by_code.set_xlabel(f"minutes since infusion start ({step}-minute bins)")
    ax.set_title("When in the session alarms fire: by priority, and the most frequent codes")
    if timing["by_priority"]:
        ax.legend(title="priority", fontsize=8)
    if top:
        by_code.legend(fontsize=7, ncols=2)
    return _png(fig)


def _sweep_chart(sw: dict[str, Any]) -> str:
    fig = _figure(8.5, 3.8)
    ax = fig.add_subplot()
    values = [p["value"] for p in sw["points"]]
    lines = [(sw["code"], "#6a1b9a")] + ([("any", "#455a64")] if sw["code"] != "any" else [])
    for name, colour in lines:
        rows = [next(r for r in p["burden"] if r["name"] == name) for p in sw["points"]]
        share = np.array([r["share"] for r in rows]) * 100
        ax.plot(values, share, "o-", color=colour, label=f"{name}: sessions with >= 1 (%)")
        ax.fill_between(
            values,
            [r["share_low"] * 100 for r in rows],
            [r["share_high"] * 100 for r in rows],
            color=colour,
            alpha=0.15,
        )
    ax.set_xlabel(sw["target"])
    ax.set_ylabel("sessions with >= 1 activation (%)")
    ax.set_title(f"Sweep {sw['target']}: burden against the value")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if all(p.get("detection") for p in sw["points"]):
        ax2 = ax.twinx()
        sens = [p["detection"]["sensitivity"] * 100 for p in sw["points"]]
        ax2.plot(values, sens, "s--", color="#2e7d32", label=f"{sw['code']}: sensitivity (%)")
        ax2.set_ylabel("sensitivity to annotated events (%)")
        ax2.set_ylim(0, 105)
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # below the axes: inside, it would hide the points it explains
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    return _png(fig)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


def _burden_table(rows: list[dict[str, Any]], scope: str, *, caption: str) -> str:
    e = html.escape
    head = (
        "<tr><th>alarm</th><th>sessions</th><th>with &ge; 1</th><th>share %</th>"
        "<th>95 % interval</th><th>mean</th><th>median</th><th>p90</th><th>max</th>"
        "<th>time in alarm / session</th><th>share of time %</th></tr>"
    )
    body = []
    for r in rows:
        if r["scope"] != scope:
            continue
        label = r["name"] if r["group"] != "priority" else f"priority {r['name']}"
        cls = ' class="group"' if r["group"] != "code" else ""
        body.append(
            f"<tr{cls}><td>{e(label)}</td><td>{r['sessions']}</td><td>{r['with_alarm']}</td>"
            f"<td>{_pct(r['share'])}</td><td>{_pct(r['share_low'])}&ndash;"
            f"{_pct(r['share_high'])}</td><td>{r['mean']:.3f}</td><td>{r['median']:g}</td>"
            f"<td>{r['p90']:g}</td><td>{r['max']}</td><td>{_duration(r['time_mean_s'])}</td>"
            f"<td>{r['time_share'] * 100:.2f}</td></tr>"
        )
    return f"<table><caption>{e(caption)}</caption>{head}{''.join(body)}</table>"


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _detection_table(rows: list[dict[str, Any]], window_s: float) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(d['code'])}</td><td>{d['events']}</td><td>{d['detected']}</td>"
        f"<td>{_pct(d['sensitivity'])}</td><td>{_pct(d['sensitivity_low'])}&ndash;"
        f"{_pct(d['sensitivity_high'])}</td><td>{_opt(d['delay_median_s'])}</td>"
        f"<td>{_opt(d['delay_p90_s'])}</td><td>{_opt(d['delay_max_s'])}</td></tr>"
        for d in rows
    )
    return (
        f"<h2>Detection of annotated true events</h2><table><caption>an event counts as detected"
        f" when its alarm is active within {window_s:g} s of it</caption><tr><th>alarm</th>"
        "<th>events</th><th>detected</th><th>sensitivity %</th><th>95 % interval</th>"
        "<th>time to alarm, median s</th><th>p90 s</th><th>max s</th></tr>"
        f"{body}</table>"
    )


def _crossed_table(crossed: dict[str, dict[str, int]]) -> str:
    rows = [
        f"<tr><td>{html.escape(code)}</td><td>"
        + ", ".join(
            f"{html.escape(p)} {n} ({n / sum(per.values()) * 100:.0f} %)" for p, n in per.items()
        )
        + "</td></tr>"
        for code, per in crossed.items()
        if len(per) > 1
    ]
    if not rows:
        return ""
    return (
        "<table><caption>which reading crossed the limit, for alarms on more than one"
        "</caption><tr><th>alarm</th><th>activations by reading</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _opt(x: float | None) -> str:
    return "&ndash;" if x is None else f"{x:.0f}"


def _sweep_section(sw: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for p in sw["points"]:
        r = next(b for b in p["burden"] if b["name"] == sw["code"])
        a = next(b for b in p["burden"] if b["name"] == "any")
        det = p.get("detection")
        sens = _pct(det["sensitivity"]) if det else "&ndash;"
        rows.append(
            f"<tr><td>{p['value']:g}</td><td>{_pct(r['share'])} ({_pct(r['share_low'])}&ndash;"
            f"{_pct(r['share_high'])})</td><td>{r['mean']:.3f}</td><td>{_pct(a['share'])}</td>"
            f"<td>{a['mean']:.3f}</td><td>{sens}</td></tr>"
        )
    return (
        f'<h3>{e(sw["target"])}</h3><img alt="sweep {e(sw["target"])}" '
        f'src="data:image/png;base64,{_sweep_chart(sw)}"><table><tr><th>value</th>'
        f"<th>{e(sw['code'])}: sessions with &ge; 1 %</th><th>{e(sw['code'])} per session</th>"
        "<th>any alarm: sessions %</th><th>any alarm per session</th><th>sensitivity %</th></tr>"
        f"{''.join(rows)}</table>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#212121}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
caption{text-align:left;font-style:italic;padding:4px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}
tr.group td{background:#f1f3f5;font-weight:600}
img{max-width:100%;display:block;margin:8px 0}
.note{color:#555;font-size:13px}code{background:#f4f4f4;padding:1px 4px}
"""


def render_html(doc: dict[str, Any]) -> str:
    """The report page: facts, charts, tables; self-contained (images embedded)."""
    e = html.escape
    rows = doc["burden"]
    phases = "".join(
        _burden_table(rows, scope, caption=f"alarms raised in {scope} (sessions that reached it)")
        for scope in SCOPES[1:]
    )
    sweeps = "".join(_sweep_section(sw) for sw in doc["sweeps"])
    sweeps_html = f"<h2>Policy sweeps</h2>{sweeps}" if sweeps else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil alarm burden</title>
<style>{_CSS}</style></head><body>
<h1>Alarm burden of a policy over a cohort</h1>
<p>Policy <code>{e(doc["policy"])}</code> replayed through Vigil's alarm engine over
<b>{doc["sessions"]}</b> sessions ({doc["discharged"]} discharged) in {doc["recordings"]}
recording(s), {doc["rows"]:,} rows, from {e(str(doc["first_start"]))} to
{e(str(doc["last_end"]))}. Command: <code>{e(doc["command"])}</code></p>
<p class="note">Decision support, not a certified device. Replay has no nurse: a latching alarm
stays active until the discharge clears it, so its time in alarm is an upper bound.
Shares are of sessions with at least one activation, with 95&nbsp;% Wilson intervals.
{doc["activations_outside_sessions"]} activation(s) happened outside any session and are not
counted.</p>
<h2>Burden by alarm</h2>
<img alt="burden by code" src="data:image/png;base64,{_code_chart(doc)}">
{_burden_table(rows, "session", caption="whole sessions")}
{_crossed_table(doc.get("crossed", {}))}
<h2>Distribution per session</h2>
<img alt="activations per session" src="data:image/png;base64,{_distribution_chart(doc)}">
<h2>When alarms fire</h2>
<img alt="timing" src="data:image/png;base64,{_timing_chart(doc)}">
<h2>Per phase</h2>{phases}
{_detection_table(doc["detection"], doc["detect_window_s"])}
{sweeps_html}
</body></html>
"""


def detection_of(rows: Sequence[DetectionRow], code: str) -> dict[str, Any] | None:
    """The detection row of `code` as a dict, or None."""
    for d in rows:
        if d.code == code:
            return asdict(d)
    return None
