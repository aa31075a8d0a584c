"""A real MLLP receiver for the tests: python-hl7's asyncio server, recording every message.

`policy(message)` decides each answer: an ACK code (`"AA"`, `"AE"`, …), `None` to answer
nothing (the gateway's ACK timeout), or `"close"` to drop the connection with the message
unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import hl7
import hl7.mllp

from monitor.hl7.settings import GatewayConfig
from tests.helpers import free_port

Policy = Callable[[hl7.Message], str | None]


def always_accept(_: hl7.Message) -> str | None:
    return "AA"


class Receiver:
    """An MLLP listener on a free loopback port; `received` holds every message in order."""

    def __init__(
        self,
        policy: Policy = always_accept,
        port: int | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.port = free_port() if port is None else port
        self._ssl = ssl
        self.policy = policy
        self.received: list[hl7.Message] = []
        self.raw: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[hl7.mllp.HL7StreamWriter] = set()
        self.arrived = asyncio.Event()

    @property
    def to(self) -> str:
        return f"127.0.0.1:{self.port}"

    def gateway_config(
        self, queue: Path, broker: dict[str, Any], **hl7_settings: Any
    ) -> GatewayConfig:
        """The config of a gateway sending ward w1 to this receiver, its queue at `queue`,
        metrics off, on the ward broker `broker` (a `[broker]` table), as `hl7_settings` add."""
        hl7_table = {
            "to": self.to,
            "ward": "w1",
            "queue": str(queue),
            "metrics_listen": None,
            **hl7_settings,
        }
        config: GatewayConfig = GatewayConfig.model_validate({"hl7": hl7_table, "broker": broker})
        return config

    async def start(self) -> None:
        self._server = await hl7.mllp.start_hl7_server(
            self._client, "127.0.0.1", self.port, ssl=self._ssl
        )

    async def stop(self) -> None:
        """Stop listening and drop every connection (a receiver that goes away)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _client(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                message = await reader.readmessage()
                self.received.append(message)
                self.raw.append(str(message))
                self.arrived.set()
                answer = self.policy(message)
                if answer == "close":
                    return
                if answer is None:
                    continue
                writer.writemessage(message.create_ack(answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def wait_for(
        self,
        predicate: Callable[[list[hl7.Message]], bool],
        timeout: float,  # noqa: ASYNC109 - a plain bound
    ) -> None:
        """Until `predicate(received)` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.received):
                self.arrived.clear()
                await self.arrived.wait()
