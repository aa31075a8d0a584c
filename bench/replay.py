"""Replay throughput, honestly: `vigil replay`'s engine against a plain per-sample loop.

    python bench/replay.py [--hours 24] [--sessions 100] [--repeats 3] [--big] [--keep DIR]

Two workloads are generated as recording CSVs in a temporary directory:
- `bed`: one bed for `--hours` bed-hours, sessions back to back (10 min apart), 1 Hz HR, PR and
  SpO2, a cuff determination every 5 min in every phase, and in each session one episode, in
  turn: tachycardia, bradycardia, desaturation, ECG leads off while the oximeter sees a
  bradycardia (Reading 5), oximeter off, a BP surge;
- `cohort`: `--sessions` sessions of the simulator's scenarios (normal, hypertensive surge,
  desaturation, seeds 1, 2, ...): cuff every 5 min in infusion, every 15 min after.

Each file is replayed by separate processes (each kind `--repeats` times, interleaved, the
median run reported), each timing itself from after its imports to its last event and printing
its own figures as JSON:
- `engine`: what `vigil replay` runs: `alarms.recording_io.read_recording` in blocks, each block
  through `AlarmEngine.rows`, then `flush`;
- `read`: the reading alone, to show the share of the engine's time that is I/O;
- `plain`: docs/ALARMS.md evaluated one sample at a time as it is first written: Python's `csv`,
  floats, dicts and lists, no per-row objects and no numpy, the timed checks run on every
  whole-second tick between rows (`plain_replay` below).
`engine` and `plain` must give identical events, every exact field (docs/ALARMS.md Reading 15: t,
code, priority, kind, state, phase, level, param, value, limit); the script fails otherwise.
Figures are rows per second of the whole file, the reading included.

`--big` also writes a 100 M-row file (the bed workload repeated, later days shifted in time,
streamed to disk) and replays it with the engine alone, reporting its rows/s and peak RSS
(`resource.getrusage`), which must stay within 1 GB.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import operator
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
SESSION_S = 10500  # session_start .. discharge, as the simulator's scenarios
SESSION_GAP_S = 600
BIG_ROWS = 100_000_000
RSS_LIMIT = 1 << 30

Event = tuple[Any, ...]  # the exact fields of one event, in the order of `FIELDS`
FIELDS = ("t", "code", "priority", "kind", "state", "phase", "level", "param", "value", "limit")


# ----------------------------------------------------------------------------- workloads


# one flat generator reads better than its episodes spread over helpers
def bed_rows(hours: float, seed: int = 1) -> list[tuple[float, Any, float]]:  # noqa: C901, PLR0915
    """The `bed` workload as (t, param or session step, value) rows, NaN for invalid."""
    import numpy as np  # noqa: PLC0415 (the plain worker imports none of the engine's stack)

    from kernel.vocabulary import Param, SessionEvent  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    rows: list[tuple[float, Any, float]] = []
    t0 = T0
    nan = math.nan
    session = 0
    while t0 - T0 < hours * 3600:
        n = SESSION_S
        off = np.arange(n)
        hr = np.round(75 + 3 * np.sin(off / 600)) + rng.integers(-2, 3, n)
        pr = hr + rng.integers(-1, 2, n)
        spo2 = 97 + rng.integers(-1, 2, n).astype(float)
        hr_ok = np.ones(n, bool)
        spo2_ok = np.ones(n, bool)
        cuffs = n // 300 + 1
        sys_ = 125 + 5 * np.sin(np.arange(cuffs) * 300 / 2000) + rng.integers(-3, 4, cuffs)
        dia = sys_ * 0.62
        kind = session % 6
        a = int(rng.integers(700, 9000))  # the episode starts in infusion or post
        if kind == 0:  # tachycardia, long enough for TACHY_SEVERE and its escalations
            hr[a : a + 240] = pr[a : a + 240] = 150
        elif kind == 1:  # bradycardia
            hr[a : a + 90] = pr[a : a + 90] = 38
        elif kind == 2:  # desaturation
            spo2[a : a + 120] = 83
        elif kind == 3:  # ECG leads off while the oximeter sees a bradycardia (Reading 5)
            hr_ok[a : a + 200] = False
            pr[a + 30 : a + 120] = 42
        elif kind == 4:  # oximeter off: SPO2_NO_DATA
            spo2_ok[a : a + 60] = False
        else:  # a BP surge: BP_HIGH, BP_CRISIS, BP_RISE
            k = a // 300
            sys_[k : k + 3] = [185, 205, 190]
            dia[k : k + 3] = [112, 125, 100]
        steps = {
            0: SessionEvent.SESSION_START,
            600: SessionEvent.INFUSION_START,
            3000: SessionEvent.INFUSION_STOP,
            10500: SessionEvent.DISCHARGE,
        }
        hr_l, pr_l, spo2_l = hr.tolist(), pr.tolist(), spo2.tolist()
        for i in range(n + 1):
            t = t0 + i
            if i in steps:
                rows.append((t, steps[i], nan))
            if i == n:
                break
            rows.append((t, Param.HR, hr_l[i] if hr_ok[i] else nan))
            rows.append((t, Param.PR, pr_l[i]))
            rows.append((t, Param.SPO2, spo2_l[i] if spo2_ok[i] else nan))
            if i % 300 == 270:  # 30 s before the 5 min mark: never at a session step
                k = i // 300
                rows.append((t, Param.NIBP_SYS, float(round(sys_[k]))))
                rows.append((t, Param.NIBP_DIA, float(round(dia[k]))))
                rows.append((t, Param.NIBP_MEAN, float(round((sys_[k] + 2 * dia[k]) / 3))))
        t0 += n + SESSION_GAP_S
        session += 1
    return rows


def cohort_rows(sessions: int) -> list[tuple[float, Any, float]]:
    """The `cohort` workload: the simulator's scenarios, one session after another."""
    from kernel.vocabulary import Step  # noqa: PLC0415
    from simulators.scenarios import SCENARIOS, build_scenario  # noqa: PLC0415

    rows: list[tuple[float, Any, float]] = []
    names = list(SCENARIOS)
    for k in range(sessions):
        t0 = T0 + k * (SESSION_S + SESSION_GAP_S)
        for item in build_scenario(names[k % len(names)], t0=t0, seed=k + 1):
            if isinstance(item, Step):
                rows.append((item.t, item.event, math.nan))
            else:
                rows.append((item.t, item.param, item.value if item.valid else math.nan))
    return rows


def write_big(path: Path, rows: int) -> int:
    """`rows` rows of the bed workload, day after day, written block by block (pyarrow)."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415

    from alarms.engine import _CODES  # noqa: PLC0415
    from alarms.recording_io import EVENT, read_all, write_recording  # noqa: PLC0415
    from kernel.vocabulary import Param  # noqa: PLC0415

    day = path.with_suffix(".day.csv")
    write_recording(bed_rows(24.0, seed=7), day)
    batch = read_all(day)
    day.unlink()
    span = math.ceil((batch.t[-1] - batch.t[0]) / 86400 + 1) * 86400
    is_param = np.array([isinstance(w, Param) for w in _CODES])[batch.what]
    names = np.array([w.value if isinstance(w, Param) else EVENT for w in _CODES])
    param = pa.array(names[batch.what])
    # every value of the bed workload is a whole number
    numbers = np.nan_to_num(batch.value).astype(np.int64).astype(str)
    steps = np.array([w.value for w in _CODES])[batch.what]
    text = np.where(is_param, np.where(batch.valid, numbers, ""), steps)
    value = pa.array(text.tolist(), pa.string())
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    written = 0
    with path.open("wb") as f:
        f.write(b"t,param,value\n")
        k = 0
        while written < rows:
            n = min(len(batch), rows - written)
            t = pa.array(batch.t[:n].astype(np.int64) + k * span)
            table = pa.table({"t": t, "param": param[:n], "value": value[:n]})
            pacsv.write_csv(table, f, options)
            written += n
            k += 1
    return written


# ---------------------------------------------------------------- the engine, as `vigil replay`


def engine_worker(path: str, events_out: str | None) -> dict[str, Any]:
    from alarms.engine import AlarmEngine  # noqa: PLC0415
    from alarms.policy import load_policy  # noqa: PLC0415
    from alarms.recording_io import read_recording  # noqa: PLC0415

    policy = load_policy()
    start, cpu = time.perf_counter(), time.process_time()
    engine = AlarmEngine(policy)
    events = []
    rows = 0
    for batch in read_recording(path):
        rows += len(batch)
        events += engine.rows(batch)
    events += engine.flush()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if events_out is not None:
        exact = [
            (
                e.t,
                e.code,
                e.priority.value,
                e.kind.value,
                e.state.value,
                e.phase.value,
                e.level,
                e.param,
                e.value,
                e.limit,
            )
            for e in events
        ]
        Path(events_out).write_text(json.dumps(exact, allow_nan=True), encoding="utf-8")
    return {"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "events": len(events)}


def read_worker(path: str, events_out: str | None) -> dict[str, Any]:
    """The reading alone, to show what share of the engine's time is I/O."""
    from alarms.recording_io import read_recording  # noqa: PLC0415

    del events_out
    start, cpu = time.perf_counter(), time.process_time()
    rows = sum(len(batch) for batch in read_recording(path))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "events": 0}


# ------------------------------------------------- docs/ALARMS.md, one sample at a time, plainly


def plain_worker(path: str, events_out: str | None) -> dict[str, Any]:
    from alarms.policy import load_policy  # noqa: PLC0415

    policy = load_policy().model_dump(mode="json")
    start, cpu = time.perf_counter(), time.process_time()
    rows, events = plain_replay(path, policy)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if events_out is not None:
        Path(events_out).write_text(json.dumps(events, allow_nan=True), encoding="utf-8")
    return {"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "events": len(events)}


OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
RANGE = {
    "HR": (20.0, 300.0),
    "PR": (20.0, 300.0),
    "SPO2": (50.0, 100.0),
    "NIBP_SYS": (10.0, 300.0),
    "NIBP_DIA": (10.0, 300.0),
    "NIBP_MEAN": (10.0, 300.0),
    "ABP_SYS": (10.0, 300.0),
    "ABP_DIA": (10.0, 300.0),
    "ABP_MEAN": (10.0, 300.0),
    "RR": (0.0, 80.0),
    "ETCO2": (0.0, 150.0),
}
PARAM_ORDER = list(RANGE)
NIBP = ("NIBP_SYS", "NIBP_DIA", "NIBP_MEAN")


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# Deliberately one flat function with closures: the plain loop as it is first written.
def plain_replay(path: str, policy: dict[str, Any]) -> tuple[int, list[Event]]:  # noqa: C901, PLR0912, PLR0915
    """docs/ALARMS.md over the rows of `path`, with plain Python state; the rows and the events.

    The policy comes in as the plain dict of `Policy.model_dump`. State is a handful of dicts
    and lists; an active alarm is a list [priority, kind, activated_t, param, value, limit,
    latching, level, signal, condition]. Ticks run on every whole second between rows.
    """
    g = policy["general"]
    gap, clear_after, hold = g["run_gap_s"], g["clear_after_s"], g["hr_hold_s"]
    esc_s, esc_levels = g["escalation_interval_s"], g["escalation_levels"]
    continuous = policy["continuous"]
    by_signal: dict[
        str, list[tuple[str, Callable[[float, float], bool], float, float, dict[str, Any]]]
    ] = {}
    for r in continuous:
        by_signal.setdefault(r["signal"], []).append(
            (r["code"], OPS[r["op"]], r["limit"], r["delay_s"], r)
        )
    determination = policy["determination"]
    no_data = [
        (
            r["code"],
            r["priority"],
            r["priority_in_pre"],
            set(r["params"]),
            r["after_s"],
            set(r["phases"]),
            min(r["params"], key=PARAM_ORDER.index),
        )
        for r in policy["no_data"]
    ]
    od = policy["nibp_overdue"]
    bl_rule = policy["baseline"]
    dc = policy["discharge"]
    order = [r["code"] for r in determination] + [r["code"] for r in continuous]
    order += [r["code"] for r in policy["no_data"]]
    order += [od["code"]] if od else []
    order += [bl_rule["code"]] + ([dc["code"]] if dc else [])
    rank = {c: i for i, c in enumerate(order)}
    phases_of = {
        r["code"]: set(r["phases"]) for r in continuous + determination + policy["no_data"]
    }
    phases_of[bl_rule["code"]] = {"infusion"}
    if dc:
        phases_of[dc["code"]] = {"post"}
    if od:
        phases_of[od["code"]] = {"infusion", "post"}
    keep = (
        max(
            [bl_rule["window_s"]]
            + [c["hre_window_s"] for r in determination for c in r["when"] if c["hre_ratio"]]
        )
        + 1.0
    )

    phase = "none"
    session: dict[str, Any] | None = None
    active: dict[str, list[Any]] = {}
    runs: dict[str, list[float | None]] = {
        r["code"]: [None, None] for r in continuous
    }  # hold start, not-holding start
    signal_last_t: dict[str, float] = {}
    latest: dict[str, float] = {}
    last_valid_hr: tuple[float, float] | None = None
    last_valid_t: dict[str, float] = {}
    last_hre_src = "HR"
    hre_hist: deque[tuple[float, float]] = deque()
    spo2_hist: deque[tuple[float, float]] = deque()
    pending: dict[str, float] = {}
    pending_t: float | None = None
    now = -math.inf
    out: list[Event] = []

    def emit(
        a: list[Any], code: str, state: str, t: float, param: Any, value: Any, level: Any = None
    ) -> None:
        out.append((max(t, now), code, a[0], a[1], state, phase, level, param, value, a[5]))

    def reading(a: list[Any]) -> Any:
        return latest[a[8]] if a[8] is not None and a[8] in latest else a[4]

    def raise_(  # noqa: PLR0913 (an alarm has this many fields)
        code: str,
        prio: str,
        kind: str,
        t: float,
        param: Any,
        value: Any,
        limit: Any,
        *,
        latching: bool,
        signal: Any = None,
    ) -> None:
        a = [prio, kind, t, param, value, limit, latching, 0, signal, True]
        active[code] = a
        emit(a, code, "active", t, param, value)

    def clear(code: str, t: float, param: Any = None, value: Any = None) -> None:
        a = active.pop(code)
        emit(
            a,
            code,
            "cleared",
            t,
            a[3] if param is None else param,
            reading(a) if value is None else value,
        )

    def ended(code: str, a: list[Any], t: float, value: float, param: Any) -> None:
        # the condition is over: a latching alarm stays, with no event (docs/ALARMS.md
        # "States"), as nobody acknowledges in a replay; any other clears
        if a[6]:
            a[9] = False
        else:
            clear(code, t, param, value)

    def set_phase(p: str, t: float) -> None:
        nonlocal phase
        phase = p
        for code in sorted(active, key=rank.__getitem__):
            if p not in phases_of[code]:
                clear(code, t)

    def signal(sig: str, t: float, value: float, src: str, *, ok: bool) -> None:
        last = signal_last_t.get(sig)
        broken = last is not None and t - last > gap
        signal_last_t[sig] = t
        for code, op, limit, delay, r in by_signal[sig]:
            run = runs[code]
            if ok and op(value, limit):
                run[1] = None
                if run[0] is None or broken:
                    run[0] = t
            elif ok:
                run[0] = None
                if run[1] is None or broken:
                    run[1] = t
            else:
                run[0] = run[1] = None
            due_on = run[0] is not None and t - run[0] >= delay
            due_off = run[1] is not None and t - run[1] >= clear_after
            a = active.get(code)
            if a is None:
                if due_on and phase in phases_of[code]:
                    raise_(
                        code,
                        r["priority"],
                        r["kind"],
                        t,
                        src,
                        value,
                        limit,
                        latching=r["latching"],
                        signal=sig,
                    )
            elif due_on:
                a[9] = True
            elif due_off:
                ended(code, a, t, value, src)

    def det_rule(  # noqa: C901, PLR0912 (the clauses of docs/ALARMS.md, one after another)
        r: dict[str, Any],
        t: float,
        s: float,
        d: float,
        prev: tuple[float, float, float, str] | None,
    ) -> None:
        assert session is not None
        hit = None
        for c in r["when"]:
            sthr, dthr = c["sys"], c["dia"]
            if c["sys_ratio"] is not None or c["dia_ratio"] is not None:
                b = session["baseline"]
                if b is None or b[0] is None or b[1] is None:
                    continue
                sthr = c["sys_ratio"] * b[0] if c["sys_ratio"] is not None else None
                dthr = c["dia_ratio"] * b[1] if c["dia_ratio"] is not None else None
            if sthr is not None and s >= sthr:
                now_hit = ("NIBP_SYS", s, sthr)
            elif dthr is not None and d >= dthr:
                now_hit = ("NIBP_DIA", d, dthr)
            else:
                continue
            if c["consecutive"] == 2 and (
                prev is None
                or prev[3] not in r["phases"]
                or not (
                    (sthr is not None and prev[1] >= sthr) or (dthr is not None and prev[2] >= dthr)
                )
            ):
                continue
            if c["hre_ratio"] is not None:
                b = session["baseline"]
                median = _median([v for ts, v in hre_hist if t - c["hre_window_s"] <= ts <= t])
                if b is None or b[2] is None or median is None or median < c["hre_ratio"] * b[2]:
                    continue
            hit = now_hit
            break
        code = r["code"]
        a = active.get(code)
        if hit is not None:
            if a is None:
                raise_(
                    code,
                    r["priority"],
                    r["kind"],
                    t,
                    hit[0],
                    hit[1],
                    hit[2],
                    latching=r["latching"],
                )
            else:
                a[9] = True
        elif a is not None:
            ended(code, a, t, s if a[3] == "NIBP_SYS" else d, None)

    def discharge_check(t: float) -> None:
        assert session is not None
        b = session["baseline"]
        dets = session["dets"]
        failing = None
        checks = [
            ("NIBP_SYS", dets[-1][1] if dets else None, b[0] if b else None),
            ("NIBP_DIA", dets[-1][2] if dets else None, b[1] if b else None),
            ("HRE", latest.get("HRE"), b[2] if b else None),
        ]
        for name, x, x0 in checks:
            if x is None or x0 is None:
                continue
            lo, hi = (1 - dc["band"]) * x0, (1 + dc["band"]) * x0
            if x < lo:
                failing = (name, x, lo)
                break
            if x > hi:
                failing = (name, x, hi)
                break
        if failing is None and b is not None and b[3] is not None:
            spo2 = latest.get("SPO2")
            if spo2 is not None and spo2 < b[3] - dc["spo2_drop"]:
                failing = ("SPO2", spo2, b[3] - dc["spo2_drop"])
        a = active.get(dc["code"])
        if failing is not None:
            if a is None:
                name = failing[0]
                param = last_hre_src if name == "HRE" else name
                raise_(
                    dc["code"],
                    dc["priority"],
                    "advisory",
                    t,
                    param,
                    failing[1],
                    failing[2],
                    latching=False,
                    signal=name,
                )
        elif a is not None:
            clear(dc["code"], t)

    def timed() -> None:  # noqa: C901 (Reading 2, in table order)
        if session is not None:
            for code, prio, prio_pre, params, after, phs, first in no_data:
                if phase in phs and code not in active:
                    ref = session["start"]
                    for p in params:
                        last = last_valid_t.get(p)
                        if last is not None and last > ref:
                            ref = last
                    if now - ref >= after:
                        raise_(
                            code,
                            prio_pre if phase == "pre" else prio,
                            "technical",
                            now,
                            first,
                            now - ref,
                            after,
                            latching=False,
                        )
            if od and phase in ("infusion", "post") and od["code"] not in active:
                dets = session["dets"]
                ref = max(dets[-1][0] if dets else -math.inf, session["phase_start"])
                limit = od["infusion_s"] if phase == "infusion" else od["post_s"]
                if now - ref >= limit:
                    raise_(
                        od["code"],
                        od["priority"],
                        "technical",
                        now,
                        "NIBP_SYS",
                        now - ref,
                        limit,
                        latching=False,
                    )
            stop_t = session["stop_t"]
            if (
                dc
                and phase == "post"
                and stop_t is not None
                and not session["checked"]
                and now >= stop_t + dc["after_stop_s"]
            ):
                session["checked"] = True
                discharge_check(now)
        for code in sorted(active, key=rank.__getitem__) if active else ():
            a = active[code]
            if a[0] != "high":
                continue
            while a[7] < esc_levels and now >= a[2] + (a[7] + 1) * esc_s:
                a[7] += 1
                emit(a, code, "escalated", now, a[3], reading(a), a[7])

    def close_determination() -> None:
        nonlocal pending_t, pending
        assert pending_t is not None
        t = pending_t
        s, d = pending.get("NIBP_SYS", math.nan), pending.get("NIBP_DIA", math.nan)
        pending, pending_t = {}, None
        if not (math.isnan(s) or math.isnan(d)):  # Reading 6: both valid
            latest["NIBP_SYS"], latest["NIBP_DIA"] = s, d
            if session is not None:
                dets = session["dets"]
                prev = dets[-1] if dets else None
                dets.append((t, s, d, phase))
                if od and od["code"] in active:
                    clear(od["code"], t, None, 0.0)
                if bl_rule["code"] in active:
                    clear(bl_rule["code"], t)
                for r in determination:
                    if phase in r["phases"]:
                        det_rule(r, t, s, d, prev)
                if dc and phase == "post" and session["checked"]:
                    discharge_check(t)
        timed()

    def new_session(t: float) -> dict[str, Any]:
        return {
            "start": t,
            "phase_start": t,
            "dets": [],
            "baseline": None,
            "stop_t": None,
            "checked": False,
        }

    rows = 0
    next_tick = math.inf
    with open(path, newline="", encoding="utf-8") as f:  # noqa: PTH123
        reader = csv.reader(f)
        next(reader)
        for t_text, what, v_text in reader:
            rows += 1
            t = float(t_text)
            if pending_t is not None and (t != pending_t or what not in NIBP):
                close_determination()
            while next_tick <= t:  # the 1 s ticks since the last row (Reading 1)
                now = next_tick
                timed()
                next_tick += 1.0
            now = max(now, t)
            next_tick = math.floor(now) + 1.0
            if what == "EVENT":
                if v_text == "session_start":
                    session = new_session(t)
                    set_phase("pre", t)
                elif v_text == "infusion_start":
                    if session is None:
                        session = new_session(t)
                    pre = [x for x in session["dets"] if x[3] == "pre"]
                    lo = max(session["start"], t - bl_rule["window_s"])
                    session["baseline"] = (
                        _median([x[1] for x in pre]),
                        _median([x[2] for x in pre]),
                        _median([v for ts, v in hre_hist if lo <= ts <= t]),
                        _median([v for ts, v in spo2_hist if lo <= ts <= t]),
                    )
                    session["phase_start"] = t
                    set_phase("infusion", t)
                    if len(pre) < bl_rule["min_determinations"]:
                        raise_(
                            bl_rule["code"],
                            bl_rule["priority"],
                            "advisory",
                            t,
                            "NIBP_SYS",
                            float(len(pre)),
                            float(bl_rule["min_determinations"]),
                            latching=False,
                        )
                elif v_text == "infusion_stop":
                    if session is None:
                        session = new_session(t)
                    session["phase_start"] = session["stop_t"] = t
                    session["checked"] = False
                    set_phase("post", t)
                    if od and od["code"] in active:
                        clear(od["code"], t, None, 0.0)
                else:  # discharge: every alarm of the session clears (Reading 14)
                    set_phase("none", t)
                    for code in sorted(active, key=rank.__getitem__):
                        clear(code, t)
                    session = None
                timed()
                continue
            value = float(v_text) if v_text and v_text != "nan" else math.nan
            lo, hi = RANGE[what]
            ok = lo <= value <= hi
            if what in NIBP:
                pending_t = t
                pending[what] = value if ok else math.nan
                if len(pending) == 3:
                    close_determination()
                continue
            if ok:
                last_valid_t[what] = t
                latest[what] = value
                for code, _, _, params, _, _, _ in no_data:
                    if what in params and code in active:
                        clear(code, t, None, 0.0)
            if what == "SPO2":
                if ok:
                    spo2_hist.append((t, value))
                    while spo2_hist[0][0] < t - keep:
                        spo2_hist.popleft()
                signal("SPO2", t, value, what, ok=ok)
            elif what in ("HR", "PR"):  # Reading 5
                if what == "HR" and ok:
                    last_valid_hr = (t, value)
                if last_valid_hr is not None and t - last_valid_hr[0] <= hold:
                    hre, hre_ok, src = last_valid_hr[1], True, "HR"
                elif what == "HR":
                    timed()
                    continue  # no HRE sample
                else:
                    hre, hre_ok, src = value, ok, what
                if hre_ok:
                    latest["HRE"] = hre
                    last_hre_src = src
                    hre_hist.append((t, hre))
                    while hre_hist[0][0] < t - keep:
                        hre_hist.popleft()
                signal("HRE", t, hre, src, ok=hre_ok)
            elif what in by_signal:
                signal(what, t, value, what, ok=ok)
            timed()
    if pending_t is not None:
        close_determination()
    return rows, out


# ---------------------------------------------------------------------------------- driver


def worker_main(kind: str, path: str, events_out: str | None) -> int:
    workers = {"engine": engine_worker, "plain": plain_worker, "read": read_worker}
    result = workers[kind](path, events_out)
    result["rows_per_s"] = result["rows"] / result["seconds"]
    result["rows_per_cpu_s"] = result["rows"] / result["cpu_seconds"]
    result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


def run_worker(kind: str, path: Path, events_out: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(path)]
    if events_out is not None:
        cmd += ["--events", str(events_out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: float(r["seconds"]))
    return ordered[(len(ordered) - 1) // 2]


def same_events(a: Path, b: Path) -> tuple[bool, int, str]:
    """Whether two event files agree on every field; with the count and the first difference."""

    def norm(x: Any) -> Any:
        return None if isinstance(x, float) and math.isnan(x) else x

    ea = [[norm(x) for x in e] for e in json.loads(a.read_text(encoding="utf-8"))]
    eb = [[norm(x) for x in e] for e in json.loads(b.read_text(encoding="utf-8"))]
    if ea == eb:
        return True, len(ea), ""
    for i, (x, y) in enumerate(zip(ea, eb, strict=False)):
        if x != y:
            return False, len(ea), f"event {i}: engine {x} / plain {y}"
    return False, len(ea), f"{len(ea)} engine events, {len(eb)} plain"


def compare(name: str, path: Path, tmp: Path, repeats: int) -> bool:
    # each worker `repeats` times, interleaved, so a burst of load on the machine falls on all
    # three alike; the figures are each worker's median run (its fastest and slowest beside it)
    results: dict[str, list[dict[str, Any]]] = {"engine": [], "plain": [], "read": []}
    for i in range(repeats):
        for kind, runs in results.items():
            events = tmp / f"{name}.{kind}.json" if i == 0 and kind != "read" else None
            runs.append(run_worker(kind, path, events))
    engine, plain, read = (median_run(runs) for runs in results.values())
    same, n, diff = same_events(tmp / f"{name}.engine.json", tmp / f"{name}.plain.json")
    print(f"{name}: {engine['rows']:,} rows, {n} alarm events, identical: {same} {diff}")
    for label, r, runs in (
        ("engine (vigil replay path)", engine, results["engine"]),
        ("plain per-sample loop", plain, results["plain"]),
        ("(reading alone)", read, results["read"]),
    ):
        spread = f"{min(x['seconds'] for x in runs):.3f}-{max(x['seconds'] for x in runs):.3f} s"
        print(
            f"  {label:28s} {r['seconds']:8.3f} s  {r['rows_per_s']:12,.0f} rows/s"
            f"   (CPU {r['cpu_seconds']:6.2f} s, {r['rows_per_cpu_s']:12,.0f} rows per CPU s;"
            f" {len(runs)} runs {spread})"
        )
    ratio = engine["rows_per_s"] / plain["rows_per_s"]
    cpu_ratio = engine["rows_per_cpu_s"] / plain["rows_per_cpu_s"]
    print(
        f"  ratio engine/plain: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU "
        "(target >= 20x and >= 4,000,000 rows/s)"
    )
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--big", action="store_true", help="also the 100 M-row RSS run")
    parser.add_argument("--big-rows", type=int, default=BIG_ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="write the workloads here and keep them")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each worker (median reported; 3)"
    )
    parser.add_argument("--worker", choices=["engine", "plain", "read"], help=argparse.SUPPRESS)
    parser.add_argument("--events", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: each worker must run at least once")
    if args.worker:
        return worker_main(args.worker, args.file, args.events)

    sys.path.insert(0, str(REPO))
    from alarms.recording_io import write_recording  # noqa: PLC0415

    # The figures are wall time of whole processes: on a shared machine they move with its
    # load, so the load is printed, and the CPU time beside them (the engine's reading thread
    # and the engine itself may use two cores; the plain loop uses one).
    print(f"cores {os.cpu_count()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        ok = True
        bed = tmp / "bed.csv"
        write_recording(bed_rows(args.hours), bed)
        ok &= compare(f"bed ({args.hours:g} bed-hours)", bed, tmp, args.repeats)
        cohort = tmp / "cohort.csv"
        write_recording(cohort_rows(args.sessions), cohort)
        ok &= compare(f"cohort ({args.sessions} sessions)", cohort, tmp, args.repeats)
        if args.big:
            big = tmp / "big.csv"
            start = time.perf_counter()
            n = write_big(big, args.big_rows)
            size = big.stat().st_size
            took = time.perf_counter() - start
            print(f"big: {n:,} rows, {size / 1e6:,.0f} MB written in {took:.0f} s")
            r = run_worker("engine", big, None)
            rss = r["max_rss_bytes"]
            print(
                f"  engine {r['seconds']:8.1f} s  {r['rows_per_s']:12,.0f} rows/s, "
                f"{r['events']} events, peak RSS {rss / 2**20:,.0f} MiB (limit 1024 MiB)"
            )
            ok &= rss <= RSS_LIMIT
            big.unlink()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
