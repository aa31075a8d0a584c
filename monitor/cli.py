"""`vigil`: the command line (docs/ARCHITECTURE.md "CLI").

Each subcommand lives in its own module and is imported only when used, so `vigil replay` does not
pay for the MQTT stack and a broken optional extra breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

# subcommand -> "module:function"; the function takes the parsed namespace and returns the
# exit status.
_HANDLERS: dict[str, str] = {
    "run": "monitor.daemon:run_main",
    "demo": "monitor.demo:demo_main",
    "simulate": "simulators.cli:simulate_main",
    "replay": "alarms.replay:replay_main",
    "decode": "drivers.decode:decode_main",
    "export": "monitor.export:export_main",
    "cmd": "monitor.remote:cmd_main",
    "check-config": "monitor.check_config:check_config_main",
    "watch": "monitor.watch:watch_main",
    "report": "monitor.report:report_main",
}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


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


def _add_session_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vigil cmd` and `vigil export`: a bed's session from the shell and from its journal."""
    p = sub.add_parser("export", help="a session from the journal as a recording CSV")
    p.add_argument("session", help="session id (or a unique prefix of it)")
    p.add_argument("--csv", action="store_true", help="recording CSV (the only format)")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument("--config", type=Path, default=None, help="bed config naming the journal")
    p.add_argument("--journal", type=Path, default=None, help="the journal file itself")

    p = sub.add_parser("cmd", help="send a nurse command to a bed and print the result")
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
    p.add_argument("--bed", default=None, help="bed topic prefix, e.g. vigil/w1/b3")
    p.add_argument("--user", default=None, help="who sends it (default: the login name)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, help="seconds to wait")


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

    p = sub.add_parser("demo", help="a simulated infusion session end to end on an embedded broker")
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

    p = sub.add_parser("simulate", help="a device simulator speaking the device's real protocol")
    p.add_argument("device", help="device to simulate, e.g. mqtt-monitor")
    p.add_argument("--scenario", default="normal-session", help="scenario (default: %(default)s)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--mqtt", metavar="URL", help="broker URL (MQTT monitors)")
    target.add_argument("--serial", metavar="PORT", help="serial port (serial monitors)")
    target.add_argument(
        "--pty",
        metavar="PATH",
        type=Path,
        help="serial monitors: make a pseudo-terminal and a symlink PATH to it; "
        "configure the driver's port = PATH",
    )
    p.add_argument("--speed", type=_positive_float, default=1.0, help="time speed-up (default 1)")
    p.add_argument(
        "--anchor",
        type=float,
        default=None,
        help="wall-clock epoch at which simulated time equals real time (share it with the daemon)",
    )
    p.add_argument("--topic", default="monitors/mon1/samples", help="sample topic (MQTT)")
    p.add_argument("--device-id", default="mon1", help="device_id in the samples")
    p.add_argument(
        "--bed",
        metavar="PREFIX",
        default=None,
        help="bed topic prefix (e.g. vigil/w1/b1): also send session steps as commands",
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

    p = sub.add_parser("replay", help="alarm events for a recording, one JSON object per line")
    p.add_argument("file", type=Path, help="recording CSV (t,param,value)")
    p.add_argument("--config", type=Path, default=None, help="alarm policy TOML (default: shipped)")
    p.add_argument("--summary", action="store_true", help="print counts per code to stderr too")

    p = sub.add_parser(
        "decode", help="samples decoded from a raw capture of a monitor, one JSON object per line"
    )
    p.add_argument("device", help="masimo, intellivue or ge-s5")
    p.add_argument("file", type=Path, help="raw capture: the bytes the monitor sent")
    p.add_argument("--device-id", default=None, help="device_id in the samples (default: DEVICE)")

    p = sub.add_parser("watch", help="nurse console: every bed's vitals and alarms; acknowledge")
    p.add_argument(
        "--broker", required=True, metavar="URL", help="ward broker, mqtt[s]://host[:port]"
    )
    _add_broker_credentials(p)
    p.add_argument("--ward", default=None, help="show this ward only (default: every ward)")
    p.add_argument("--user", default=None, help="who acknowledges (default: the login name)")
    p.add_argument(
        "--stale-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="a bed without vitals for this long is shown STALE (default 30)",
    )

    _add_session_tools(sub)

    p = sub.add_parser("check-config", help="validate a bed config; exit 1 on any problem")
    p.add_argument("file", type=Path)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    args = build_parser().parse_args(argv)
    module_name, _, func_name = _HANDLERS[args.command].partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module_name), func_name
    )
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
