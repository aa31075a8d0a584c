"""Replaying many recordings with one or more policies, here, on local processes or on Dask.

The unit of work is one (policy, recording) pair, `evaluate_file`. Results come back in the
order of the tasks whatever order they finish in, so the statistics (which sum in that order)
are the same to the last bit with one process, many, or a cluster.

Processes, not threads: the replay is CPU-bound Python and numpy. Local workers are started with
the `spawn` method, so they do not inherit the parent's threads or open files. On a cluster,
every worker must read the recordings at the same paths (a shared file system) and have Vigil
installed (`pip install 'vigil[evaluate]'`).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from alarms.evaluate.sessions import FileResult, evaluate_file
from alarms.policy import Policy

__all__ = ["Progress", "run_tasks"]

Task = tuple[Path, Policy]


class Progress:
    """A one-line progress meter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, *, label: str, enabled: bool | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._started = time.perf_counter()
        self._shown = 0.0

    def step(self, n: int = 1) -> None:
        """`n` more tasks are done."""
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._shown >= 0.2 or self.done == self.total):
            self._shown = now
            rate = self.done / max(now - self._started, 1e-9)
            sys.stderr.write(
                f"\r{self.label}: {self.done}/{self.total} recordings replayed ({rate:.1f}/s)"
            )
            sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (an ignored signal stays ignored in a child).

    Ctrl-C is the parent's to handle: it cancels what is queued and lets the running tasks end,
    so no worker dies mid-task or prints a traceback of its own, even one still starting up.
    The pool starts its workers as tasks are submitted, so submitting happens in here.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _one(task: Task) -> FileResult:
    return evaluate_file(*task)


def run_tasks(
    tasks: Sequence[Task],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileResult]:
    """`evaluate_file` of every task, in task order.

    `scheduler` (a Dask scheduler address, `tcp://host:8786`) sends the tasks to that cluster;
    otherwise `jobs` > 1 runs them on that many local processes, and 1 in this process.

    Raises:
        RuntimeError: Dask is not installed, or `scheduler` is not an address.
        OSError: the scheduler cannot be reached (in 30 s).
    """
    step = progress or (lambda _n: None)
    if scheduler is not None:
        return _on_dask(tasks, scheduler, step)
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            out.append(_one(task))
            step(1)
        return out
    results: list[FileResult | None] = [None] * len(tasks)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        with _workers_ignore_ctrl_c():
            futures = {pool.submit(_one, task): i for i, task in enumerate(tasks)}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                step(1)
        except BaseException:
            # Ctrl-C or a worker lost: drop the queued tasks rather than run them all first
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [r for r in results if r is not None]


def _on_dask(
    tasks: Sequence[Task], scheduler: str, step: Callable[[int], None]
) -> list[FileResult]:
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise RuntimeError(
            "--scheduler needs Dask distributed: pip install 'vigil[evaluate]'"
        ) from None
    results: list[FileResult | None] = [None] * len(tasks)
    try:
        client = distributed.Client(scheduler, timeout=30)
    except ValueError as exc:  # not an address Dask knows how to reach
        raise RuntimeError(f"--scheduler {scheduler}: {exc}") from None
    with client:
        futures = client.map(_one, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in distributed.as_completed(futures):
            results[index[fut.key]] = fut.result()
            step(1)
    return [r for r in results if r is not None]
