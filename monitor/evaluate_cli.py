"""`vigil evaluate PATH... [--config POLICY] [--out report.html] [--jobs N] [--sweep T=V]...`.

The arguments are parsed by `monitor.cli` (`_add_evaluate`); this module runs the command.

Replays every recording under PATH with the policy (and each sweep variant), and writes the
alarm burden as `--out` (HTML) with `.json`, `.csv` and `.sessions.csv` beside it (`.sweep.csv`
too when there are sweeps). A short table goes to stdout. Exit status: 0 done; 1 a recording,
an annotation file or an output could not be used (file and line named), or the scheduler
cannot be reached; 2 a usage error (no recordings, a bad sweep, a bad policy, matplotlib
missing for the HTML); 130 interrupted (Ctrl-C), with nothing written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alarms.evaluate.report import (
    burden_block,
    detection_of,
    document,
    render_html,
    write_csv,
    write_sessions_csv,
    write_sweep_csv,
)
from alarms.evaluate.run import Progress, run_tasks
from alarms.evaluate.sessions import FileResult, SessionResult, recordings_under
from alarms.evaluate.stats import burden, detection
from alarms.evaluate.sweep import Sweep, SweepError, parse_sweep
from alarms.policy import Policy, load_policy
from kernel.configfile import ConfigError
from kernel.paths import default_policy_path

__all__ = ["evaluate_main"]

_PROG = "vigil evaluate"


def _fail(message: str, status: int) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return status


def _sessions(results: list[FileResult]) -> tuple[list[SessionResult], int, int]:
    sessions = [s for r in results for s in r.sessions]
    return sessions, sum(r.outside for r in results), sum(r.rows for r in results)


@dataclass(frozen=True)
class _Plan:
    policy: Policy
    files: list[Path]
    sweeps: list[Sweep]
    jobs: int


def _plan(args: argparse.Namespace) -> _Plan | str:  # noqa: PLR0911 - one return per check
    """What to run, or why it cannot be (a usage error)."""
    try:
        policy = load_policy(args.config)
    except ConfigError as exc:
        return f"bad policy:\n{exc}"
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        return f"{missing[0]}: no such file or folder"
    files = recordings_under(list(args.paths))
    if not files:
        return "no recordings (*.csv, *.parquet) under " + ", ".join(map(str, args.paths))
    try:
        sweeps = [parse_sweep(text, policy) for text in args.sweep]
    except SweepError as exc:
        return f"--sweep {exc}"
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        return "--jobs must be at least 1"
    if not args.detect_window >= 0:
        return "--detect-window must be 0 or more"
    if args.out.suffix.lower() not in {".html", ".htm"}:
        return f"--out {args.out}: the report is HTML (.html)"
    if importlib.util.find_spec("matplotlib") is None:
        return "the HTML report needs matplotlib: pip install 'vigil[report]'"
    return _Plan(policy, files, sweeps, jobs)


def _replay(
    tasks: list[tuple[Path, Policy]], jobs: int, scheduler: str | None
) -> list[FileResult] | tuple[str, int]:
    """Every task's result in order, or (why not, exit status)."""
    progress = Progress(len(tasks), label=_PROG)
    try:
        return run_tasks(tasks, jobs=jobs, scheduler=scheduler, progress=progress.step)
    except KeyboardInterrupt:
        return "interrupted: nothing written", 130
    except RuntimeError as exc:
        return str(exc), 2
    except OSError as exc:
        return f"scheduler {scheduler}: {exc}", 1
    finally:
        progress.close()


def evaluate_main(args: argparse.Namespace) -> int:
    """Run `vigil evaluate`; return the exit status."""
    plan = _plan(args)
    if isinstance(plan, str):
        return _fail(plan, 2)
    policy, files, sweeps, jobs = plan.policy, plan.files, plan.sweeps, plan.jobs
    policies: list[Policy] = [policy, *(v for sw in sweeps for v in sw.policies)]
    tasks = [(f, pol) for pol in policies for f in files]
    started = time.perf_counter()
    results = _replay(tasks, jobs, args.scheduler)
    if isinstance(results, tuple):
        return _fail(*results)
    elapsed = time.perf_counter() - started
    errors = [r.error for r in results if r.error is not None]
    if errors:
        return _fail(errors[0], 1)

    n = len(files)
    base = results[:n]
    sessions, outside, rows = _sessions(base)
    if not sessions:
        return _fail(
            f"no session in {n} recording(s): a session opens at an EVENT,session_start row", 1
        )
    codes = policy.codes()
    block = burden_block(sessions, codes, args.detect_window)
    sweep_docs = _sweep_docs(sweeps, results, codes, args.detect_window)
    doc = document(
        command=_command_line(args),
        policy=str(args.config or default_policy_path()),
        recordings=n,
        sessions=sessions,
        rows=rows,
        outside=outside,
        block=block,
        window_s=args.detect_window,
        sweeps=sweep_docs,
        run={
            "jobs": jobs if args.scheduler is None else None,
            "scheduler": args.scheduler,
            "replays": len(tasks),
            "elapsed_s": round(elapsed, 3),
            "sessions_per_s": round(len(sessions) * len(policies) / elapsed, 2)
            if elapsed
            else None,
        },
    )
    try:
        _write(doc, args.out)
        write_sessions_csv(sessions, codes, args.out.with_suffix(".sessions.csv"))
    except OSError as exc:
        return _fail(f"{args.out}: {exc.strerror or exc}", 1)
    _print_table(doc)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as it was typed (for the report), from `sys.argv` when it is this one."""
    argv = sys.argv[1:]
    if "evaluate" in argv:
        return shlex.join(["vigil", *argv[argv.index("evaluate") :]])
    return shlex.join(["vigil", "evaluate", *map(str, args.paths)])


def _sweep_docs(
    sweeps: list[Sweep], results: list[FileResult], codes: list[str], window_s: float
) -> list[dict[str, Any]]:
    """Each sweep's points; `results` are the variants' in order, one recording list each."""
    n = len(results) // (1 + sum(len(sw.values) for sw in sweeps))
    k = n  # the first n results are the base policy's
    out: list[dict[str, Any]] = []
    for sw in sweeps:
        # a shared constant (general.*) belongs to no one code: its burden is every alarm's
        shown = sw.code if sw.code in codes else "any"
        points = []
        for value in sw.values:
            sessions, _, _ = _sessions(results[k : k + n])
            k += n
            rows = [r for r in burden(sessions, codes) if r.scope == "session"]
            keep = [asdict(r) for r in rows if r.group != "code" or r.name == shown]
            det = detection_of(detection(sessions, window_s), shown)
            points.append({"value": value, "burden": keep, "detection": det})
        out.append({"sweep": sw.text, "target": sw.target, "code": shown, "points": points})
    return out


def _write(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    write_csv(doc, out.with_suffix(".csv"))
    if doc["sweeps"]:
        write_sweep_csv(doc, out.with_suffix(".sweep.csv"))
    out.write_text(render_html(doc), encoding="utf-8")


def _print_table(doc: dict[str, Any]) -> None:
    print(
        f"{doc['sessions']} sessions in {doc['recordings']} recordings; "
        "share of sessions with >= 1 activation [95 % Wilson], activations per session"
    )
    print(
        f"{'alarm':<24} {'share %':>8} {'95 % interval':>15} {'mean':>7} {'med':>4} "
        f"{'p90':>5} {'max':>4} {'time/session':>13}"
    )
    for r in doc["burden"]:
        if r["scope"] != "session" or (r["group"] == "code" and not r["with_alarm"]):
            continue
        name = r["name"] if r["group"] == "code" else f"[{r['name']}]"
        print(
            f"{name:<24} {r['share'] * 100:8.2f} "
            f"{r['share_low'] * 100:6.2f} - {r['share_high'] * 100:6.2f} {r['mean']:7.3f} "
            f"{r['median']:4g} {r['p90']:5g} {r['max']:4d} {r['time_mean_s']:11.1f} s"
        )
