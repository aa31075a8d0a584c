"""drivers.mqtt.client.Client against a real broker: a cancelled connect leaves nothing behind.

Every wait of Vigil's has a timeout, so a connect is cancelled whenever a broker is slow: while
paho opens the socket on its thread, or while the CONNACK is awaited. Each such attempt must
close its connection (else it stays up, kept alive, under the client's id), raise nothing in
the event loop's callbacks and leave no error unretrieved; the next client must work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.mqtt.client import Client

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.helpers import BrokerProcess


def _connections_to(port: int) -> int:
    """This process's TCP sockets connected to `port` on loopback (Linux: /proc/net/tcp)."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                ours.add(target[len("socket:[") : -1])
    n = 0
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        remote_port, inode = int(fields[2].split(":")[1], 16), fields[9]
        n += remote_port == port and inode in ours
    return n


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What the running loop's exception handler is given inside the block (collected last)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        yield reported
        gc.collect()  # an unretrieved error is reported when its future is collected
    finally:
        loop.set_exception_handler(None)


async def test_connects_cancelled_at_every_stage_leave_no_connection_and_no_loop_error(
    mqtt_broker: BrokerProcess,
) -> None:
    rnd = random.Random(7)  # noqa: S311 - the delays, so a failure reproduces
    cancelled = 0
    with loop_errors() as reported:
        for i in range(80):
            client = Client(mqtt_broker.host, mqtt_broker.port, identifier=f"t{i}", timeout=5)

            async def use(client: Client = client) -> None:
                async with client:
                    await client.publish("vigil/test", b"1", qos=1)

            task = asyncio.create_task(use(), name=f"connect-{i}")
            # 0-1.5 ms: before the socket opens, while paho connects, while the CONNACK is awaited
            await asyncio.sleep(rnd.random() * 0.0015)
            if task.cancel():
                cancelled += 1
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        # a given-up connection closes with a DISCONNECT, within a few loop turns
        for _ in range(100):
            if not _connections_to(mqtt_broker.port):
                break
            await asyncio.sleep(0.02)
        left = _connections_to(mqtt_broker.port)
    assert cancelled >= 30, cancelled  # the delays did reach the attempts
    assert left == 0, f"{left} connections still open to the broker"
    assert reported == [], [c.get("message") for c in reported]
    # and a client connects and publishes as usual afterwards
    async with Client(mqtt_broker.host, mqtt_broker.port, identifier="after", timeout=5) as c:
        await c.publish("vigil/test", b"2", qos=1)


async def test_a_connection_lost_under_a_client_is_not_reported_as_never_retrieved(
    mqtt_broker: BrokerProcess,
) -> None:
    with loop_errors() as reported:
        client = Client(mqtt_broker.host, mqtt_broker.port, identifier="lost", timeout=5)
        async with client:
            await client.publish("vigil/test", b"1", qos=1)
            mqtt_broker.kill()  # the broker dies under the open connection
            for _ in range(100):
                if client._disconnected.done():  # aiomqtt's only record of it
                    break
                await asyncio.sleep(0.02)
            assert client._disconnected.done()
        del client
    assert reported == [], [c.get("message") for c in reported]
