"""A bedside monitor that publishes its numerics over MQTT, playing a scenario in (simulated) time.

Each `Sample` of the scenario goes to the sample topic as the Sample JSON of docs/ARCHITECTURE.md
(what the daemon's `kind = "mqtt"`, `format = "vigil"` driver reads), at the moment the clock
reaches its `t`. Continuous parameters go at QoS 0, like any 1 Hz vital-sign stream where the
next reading replaces a lost one; a cuff determination comes once every 5-15 min and is not
repeated, so its three samples go at QoS 1.

With a bed prefix, the simulator also plays the nurse: each session step of the scenario is sent
as a command on `<prefix>/cmd` (docs/ARCHITECTURE.md "MQTT", QoS 1), so a daemon watching that bed
walks through the session phases with the samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import aiomqtt

from drivers.mqtt.client import Client as MqttClient
from drivers.mqtt.client import MqttVersion, connect
from kernel.settings import Endpoint
from kernel.tasks import raise_if_cancelled
from kernel.vocabulary import CHECKLIST_ITEMS, NIBP_PARAMS, Param, Sample, SessionEvent, Step
from simulators.scenarios import build_scenario

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection

    from kernel.clock import Clock

__all__ = [
    "BrokerAddress",
    "PublishStats",
    "parse_broker_url",
    "run_mqtt_monitor",
    "session_command",
]

_DEFAULT_PORT: Final = 1883
# Connecting (TCP and CONNACK) must finish within this; it also bounds how long a cancel that
# arrives while connecting waits before the run ends (see `_connected`).
_CONNECT_TIMEOUT_S: Final = 10.0
_USER: Final = "simulator"

# The nurse command for each session step (docs/ARCHITECTURE.md "MQTT", `…/cmd`).
_COMMANDS: Final = {
    SessionEvent.SESSION_START: "open_session",
    SessionEvent.INFUSION_START: "start_infusion",
    SessionEvent.INFUSION_STOP: "stop_infusion",
    SessionEvent.DISCHARGE: "discharge",
}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is, from an `mqtt://[user[:password]@]host[:port]` URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """The broker address in `url`; `ValueError` with the reason for anything else.

    Only `mqtt://` (plain TCP, default port 1883): the simulator does not speak TLS.
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ValueError(f"broker URL must be mqtt://host[:port], not {url!r}")
    try:
        port = parts.port or _DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in broker URL {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in broker URL {url!r}")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def session_command(event: SessionEvent) -> dict[str, Any]:
    """The nurse command that performs session step `event`, with a fresh `request_id`.

    `open_session` carries a fixed simulated patient (70 kg, 10 mg/mL) whose contraindication
    checklist is answered "no" on every item (the daemon requires every item answered).
    """
    command: dict[str, Any] = {
        "cmd": _COMMANDS[event],
        "request_id": uuid.uuid4().hex,
        "user": _USER,
    }
    if event is SessionEvent.SESSION_START:
        command |= {
            "patient_id": "SIM-0001",
            "weight_kg": 70.0,
            "concentration_mg_per_ml": 10.0,
            "checklist": dict.fromkeys(CHECKLIST_ITEMS, False),
        }
    return command


@contextlib.asynccontextmanager
async def _connected(
    version: MqttVersion,
    broker: BrokerAddress,
    build: Callable[[aiomqtt.ProtocolVersion, Endpoint], aiomqtt.Client],
) -> AsyncIterator[aiomqtt.Client]:
    """`mqtt_client.connect`, except that a cancel while connecting still closes the connection.

    aiomqtt 2.5 cancelled inside `__aenter__` leaves its socket and housekeeping task behind,
    which later fail noisily once the event loop is closed. So the connection attempt runs
    shielded; on a cancel it is allowed to finish (at most `_CONNECT_TIMEOUT_S` per protocol
    version tried), the exit stack then disconnects cleanly, and the `CancelledError` goes on.
    """
    async with contextlib.AsyncExitStack() as stack:
        connecting = asyncio.ensure_future(
            stack.enter_async_context(
                connect(version, (Endpoint(broker.host, broker.port),), build)
            )
        )
        try:
            client = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            with contextlib.suppress(aiomqtt.MqttError):
                await connecting
            raise
        yield client


def _client(
    broker: BrokerAddress,
    identifier: str,
    version: aiomqtt.ProtocolVersion,
    endpoint: Endpoint,
) -> aiomqtt.Client:
    return MqttClient(
        endpoint.host,
        endpoint.port,
        username=broker.username,
        password=broker.password,
        identifier=identifier,
        protocol=version,
        timeout=_CONNECT_TIMEOUT_S,
    )


@dataclass(slots=True)
class PublishStats:
    """What a run has sent so far; updated as it goes, so it is readable after a cancel."""

    samples: int = 0
    commands: int = 0


async def run_mqtt_monitor(  # noqa: PLR0913 - the CLI's options, each needed, all keyword-only
    *,
    url: str,
    topic: str,
    device_id: str,
    scenario: str,
    clock: Clock,
    seed: int = 1,
    bed_prefix: str | None = None,
    t0: float | None = None,
    until: float | None = None,
    params: Collection[Param] | None = None,
    stats: PublishStats | None = None,
    batch: bool = False,
    protocol: MqttVersion = "auto",
) -> int:
    """Play `scenario` to the broker at `url`; return the number of samples published.

    The session starts at `t0` (epoch seconds UTC; default `clock.now()`), and each item is sent
    once `clock` reaches its `t`. Samples go to `topic` as Sample JSON with `device_id`;
    with `bed_prefix`, session steps go to `f"{bed_prefix}/cmd"` as nurse commands
    (`session_command`). `until` (epoch seconds) ends the run early: items after it are not
    sent. `params` limits the samples to those parameters, as a monitor that measures only
    some of them (an oximeter, a cuff) would send; the default sends all. `stats`, if given,
    is updated as messages go out. With `batch`, the samples of one instant go out together as
    one JSON array (as a monitor sending HR, PR and SpO2 of a second in one message would),
    which cuts the message rate threefold for fast simulations. `protocol` is the MQTT version
    (`drivers.mqtt.client`: "auto" takes 5, else 3.1.1 where the broker refuses 5).

    Raises `ValueError` for an unknown scenario or a bad URL (before connecting) and
    `aiomqtt.MqttError` when the broker cannot be reached or the connection is lost. Cancelling
    the task closes the connection and re-raises `CancelledError`.
    """
    broker = parse_broker_url(url)
    start = clock.now() if t0 is None else t0
    items = build_scenario(scenario, t0=start, seed=seed, device_id=device_id)
    sent = PublishStats() if stats is None else stats
    cmd_topic = None if bed_prefix is None else f"{bed_prefix}/cmd"
    # Unique per run: two simulators (or a restarted one) never take over each other's session
    # at the broker.
    identifier = f"vigil-sim-{device_id}-{secrets.token_hex(4)}"
    build = functools.partial(_client, broker, identifier)
    async with _connected(protocol, broker, build) as client:
        group: list[Sample] = []

        async def send(samples: list[Sample]) -> None:
            docs = [sample.to_json() for sample in samples]
            qos = 1 if any(sample.param in NIBP_PARAMS for sample in samples) else 0
            payload = json.dumps(docs if batch else docs[0])
            await client.publish(topic, payload, qos=qos)
            raise_if_cancelled()
            sent.samples += len(samples)

        for item in items:
            if until is not None and item.t > until:
                break
            if group and (isinstance(item, Step) or item.t != group[0].t):
                await send(group)
                group = []
            await clock.sleep_until(item.t)
            if isinstance(item, Step):
                if cmd_topic is not None:
                    payload = json.dumps(session_command(item.event))
                    await client.publish(cmd_topic, payload, qos=1)
                    raise_if_cancelled()
                    sent.commands += 1
                continue
            if params is not None and item.param not in params:
                continue
            if batch:
                group.append(item)
            else:
                await send([item])
        if group:
            await send(group)
    return sent.samples
