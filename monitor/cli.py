"""`vigil`: the command line (docs/ARCHITECTURE.md "CLI").

Each subcommand lives in its own module and is imported only when used, so `vigil replay` does not
pay for the MQTT stack and a broken optional extra breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kernel.vocabulary import TOPIC_ROOT

__all__ = ["build_parser", "main"]

# subcommand -> "module:function"; the function takes the parsed namespace and returns the
# exit status.
_HANDLERS: dict[str, str] = {
    "run": "monitor.daemon:run_main",
    "demo": "monitor.demo:demo_main",
    "simulate": "simulators.cli:simulate_main",
    "replay": "alarms.replay:replay_main",
    "evaluate": "monitor.evaluate_cli:evaluate_main",
    "decode": "drivers.decode:decode_main",
    "export": "monitor.export:export_main",
    "cmd": "monitor.remote:cmd_main",
    "check-config": "monitor.check_config:check_config_main",
    "watch": "monitor.watch:watch_main",
    "report": "monitor.report:report_main",
    "sessions": "monitor.export:sessions_main",
    "hl7": "monitor.hl7.gateway:hl7_main",
    "station": "monitor.station.server:station_main",
}


# Commands whose output is lines on stdout, often piped into `head` or `less`: a reader that
# stops reading ends them normally.
_PIPED: frozenset[str] = frozenset({"replay", "decode", "export"})


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _add_cohort_options(p: argparse.ArgumentParser) -> None:
    """`vigil simulate cohort`: a synthetic cohort of sessions (simulators/cohort.py)."""
    cohort = p.add_argument_group("cohort (vigil simulate cohort --sessions N --out DIR)")
    cohort.add_argument("--sessions", type=int, default=None, metavar="N", help="sessions")
    cohort.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder to write")
    cohort.add_argument(
        "--per-file", type=int, default=1, metavar="K", help="sessions per recording (default 1)"
    )
    cohort.add_argument("--params", type=Path, default=None, help="cohort parameters (TOML)")
    cohort.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter, e.g. sys_rise.mean=10 (repeatable)",
    )


def _simulate_target(p: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """The simulate parser's --mqtt/--serial/--pty group, and the cohort options beside it.

    Not required by argparse: `vigil simulate cohort` writes files instead, and
    `simulate_main` names the missing target of a device.
    """
    _add_cohort_options(p)
    return p.add_mutually_exclusive_group()


def _add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vigil evaluate`: the alarm burden of a policy over recordings (monitor/evaluate_cli.py)."""
    p = sub.add_parser(
        "evaluate", help="the alarm burden of a policy over a cohort of recordings (HTML, JSON)"
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="recordings or folders")
    p.add_argument("--config", type=Path, default=None, help="alarm policy TOML (default: shipped)")
    p.add_argument(
        "--out", type=Path, default=Path("report.html"), help="HTML report (default report.html)"
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default: the machine's cores)"
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="CODE.field=a:b:step",
        help="replay once per value of a rule's numeric field (repeatable), "
        "e.g. BP_HIGH.dia=100:120:5 or BP_CRISIS.when[1].sys=190,200,210",
    )
    p.add_argument(
        "--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on a Dask cluster"
    )
    p.add_argument(
        "--detect-window",
        type=float,
        default=600.0,
        metavar="S",
        help="an annotated event is detected if its alarm is active within S s (default 600)",
    )


def _add_broker_credentials(p: argparse.ArgumentParser) -> None:
    """Who a console or a shell is at a secured ward broker (config/mosquitto).

    The password is never an argument (it would show in the process list): it comes from
    VIGIL_BROKER__PASSWORD, as the daemon's does.
    """
    p.add_argument(
        "--username", default=None, help="broker user (password: $VIGIL_BROKER__PASSWORD)"
    )
    p.add_argument("--ca-file", type=Path, default=None, help="CA of the broker's certificate")
    p.add_argument("--cert-file", type=Path, default=None, help="client certificate (mutual TLS)")
    p.add_argument("--key-file", type=Path, default=None, help="its private key")


class _CmdHelp(argparse.Action):
    """`vigil cmd --help`: the usage, then every command's fields and every checklist item.

    The text comes from the command models (`monitor.commands.commands_help`), imported only
    when the help is asked for, so it cannot drift from what the bed accepts.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **_: object) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show this help, the commands, their fields and the checklist",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,  # noqa: ARG002 - argparse's signature
        values: object,  # noqa: ARG002
        option_string: str | None = None,  # noqa: ARG002
    ) -> None:
        parser.epilog = importlib.import_module("monitor.commands").commands_help()
        parser.print_help()
        parser.exit()


def _add_mqtt_version(p: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """The MQTT version of a client, the same option on every command that connects."""
    p.add_argument(
        "--mqtt-version",
        choices=("auto", "5", "3.1.1"),
        default=default,
        help="MQTT version: auto tries 5 and falls back to 3.1.1 when the broker refuses 5 "
        + ("(default: the config's broker.protocol, else auto)" if default is None else "")
        + ("" if default is None else "(default %(default)s)"),
    )


def _add_session_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vigil cmd` and `vigil export`: a bed's session from the shell and from its journal."""
    p = sub.add_parser("export", help="a session from the journal as a recording CSV")
    p.add_argument("session", help="session id (or a unique prefix of it)")
    p.add_argument("--csv", action="store_true", help="recording CSV (the only format)")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument("--config", type=Path, default=None, help="bed config naming the journal")
    p.add_argument("--journal", type=Path, default=None, help="the journal file itself")

    p = sub.add_parser(
        "cmd",
        help="send a nurse command to a bed and print the result",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-h", "--help", action=_CmdHelp)
    p.add_argument("name", metavar="CMD", help="open_session, start_infusion, ack, ...")
    p.add_argument(
        "fields",
        nargs="*",
        metavar="KEY=VALUE",
        help="command fields; VALUE is JSON if it parses (70, true), else text; "
        "dotted keys nest (checklist.pregnancy=false)",
    )
    p.add_argument("--config", type=Path, default=None, help="bed config: broker and bed")
    p.add_argument("--broker", default=None, help="broker URL (instead of --config)")
    _add_broker_credentials(p)
    _add_mqtt_version(p)
    p.add_argument("--bed", default=None, help=f"bed topic prefix, e.g. {TOPIC_ROOT}/w1/b3")
    p.add_argument("--user", default=None, help="who sends it (default: the login name)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds to wait")
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")

    p = sub.add_parser("sessions", help="the sessions in a bed's journal: id, patient, phase")
    p.add_argument("--config", type=Path, default=None, help="bed config naming the journal")
    p.add_argument("--journal", type=Path, default=None, help="the journal file itself")


def _add_hl7(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vigil hl7`: the ward's HL7 v2 gateway (monitor/hl7)."""
    p = sub.add_parser(
        "hl7", help="ward gateway: IHE PCD-01 vitals and PCD-04 alarms over MLLP to the hospital"
    )
    p.add_argument(
        "--broker", required=True, metavar="URL", help="ward broker, mqtt[s]://host[:port]"
    )
    p.add_argument("--to", default=None, metavar="HOST:PORT", help="the HL7 receiver (MLLP)")
    p.add_argument("--config", type=Path, default=None, help="gateway config ([hl7] section)")


def _add_station(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vigil station`: the nurses' central station, a web page for the ward (monitor/station)."""
    p = sub.add_parser("station", help="the nurses' central station: a web page for the ward")
    p.add_argument(
        "--broker", default=None, metavar="URL", help="ward broker, mqtt[s]://host[:port]"
    )
    p.add_argument("--listen", default=None, metavar="HOST:PORT", help="where the page is served")
    p.add_argument(
        "--config", type=Path, default=None, help="station config ([station], [[users]], [broker])"
    )
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (stdin or prompt), print its argon2 hash for [[users]], exit",
    )


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="a device simulator speaking the device's real protocol")
    p.add_argument("device", help="device to simulate, e.g. mqtt-monitor")
    p.add_argument("--scenario", default="normal-session", help="scenario (default: %(default)s)")
    target = _simulate_target(p)
    target.add_argument("--mqtt", metavar="URL", help="broker URL (MQTT monitors)")
    target.add_argument("--serial", metavar="PORT", help="serial port (serial monitors)")
    target.add_argument(
        "--pty",
        metavar="PATH",
        type=Path,
        help="serial monitors: make a pseudo-terminal and a symlink PATH to it; "
        "configure the driver's port = PATH",
    )
    target.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="network monitors: connect to the driver listening at HOST:PORT (mode = listen)",
    )
    target.add_argument(
        "--udp", metavar="HOST:PORT", help="LAN monitors: serve on this UDP address (port 24105)"
    )
    p.add_argument(
        "--announce",
        metavar="HOST:PORT",
        default=None,
        help="LAN monitors: send connect indications there (a broadcast address, port 24005)",
    )
    p.add_argument("--speed", type=_positive_float, default=1.0, help="time speed-up (default 1)")
    p.add_argument(
        "--anchor",
        type=float,
        default=None,
        help="wall-clock epoch at which simulated time equals real time (share it with the daemon)",
    )
    p.add_argument("--topic", default="monitors/mon1/samples", help="sample topic (MQTT)")
    _add_mqtt_version(p, default="auto")
    p.add_argument("--device-id", default="mon1", help="device_id in the samples")
    p.add_argument(
        "--bed",
        metavar="PREFIX",
        default=None,
        help=f"bed topic prefix (e.g. {TOPIC_ROOT}/w1/b1): also send session steps as commands",
    )
    p.add_argument("--seed", type=int, default=1, help="noise seed (default 1)")
    p.add_argument(
        "--batch",
        action="store_true",
        help="send the samples of one instant as one JSON array message (MQTT monitors)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=["garbage", "truncate", "corrupt", "silence", "unplug"],
        help="serial monitors: inject this fault, in turn with the others given, "
        "every --fault-every seconds (repeatable)",
    )
    p.add_argument(
        "--fault-every",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="real seconds between faults (default %(default)s)",
    )
    p.add_argument(
        "--fault-duration",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="real seconds a silence or an unplug lasts (default %(default)s)",
    )


def _add_watch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="nurse console: every bed's vitals and alarms; acknowledge")
    p.add_argument(
        "--broker", required=True, metavar="URL", help="ward broker, mqtt[s]://host[:port]"
    )
    _add_broker_credentials(p)
    _add_mqtt_version(p, default="auto")
    p.add_argument("--ward", default=None, help="show this ward only (default: every ward)")
    p.add_argument("--user", default=None, help="who acknowledges (default: the login name)")
    p.add_argument(
        "--topic-root",
        default=None,
        metavar="ROOT",
        help=f"first topic level(s) of the beds, as their [broker] prefix has it "
        f"(default {TOPIC_ROOT})",
    )
    p.add_argument(
        "--stale-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="a bed without vitals for this long is shown STALE (default 30)",
    )
    p.add_argument(
        "--hide-offline-after",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="stop showing a bed offline for longer than this (default 3600; 0: never)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="vigil",
        description=(
            "Vigil: bedside vital-signs monitoring for IV ketamine sessions. "
            "Decision support only, not a certified medical device."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the bedside daemon")
    p.add_argument("--config", required=True, type=Path, help="bed config (TOML)")

    p = sub.add_parser(
        "demo",
        help="a simulated infusion session end to end on an embedded broker",
        epilog="Exit status: 0 when the session has run or the demo was stopped by SIGTERM; "
        "130 when stopped by Ctrl-C (SIGINT). Either signal stops the broker and the simulator "
        "and prints the summary so far.",
    )
    p.add_argument(
        "--speed",
        type=_positive_float,
        default=None,
        help="simulated seconds per real second (default: fits the session in under a minute)",
    )
    p.add_argument(
        "--scenario",
        default="hypertensive-surge",
        help="scenario to simulate (default: %(default)s)",
    )

    _add_simulate(sub)

    p = sub.add_parser("replay", help="alarm events for a recording, one JSON object per line")
    p.add_argument("file", type=Path, help="recording CSV (t,param,value)")
    p.add_argument("--config", type=Path, default=None, help="alarm policy TOML (default: shipped)")
    p.add_argument("--summary", action="store_true", help="print counts per code to stderr too")

    p = sub.add_parser(
        "decode", help="samples decoded from a raw capture of a monitor, one JSON object per line"
    )
    p.add_argument("device", help="the device's kind, as in the config (docs/devices.md)")
    p.add_argument("file", type=Path, help="raw capture: the bytes the monitor sent")
    p.add_argument("--device-id", default=None, help="device_id in the samples (default: DEVICE)")

    _add_watch(sub)
    _add_session_tools(sub)

    p = sub.add_parser("check-config", help="validate a bed config; exit 1 on any problem")
    p.add_argument("file", type=Path)
    _add_evaluate(sub)

    p = sub.add_parser(
        "report", help="one journaled session as a chart and its facts (PNG or HTML)"
    )
    p.add_argument("session", help="session id, or a unique prefix of one")
    p.add_argument("--out", required=True, type=Path, help="output file, .png or .html")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=None,
        help="bed config whose [journal] path is read (default /etc/vigil/bed.toml)",
    )
    source.add_argument("--journal", type=Path, default=None, help="the journal (SQLite) itself")
    _add_hl7(sub)
    _add_station(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    args = build_parser().parse_args(argv)
    module_name, _, func_name = _HANDLERS[args.command].partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    if args.command not in _PIPED:
        return handler(args)
    try:
        status = handler(args)
        sys.stdout.flush()  # inside the try: a closed pipe often shows only at this flush
    except BrokenPipeError:
        # The reader has all it wanted (`vigil decode ... | head`): not an error. As the Python
        # docs advise (signal module, "Note on SIGPIPE"), stdout goes to devnull so the
        # interpreter's own flush at exit does not fail on the closed pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
