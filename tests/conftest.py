"""Root conftest: a real MQTT broker per test, and checks that make every test police itself.

Fixtures:
- `mqtt_broker`: a `helpers.BrokerProcess` (mosquitto, else the embedded amqtt broker) on a free
  loopback port, started; `.url`, `.stop()`, `.start()` (same port, for broker-outage tests).
- `mqtt_broker_url` (alias `mosquitto`): its URL, `"mqtt://127.0.0.1:PORT"`.
  `VIGIL_TEST_BROKER=embedded` (or `mosquitto`) forces the implementation (tests/helpers.py).

Marker `mosquitto_only`: the test needs mosquitto's persistence, ACL or config, which the embedded
broker does not have; .ci/run's embedded-broker pass deselects these.
Marker `broker_incidental`: a long end-to-end test whose subject is not the broker (serial
monitors, the systemd watchdog, kill -9 recovery, live against replay): it runs once, on the
default broker, and .ci/run's embedded-broker pass leaves it out to keep CI within its time.

Checks applied to every test (failures are reported as errors at teardown):
- a test that runs in its own event loop (the default, function loop scope) must leave no
  asyncio task pending in that loop once its fixtures are torn down;
- a test must leave no child process behind (alive or unreaped) once its fixtures are torn down.

Warnings are errors (pyproject `filterwarnings = ["error"]`); that includes pytest's
`PytestUnraisableExceptionWarning` and `PytestUnhandledThreadExceptionWarning`, so an exception
raised in `__del__`, in a callback nobody awaits, or in a thread fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.helpers import BrokerProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

# `pytester` runs the self-tests of these checks (tests/test_conftest.py) in a child pytest.
pytest_plugins = ["pytester"]

# How long a child that has just been sent a signal may take to be reaped by whoever started it
# (asyncio reaps subprocesses from a watcher thread, a moment after `wait()` is satisfied).
_CHILD_REAP_GRACE_S = 2.0


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers of this suite (`--strict-markers` refuses unregistered ones)."""
    config.addinivalue_line(
        "markers",
        "mosquitto_only: needs mosquitto itself (persistence, ACL, TLS config): left out of the "
        "embedded-broker run of .ci/run (VIGIL_TEST_BROKER=embedded -m 'not mosquitto_only')",
    )
    config.addinivalue_line(
        "markers",
        "broker_incidental: a long end-to-end test whose subject is not the broker; left out of "
        "the embedded-broker run of .ci/run",
    )


# A module whose clocks run many times faster than real time: a scheduling stall of 0.1 s is
# tens of simulated seconds there, enough to re-stamp samples or raise a no-data alarm the test
# does not expect. scripts/pytest runs these alone, after the others have run in parallel.
_FAST_CLOCK = re.compile(r"SimulatedClock|[\"']--speed[\"']|[\"']speed[\"']\s*:")


@functools.cache
def _uses_a_fast_clock(path: Path) -> bool:
    return _FAST_CLOCK.search(path.read_text(encoding="utf-8")) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under scripts/pytest, keep the pass's half of the tests (see `_FAST_CLOCK`)."""
    phase = os.environ.get("VIGIL_TEST_PASS")
    if phase not in {"parallel", "fast-clock"}:
        return  # plain pytest: every test
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        fast = item.path.suffix == ".py" and _uses_a_fast_clock(item.path)
        (keep if fast == (phase == "fast-clock") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A started broker on a free loopback port; stopped and reaped after the test."""
    with BrokerProcess(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def mqtt_broker_url(mqtt_broker: BrokerProcess) -> str:
    """URL of a broker started for this test: `mqtt://127.0.0.1:PORT`."""
    return mqtt_broker.url


@pytest.fixture
def mosquitto(mqtt_broker_url: str) -> str:
    """Alias of `mqtt_broker_url`."""
    return mqtt_broker_url


def _child_pids() -> set[int]:
    """Process ids whose parent is this process, zombies included (they are unreaped leaks)."""
    me = os.getpid()
    task_dir = Path(f"/proc/{me}/task")
    children: set[int] = set()
    try:
        for task in task_dir.iterdir():
            children.update(int(p) for p in (task / "children").read_text().split())
    except FileNotFoundError:
        # Kernels without CONFIG_PROC_CHILDREN: scan every process for its parent.
        children.clear()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while we looked
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == me:
                children.add(int(entry.name))
    return children


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} state={state} {argv.decode(errors='replace') or '[zombie]'}"


@pytest.fixture(autouse=True)
def _no_leaked_child_processes() -> Iterator[None]:
    """Fail a test that leaves a child process alive or unreaped.

    Autouse fixtures are set up before the test's other function-scoped fixtures and torn down
    after them, so a broker fixture that stops its process properly is not flagged; children of
    wider-scoped fixtures exist before the baseline and are ignored.
    """
    before = _child_pids()
    yield
    deadline = time.monotonic() + _CHILD_REAP_GRACE_S
    while (leaked := _child_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    if leaked:
        described = "; ".join(_describe(p) for p in sorted(leaked))
        # Kill and reap them so one leak does not outlive the run or trip later tests. They are
        # our unreaped children, so their pids cannot have been reused by another process.
        for pid in leaked:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        pytest.fail(f"test leaked child processes: {described}", pytrace=False)


def _runs_in_function_loop(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("asyncio")
    if marker is None:
        return False
    scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        scope = item.config.getini("asyncio_default_test_loop_scope") or "function"
    return bool(scope == "function")


@pytest.fixture(autouse=True)
def _no_leaked_tasks(request: pytest.FixtureRequest) -> None:
    """Apply the task-leak check to async tests that own their event loop.

    Sync tests have no loop to leak into. Tests sharing a module- or session-scoped loop are not
    checked: their fixtures legitimately keep tasks running across tests.
    """
    if _runs_in_function_loop(request.node):
        request.getfixturevalue("_task_leak_check")


@pytest_asyncio.fixture
async def _task_leak_check() -> AsyncIterator[None]:
    """Fail the test if tasks are still pending in its loop after its fixtures are torn down.

    Requested first (from an autouse fixture), so it is torn down last. A few loop iterations are
    allowed for tasks that were cancelled or are completing; anything still pending then is
    cancelled, awaited (so asyncio does not warn later about a destroyed pending task) and
    reported.
    """
    yield
    current = asyncio.current_task()
    for _ in range(5):
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0)
    for task in leaked:
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    described = "; ".join(f"{t.get_name()} {t.get_coro()!r}" for t in leaked)
    pytest.fail(f"test leaked asyncio tasks: {described}", pytrace=False)
