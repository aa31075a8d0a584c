"""`vigil cmd CMD [KEY=VALUE ...]`: send one nurse command to a bed and print its result.

The command goes to the bed's `…/cmd` topic as docs/ARCHITECTURE.md describes (``cmd``, a fresh
``request_id``, ``user``, the fields), QoS 1; the answer is the `…/cmd/result` message with the
same ``request_id``, printed on stdout for a person (`format_result`: one fact a line, the dose
and the pump rate on their own, times as ISO 8601 with the offset) or, with ``--json``, as the
result's JSON object for scripts. The bed is named by ``--config`` (a bed config: its broker
and prefix, as on the bedside box) or ``--broker URL --bed PREFIX``.

Field values are JSON when they parse (``weight_kg=70``, ``checklist.pregnancy=false``) and
text otherwise (``reason=patient asked``); dotted keys build nested objects. The daemon
validates everything: this tool only carries the command.

Exit status: 0 accepted, 1 refused (the reason is in the result), 2 usage error or no answer
within ``--timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
from pydantic import ValidationError

from drivers.mqtt.client import refusal_hint
from kernel.configfile import ConfigError
from monitor.authority import command_topic
from monitor.settings import Settings, cli_broker, load_settings
from monitor.ward import connect_ward
from monitor.wire import WireError, decode_command_result

if TYPE_CHECKING:
    import argparse

__all__ = ["build_command", "cmd_main", "format_result"]

# result fields shown first, under these labels and with these units (the rest follow as sent)
_LABELS: Final = {
    "session_id": ("session", ""),
    "dose_mg": ("dose", "mg"),
    "rate_ml_per_h": ("pump rate", "mL/h"),
    "audio_paused_until": ("audio paused until", ""),
}
_SKIPPED: Final = frozenset({"request_id", "ok", "error", "override", "course"})


def build_command(name: str, fields: list[str], *, user: str) -> dict[str, Any]:
    """The command object for `name` with `fields` (``KEY=VALUE``, dotted keys nest).

    Raises:
        ValueError: a field without ``=``, or a key that is both a value and an object.
    """
    command: dict[str, Any] = {"cmd": name, "request_id": uuid.uuid4().hex, "user": user}
    for field in fields:
        key, sep, text = field.partition("=")
        if not sep or not key:
            raise ValueError(f"field {field!r} is not KEY=VALUE")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = command
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{key!r}: {part!r} already has a value")  # noqa: TRY004 - usage
            node = child
        node[leaf] = value
    return command


def _when(t: float, tz: dt.tzinfo | None) -> str:
    # astimezone(None) is the machine's local time zone, offset included
    return dt.datetime.fromtimestamp(t, dt.UTC).astimezone(tz).isoformat(timespec="seconds")


def _is_time(key: str) -> bool:
    # the bed's results carry epoch seconds in fields named `t`, `*_t` and `*_until`
    return key == "t" or key.endswith(("_t", "_until"))


def _value(key: str, value: Any, tz: dt.tzinfo | None) -> str:
    if _is_time(key) and isinstance(value, int | float) and not isinstance(value, bool):
        return _when(float(value), tz)
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def format_result(name: str, result: dict[str, Any], *, tz: dt.tzinfo | None = None) -> str:
    """The result of command `name` for a person: a verdict line, then one fact a line.

    Times (epoch seconds in the result) are shown as ISO 8601 with their offset, in `tz`
    (None: the machine's time zone).
    """
    if not result.get("ok"):
        return f"{name}: REFUSED\n  reason: {result.get('error', '(none given)')}"
    lines = [f"{name}: accepted"]
    for key, (label, unit) in _LABELS.items():
        if key in result:
            lines.append(f"  {label}: {_value(key, result[key], tz)}{' ' + unit if unit else ''}")
    lines += [
        f"  {key}: {_value(key, value, tz)}"
        for key, value in result.items()
        if key not in _LABELS and key not in _SKIPPED
    ]
    override = result.get("override")
    if isinstance(override, dict):
        lines.append(
            f"  override: {override.get('what')} by {override.get('user')} at "
            f"{_value('t', override.get('t'), tz)}"
        )
        lines.append(f"  reason: {override.get('reason')}")
        if override.get("overrode"):
            lines.append(f"  given for: {override['overrode']}")
    course = result.get("course")
    if isinstance(course, dict):
        lines += _course_lines(course)
    return "\n".join(lines)


def _course_lines(course: dict[str, Any]) -> list[str]:
    lines = [f"  course: infusion {course.get('infusion_number')} of {course.get('of')}"]
    lines += [f"  course flag: {flag}" for flag in course.get("flags", [])]
    if course.get("maintenance_plan_due"):
        lines.append("  maintenance plan: due (responders lose response within weeks)")
    for scale, r in course.get("response", {}).items():
        fall = float(r.get("fall", 0.0))
        verdict = "responder" if r.get("responder") else "not a responder (yet)"
        lines.append(
            f"  response {scale}: {_value('', r.get('baseline'), None)} -> "
            f"{_value('', r.get('latest'), None)} ({fall:.0%} fall), {verdict}"
        )
    return lines


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is not None:
        settings = load_settings(args.config)
        update: dict[str, Any] = {}
        if args.bed is not None:
            update["prefix"] = args.bed
        # --mqtt-version overrides the config's broker.protocol; absent, the config decides
        if getattr(args, "mqtt_version", None) is not None:
            update["protocol"] = args.mqtt_version
        if not update:
            return settings
        broker = settings.broker.model_copy(update=update)
        return settings.model_copy(update={"broker": broker})
    if args.broker is None or args.bed is None:
        raise ValueError("give --config FILE, or --broker URL and --bed PREFIX")
    # a prefix is `<root>/<ward>/<bed>` whatever the root (monitor.wire.bed_prefix): the
    # bed's names are its last two levels
    prefix: str = args.bed
    *_, ward, bed = ["", "", *prefix.split("/")]
    try:
        broker = cli_broker(args, args.broker).model_copy(update={"prefix": args.bed})
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors())
        raise ValueError(f"bad --broker or TLS options: {reason}") from None
    return Settings.model_validate({"bed": {"ward": ward or "w", "bed": bed or "b"}}).model_copy(
        update={"broker": broker}
    )


async def send(settings: Settings, command: dict[str, Any], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 - the CLI's --timeout
    """Publish `command` on the bed's `cmd` topic and return its result.

    Raises:
        TimeoutError: no result within `timeout` seconds.
        aiomqtt.MqttError: the broker cannot be reached.
    """
    prefix = settings.prefix
    identifier = f"vigil-cmd-{uuid.uuid4().hex[:8]}"
    async with asyncio.timeout(timeout), connect_ward(settings, identifier=identifier) as client:
        # subscribe first, so the answer cannot come before we listen for it
        await client.subscribe(f"{prefix}/cmd/result", qos=1)
        # on the topic of our broker login, which the bed records as the principal
        topic = command_topic(prefix, settings.broker.username)
        await client.publish(topic, json.dumps(command), qos=1)
        async for message in client.messages:
            if not isinstance(message.payload, bytes | str):
                continue
            try:
                result = decode_command_result(message.payload)
            except WireError as exc:
                # another client's garbage on the topic is not our answer: say so, wait on
                _say(f"ignored a message on {message.topic} that is not a command result: {exc}")
                continue
            if result.request_id == command["request_id"]:
                # as the bed sent it: the fields it set, no defaults added
                answer: dict[str, Any] = result.model_dump(mode="json", exclude_unset=True)
                return answer
    raise aiomqtt.MqttError("message stream ended")


def _say(message: str) -> None:
    print(f"vigil cmd: {message}", file=sys.stderr)


def cmd_main(args: argparse.Namespace) -> int:
    """`vigil cmd`: send the command `args` describe; print the result."""
    try:
        settings = _settings(args)
        command = build_command(args.name, args.fields, user=args.user or getpass.getuser())
    except (ValueError, ConfigError) as exc:
        _say(str(exc))
        return 2
    try:
        result = asyncio.run(send(settings, command, args.timeout))
    except TimeoutError:
        print(
            f"vigil cmd: no answer from {settings.prefix} within {args.timeout:g} s",
            file=sys.stderr,
        )
        return 2
    except aiomqtt.MqttError as exc:
        print(
            f"vigil cmd: broker {settings.broker.host}:{settings.broker.port}: {exc}"
            + refusal_hint(exc, settings.broker.protocol),
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result) if args.json else format_result(args.name, result))
    return 0 if result.get("ok") else 1
