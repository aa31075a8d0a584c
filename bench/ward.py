"""A whole ward on one machine: N `vigil run` processes, their monitors, one broker, the consoles.

    python bench/ward.py [--beds 64] [--speed 15] [--observation-min 5] [--json F] [--keep DIR]

What it does:
1. Starts a real mosquitto (`tests.helpers.BrokerProcess`) on a free loopback port.
2. Starts `--beds` real bed daemons, each its own `vigil run --config bN/bed.toml` process with
   its own journal and outbox, the shipped alarm policy, one `kind = "mqtt"` monitor on
   `monitors/mN/samples`, and the simulated clock of `vigil demo` (`[clock] speed` and one
   `anchor` shared by every process, kernel/clock.py `SimulatedClock`). A bed counts as up when
   it tells its `NOTIFY_SOCKET` (the sd_notify status systemd reads, monitor/daemon.py) that
   its ward link and its monitor are connected. On a ward the monitors, the consoles and the
   broker are other machines, so here the beds run at nice 5: their load delays the beds, not
   their inputs.
3. One child process plays every bed's monitor: `simulators.mqtt_monitor.run_mqtt_monitor`,
   the code of `vigil simulate mqtt-monitor --batch`, one MQTT connection per monitor, all in one
   asyncio loop (64 simulator processes would cost more start-up CPU than the beds).
   Each plays a scenario (simulators/scenarios.py): beds 0, 4, 8, ... `hypertensive-surge`, 1,
   5, 9, ... `desaturation`, the other half `normal-session` (quiet), and as the nurse it sends
   the session's commands on `vigil/w1/bN/cmd`: `open_session`, `start_infusion` 10 min later,
   `stop_infusion` after 40 min of infusion. Within each bay the sessions start 10 s apart.
4. One child process holds the consoles: one MQTT connection per bay of 8 beds (a nurses'
   station per bay), subscribed to the bay's beds with `vigil watch`'s subscriptions (status,
   session, vitals, alarms, active alarms, command results). As the bay's nurse it acknowledges
   each alarm at its first escalation (as `vigil demo`'s nurse does) and, after
   `--observation-min` of observation, discharges the patient: whatever alarm is still
   unacknowledged is acknowledged, then a clinician's `override what=early_discharge` (the
   protocol wants 120 min of observation: docs/PROTOCOL.md step 5), then `discharge`.
   Beds forward vitals once per parameter per real second (`vitals_interval_s = speed`), as a
   ward in real time would see them at 1 Hz.
5. Measures, during the same run:
   - the alarm path: for each `active` event, from the publish of the monitor's sample whose
     `t` it carries (the monitors' process notes the wall time of each publish) to its arrival
     at the console; the path crosses the broker twice (monitor -> bed, bed -> console);
   - every event, from its time on the shared simulated clock to its arrival (acknowledgements
     and escalations too, which come from a command or a tick, not a sample);
   - the baseline: the bare broker round trip of an alarm event's payload (400 bytes, QoS 1),
     from a client of the monitors' process to a console, 20 times a second;
   - every alarm accounted for: after the last discharge, once every outbox is empty, each
     bed's journal (`events`, every alarm event the bed raised, by `seq`) against what its
     console received: missing, repeated, unexpected, and the journal's own gaps;
   - CPU seconds (`/proc/<pid>/stat`) and RSS (`/proc/<pid>/status`) of every bed process,
     at start-up and over the run, the broker's and the two helper processes' CPU, the load.
6. Stops every process it started (SIGTERM, then SIGKILL), also on Ctrl-C, SIGTERM or a
   failure; children die with the bench even if it is killed (PR_SET_PDEATHSIG).

Why 15x and 5 min of observation: a bed in session costs about 1.5 ms of CPU per simulated
second (a second's samples and a tick through the journal and the alarm engine), so 64 beds at
15x keep about 1.5 of the 2 CPUs busy: the load of 960 beds in real time. The 10 min of `pre` (two
baseline determinations) and 40 min of infusion (every designed alarm) are played whole; the
whole 120 min of observation would add 8 minutes to the run. A lower `--speed` puts less load on
the machine per bed and takes longer.

Exit status 0 when every alarm is accounted for, every session was discharged and every bed
exited 0 on SIGTERM; 1 otherwise; 130 on Ctrl-C. `--json FILE` writes the figures and, per bed,
the journal's and the console's `seq` lists; `--keep DIR` keeps the journals and logs there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernel.clock import SimulatedClock  # noqa: E402 - after the path set-up above
from tests.helpers import BrokerProcess  # noqa: E402

WARD: Final = "w1"
BAY: Final = 8  # beds per console (a nurses' station per bay)
SCENARIO_MIX: Final = ("hypertensive-surge", "desaturation", "normal-session", "normal-session")
STAGGER_S: Final = 10.0  # simulated seconds between session starts within a bay
INFUSION_STOP_S: Final = 3000.0  # simulators/scenarios.py INFUSION_STOP_OFFSET
PROBE_EVERY_S: Final = 0.05  # real seconds between baseline probes
PROBE_PAD: Final = "x" * 330  # an alarm event's JSON is about 400 bytes
LEAD_S: Final = 3.0  # real seconds between the plan and the first session start
READY_S: Final = 180.0  # real seconds for every bed to be up
STOP_S: Final = 20.0  # real seconds for a process to exit after SIGTERM
DRAIN_S: Final = 30.0  # real seconds for the outboxes to empty after the last discharge
TICKS: Final = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG: Final = 1
BED_NICE: Final = 5  # the beds' scheduling priority below the other processes (`_bed_child`)


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident set size now, its peak) of `pid`, MB (/proc/<pid>/status VmRSS, VmHWM)."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def _die_with_parent() -> None:
    # in the child, before exec: SIGKILL when the bench dies, however it dies
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _bed_child() -> None:
    _die_with_parent()
    # On a ward the monitors, the consoles and the broker are other machines: here the beds
    # yield to them, so that the beds' load delays the beds and not their inputs.
    os.nice(BED_NICE)


def pct(values: list[float], q: float) -> float:
    """The `q`-th percentile of `values` (seconds), in ms; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BedPlan:
    """One bed's part of the script."""

    index: int
    scenario: str
    t0: float  # session start, simulated epoch seconds
    discharge_t: float

    @property
    def bed(self) -> str:
        return f"b{self.index}"

    @property
    def prefix(self) -> str:
        return f"vigil/{WARD}/{self.bed}"

    @property
    def device(self) -> str:
        return f"m{self.index}"

    @property
    def topic(self) -> str:
        return f"monitors/{self.device}/samples"


def make_plan(beds: int, start: float, observation_s: float) -> list[BedPlan]:
    """The script: the scenario mix, sessions `STAGGER_S` apart within each bay of `BAY`."""
    plans = []
    for i in range(beds):
        t0 = start + (i % BAY) * STAGGER_S
        plans.append(
            BedPlan(
                i, SCENARIO_MIX[i % len(SCENARIO_MIX)], t0, t0 + INFUSION_STOP_S + observation_s
            )
        )
    return plans


def _plan_json(plans: list[BedPlan], url: str, clock: SimulatedClock, out: Path) -> str:
    return json.dumps(
        {
            "url": url,
            "speed": clock.speed,
            "anchor": clock.anchor,
            "out": str(out),
            "beds": [[p.index, p.scenario, p.t0, p.discharge_t] for p in plans],
        }
    )


def _read_plan() -> tuple[dict[str, Any], list[BedPlan], SimulatedClock]:
    doc: dict[str, Any] = json.loads(sys.stdin.readline())
    plans = [BedPlan(int(i), str(s), float(t0), float(d)) for i, s, t0, d in doc["beds"]]
    return doc, plans, SimulatedClock(speed=doc["speed"], anchor=doc["anchor"])


def _write(path: str, doc: dict[str, Any]) -> None:
    # at the very end of a helper process, when nothing else runs on its loop
    Path(path).write_text(json.dumps(doc))


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    return host, int(port)


# ---------------------------------------------------------------------------- the monitors


class _StampingClock:
    """The shared clock, noting the wall time at which each instant was reached.

    `run_mqtt_monitor --batch` publishes an instant's samples as soon as it has waited for the
    next instant's first item, so the last note for `t` is taken just before `t`'s publish.
    """

    def __init__(self, clock: SimulatedClock) -> None:
        self._clock = clock
        self.published: dict[float, float] = {}

    @property
    def speed(self) -> float:
        return self._clock.speed

    def now(self) -> float:
        return self._clock.now()

    async def sleep_until(self, t: float) -> None:
        await self._clock.sleep_until(t)
        self.published[t] = time.time()


async def _monitors() -> None:
    """The monitors' process: every bed's simulated monitor, and the baseline prober."""
    from drivers.mqtt.client import Client  # noqa: PLC0415 - the helper roles import late
    from simulators.mqtt_monitor import run_mqtt_monitor  # noqa: PLC0415

    print("ready", flush=True)
    doc, plans, clock = _read_plan()
    host, port = _host_port(doc["url"])
    stamps = {p.bed: _StampingClock(clock) for p in plans}
    probes: dict[str, float] = {}
    done = asyncio.Event()

    async def probe() -> None:
        async with Client(host, port, identifier=f"bench-prober-{uuid.uuid4().hex[:6]}") as c:
            i = 0
            # ended by `done`, not cancelled: an aiomqtt client cancelled while it waits for a
            # PUBACK may never close
            while not done.is_set():
                pid = f"p{i}"
                payload = json.dumps({"probe": pid, "pad": PROBE_PAD})
                probes[pid] = time.time()
                await c.publish("bench/probe", payload, qos=1)
                i += 1
                await asyncio.sleep(PROBE_EVERY_S)

    cpu0 = time.process_time()
    prober = asyncio.create_task(probe())
    await asyncio.gather(
        *(
            run_mqtt_monitor(
                url=doc["url"],
                topic=p.topic,
                device_id=p.device,
                scenario=p.scenario,
                clock=stamps[p.bed],
                seed=p.index + 1,
                bed_prefix=p.prefix,
                t0=p.t0,
                # the console discharges the patient: the scenario's own discharge (after 120
                # min of observation) is past the end of the script
                until=p.discharge_t - 0.5,
                batch=True,
                protocol="5",
            )
            for p in plans
        )
    )
    done.set()
    out = {
        "published": {bed: list(s.published.items()) for bed, s in stamps.items()},
        "probes": probes,
        "cpu_s": time.process_time() - cpu0,
    }
    _write(doc["out"], out)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_S / 2):
            await prober


# ---------------------------------------------------------------------------- the consoles


@dataclass
class _Bay:
    """What one console saw and did."""

    beds: list[str]
    alarms: dict[str, list[list[Any]]] = field(default_factory=dict)  # bed -> [seq, code, ...]
    unacked: dict[str, dict[str, str]] = field(default_factory=dict)  # bed -> alarm_id -> code
    results: dict[str, list[Any]] = field(default_factory=dict)  # request_id -> [ok, error]
    discharges: dict[str, str] = field(default_factory=dict)  # bed -> discharge request_id
    acks: int = 0


Plan = tuple[dict[str, Any], list[BedPlan], SimulatedClock]


async def _console(  # noqa: C901, PLR0915 - one console: records, nurse's actions
    *,
    index: int,
    url: str,
    bay: _Bay,
    probes: dict[str, float] | None,
    ready: asyncio.Event,
    plan: asyncio.Future[Plan],
) -> None:
    """One bay's console: record, acknowledge at the first escalation, discharge on time."""
    from drivers.mqtt.client import Client  # noqa: PLC0415 - the helper roles import late
    from monitor.commands import Ack, Discharge, Override  # noqa: PLC0415
    from monitor.watch.app import subscriptions  # noqa: PLC0415
    from monitor.wire import encode_command  # noqa: PLC0415

    host, port = _host_port(url)
    nurse = f"nurse-bay{index}"
    async with Client(host, port, identifier=f"bench-console-{index}") as client:
        for bed in bay.beds:
            # `vigil watch`'s subscriptions, for this bay's beds only
            for topic in subscriptions(WARD):
                await client.subscribe(topic.replace(f"/{WARD}/+/", f"/{WARD}/{bed}/"), qos=1)
            bay.alarms[bed] = []
            bay.unacked[bed] = {}
        if probes is not None:
            await client.subscribe("bench/probe", qos=1)
        ready.set()

        async def ack(bed: str, alarm_id: str) -> None:
            cmd = Ack(cmd="ack", request_id=uuid.uuid4().hex, user=nurse, alarm_id=alarm_id)
            bay.acks += 1
            await client.publish(f"vigil/{WARD}/{bed}/cmd", encode_command(cmd), qos=1)

        async def discharge(p: BedPlan, clock: SimulatedClock) -> None:
            await clock.sleep_until(p.discharge_t)
            for alarm_id in list(bay.unacked[p.bed]):
                await ack(p.bed, alarm_id)
            override = Override(
                cmd="override", request_id=uuid.uuid4().hex, user=f"dr-bay{index}",
                what="early_discharge", reason="bench/ward.py: observation cut short",
            )  # fmt: skip
            out = Discharge(cmd="discharge", request_id=uuid.uuid4().hex, user=nurse)
            bay.discharges[p.bed] = out.request_id
            for cmd in (override, out):
                await client.publish(f"{p.prefix}/cmd", encode_command(cmd), qos=1)

        async def script() -> None:
            _, plans, clock = await plan
            for p in plans:
                if p.bed in bay.alarms:
                    tg.create_task(discharge(p, clock))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(script())
            async for message in client.messages:
                now = time.time()
                topic = str(message.topic)
                payload = message.payload
                assert isinstance(payload, bytes)
                if topic == "bench/probe":
                    assert probes is not None
                    probes[json.loads(payload)["probe"]] = now
                    continue
                _, _, bed, kind = topic.split("/", 3)
                if kind == "alarms":
                    e = json.loads(payload)
                    bay.alarms[bed].append([e["seq"], e["code"], e["state"], e["t"], now])
                    unacked = bay.unacked[bed]
                    if e["state"] == "active":
                        unacked[e["alarm_id"]] = e["code"]
                    elif e["state"] in {"acknowledged", "cleared"}:
                        unacked.pop(e["alarm_id"], None)
                    elif e["state"] == "escalated" and e.get("level") == 1:
                        tg.create_task(ack(bed, e["alarm_id"]))
                elif kind == "cmd/result" and payload:
                    r = json.loads(payload)
                    bay.results[str(r.get("request_id"))] = [r["ok"], r.get("error")]


async def _consoles(url: str, beds: int) -> None:
    """The consoles' process: one console per bay, until SIGTERM; then write what they saw.

    The consoles connect and subscribe before the plan is read, so that no event of a session
    can come before its console listens: the sessions start once this process says `ready`.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    bays = [_Bay([f"b{i}" for i in range(s, min(s + BAY, beds))]) for s in range(0, beds, BAY)]
    readies = [asyncio.Event() for _ in bays]
    probes: dict[str, float] = {}
    plan: asyncio.Future[Plan] = loop.create_future()
    cpu0 = time.process_time()
    tasks = [
        asyncio.create_task(
            _console(
                index=i,
                url=url,
                bay=bay,
                probes=probes if i == 0 else None,
                ready=readies[i],
                plan=plan,
            )
        )
        for i, bay in enumerate(bays)
    ]
    waits = [asyncio.create_task(r.wait()) for r in readies]
    async with asyncio.timeout(60):
        while not all(r.is_set() for r in readies):
            await asyncio.wait([*waits, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done():
                    t.result()  # a console that could not connect fails the run here
    print("ready", flush=True)
    doc, plans, clock = await loop.run_in_executor(None, _read_plan)
    plan.set_result((doc, plans, clock))
    await stop.wait()
    out = {
        "alarms": {bed: rows for b in bays for bed, rows in b.alarms.items()},
        "results": {k: v for b in bays for k, v in b.results.items()},
        "discharges": {bed: rid for b in bays for bed, rid in b.discharges.items()},
        "acks": sum(b.acks for b in bays),
        "probes": probes,
        "cpu_s": time.process_time() - cpu0,
    }
    _write(doc["out"], out)
    # what they saw is written: a console that does not close in time is left to the exit
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=STOP_S / 2)


# ---------------------------------------------------------------------------- the bench


class Children:
    """Every process the bench starts; `stop_all` ends those still running, however it ends.

    Each runs in its own session (a Ctrl-C at the terminal reaches the bench alone, which then
    stops them in order) and is killed by the kernel if the bench dies first.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        pipes: bool = False,
        bed: bool = False,
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_bed_child if bed else _die_with_parent,  # noqa: PLW1509 - no threads
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
        """SIGTERM every one of `procs`, then SIGKILL what is left after `STOP_S`; statuses."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return [proc.returncode for proc in procs]

    def stop_all(self) -> None:
        """Stop every process still running, the last started first."""
        self.stop(self.procs[::-1])
        for proc in self.procs:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


def _readline(pipe: IO[bytes], timeout: float) -> str:
    """One line of `pipe` within `timeout` s ('' when none came)."""
    with selectors.DefaultSelector() as sel:
        sel.register(pipe, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return pipe.readline().decode().strip()


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def bed_config(workdir: Path, url: str, p: BedPlan, clock: SimulatedClock) -> Path:
    """Bed `p`'s config in `workdir/bN/`: its own journal, its monitor, the shared clock."""
    folder = workdir / p.bed
    folder.mkdir()
    config = folder / "bed.toml"
    config.write_text(
        f'[bed]\nward = "{WARD}"\nbed = "{p.bed}"\n'
        # one vitals message per parameter per real second, as a real-time ward sees them
        f'[broker]\nurl = "{url}"\nprotocol = "5"\nvitals_interval_s = {clock.speed!r}\n'
        # the bench's temporary folder may be on a small file system: no JOURNAL_SPACE_LOW
        f'[journal]\npath = "{folder / "journal.sqlite"}"\nmin_free_mb = 0\n'
        "[metrics]\nenabled = false\n"
        f"[clock]\nspeed = {clock.speed!r}\nanchor = {clock.anchor!r}\n"
        f'[[drivers]]\nkind = "mqtt"\ndevice_id = "{p.device}"\ntopic = "{p.topic}"\n'
    )
    return config


def wait_until_up(beds: list[subprocess.Popen[bytes]], sockets: list[socket.socket]) -> None:
    """Return once every bed's sd_notify status says its ward link and monitor are connected."""
    up: set[int] = set()
    deadline = time.monotonic() + READY_S
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(sockets):
            sel.register(sock, selectors.EVENT_READ, i)
        while len(up) < len(beds):
            for i, proc in enumerate(beds):
                if proc.poll() is not None:
                    raise RuntimeError(f"bed b{i} exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                down = sorted(set(range(len(beds))) - up)
                raise RuntimeError(f"beds not up after {READY_S:.0f} s: {down[:10]}")
            for key, _ in sel.select(1.0):
                i = key.data
                text = sockets[i].recv(4096).decode(errors="replace")
                if "ward=connected" in text and "devices=1/1" in text:
                    up.add(i)


@dataclass
class Journal:
    """What one bed's journal holds at the end."""

    events: dict[int, tuple[str, str, float]]  # seq -> (code, state, t)
    outbox: int
    sessions: int
    closed: int


def read_journal(path: Path) -> Journal:
    """The alarm events (`events`, every one the bed raised), the outbox and the sessions."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        events = {
            int(seq): (str(code), str(state), float(t))
            for seq, code, state, t in db.execute("SELECT seq, code, state, t FROM events")
        }
        (outbox,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        sessions, closed = db.execute("SELECT COUNT(*), COUNT(closed_t) FROM sessions").fetchone()
    return Journal(events, int(outbox), int(sessions), int(closed))


def outboxes_empty(paths: list[Path]) -> bool:
    """Whether every bed's outbox is empty now (the journals are read while the beds run)."""
    for path in paths:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            if db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]:
                return False
    return True


@dataclass
class Usage:
    """CPU and memory of the bed processes at three moments."""

    up_cpu: list[float] = field(default_factory=list)  # once every bed is up
    start_cpu: list[float] = field(default_factory=list)  # when the sessions are scripted
    end_cpu: list[float] = field(default_factory=list)  # after the drain
    rss: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)


def _role(argv: list[str]) -> int:
    """`--role monitors|consoles`: a helper process of the bench (its own interpreter)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["monitors", "consoles"], required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--beds", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "monitors":
        asyncio.run(_monitors())
    else:
        asyncio.run(_consoles(args.url, args.beds))
    return 0


def run(args: argparse.Namespace) -> int:  # noqa: C901, PLR0915 - the bench, step by step
    """Start the ward, play the script, account for every alarm, print; the exit status."""
    started = time.monotonic()
    children = Children()
    usage = Usage()
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            workdir = Path(args.keep)
            workdir.mkdir(parents=True, exist_ok=False)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-ward-")))
        broker = stack.enter_context(BrokerProcess(workdir / "broker", implementation="mosquitto"))
        stack.callback(children.stop_all)  # before the broker stops: the stack unwinds LIFO
        assert broker._process is not None  # noqa: SLF001 - the bench reads its CPU
        broker_pid = broker._process.pid  # noqa: SLF001
        clock = SimulatedClock(speed=args.speed)
        names = [f"vigil-ward-bench-{os.getpid()}-{i}" for i in range(args.beds)]
        sockets = []
        for name in names:
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            sock.bind("\0" + name)
            sockets.append(sock)
        # the plan's beds, for their configs; the session times come once every bed is up
        layout = make_plan(args.beds, 0.0, 0.0)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "WATCHDOG_"))}
        vigil_run = [sys.executable, "-m", "monitor.cli", "run", "--config"]
        beds = [
            children.start(
                [*vigil_run, str(bed_config(workdir, broker.url, p, clock))],
                log=workdir / p.bed / "daemon.log",
                env=env | {"NOTIFY_SOCKET": f"@{name}"},
                bed=True,
            )
            for p, name in zip(layout, names, strict=True)
        ]
        try:
            wait_until_up(beds, sockets)
        except RuntimeError as exc:
            bad = next((i for i, b in enumerate(beds) if b.poll() is not None), 0)
            print(f"ward bench: {exc}\n--- b{bad} ---\n{_tail(workdir / f'b{bad}/daemon.log')}")
            return 1
        up_s = time.monotonic() - started
        usage.up_cpu = [cpu_seconds(b.pid) for b in beds]
        me = [sys.executable, str(Path(__file__).resolve()), "--role"]
        consoles = children.start(
            [*me, "consoles", "--url", broker.url, "--beds", str(args.beds)],
            log=workdir / "consoles.log", pipes=True,
        )  # fmt: skip
        monitors = children.start([*me, "monitors"], log=workdir / "monitors.log", pipes=True)
        for name, proc in (("consoles", consoles), ("monitors", monitors)):
            assert proc.stdout is not None
            if _readline(proc.stdout, 60.0) != "ready":
                print(f"ward bench: the {name}' process did not start\n"
                      f"{_tail(workdir / f'{name}.log')}")  # fmt: skip
                return 1
        # every session starts on a half second: its samples never share a time with a tick
        start = math.floor(clock.now() + LEAD_S * clock.speed) + 0.5
        plans = make_plan(args.beds, start, args.observation_min * 60.0)
        for name, proc in (("consoles", consoles), ("monitors", monitors)):
            assert proc.stdin is not None
            proc.stdin.write(
                (_plan_json(plans, broker.url, clock, workdir / f"{name}.json") + "\n").encode()
            )
            proc.stdin.close()
        load0 = os.getloadavg()
        wall0 = time.monotonic()
        usage.start_cpu = [cpu_seconds(b.pid) for b in beds]
        broker0 = cpu_seconds(broker_pid)
        end_t = max(p.discharge_t for p in plans)
        try:
            status = monitors.wait((end_t - clock.now()) / clock.speed + 120.0)
        except subprocess.TimeoutExpired:
            status = None
        if status != 0:
            why = "did not finish in time" if status is None else f"exited with status {status}"
            print(f"ward bench: the monitors' process {why}\n{_tail(workdir / 'monitors.log')}")
            return 1
        # the last discharges, then every outbox empty (twice in a row, a moment apart)
        time.sleep(max(0.0, (end_t - clock.now()) / clock.speed) + 1.0)
        journals = [workdir / p.bed / "journal.sqlite" for p in plans]
        deadline = time.monotonic() + DRAIN_S
        empty = 0
        while empty < 2 and time.monotonic() < deadline:
            empty = empty + 1 if outboxes_empty(journals) else 0
            time.sleep(0.5)
        wall = time.monotonic() - wall0
        usage.end_cpu = [cpu_seconds(b.pid) for b in beds]
        for b in beds:
            rss, peak = memory_mb(b.pid)
            usage.rss.append(rss)
            usage.peak.append(peak)
        broker_cpu = cpu_seconds(broker_pid) - broker0
        load1 = os.getloadavg()
        Children.stop([consoles])
        statuses = Children.stop(beds)
        seen: dict[str, Any] = json.loads((workdir / "consoles.json").read_text())
        played: dict[str, Any] = json.loads((workdir / "monitors.json").read_text())
        ends = [read_journal(path) for path in journals]
        report = figures(args, plans, clock, ends, seen, played)
    report["system"] = {
        "cpus": os.cpu_count(), "load_start": load0, "load_end": load1, "wall_s": wall,
        "up_s": up_s, "total_s": time.monotonic() - started, "broker_cpu_s": broker_cpu,
        "monitors_cpu_s": played["cpu_s"], "consoles_cpu_s": seen["cpu_s"],
        "bed_exit_statuses": sorted(set(statuses)),
    }  # fmt: skip
    report["beds_usage"] = {
        "up_cpu_s": usage.up_cpu,
        "run_cpu_s": [e - s for s, e in zip(usage.start_cpu, usage.end_cpu, strict=True)],
        "rss_mb": usage.rss, "peak_rss_mb": usage.peak,
    }  # fmt: skip
    print_report(report)
    if args.json is not None:
        Path(args.json).write_text(json.dumps(report, indent=1))
    ok = (
        report["accounting"]["missing"] == report["accounting"]["repeated"] == 0
        and report["accounting"]["unexpected"] == report["accounting"]["journal_gaps"] == 0
        and report["accounting"]["mismatched"] == report["accounting"]["outbox_left"] == 0
        and report["sessions"]["discharged"] == args.beds
        and set(statuses) == {0}
    )
    return 0 if ok else 1


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": pct(values, 50),
        "p99_ms": pct(values, 99),
        "max_ms": pct(values, 100),
    }


def figures(
    args: argparse.Namespace,
    plans: list[BedPlan],
    clock: SimulatedClock,
    ends: list[Journal],
    seen: dict[str, Any],
    played: dict[str, Any],
) -> dict[str, Any]:
    """Latencies, the accounting of every alarm event and the sessions, from what each saw."""
    path: list[float] = []
    unmatched = 0
    every: list[float] = []
    tally = dict.fromkeys(
        ("journal", "received", "missing", "repeated", "unexpected", "journal_gaps",
         "mismatched", "outbox_left"), 0,
    )  # fmt: skip
    by_code: dict[str, int] = {}
    beds: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for p, end in zip(plans, ends, strict=True):
        published = dict(played["published"][p.bed])
        rows = seen["alarms"][p.bed]
        got = [int(r[0]) for r in rows]
        for seq, code, state, t, arrival in rows:
            # the event's time on the shared clock, as a wall-clock instant
            every.append(arrival - (clock.anchor + (t - clock.anchor) / clock.speed))
            if state == "active":
                if t in published:
                    path.append(arrival - published[t])
                else:
                    unmatched += 1
            if end.events.get(seq, (code, state))[:2] != (code, state):
                tally["mismatched"] += 1
        journal = set(end.events)
        tally["journal"] += len(journal)
        tally["received"] += len(got)
        tally["missing"] += len(journal - set(got))
        tally["repeated"] += len(got) - len(set(got))
        tally["unexpected"] += len(set(got) - journal)
        tally["journal_gaps"] += len(set(range(1, max(journal, default=0) + 1)) - journal)
        tally["outbox_left"] += end.outbox
        codes: dict[str, int] = {}
        for code, state, _ in end.events.values():
            if state == "active":
                codes[code] = codes.get(code, 0) + 1
                by_code[code] = by_code.get(code, 0) + 1
        result = seen["results"].get(seen["discharges"].get(p.bed, ""), [False, "no answer"])
        if not result[0]:
            refused[p.bed] = str(result[1])
        beds[p.bed] = {
            "scenario": p.scenario, "raised": codes, "journal": sorted(journal), "received": got,
        }  # fmt: skip
    probes = seen["probes"]
    base = [probes[k] - t for k, t in played["probes"].items() if k in probes]
    return {
        "config": {
            "beds": len(plans),
            "speed": clock.speed,
            "observation_min": args.observation_min,
            "consoles": math.ceil(len(plans) / BAY),
            "mix": {s: sum(p.scenario == s for p in plans) for s in dict.fromkeys(SCENARIO_MIX)},
        },
        "latency": {
            "alarm_path": _stats(path) | {"unmatched": unmatched},
            "every_event": _stats(every),
            "baseline": _stats(base),
        },
        "accounting": tally | {"raised_by_code": dict(sorted(by_code.items()))},
        "sessions": {
            "opened": sum(e.sessions for e in ends),
            "discharged": sum(e.closed for e in ends),
            "refused": refused,
            "acks": seen["acks"],
        },
        "beds": beds,
    }


def print_report(r: dict[str, Any]) -> None:
    """The figures, for a person."""
    c, lat, acc, ses, sy, u = (
        r["config"], r["latency"], r["accounting"], r["sessions"], r["system"], r["beds_usage"]
    )  # fmt: skip
    n = c["beds"]
    mix = ", ".join(f"{k} {v}" for k, v in c["mix"].items())
    print(
        f"ward bench: {n} beds (one `vigil run` each: {mix}), one mosquitto, {c['consoles']} "
        f"consoles (one per bay of {BAY}); {c['speed']:g}x simulated time; sessions of 10 min "
        f"pre, 40 min infusion, {c['observation_min']:g} min observation, early discharge"
    )
    print(
        f"load average at start {' '.join(f'{x:.2f}' for x in sy['load_start'])}, at end "
        f"{' '.join(f'{x:.2f}' for x in sy['load_end'])} ({sy['cpus']} CPUs)"
    )
    a, e, b = lat["alarm_path"], lat["every_event"], lat["baseline"]
    print(
        f"alarm path (crossing sample published -> console, active events): n={a['n']} "
        f"p50 {a['p50_ms']:.1f} ms  p99 {a['p99_ms']:.1f} ms  max {a['max_ms']:.1f} ms"
        + (f" ({a['unmatched']} active events carry no sample's time)" if a["unmatched"] else "")
    )
    print(
        f"every event (its time on the shared clock -> console): n={e['n']} "
        f"p50 {e['p50_ms']:.1f} ms  p99 {e['p99_ms']:.1f} ms  max {e['max_ms']:.1f} ms"
    )
    print(
        f"baseline (bare broker round trip, alarm-sized payload, QoS 1): n={b['n']} "
        f"p50 {b['p50_ms']:.1f} ms  p99 {b['p99_ms']:.1f} ms"
    )
    print(
        f"ratio alarm path / baseline: p50 {a['p50_ms'] / b['p50_ms']:.2f}, "
        f"p99 {a['p99_ms'] / b['p99_ms']:.2f} (two broker crossings: 2 is the floor)"
    )
    codes = ", ".join(f"{k} {v}" for k, v in acc["raised_by_code"].items())
    print(
        f"alarm events: {acc['journal']} in the journals, {acc['received']} at the consoles; "
        f"missing {acc['missing']}, repeated {acc['repeated']}, unexpected {acc['unexpected']}, "
        f"mismatched {acc['mismatched']}, journal gaps {acc['journal_gaps']}, still in outboxes "
        f"{acc['outbox_left']}; raised: {codes or 'none'}"
    )
    print(
        f"sessions: {ses['opened']} opened, {ses['discharged']} discharged, nurse "
        f"acknowledgements {ses['acks']}"
        + (
            f"; {len(ses['refused'])} discharges refused, e.g. {min(ses['refused'].items())}"
            if ses["refused"]
            else ""
        )
    )
    up, run_cpu, rss, peak = u["up_cpu_s"], u["run_cpu_s"], u["rss_mb"], u["peak_rss_mb"]
    wall = sy["wall_s"]
    print(
        f"bed processes: {sum(up):.1f} CPU s to start ({sum(up) / n:.2f} per bed, all up "
        f"{sy['up_s']:.1f} s after launch); {sum(run_cpu):.1f} CPU s over the {wall:.1f} s run "
        f"= {100 * sum(run_cpu) / wall:.0f} % of one CPU, {100 * sum(run_cpu) / wall / n:.2f} % "
        f"per bed (max {100 * max(run_cpu) / wall:.2f} %)"
    )
    print(
        f"bed RSS: {sum(rss) / n:.1f} MB per bed (max {max(rss):.1f}, peak {max(peak):.1f}), "
        f"{sum(rss) / 1024:.2f} GB in all"
    )
    print(
        f"others over the run: broker {sy['broker_cpu_s']:.1f} CPU s, monitors' process "
        f"{sy['monitors_cpu_s']:.1f}, consoles' process {sy['consoles_cpu_s']:.1f}; bed exit "
        f"statuses {sy['bed_exit_statuses']}; {sy['total_s']:.0f} s in all"
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    del frame
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the bench (or one of its helper processes)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--role"]:
        return _role(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beds", type=int, default=64)
    parser.add_argument("--speed", type=float, default=15.0, help="simulated seconds per second")
    parser.add_argument(
        "--observation-min", type=float, default=5.0,
        help="minutes of observation before the early discharge (under 120)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep", type=Path, default=None, help="keep journals and logs here")
    args = parser.parse_args(argv)
    if args.beds < 1 or args.speed <= 0 or not 0 < args.observation_min < 120:
        parser.error("--beds >= 1, --speed > 0, 0 < --observation-min < 120")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("ward bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
