"""`vigil run`: the bedside daemon.

One `Daemon` per bed owns one TaskGroup with named tasks: the drivers (each under the
supervisor), the bed loop (samples and 1 s ticks into the alarm engine), and the ward link. Data
flow is docs/ARCHITECTURE.md "Data flow"; nothing on the alarm path blocks.

SIGTERM or SIGINT cancels the group: the ward link publishes `offline`, every task is cancelled
and awaited, and the process exits 0.

Under systemd (`Type=notify`, sd_notify(3)) the daemon sends `READY=1` once the bed has
processed its first tick, `STATUS=` on every phase or link change, `WATCHDOG=1` only while the
bed keeps processing ticks, and `STOPPING=1` when shutdown begins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Self

from alarms.policy import Policy
from drivers.base import DeviceError, Driver
from drivers.registry import create_driver
from kernel.clock import Clock, make_clock
from kernel.configfile import ConfigError
from kernel.tasks import TaskGroupService, stop_on_signals
from kernel.vocabulary import AlarmEvent, Sample, SystemAlarm, iso8601
from monitor import conditions
from monitor.bed import Bed
from monitor.journal import Journal
from monitor.logs import setup_logging
from monitor.metrics import Metrics, MetricsListenError, MetricsServer
from monitor.outbox import Outbox
from monitor.recovery import resume
from monitor.sdnotify import SdNotifier
from monitor.session import BedCore, load_bed_policy
from monitor.settings import Settings, load_settings
from monitor.supervisor import Backoff, LinkState, LinkStatus, all_connected, supervise
from monitor.timekeeper import Timekeeper
from monitor.ward import WardLink

__all__ = ["Daemon", "run_main"]

log = logging.getLogger("vigil.daemon")

# How often a task that has not ended after being cancelled is cancelled again.
CANCEL_RETRY_S = 0.5
# A restart shorter than this (a couple of ticks) is not worth a nurse's attention.
GAP_REPORT_S = 2.0
# `WATCHDOG=1` is sent only if the bed processed a tick within the watchdog interval plus one
# tick period plus this margin (real seconds) for event-loop latency: a ping is then withheld
# only when a whole check interval went by without a single tick, never because one check
# landed just before a tick. A stall at S stops the pings by S + limit; systemd restarts the
# daemon WATCHDOG_USEC after the last one.
WATCHDOG_MARGIN_S = 1.0
# `STATUS=` at most this often, and re-checked at least this often even without a change.
STATUS_MIN_INTERVAL_S = 1.0
STATUS_REFRESH_S = 30.0
# How often a daemon that has not processed its first tick yet says so in the log.
READY_WARN_S = 10.0


class Daemon(TaskGroupService):
    """The whole bedside daemon; an async context manager owning one TaskGroup."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        clock: Clock | None = None,
        notifier: SdNotifier | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier or SdNotifier.from_env()
        self.clock = clock or make_clock(settings.clock.speed, settings.clock.anchor)
        self.policy = policy
        self.metrics: Metrics | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._metrics_server: MetricsServer | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._status_changed = asyncio.Event()
        self._stopping = False
        # samples shed so far, and when the last were (monotonic): SAMPLES_SHED
        self._shedding = conditions.Shedding()
        self._ready = asyncio.Event()

    def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Open the journal and outbox, resume, and make the drivers, bed and ward link.

        Everything opened is pushed on `stack`, so a step that fails (a driver that cannot be
        created, a journal that cannot be read) leaves nothing open behind it.
        """
        settings = self.settings
        # alarm events live in the journal's outbox until the broker has them; seq goes on
        # from the last one ever written, across restarts
        self.outbox = Outbox(settings.journal.path)
        stack.callback(self.outbox.close)
        self.journal = Journal(settings.journal.path, keep_days=settings.journal.keep_days)
        stack.callback(self.journal.close)
        self.core = BedCore(self.policy, ward=settings.bed.ward, bed=settings.bed.bed)
        # after a crash, the session, baseline, timers and alarms come back from the journal
        self._resume_failed: str | None = None
        try:
            self._resumed, replayed, regenerated = resume(self.core, self.journal)
        except Exception as exc:
            # A core bug or a policy changed since the crash: replaying again would fail again
            # at every start. Start fresh, mark the journal so, and tell the ward.
            log.exception("event=resume_failed")
            self._resume_failed = f"{type(exc).__name__}: {exc}"
            self.core = BedCore(self.policy, ward=settings.bed.ward, bed=settings.bed.bed)
            last = self.journal.last_input
            if last is not None:
                self.journal.idle(last.id, self.outbox.last_seq)
            self._resumed, replayed, regenerated = last, 0, []
        stored = self.outbox.last_seq
        for event in regenerated:
            # made live, lost to a crash before its durable write: it is stored now, once
            if event.seq is not None and event.seq > stored:
                self.outbox.append(event.seq, event.to_json())
                log.warning("event=alarm_recovered code=%s seq=%s", event.code, event.seq)
        self.core.seq = max(self.core.seq, self.outbox.last_seq)
        for announced in self.journal.open_alarms():
            self.core.restore(announced)
        if self._resumed is not None:
            log.info(
                "event=resumed inputs=%d phase=%s active_alarms=%d last_input_t=%s",
                replayed,
                self.core.phase,
                len(self.core.engine.active),
                self._resumed.t,
            )
        self.journal.prune(self.clock.now())
        self.drivers: list[Driver] = [
            create_driver(
                d,
                # the bed's client id: MQTT monitors connect with stable ids of their own
                broker=settings.broker.model_copy(update={"client_id": settings.client_id}),
                timeouts=settings.timeouts,
                clock=self.clock,
            )
            for d in settings.drivers
        ]
        self.device_status = {d.device_id: LinkStatus(name=d.device_id) for d in self.drivers}
        # where each monitor is connected, in the words of its alarm message
        connections = {d.device_id: d.connection() for d in settings.drivers}
        # a monitor down before a restart counts as down until it delivers again
        down = SystemAlarm.DEVICE_DISCONNECTED in self.core.engine.active
        self._devices = conditions.DeviceLinks(
            connections,
            dict.fromkeys(self.device_status if down else (), "down before the restart"),
        )
        for status in self.device_status.values():
            status.listeners.append(self._device_link_changed)
        self.bed = Bed(
            self.core,
            clock=self.clock,
            # the grace absorbs transport latency, which is real time
            tick_grace_s=settings.alarms.tick_grace_s * self.clock.speed,
            emit=self._emit,
            journal=self.journal,
            commands=settings.commands,
            # The bounds are not scaled by a simulated clock's speed: a sample kept while
            # further behind than the no-data window (30 s, hence sample_max_behind_s < 30)
            # could not clear a no-data alarm raised since, which would flap on every tick
            timekeeper=Timekeeper(
                max_ahead_s=settings.alarms.sample_max_ahead_s,
                max_behind_s=settings.alarms.sample_max_behind_s,
            ),
        )
        self.ward = WardLink(
            settings,
            clock=self.clock,
            on_command=self.bed.command,
            state=self._ward_state,
            birth={
                "ward": settings.bed.ward,
                "bed": settings.bed.bed,
                "version": version("vigil"),
                "devices": [d.device_id for d in self.drivers],
            },
            outbox=self.outbox,
        )
        # monotonic time since when the ward broker has been out of reach (None: connected);
        # the daemon starts without a connection
        self._ward_down_since: float | None = time.monotonic()
        self.ward.status.listeners.append(self._ward_link_changed)
        self.metrics = self._make_metrics() if settings.metrics.enabled else None
        self._status_phase = self.core.phase
        self._latched = self._latched_alarms()

    def _latched_alarms(self) -> frozenset[str]:
        """Latching alarms whose condition has ended: the active list's `latched` entries."""
        return frozenset(
            code for code, a in self.core.engine.active.items() if a.latching and not a.condition
        )

    def _make_metrics(self) -> Metrics:
        metrics = Metrics(version=version("vigil"))
        for d in self.drivers:
            metrics.watch_device(d.device_id, d.stats, self.device_status[d.device_id])
        metrics.watch_ward(self.ward)
        metrics.watch_sample_queue(self.bed.samples)
        metrics.watch_restamped(self.bed.timekeeper.restamped)
        metrics.watch_lag(lambda: self.bed.lag_s)
        metrics.watch_active_alarms(
            lambda: [a.priority.value for a in self.core.engine.active.values()]
        )
        return metrics

    def _ward_state(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The retained `alarms/active` and `session` payloads; the session with its course."""
        now = self.clock.now()
        state = self.core.session_state(now)
        course = self.bed.course(now)
        if course is not None:
            state["course"] = course
        return self.core.active_alarms(), state

    def _device_link_changed(self, status: LinkStatus) -> None:
        """`DEVICE_DISCONNECTED` by the rule of `monitor.conditions.DeviceLinks`."""
        name = status.name
        if status.state is LinkState.BACKING_OFF and name not in self._devices.down:
            # the alarm is read by a nurse: it names the monitor and where it is plugged;
            # the driver's own error (errno, pyserial's wording) is for the log
            log.warning(
                "event=device_lost device=%s connection=%r error=%r",
                name,
                self._devices.connections[name],
                status.last_error,
            )
        elif status.state is LinkState.CONNECTED and name in self._devices.down:
            log.info("event=device_back device=%s", name)
        active = SystemAlarm.DEVICE_DISCONNECTED in self.core.engine.active
        self._apply(
            self._devices.changed(name, status.state, status.last_error, alarm_active=active)
        )

    def _apply(self, decided: list[conditions.Condition]) -> None:
        for c in decided:
            self.bed.condition(
                c.code, active=c.active, message=c.message, param=c.param, value=c.value
            )

    def _ward_link_changed(self, status: LinkStatus) -> None:
        if status.state is LinkState.CONNECTED:
            self._ward_down_since = None
            self._ward_check()
        elif status.state is not LinkState.STOPPED and self._ward_down_since is None:
            self._ward_down_since = time.monotonic()

    def _ward_check(self) -> None:
        """`WARD_LINK_DOWN` by the rule of `monitor.conditions.ward_link`."""
        since = self._ward_down_since
        condition = conditions.ward_link(
            down_for_s=None if since is None else time.monotonic() - since,
            stalled_s=self.ward.stalled_s(),
            limit_s=self.settings.timeouts.ward_link_down_s,
            alarm_active=SystemAlarm.WARD_LINK_DOWN in self.core.engine.active,
            error=self.ward.status.last_error,
        )
        if condition is not None:
            self._apply([condition])

    def _shed_count(self) -> int:
        """Samples shed so far: the drivers' full incoming queues and the bed's sample queue."""
        shed = self.bed.samples.dropped
        for driver in self.drivers:
            shed += driver.stats.dropped.get("overload", 0)
        return shed

    def _shedding_check(self) -> None:
        """`SAMPLES_SHED` by the rule of `monitor.conditions.Shedding`."""
        before = self._shedding.seen
        active = SystemAlarm.SAMPLES_SHED in self.core.engine.active
        shed = self._shed_count()
        condition = self._shedding.check(
            shed, time.monotonic(), self.bed.lag_s, alarm_active=active
        )
        if condition is not None and condition.active:
            log.warning("event=samples_shed n=%d lag_s=%.1f", shed - before, self.bed.lag_s)
        self._apply([condition] if condition is not None else [])

    def _storage_check(self) -> None:
        """`JOURNAL_FAILED` and `JOURNAL_SPACE_LOW` by the rules of `monitor.conditions`."""
        failed = self.journal.health.failed or self.outbox.health.failed
        active = self.core.engine.active
        found = [
            conditions.journal_health(failed, alarm_active=SystemAlarm.JOURNAL_FAILED in active)
        ]
        try:
            usage = shutil.disk_usage(self.settings.journal.path.parent)
        except OSError:
            usage = None
        if usage is not None:
            found.append(
                conditions.disk_space(
                    usage.free / 1e6,
                    self.settings.journal.min_free_mb,
                    alarm_active=SystemAlarm.JOURNAL_SPACE_LOW in active,
                )
            )
        self._apply([c for c in found if c is not None])

    async def _watch_ward(self) -> None:
        """Raise `WARD_LINK_DOWN` once the broker has been out of reach for its limit.

        The limit is real time (``timeouts.ward_link_down_s``), as the broker's absence is: a
        simulated clock makes the session faster, not the network. The alarm is shown locally
        (log line, console) at once and reaches the ward from the outbox when the link is back.
        """
        period = min(1.0, self.settings.timeouts.ward_link_down_s / 4)
        while True:
            await asyncio.sleep(period)
            self._ward_check()
            self._storage_check()
            self._shedding_check()

    def _emit(self, events: list[AlarmEvent], samples: list[Sample]) -> None:
        if self.metrics is not None:
            self.metrics.record(events, samples, now=self.clock.now())
        for event in events:
            log.info(
                "event=alarm code=%s state=%s priority=%s t=%s alarm_id=%s seq=%s",
                event.code,
                event.state,
                event.priority,
                event.t,
                event.alarm_id,
                event.seq,
            )
            self.ward.publish_alarm(event)
        for sample in samples:
            self.ward.publish_vital(sample)
        # a latching alarm's condition end is no event (docs/ALARMS.md "States"), yet the
        # retained active list must show it (`latched`): re-published when that changes too
        latched = self._latched_alarms()
        if events or latched != self._latched:
            self._latched = latched
            self.ward.state_changed()
        if self.core.phase is not self._status_phase:
            self._status_phase = self.core.phase
            self._status_changed.set()

    def _monitoring_gap(self) -> None:
        """After a restart in the middle of a session: say how long the bed went unwatched."""
        last = self._resumed
        if self._resume_failed is not None:
            since = f" since {iso8601(last.t)}" if last is not None else ""
            self.bed.condition(
                SystemAlarm.MONITORING_GAP,
                active=True,
                message=f"state before the restart{since} could not be restored "
                f"({self._resume_failed}): session and alarms start afresh",
            )
            return
        if last is None or self.core.session is None:
            return
        now = self.clock.now()
        gap = now - last.t
        if gap <= GAP_REPORT_S:
            return
        self.bed.condition(
            SystemAlarm.MONITORING_GAP,
            active=True,
            value=round(gap, 1),
            message=f"not monitored for {gap:.0f} s, from {iso8601(last.t)} to {iso8601(now)}",
        )

    async def __aenter__(self) -> Self:
        # Every resource is acquired here, none in __init__; one that fails closes those
        # acquired before it (the exit stack), and leaving the block closes them all.
        async with contextlib.AsyncExitStack() as stack:
            self._open(stack)
            self._monitoring_gap()
            if self.metrics is not None:
                # before any task: a bad or busy address stops start-up (MetricsListenError)
                self._metrics_server = await self.metrics.serve(self.settings.metrics.listen)
                stack.push_async_callback(self._metrics_server.close)
            self._stack = stack.pop_all()
        tg = await self._open_group()
        self._tasks = [
            tg.create_task(self.bed.run(), name="bed"),
            tg.create_task(self.ward.run(), name="ward"),
            tg.create_task(self._watch_ward(), name="ward.watch"),
        ]
        self._tasks += [
            tg.create_task(self._drive(d), name=f"driver[{d.device_id}]") for d in self.drivers
        ]
        if self.metrics is not None:
            self._tasks.append(tg.create_task(self.metrics.watch_loop_lag(), name="metrics.lag"))
        if self.notifier.enabled:
            self._tasks.append(tg.create_task(self._notify(), name="sdnotify"))
        interval = self.notifier.watchdog_interval_s
        if interval is not None:
            self._tasks.append(tg.create_task(self._watchdog(interval), name="watchdog"))
        return self

    cancel_retry_s = CANCEL_RETRY_S

    async def _stop(self) -> None:
        # Leaving the block ends the daemon: its tasks run forever otherwise.
        self.stop()

    async def _release(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def connected(self, timeout: float) -> None:  # noqa: ASYNC109 - a plain bound
        """Return once the ward link and every driver are connected.

        Raises:
            TimeoutError: not within `timeout` seconds.
        """
        await all_connected([self.ward.status, *self.device_status.values()], timeout)

    def status_line(self) -> str:
        """The `STATUS=` text: phase, ward link state, connected devices."""
        up = sum(s.state is LinkState.CONNECTED for s in self.device_status.values())
        return (
            f"phase={self.core.phase} ward={self.ward.status.state} "
            f"devices={up}/{len(self.device_status)}"
        )

    def stop(self) -> None:
        """Cancel every task; leaving the `async with` block then waits for them."""
        if not self._stopping:
            self._stopping = True
            self.notifier.stopping()
        for task in self._tasks:
            task.cancel()

    async def _notify(self) -> None:
        """`READY=1` once the bed has processed a tick, then `STATUS=` on changes, until cancelled.

        Ready means the config, policy and drivers are loaded and the alarm core runs: the
        first processed tick proves it (about a second after start). It never waits for the
        broker or the devices: the bed monitors without them, and STATUS tells their state.
        """
        while not self.bed.ticked.is_set():
            try:
                async with asyncio.timeout(READY_WARN_S):
                    await self.bed.ticked.wait()
            except TimeoutError:
                log.warning("event=not_ready reason=%r", "no tick processed yet")
        links = [self.ward.status, *self.device_status.values()]

        def changed(_: object) -> None:
            self._status_changed.set()

        for link in links:
            link.listeners.append(changed)
        try:
            sent = self.status_line()
            self.notifier.ready(sent)
            self._ready.set()
            log.info("event=ready status=%r", sent)
            while True:
                await asyncio.sleep(STATUS_MIN_INTERVAL_S)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STATUS_REFRESH_S):
                        await self._status_changed.wait()
                self._status_changed.clear()
                line = self.status_line()
                if line != sent:
                    self.notifier.status(line)
                    sent = line
        finally:
            for link in links:
                link.listeners.remove(changed)

    async def _watchdog(self, interval: float) -> None:
        """Every `interval`, `WATCHDOG=1` if the bed processed a tick recently, until cancelled."""
        limit = interval + 1.0 / self.clock.speed + WATCHDOG_MARGIN_S
        withheld = False
        await self._ready.wait()  # `_notify` sets it after the first tick (or logs why not)
        while True:
            last = self.bed.last_tick_monotonic
            age = None if last is None else time.monotonic() - last
            if age is not None and age <= limit:
                self.notifier.watchdog()
                if withheld:
                    withheld = False
                    log.warning("event=watchdog_resumed tick_age_s=%.2f", age)
            elif age is not None and not withheld:
                withheld = True
                log.error(
                    "event=watchdog_withheld reason=%r tick_age_s=%.2f limit_s=%.2f",
                    "alarm core stalled",
                    age,
                    limit,
                )
            await asyncio.sleep(interval)

    async def _drive(self, driver: Driver) -> None:
        async def serve(connected: Callable[[], None]) -> None:
            await driver.run(self.bed.samples, connected)

        await supervise(
            self.device_status[driver.device_id],
            serve,
            errors=(DeviceError,),
            backoff=Backoff(cap=self.settings.timeouts.backoff_max_s),
            now=self.clock.now,
        )


async def _serve_until_signalled(settings: Settings, policy: Policy) -> None:
    with stop_on_signals(log) as stopping:
        async with Daemon(settings, policy) as daemon:
            log.info(
                "event=started ward=%s bed=%s prefix=%s drivers=%s",
                settings.bed.ward,
                settings.bed.bed,
                settings.prefix,
                json.dumps([d.device_id for d in daemon.drivers]),
            )
            await stopping.wait()
            daemon.stop()
        log.info("event=stopped")


def run_main(args: argparse.Namespace) -> int:
    """`vigil run --config FILE`."""
    setup_logging()
    try:
        settings = load_settings(args.config)
        policy = load_bed_policy(settings.alarms.policy)
    except ConfigError as exc:
        print(f"vigil run: configuration refused:\n{exc}", file=sys.stderr)  # noqa: T201
        return 1
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_until_signalled(settings, policy))
    except MetricsListenError as exc:
        print(f"vigil run: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
