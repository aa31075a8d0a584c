"""`vigil evaluate` throughput: sessions per second, per core, and from 1 to N workers.

    python bench/evaluate.py [--sessions 200] [--jobs 1 2] [--seed 1]

A cohort of `--sessions` is written by `vigil simulate cohort` (defaults) into a temporary
folder, then evaluated whole (read, replay, statistics, the HTML report) by the real command
once per `--jobs` value, in a child process so its CPU time is measured alone. For each run the
script prints the wall time, the CPU time of the run and its workers, sessions per second, and
sessions per CPU-second (the per-core figure); the runs must give the same burden (the JSON less
its `run` and `command`), and the script fails otherwise. A busy machine lowers the wall-time
figures, not the CPU ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stable(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return {k: v for k, v in doc.items() if k not in {"run", "command"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    vigil = [sys.executable, "-m", "monitor.cli"]
    with tempfile.TemporaryDirectory(prefix="vigil-bench-evaluate-") as tmp:
        cohort = Path(tmp) / "cohort"
        started = time.perf_counter()
        subprocess.run(
            [
                *vigil,
                "simulate",
                "cohort",
                "--sessions",
                str(args.sessions),
                "--seed",
                str(args.seed),
                "--out",
                str(cohort),
            ],
            check=True,
            capture_output=True,
        )
        print(f"cohort: {args.sessions} sessions written in {time.perf_counter() - started:.1f} s")
        docs = []
        for jobs in args.jobs:
            out = Path(tmp) / f"jobs{jobs}" / "report.html"
            cpu0, t0 = _cpu_of_children(), time.perf_counter()
            subprocess.run(
                [*vigil, "evaluate", str(cohort), "--jobs", str(jobs), "--out", str(out)],
                check=True,
                capture_output=True,
            )
            wall, cpu = time.perf_counter() - t0, _cpu_of_children() - cpu0
            docs.append(_stable(out.with_suffix(".json")))
            print(
                f"--jobs {jobs}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
                f"{args.sessions / wall:6.1f} sessions/s, "
                f"{args.sessions / cpu:5.1f} sessions per CPU-second"
            )
        if any(d != docs[0] for d in docs[1:]):
            print("FAIL: the runs disagree", file=sys.stderr)
            return 1
        print("the runs agree: identical burden whatever the workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
