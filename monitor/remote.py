"""`vigil cmd CMD [KEY=VALUE ...]`: send one nurse command to a bed and print its result.

The command goes to the bed's `…/cmd` topic as docs/ARCHITECTURE.md describes (``cmd``, a fresh
``request_id``, ``user``, the fields), QoS 1; the answer is the `…/cmd/result` message with the
same ``request_id``, printed as JSON on stdout. The bed is named by ``--config`` (a bed config:
its broker and prefix, as on the bedside box) or ``--broker URL --bed PREFIX``.

Field values are JSON when they parse (``weight_kg=70``, ``checklist.pregnancy=false``) and
text otherwise (``reason=patient asked``); dotted keys build nested objects. The daemon
validates everything: this tool only carries the command.

Exit status: 0 accepted, 1 refused (the reason is in the result), 2 usage error or no answer
within ``--timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import aiomqtt
from pydantic import ValidationError

from monitor.configfile import ConfigError
from monitor.settings import Settings, cli_broker, load_settings
from monitor.ward import make_client

if TYPE_CHECKING:
    import argparse

__all__ = ["build_command", "cmd_main"]


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


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is not None:
        settings = load_settings(args.config)
        if args.bed is None:
            return settings
        broker = settings.broker.model_copy(update={"prefix": args.bed})
        return settings.model_copy(update={"broker": broker})
    if args.broker is None or args.bed is None:
        raise ValueError("give --config FILE, or --broker URL and --bed PREFIX")
    ward, _, bed = args.bed.removeprefix("vigil/").partition("/")
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
    client = make_client(settings, identifier=f"vigil-cmd-{uuid.uuid4().hex[:8]}")
    async with asyncio.timeout(timeout), client:
        # subscribe first, so the answer cannot come before we listen for it
        await client.subscribe(f"{prefix}/cmd/result", qos=1)
        await client.publish(f"{prefix}/cmd", json.dumps(command), qos=1)
        async for message in client.messages:
            if isinstance(message.payload, bytes | str):
                result: dict[str, Any] = json.loads(message.payload)
                if result.get("request_id") == command["request_id"]:
                    return result
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
            f"vigil cmd: broker {settings.broker.host}:{settings.broker.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result))
    return 0 if result.get("ok") else 1
