"""Replay throughput: the numpy engine path against a plain per-sample loop, same process.

    python bench/replay.py [--hours 24] [--repeat 3]

A recording of at least `--hours` bed-hours is generated from the simulator's scenarios
(normal-session, hypertensive-surge and desaturation in turn, each a whole ~175 min session
with 1 Hz HR, PR and SpO2 and cuff determinations). It is replayed twice under the shipped
policy:
- `AlarmEngine.rows` on the whole batch (what `vigil replay` and the live daemon call), and
- `AlarmEngine.row` once per sample: the straightforward pure-Python evaluation.
Both must give identical events; the script fails otherwise. CSV parsing is timed apart, since
it is I/O, not the alarm core. Figures are the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

from alarms.engine import AlarmEngine, Rows
from alarms.policy import load_policy
from alarms.replay import Row
from monitor.vocabulary import AlarmEvent, Param, SessionEvent
from simulators.scenarios import SCENARIOS, Step, build_scenario

T0 = 1767225600.0
SESSION_GAP_S = 600.0


def generate(hours: float) -> list[Row]:
    """Back-to-back sessions until the recording spans `hours`."""
    rows: list[Row] = []
    t0 = T0
    k = 0
    while not rows or rows[-1].t - T0 < hours * 3600:
        name = list(SCENARIOS)[k % len(SCENARIOS)]
        for item in build_scenario(name, t0=t0, seed=k + 1):
            if isinstance(item, Step):
                rows.append(Row(item.t, item.event, math.nan))
            else:
                value = item.value if item.valid else math.nan
                rows.append(Row(item.t, item.param, value))
        t0 = rows[-1].t + SESSION_GAP_S
        k += 1
    return rows


def best_of(repeat: int, run: Callable[[], list[AlarmEvent]]) -> tuple[float, list[AlarmEvent]]:
    best = math.inf
    events: list[AlarmEvent] = []
    for _ in range(repeat):
        start = time.perf_counter()
        events = run()
        best = min(best, time.perf_counter() - start)
    return best, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policy = load_policy()
    rows = generate(args.hours)
    samples = sum(1 for r in rows if isinstance(r.what, Param))
    span_h = (rows[-1].t - rows[0].t) / 3600
    batch = Rows.of((r.t, r.what, r.value, not math.isnan(r.value)) for r in rows)

    def vectorized() -> list[AlarmEvent]:
        engine = AlarmEngine(policy)
        return engine.rows(batch) + engine.flush()

    def per_sample() -> list[AlarmEvent]:
        engine = AlarmEngine(policy)
        out: list[AlarmEvent] = []
        for r in rows:
            out += engine.row(r.t, r.what, r.value, valid=not math.isnan(r.value))
        return out + engine.flush()

    fast_s, fast_events = best_of(args.repeat, vectorized)
    slow_s, slow_events = best_of(args.repeat, per_sample)
    same = [e.to_json() for e in fast_events] == [e.to_json() for e in slow_events]
    steps = sum(1 for r in rows if isinstance(r.what, SessionEvent))
    print(
        f"recording: {span_h:.1f} bed-hours, {len(rows)} rows "
        f"({samples} samples, {steps} session steps), {len(fast_events)} alarm events"
    )
    for name, secs in (
        ("numpy engine (AlarmEngine.rows)  ", fast_s),
        ("per-sample loop (AlarmEngine.row)", slow_s),
    ):
        print(f"{name} {secs * 1e3:8.1f} ms  {samples / secs:12,.0f} samples/s")
    print(f"speed-up: {slow_s / fast_s:.1f}x; identical events: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
