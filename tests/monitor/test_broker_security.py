"""The shipped ward broker security (config/mosquitto) enforced by a real mosquitto.

Each test starts mosquitto with `config/mosquitto/mosquitto.conf` rendered for the test (a free
loopback port for its TLS listener, files in a temporary folder) and the shipped `acl` copied
verbatim, with a throwaway CA and server certificate made by the `openssl` CLI and a password
file made by `mosquitto_passwd`, as config/mosquitto/README.md tells an operator to.

Every "never arrives" below is made meaningful by a control: the observer waits for a message
that IS allowed, published after the forbidden one by the same client, so a permissive ACL
would have delivered the forbidden message first (MQTT keeps one client's messages in order).
Over MQTT 5 the broker also answers a forbidden QoS 1 publish with PUBACK 0x87
"Not authorized"; aiomqtt 2.x does not surface PUBACK reason codes, so `Pubacks` reads them
from its paho client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest
from paho.mqtt.client import CallbackOnPublish, CallbackOnPublish_v2
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alarms.policy import load_policy
from drivers.mqtt.client import Client as MqttClient
from kernel.clock import SimulatedClock
from monitor.daemon import Daemon
from monitor.hl7.gateway import Gateway
from monitor.settings import Settings
from monitor.supervisor import LinkState, LinkStatus
from tests.helpers import BrokerProcess, free_port, mosquitto_path, next_json
from tests.monitor.hl7.receiver import Receiver

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
HOST = "127.0.0.1"

# Users of the shipped acl (its naming convention: bed-<ward>-<bed>, console-*, monitor-<id>)
BED = "bed-w1-b3"  # vigil/w1/b3, reads monitors/mon1 (config/bed.example.toml's bed)
OTHER_BED = "bed-w1-b4"  # vigil/w1/b4, reads monitors/mon2
CONSOLE = "console-station1"
TABLET = "console-station2"  # a second console, given fewer rights in the bed config below
MONITOR = "monitor-mon1"
OTHER_MONITOR = "monitor-mon2"
HL7 = "hl7-w1"  # the HL7 gateway of ward w1
USERS = (BED, OTHER_BED, CONSOLE, TABLET, MONITOR, OTHER_MONITOR, HL7)
PREFIX = "vigil/w1/b3"
OTHER_PREFIX = "vigil/w1/b4"

NOT_AUTHORIZED = 0x87
# PUBACK reason codes of an accepted publish: success, and "no matching subscribers"
ACCEPTED = frozenset({0x00, 0x10})
BAD_USERNAME_OR_PASSWORD = 0x86
MQTT_WAIT_S = 10.0

_MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
_OPENSSL = shutil.which("openssl")

pytestmark = [
    # TLS, passwords and the shipped ACL are mosquitto's config: not in an embedded-broker run
    pytest.mark.mosquitto_only,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (CI installs it)"),
    pytest.mark.skipif(_MOSQUITTO_PASSWD is None, reason="needs mosquitto_passwd (mosquitto)"),
    pytest.mark.skipif(_OPENSSL is None, reason="needs the openssl CLI (apt-get install openssl)"),
    pytest.mark.timeout(60),
]


# ---------------------------------------------------------------------------- the ward broker


def run(*argv: str, cwd: Path) -> None:
    """Run a set-up command; its output is in the failure message if it fails."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"


@dataclass(frozen=True)
class WardSecrets:
    """The throwaway CA, server certificate and passwords of one test module."""

    folder: Path
    passwords: dict[str, str]

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"


def make_certificates(folder: Path) -> None:
    """A CA, and a server certificate for 127.0.0.1 signed by it (README.md "Certificates")."""
    assert _OPENSSL is not None
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run(
        _OPENSSL, "req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=Vigil test ward CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    run(
        _OPENSSL, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run(
        _OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip


def make_password_file(path: Path, passwords: dict[str, str]) -> None:
    """`mosquitto_passwd -b -c` for the first user, `-b` for the others (README.md "Users")."""
    assert _MOSQUITTO_PASSWD is not None
    for i, (user, password) in enumerate(passwords.items()):
        create = ("-c",) if i == 0 else ()
        run(_MOSQUITTO_PASSWD, "-b", *create, str(path), user, password, cwd=path.parent)


@pytest.fixture(scope="module")
def ward_secrets(tmp_path_factory: pytest.TempPathFactory) -> WardSecrets:
    folder = tmp_path_factory.mktemp("ward-secrets")
    make_certificates(folder)
    # (never starting with "-", which mosquitto_passwd would read as an option)
    passwords = {user: "pw" + secrets.token_urlsafe(16) for user in USERS}
    make_password_file(folder / "passwd", passwords)
    return WardSecrets(folder=folder, passwords=passwords)


def render_config(example: str, *, port: int, workdir: Path, keys: WardSecrets) -> str:
    """The shipped mosquitto.conf with the test's port and paths; every other line unchanged.

    The TLS listener `listener 8883` moves to `127.0.0.1:port`; files move to the test's
    folders; the log goes to stderr (BrokerProcess keeps it). `user root` is appended: mosquitto
    started as root otherwise drops to user `mosquitto`, which cannot read pytest's private
    temporary folders (the option is ignored when not root).
    """
    replace = {
        "listener 8883": f"listener {port} {HOST}",
        "password_file": f"password_file {keys.folder / 'passwd'}",
        "acl_file": f"acl_file {workdir / 'acl'}",
        "cafile": f"cafile {keys.ca_file}",
        "certfile": f"certfile {keys.folder / 'server.crt'}",
        "keyfile": f"keyfile {keys.folder / 'server.key'}",
        "persistence_location": f"persistence_location {workdir / 'store'}/",
        "pid_file": "",
        "log_dest": "log_dest stderr",
    }
    seen: dict[str, int] = dict.fromkeys(replace, 0)
    lines = []
    for line in example.splitlines():
        words = line.split()
        key = next((k for k in replace if words and " ".join(words[: len(k.split())]) == k), None)
        if key is None:
            assert not (words and words[0] == "listener"), f"unexpected active listener: {line}"
            lines.append(line)
        else:
            seen[key] += 1
            lines.append(replace[key])
    assert all(n == 1 for n in seen.values()), f"directives in the example: {seen}"
    return "\n".join([*lines, "user root", ""])


@dataclass
class Ward:
    """A running ward broker configured by config/mosquitto."""

    broker: BrokerProcess
    secrets: WardSecrets

    @property
    def url(self) -> str:
        return f"mqtts://{self.broker.host}:{self.broker.port}"

    def client(
        self,
        user: str | None,
        *,
        identifier: str,
        password: str | None = None,
        context: ssl.SSLContext | None = None,
        tls: bool = True,
        timeout: float = MQTT_WAIT_S,
    ) -> aiomqtt.Client:
        """An MQTT 5 client over TLS as `user` (its password unless `password` is given)."""
        if password is None and user is not None:
            password = self.secrets.passwords[user]
        if tls and context is None:
            context = ssl.create_default_context(cafile=str(self.secrets.ca_file))
        return MqttClient(
            self.broker.host,
            self.broker.port,
            username=user,
            password=password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=context if tls else None,
            timeout=timeout,
        )


@pytest.fixture
def ward(tmp_path: Path, ward_secrets: WardSecrets) -> Iterator[Ward]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    (workdir / "store").mkdir()
    shutil.copyfile(CONFIG_DIR / "acl", workdir / "acl")
    port = free_port(HOST)
    config = render_config(
        (CONFIG_DIR / "mosquitto.conf").read_text(),
        port=port,
        workdir=workdir,
        keys=ward_secrets,
    )
    with BrokerProcess(
        workdir, host=HOST, port=port, implementation="mosquitto", config=config
    ) as b:
        yield Ward(broker=b, secrets=ward_secrets)


# ---------------------------------------------------------------------------- observing


class Pubacks:
    """The PUBACK reason codes a client receives, in order (aiomqtt 2.x drops them)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.codes: list[int] = []
        paho: PahoClient = client._client
        inner = cast("CallbackOnPublish_v2", paho.on_publish)

        def on_publish(
            c: PahoClient, userdata: Any, mid: int, reason_code: ReasonCode, props: Properties
        ) -> None:
            self.codes.append(reason_code.value)
            inner(c, userdata, mid, reason_code, props)

        paho.on_publish = cast("CallbackOnPublish", on_publish)

    async def publish(self, client: aiomqtt.Client, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        before = len(self.codes)
        await client.publish(topic, payload, qos=1, timeout=MQTT_WAIT_S)
        assert len(self.codes) == before + 1
        return self.codes[-1]


async def received_until(
    client: aiomqtt.Client, topic: str, payload: bytes
) -> list[tuple[str, bytes]]:
    """Every message `client` receives, up to and including `payload` on `topic`."""
    seen: list[tuple[str, bytes]] = []
    async with asyncio.timeout(MQTT_WAIT_S):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            seen.append((str(message.topic), message.payload))
            if seen[-1] == (topic, payload):
                return seen
    raise AssertionError(f"message stream ended; received {seen}")


def reason(exc: aiomqtt.MqttCodeError) -> int | None:
    return exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log line (message and traceback) of the daemon, its drivers, aiomqtt and paho.

    DEBUG and up, wherever it is emitted: the handler sits on the root logger and on `vigil`
    (which `monitor.logs.setup_logging` may have stopped from propagating).
    """
    lines: list[str] = []
    # records by id, kept alive so that no id is reused: a record may reach both handlers
    kept: dict[int, logging.LogRecord] = {}
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if id(record) not in kept:
                kept[id(record)] = record
                lines.append(formatter.format(record))

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("vigil"), logging.getLogger("mqtt")]
    levels = [lg.level for lg in loggers]
    for lg in loggers[:2]:
        lg.addHandler(handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for lg in loggers[:2]:
            lg.removeHandler(handler)


def bed_settings(ward: Ward, tmp_path: Path, *, password: str, **sections: Any) -> Settings:
    """Bed w1/b3 on the ward broker over TLS, as config/mosquitto/README.md shows."""
    return Settings.model_validate(
        {
            "bed": {"ward": "w1", "bed": "b3"},
            "broker": {
                "url": ward.url,
                "username": BED,
                "password": password,
                "ca_file": str(ward.secrets.ca_file),
                "protocol": "5",
            },
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "metrics": {"enabled": False},
            "timeouts": {"backoff_max_s": 0.5, "broker_connect_s": 5.0},
            "drivers": [{"kind": "mqtt", "device_id": "mon1", "topic": "monitors/mon1/samples"}],
        }
        | sections
    )


@contextlib.asynccontextmanager
async def connected(*clients: aiomqtt.Client) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        yield


# ---------------------------------------------------------------------------- the example


def test_the_example_config_has_the_security_settings_the_readme_describes() -> None:
    conf = (CONFIG_DIR / "mosquitto.conf").read_text()
    active = {line.strip() for line in conf.splitlines() if not line.lstrip().startswith("#")}
    assert not any(line.startswith("per_listener_settings true") for line in active)
    for directive in (
        "allow_anonymous false",
        "listener 8883",
        "set_tcp_nodelay true",
        "persistence true",
    ):
        assert directive in active
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
        assert any(line.startswith(f"{key} /") for line in active), key
    assert re.search(r"^max_queued_messages [1-9]\d{3,}$", conf, re.MULTILINE)
    # optional, offered commented out
    assert "#require_certificate true" in conf
    assert "#listener 1883 127.0.0.1" in conf
    acl = (CONFIG_DIR / "acl").read_text()
    assert not re.search(r"^\s*pattern\b", acl, re.MULTILINE)  # README.md "ACL design"
    for user in USERS:
        assert re.search(rf"^user {user}$", acl, re.MULTILINE), user


# ---------------------------------------------------------------------------- who may connect


async def test_a_client_without_credentials_cannot_connect(ward: Ward) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with ward.client(None, identifier="anonymous"):
            pytest.fail("an anonymous client was let in")
    assert reason(refused.value) == NOT_AUTHORIZED
    # a known user with a made-up password fares no better
    guess = secrets.token_urlsafe(12)
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with ward.client(CONSOLE, identifier="guess", password=guess):
            pytest.fail("a wrong password was let in")
    assert reason(refused.value) in {BAD_USERNAME_OR_PASSWORD, NOT_AUTHORIZED}
    # control: the same user with its password is let in
    async with ward.client(CONSOLE, identifier="console"):
        pass


# paho-mqtt 2.2 leaves the socket of a failed TLS handshake for the garbage collector
# (`Client._ssl_wrap_socket`), which warns; collected below, so within this test
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
async def test_the_listener_speaks_tls_only_with_a_certificate_of_the_ward_ca(ward: Ward) -> None:
    # the system's trust store does not know the ward CA: the handshake fails
    untrusting = ward.client(CONSOLE, identifier="untrusting", context=ssl.create_default_context())
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with untrusting:
            pytest.fail("connected without trusting the ward CA")
    # plain MQTT on the TLS port: the broker drops the connection, no CONNACK ever comes
    # (aiomqtt then waits out its timeout)
    with pytest.raises(aiomqtt.MqttError):
        async with ward.client(CONSOLE, identifier="plain", tls=False, timeout=2.0):
            pytest.fail("connected without TLS")
    # control: trusting the ward CA, over TLS, the same user is let in
    async with ward.client(CONSOLE, identifier="console"):
        pass
    gc.collect()


# ---------------------------------------------------------------------------- the ACL


async def test_a_bed_cannot_publish_on_another_beds_topics(ward: Ward) -> None:
    bed = ward.client(BED, identifier="bed")
    console = ward.client(CONSOLE, identifier="console")
    pubacks = Pubacks(bed)
    async with connected(bed, console):
        await console.subscribe("vigil/#", qos=1)
        await console.subscribe("monitors/#", qos=1)  # granted, but delivers nothing (no read)
        forbidden = [
            f"{OTHER_PREFIX}/alarms",
            f"{OTHER_PREFIX}/status",
            f"{OTHER_PREFIX}/cmd",
            f"{OTHER_PREFIX}/cmd/result",
            "vigil/w1/b3x/alarms",  # a prefix that merely starts like its own
            "monitors/mon1/samples",  # a bed reads its monitor, never writes it
        ]
        for topic in forbidden:
            code = await pubacks.publish(bed, topic, b'{"forged": true}')
            assert code == NOT_AUTHORIZED, topic
        # control: the same client's allowed publish does arrive, after the forbidden ones
        control = b'{"control": true}'
        assert await pubacks.publish(bed, f"{PREFIX}/alarms", control) == 0
        seen = await received_until(console, f"{PREFIX}/alarms", control)
        assert seen == [(f"{PREFIX}/alarms", control)]


async def test_a_bed_reads_only_its_own_prefix_and_its_monitor(ward: Ward) -> None:
    bed = ward.client(BED, identifier="bed")
    console = ward.client(CONSOLE, identifier="console")
    monitor = ward.client(MONITOR, identifier="mon1")
    other_monitor = ward.client(OTHER_MONITOR, identifier="mon2")
    async with connected(bed, console, monitor, other_monitor):
        await bed.subscribe("#", qos=1)
        await other_monitor.publish("monitors/mon2/samples", b"other monitor", qos=1)
        await console.publish(f"{OTHER_PREFIX}/cmd/{CONSOLE}", b"other bed's command", qos=1)
        await console.publish(f"{PREFIX}/cmd/{CONSOLE}", b"own command", qos=1)
        await monitor.publish("monitors/mon1/samples", b"own monitor", qos=1)
        seen = await received_until(bed, "monitors/mon1/samples", b"own monitor")
        assert seen == [
            (f"{PREFIX}/cmd/{CONSOLE}", b"own command"),
            ("monitors/mon1/samples", b"own monitor"),
        ]


async def test_a_console_may_send_commands_and_nothing_else(ward: Ward) -> None:
    console = ward.client(CONSOLE, identifier="console")
    bed = ward.client(BED, identifier="bed")
    other = ward.client(OTHER_BED, identifier="other-bed")
    pubacks = Pubacks(console)
    async with connected(console, bed, other):
        await bed.subscribe(f"{PREFIX}/#", qos=1)
        await bed.subscribe("monitors/mon1/#", qos=1)
        await other.subscribe(f"{OTHER_PREFIX}/#", qos=1)
        forged = b'{"status": "offline"}'
        for topic in (
            f"{PREFIX}/alarms",
            f"{PREFIX}/status",
            f"{PREFIX}/alarms/active",
            f"{PREFIX}/session",
            f"{PREFIX}/vitals",
            f"{PREFIX}/cmd/result",
            "monitors/mon1/samples",
        ):
            assert await pubacks.publish(console, topic, forged) == NOT_AUTHORIZED, topic
        command = b'{"cmd": "audio_pause", "request_id": "r1", "user": "ann"}'
        # commands only under its own login: not the bare …/cmd, not another console's
        for topic in (f"{PREFIX}/cmd", f"{PREFIX}/cmd/{TABLET}", f"{PREFIX}/cmd/{BED}"):
            assert await pubacks.publish(console, topic, command) == NOT_AUTHORIZED, topic
        # control: commands reach each bed, after the forbidden publishes
        own, other_own = f"{PREFIX}/cmd/{CONSOLE}", f"{OTHER_PREFIX}/cmd/{CONSOLE}"
        assert await pubacks.publish(console, own, command) == 0
        assert await pubacks.publish(console, other_own, command) == 0
        assert await received_until(bed, own, command) == [(own, command)]
        assert await received_until(other, other_own, command) == [(other_own, command)]


async def test_a_monitor_publishes_only_on_its_own_topics(ward: Ward) -> None:
    monitor = ward.client(MONITOR, identifier="mon1")
    other_bed = ward.client(OTHER_BED, identifier="other-bed")
    console = ward.client(CONSOLE, identifier="console")
    pubacks = Pubacks(monitor)
    async with connected(monitor, other_bed, console):
        await other_bed.subscribe("monitors/mon2/#", qos=1)
        await console.subscribe("vigil/#", qos=1)
        for topic in ("monitors/mon2/samples", f"{PREFIX}/vitals", f"{PREFIX}/cmd"):
            assert await pubacks.publish(monitor, topic, b"forged") == NOT_AUTHORIZED, topic
        assert await pubacks.publish(monitor, "monitors/mon1/samples", b"{}") in ACCEPTED
        # control for the observers: the rightful publishers' messages do arrive
        async with ward.client(OTHER_MONITOR, identifier="mon2") as other_monitor:
            await other_monitor.publish("monitors/mon2/samples", b"real", qos=1)
        assert await received_until(other_bed, "monitors/mon2/samples", b"real") == [
            ("monitors/mon2/samples", b"real")
        ]
        async with ward.client(BED, identifier="bed") as bed:
            await bed.publish(f"{PREFIX}/vitals", b"real", qos=1)
        assert await received_until(console, f"{PREFIX}/vitals", b"real") == [
            (f"{PREFIX}/vitals", b"real")
        ]


async def test_the_hl7_gateway_reads_what_it_forwards_and_writes_only_its_own_topics(
    ward: Ward, tmp_path: Path
) -> None:
    receiver = Receiver()
    config = receiver.gateway_config(
        tmp_path / "hl7-queue.sqlite",
        {
            "url": ward.url,
            "username": HL7,
            "password": ward.secrets.passwords[HL7],
            "ca_file": str(ward.secrets.ca_file),
        },
    )
    event = {
        "t": time.time(), "code": "DESAT", "priority": "medium", "kind": "physiological",
        "state": "active", "param": "SPO2", "value": 89.0, "limit": 92.0, "phase": "infusion",
        "message": "SpO2 89", "bed": "w1/b3", "alarm_id": "w1/b3/DESAT/1", "seq": 1,
    }  # fmt: skip
    bed = ward.client(BED, identifier="bed")
    console = ward.client(CONSOLE, identifier="console")
    gateway_user = ward.client(HL7, identifier="hl7-probe")
    pubacks = Pubacks(gateway_user)
    async with receiver, Gateway(config) as gw, connected(bed, console, gateway_user):
        await gw.connected(MQTT_WAIT_S)
        # read: a bed's alarm reaches the receiver as a PCD-04 (its subscriptions were granted)
        await bed.publish(f"{PREFIX}/alarms", json.dumps(event).encode(), qos=1)
        await receiver.wait_for(lambda r: any("ORU^R40" in str(m) for m in r), MQTT_WAIT_S)
        # write: nothing of a bed's, no command; its own status and alarms are accepted
        for topic in (
            f"{PREFIX}/alarms",
            f"{PREFIX}/status",
            f"{PREFIX}/alarms/active",
            f"{PREFIX}/cmd",
            f"{OTHER_PREFIX}/session",
            "monitors/mon1/samples",
            "vigil/w2/hl7/status",
        ):
            assert await pubacks.publish(gateway_user, topic, b"forged") == NOT_AUTHORIZED, topic
        for topic in ("vigil/w1/hl7/alarms", "vigil/w1/hl7/status"):
            assert await pubacks.publish(gateway_user, topic, b"{}") in ACCEPTED, topic
        # no reading of commands: mosquitto 2.0 grants the subscription and drops what the
        # ACL does not let through, so a control message allowed to be read, sent after the
        # forbidden one, shows it was dropped (one client's order is kept); the active list
        # is read (the PCD-04 latched state, docs/hl7.md)
        await gateway_user.subscribe(f"{PREFIX}/#", qos=1)
        command = b'{"cmd": "audio_pause", "request_id": "r1", "user": "ann"}'
        await console.publish(f"{PREFIX}/cmd", command, qos=1)
        await bed.publish(f"{PREFIX}/alarms/active", b"[]", qos=1)
        await bed.publish(f"{PREFIX}/alarms", b"control", qos=1)
        assert await received_until(gateway_user, f"{PREFIX}/alarms", b"control") == [
            (f"{PREFIX}/alarms/active", b"[]"),
            (f"{PREFIX}/alarms", b"control"),
        ]
    assert [m for m in receiver.received if "ORU^R40" in str(m)]


# ---------------------------------------------------------------------------- the daemon


async def test_the_daemon_over_tls_with_credentials_refuses_a_malformed_command(
    ward: Ward, tmp_path: Path
) -> None:
    password = ward.secrets.passwords[BED]
    settings = bed_settings(ward, tmp_path, password=password)
    console = ward.client(CONSOLE, identifier="console")
    monitor = ward.client(MONITOR, identifier="mon1")
    with captured_logs() as logs:
        async with Daemon(settings, load_policy()) as daemon, connected(console, monitor):
            # the ward link and the MQTT driver (same credentials, its own TLS set-up)
            await daemon.connected(15)
            await console.subscribe(f"{PREFIX}/#", qos=1)
            status = await next_json(console, f"{PREFIX}/status")
            assert status["status"] == "online"
            assert (status["ward"], status["bed"]) == ("w1", "b3")

            async def send(payload: bytes) -> dict[str, Any]:
                await console.publish(f"{PREFIX}/cmd/{CONSOLE}", payload, qos=1)
                return await next_json(console, f"{PREFIX}/cmd/result")

            missing = await send(b'{"cmd": "open_session", "request_id": "r1", "user": "ann"}')
            assert missing == {"request_id": "r1", "ok": False, "error": missing["error"]}
            assert "weight_kg" in missing["error"]
            assert "patient_id" in missing["error"]
            unknown = await send(b'{"cmd": "self_destruct", "request_id": "r2", "user": "ann"}')
            assert unknown == {"request_id": "r2", "ok": False, "error": unknown["error"]}
            assert "unknown command 'self_destruct'" in unknown["error"]
            garbage = await send(b"open the session please")
            assert garbage["ok"] is False
            assert "not JSON" in garbage["error"]
            assert daemon.core.session is None  # refusals change nothing

            # a nurse's shell, as the console user over TLS: vigil cmd with the ward CA and
            # the password from the environment (never on the command line)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor.cli", "cmd", "audio_pause", "--json",
                "--broker", ward.url, "--bed", PREFIX, "--ca-file", str(ward.secrets.ca_file),
                "--username", CONSOLE, "--user", "nurse-kim",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "VIGIL_BROKER__PASSWORD": ward.secrets.passwords[CONSOLE]},
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            # sent on the topic of its login, which the bed names as the principal
            assert json.loads(out)["ok"] is True
            assert json.loads(out)["principal"] == CONSOLE
            assert daemon.core.audio_paused_until is not None

            # and the monitor's samples reach the ward through the bed (read ACL, driver TLS)
            now = time.time()
            sample = {"t": now, "param": "HR", "value": 61.0, "valid": True, "device_id": "mon1"}
            await monitor.publish("monitors/mon1/samples", json.dumps(sample).encode(), qos=1)
            vital = await next_json(console, f"{PREFIX}/vitals")
            assert (vital["param"], vital["value"]) == ("HR", 61.0)
    assert logs  # the capture works
    assert not [line for line in logs if password in line]


async def test_commands_carry_the_broker_login_and_the_bed_config_says_who_may_do_what(
    ward: Ward, tmp_path: Path
) -> None:
    # the station logs its nurses in itself and may act for them; the tablet may only pause
    principals = {
        CONSOLE: {"may": ["acknowledge", "audio_pause", "session"], "speaks_for_others": True},
        TABLET: {"may": ["audio_pause"]},
    }
    settings = bed_settings(
        ward,
        tmp_path,
        password=ward.secrets.passwords[BED],
        commands={"principals": principals},
    )
    clock = SimulatedClock(speed=10.0)
    station = ward.client(CONSOLE, identifier="station")
    tablet = ward.client(TABLET, identifier="tablet")
    monitor = ward.client(MONITOR, identifier="mon1")
    pubacks = Pubacks(tablet)
    async with (
        Daemon(settings, load_policy(), clock=clock) as daemon,
        connected(station, tablet, monitor),
    ):
        await daemon.connected(15)
        await station.subscribe(f"{PREFIX}/alarms", qos=1)
        await station.subscribe(f"{PREFIX}/cmd/result", qos=1)

        async def ask(client: aiomqtt.Client, login: str, body: dict[str, Any]) -> dict[str, Any]:
            await client.publish(f"{PREFIX}/cmd/{login}", json.dumps(body).encode(), qos=1)
            while True:
                result = await next_json(station, f"{PREFIX}/cmd/result")
                if result["request_id"] == body["request_id"]:
                    return result

        # HR 150 for 10 simulated s (1 real s): TACHY_SEVERE, latching (config/alarms.toml)
        async with asyncio.timeout(MQTT_WAIT_S):
            while "TACHY_SEVERE" not in daemon.core.engine.active:
                sample = {"t": clock.now(), "param": "HR", "value": 150.0, "valid": True,
                          "device_id": "mon1"}  # fmt: skip
                await monitor.publish("monitors/mon1/samples", json.dumps(sample).encode(), qos=1)
                await asyncio.sleep(0.1)
        ack = {"cmd": "ack", "code": "TACHY_SEVERE", "user": "ann"}
        # the tablet cannot send as the station: the broker refuses the topic
        forged = json.dumps(ack | {"request_id": "f1"}).encode()
        assert await pubacks.publish(tablet, f"{PREFIX}/cmd/{CONSOLE}", forged) == NOT_AUTHORIZED
        # under its own login: it may not acknowledge, and may not name another user
        refused = await ask(tablet, TABLET, ack | {"request_id": "t1", "user": TABLET})
        assert refused["ok"] is False
        assert refused["error"] == f"{TABLET} may not acknowledge (ack)"
        as_bob = {"cmd": "audio_pause", "request_id": "t2", "user": "bob"}
        refused = await ask(tablet, TABLET, as_bob)
        assert refused["ok"] is False
        assert refused["error"] == f"{TABLET} may not act for user 'bob': send as {TABLET}"
        assert daemon.core.audio_paused_until is None  # refusals change nothing
        paused = await ask(tablet, TABLET, as_bob | {"request_id": "t3", "user": TABLET})
        assert (paused["ok"], paused["principal"]) == (True, TABLET)
        # the station acknowledges for nurse ann: ann is the user, the station the principal
        done = await ask(station, CONSOLE, ack | {"request_id": "s1"})
        assert (done["ok"], done["principal"]) == (True, CONSOLE)
        async with asyncio.timeout(MQTT_WAIT_S):
            while True:
                event = await next_json(station, f"{PREFIX}/alarms")
                if event["state"] == "acknowledged":
                    break
        assert (event["code"], event["user"], event["principal"]) == (
            "TACHY_SEVERE",
            "ann",
            CONSOLE,
        )
    # the journal has the principal beside every command, applied or refused
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    rows = [json.loads(d) for (d,) in db.execute(
        "SELECT data FROM inputs WHERE kind = 'command' ORDER BY id"
    )]  # fmt: skip
    db.close()
    assert [(r.get("principal"), r.get("refused")) for r in rows] == [
        (TABLET, f"{TABLET} may not acknowledge (ack)"),
        (TABLET, f"{TABLET} may not act for user 'bob': send as {TABLET}"),
        (TABLET, None),
        (CONSOLE, None),
    ]


async def test_a_wrong_password_is_refused_and_never_logged(ward: Ward, tmp_path: Path) -> None:
    wrong = "Wrong-" + secrets.token_urlsafe(12)
    settings = bed_settings(ward, tmp_path, password=wrong)
    states: list[LinkState] = []
    refused_twice = asyncio.Event()

    with captured_logs() as logs:
        async with Daemon(settings, load_policy()) as daemon:
            links = [daemon.ward.status, daemon.device_status["mon1"]]

            def record(status: LinkStatus) -> None:
                states.append(status.state)
                # two refused attempts each of the ward link and the driver (same credentials)
                if all(link.reconnects >= 2 for link in links):
                    refused_twice.set()

            for link in links:  # before the daemon's tasks first run
                link.listeners.append(record)
            async with asyncio.timeout(15):
                await refused_twice.wait()
            assert LinkState.CONNECTED not in states
            error = daemon.ward.status.last_error
            assert error is not None
            assert re.search(
                "not authori[sz]ed|bad user ?name or password", error, re.IGNORECASE
            ), error
    refusals = [line for line in logs if "backing_off" in line]
    assert len(refusals) >= 4, logs
    assert not [line for line in logs if wrong in line]
    assert not [line for line in logs if ward.secrets.passwords[BED] in line]
