"""`vigil simulate DEVICE --scenario NAME (--mqtt URL | --serial PORT)`: run one device simulator.

The parser is `monitor.cli`'s; this module turns its namespace into a run. `DEVICES` is built
from the device registry (`drivers.registry`): every device whose spec names a simulator can be
simulated, with the line settings of its spec, so a new device needs nothing here.

Output: one line on stderr when the simulator starts (what, where, how fast) and one when it ends
(how much was sent). Exit status: 0 when the scenario has been played, or when stopped by
SIGTERM; 130 when stopped by Ctrl-C (SIGINT); 1 when the broker cannot be reached or the
connection is lost; 2 for a usage error (unknown device or scenario, wrong transport, bad URL).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import aiomqtt

from drivers.registry import SPECS
from drivers.spec import DeviceSpec, Transport, load
from kernel.clock import make_clock
from kernel.tasks import EXIT_ON_SIGNAL, until_signal
from simulators.mqtt_monitor import PublishStats, parse_broker_url, run_mqtt_monitor
from simulators.scenarios import DISCHARGE_OFFSET, SCENARIOS
from simulators.serial_monitor import Fault, MonitorSide, SerialMonitor, SerialStats
from simulators.tcp_monitor import TcpMonitor

if TYPE_CHECKING:
    import argparse

    from kernel.clock import Clock

__all__ = ["DEVICES", "DeviceSimulator", "simulate_main"]

EXIT_OK: Final = 0
EXIT_BROKER: Final = 1
EXIT_USAGE: Final = 2
# Ctrl-C is the usual interactive stop: 128 + SIGINT, as a shell reports it. SIGTERM is how a
# service manager or a test harness asks for a clean stop, and a clean stop is a success.

_PROG: Final = "vigil simulate"

Runner = Callable[["argparse.Namespace", "Clock", PublishStats], Coroutine[Any, Any, int]]


@dataclass(frozen=True, slots=True)
class DeviceSimulator:
    """A simulated device: how it is reached and what runs it.

    `run(args, clock, stats)` plays `args.scenario` and returns the number of samples sent,
    keeping `stats` current so a stopped run can still report.
    """

    transport: Transport
    description: str
    run: Runner


async def _run_mqtt_monitor(args: argparse.Namespace, clock: Clock, stats: PublishStats) -> int:
    return await run_mqtt_monitor(
        url=args.mqtt,
        topic=args.topic,
        device_id=args.device_id,
        scenario=args.scenario,
        clock=clock,
        seed=args.seed,
        bed_prefix=args.bed,
        stats=stats,
        batch=args.batch,
        protocol=args.mqtt_version,
    )


def _serial(spec: DeviceSpec) -> Runner:
    """The runner of the serial monitor of `spec`: its simulator's side, its line settings.

    The side is imported when run, so one device's simulator never loads another's protocol.
    """

    async def run(args: argparse.Namespace, clock: Clock, stats: PublishStats) -> int:
        assert spec.simulator is not None
        make_side: Callable[[], MonitorSide] = load(spec.simulator)
        line = spec.serial_line
        serial_stats = SerialStats()
        monitor = SerialMonitor(
            make_side,
            clock=clock,
            scenario=args.scenario,
            line=line,
            port=args.serial,
            pty=args.pty,
            device_id=args.device_id,
            seed=args.seed,
            stats=serial_stats,
        )
        try:
            async with monitor:
                if args.pty is not None:
                    _say(f'pty ready: configure port = "{monitor.path}"')
                await _play_with_faults(monitor, args)
        finally:
            stats.samples = serial_stats.samples
        return serial_stats.samples

    return run


async def _play_with_faults(monitor: SerialMonitor, args: argparse.Namespace) -> None:
    """Wait for the scenario's end, injecting `args.fault` in turn every `args.fault_every` s."""
    faults = [Fault(f) for f in args.fault]
    turn = 0
    while faults:
        try:
            async with asyncio.timeout(args.fault_every):
                await monitor.wait()
        except TimeoutError:
            fault = faults[turn % len(faults)]
            turn += 1
            _say(f"fault: {fault}")
            if fault is Fault.SILENCE:
                monitor.silence(args.fault_duration)
            elif fault is Fault.UNPLUG:
                await monitor.unplug(args.fault_duration)
            else:
                monitor.inject(fault)
        else:
            return
    await monitor.wait()


def _tcp(spec: DeviceSpec) -> Runner:
    """The runner of the network monitor of `spec`: its side, connecting to ``--tcp``."""

    async def run(args: argparse.Namespace, clock: Clock, stats: PublishStats) -> int:
        assert spec.simulator is not None
        host, _, port = args.tcp.rpartition(":")
        tcp_stats = SerialStats()
        monitor = TcpMonitor(
            load(spec.simulator),
            clock=clock,
            scenario=args.scenario,
            host=host,
            port=int(port),
            device_id=args.device_id,
            seed=args.seed,
            stats=tcp_stats,
        )
        try:
            async with monitor:
                await _play_with_faults(monitor, args)
        finally:
            stats.samples = tcp_stats.samples
        return tcp_stats.samples

    return run


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)  # noqa: S104 - a port alone: every interface, as a monitor


async def _run_lan_monitor(args: argparse.Namespace, clock: Clock, stats: PublishStats) -> int:
    """A LAN monitor on `args.udp`, announcing itself to `args.announce` (intellivue_lan.py)."""
    from simulators.intellivue_lan import IntelliVueLanMonitor  # noqa: PLC0415 - on use

    host, port = _address(args.udp)
    discovery = _address(args.announce) if args.announce else None
    monitor = IntelliVueLanMonitor(
        clock=clock, scenario=args.scenario, host=host, port=port, discovery=discovery,
        seed=args.seed,
    )  # fmt: skip
    try:
        async with monitor:
            _say(f"serving Data Export on udp {monitor.address[0]}:{monitor.address[1]}")
            await _play_with_faults(monitor, args)
    finally:
        stats.samples = monitor.stats.samples
    return monitor.stats.samples


def _simulator(spec: DeviceSpec) -> DeviceSimulator:
    if spec.transport == "mqtt":
        return DeviceSimulator("mqtt", spec.summary, _run_mqtt_monitor)
    if spec.transport == "tcp":
        return DeviceSimulator("tcp", spec.summary, _tcp(spec))
    if spec.transport == "udp":
        return DeviceSimulator("udp", spec.summary, _run_lan_monitor)
    return DeviceSimulator(spec.transport, spec.summary, _serial(spec))


DEVICES: Final[Mapping[str, DeviceSimulator]] = MappingProxyType(
    {
        spec.simulator_name: _simulator(spec)
        for spec in SPECS
        if spec.simulator is not None or spec.transport == "mqtt"
    }
)


def _say(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


def _usage_error(args: argparse.Namespace) -> str | None:
    """Why `args` cannot run, or None."""
    device = DEVICES.get(args.device)
    if device is None:
        return f"unknown device {args.device!r} (known: {', '.join(DEVICES)})"
    if args.scenario not in SCENARIOS:
        return f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})"
    return {"mqtt": _mqtt_usage_error, "tcp": _tcp_usage_error, "udp": _udp_usage_error}.get(
        device.transport, _serial_usage_error
    )(args)


def _serial_usage_error(args: argparse.Namespace) -> str | None:
    if args.serial is None and args.pty is None:
        return f"{args.device} is a serial device: give --serial PORT or --pty PATH, not --mqtt"
    if Fault.UNPLUG.value in args.fault and args.pty is None:
        return "--fault unplug needs --pty: a real port cannot be pulled from software"
    return None


def _tcp_usage_error(args: argparse.Namespace) -> str | None:
    host, _, port = (args.tcp or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"{args.device} is a network monitor: give --tcp HOST:PORT"
    return None


def _udp_usage_error(args: argparse.Namespace) -> str | None:
    if args.udp is None:
        return f"{args.device} is a LAN monitor: give --udp HOST:PORT"
    return None


def _mqtt_usage_error(args: argparse.Namespace) -> str | None:
    if args.mqtt is None:
        return f"{args.device} publishes over MQTT: give --mqtt URL, not --serial or --pty"
    if args.fault:
        return "--fault applies to serial monitors only"
    try:
        parse_broker_url(args.mqtt)
    except ValueError as exc:
        return str(exc)
    return None


def _start_line(args: argparse.Namespace, device: DeviceSimulator) -> str:
    if device.transport == "mqtt":
        where = f"{args.mqtt} topic {args.topic}"
    elif device.transport == "tcp":
        where = f"TCP {args.tcp}"
    elif device.transport == "udp":
        where = f"udp {args.udp}"
    elif args.pty is not None:
        where = f"pty {args.pty}"
    else:
        where = f"port {args.serial}"
    commands = f", session commands to {args.bed}/cmd" if args.bed else ""
    minutes = DISCHARGE_OFFSET / 60
    real = DISCHARGE_OFFSET / args.speed
    return (
        f"{args.device} ({args.device_id}) playing {args.scenario} (seed {args.seed}) "
        f"to {where}{commands}; speed {args.speed:g}x: {minutes:.0f} min of session "
        f"in {real:.0f} s"
    )


def _end_line(verb: str, stats: PublishStats) -> str:
    return f"{verb}: {stats.samples} samples and {stats.commands} commands sent"


def simulate_main(args: argparse.Namespace) -> int:
    """`vigil simulate`: run the device simulator `args` describe; return the exit status."""
    if args.device == "cohort":
        cohort = importlib.import_module("simulators.cohort")
        status: int = cohort.simulate_cohort_main(args)
        return status
    if (problem := _usage_error(args)) is not None:
        _say(problem)
        return EXIT_USAGE
    device = DEVICES[args.device]
    clock = make_clock(args.speed, args.anchor)
    stats = PublishStats()
    _say(_start_line(args, device))
    try:
        stopped_by = asyncio.run(until_signal(device.run(args, clock, stats), name="simulate"))
    except KeyboardInterrupt:  # Ctrl-C before the loop had its handler in place
        _say(_end_line("stopped", stats))
        return EXIT_ON_SIGNAL[signal.SIGINT]
    except aiomqtt.MqttError as exc:
        _say(f"broker {args.mqtt}: {exc}")
        _say(_end_line("failed", stats))
        return EXIT_BROKER
    if stopped_by is not None:
        _say(_end_line(f"stopped by {stopped_by.name}", stats))
        return EXIT_ON_SIGNAL[stopped_by]
    _say(_end_line("done", stats))
    return EXIT_OK
