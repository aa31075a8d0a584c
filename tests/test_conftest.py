"""The root conftest: its broker fixture is a real broker, and its checks catch what they claim."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest

from tests.helpers import (
    BrokerImplementation,
    BrokerProcess,
    client_of,
    first_message,
    free_port,
    mosquitto_path,
)

TESTS = Path(__file__).parent


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_url_points_at_loopback(mqtt_broker_url: str, mosquitto: str) -> None:
    parts = urlsplit(mqtt_broker_url)
    assert (parts.scheme, parts.hostname) == ("mqtt", "127.0.0.1")
    assert mosquitto == mqtt_broker_url


async def test_retained_message_goes_through_the_broker(mqtt_broker_url: str) -> None:
    async with client_of(mqtt_broker_url) as publisher:
        await publisher.publish("vigil/test/status", b"online", qos=1, retain=True)
    async with client_of(mqtt_broker_url) as subscriber:
        await subscriber.subscribe("vigil/test/#", qos=1)
        message = await first_message(subscriber)
    assert str(message.topic) == "vigil/test/status"
    assert message.payload == b"online"
    assert message.retain


async def test_a_second_broker_gets_another_port(
    mqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    with BrokerProcess(tmp_path / "second") as second:
        assert second.port != mqtt_broker.port
        assert second.url != mqtt_broker.url
        async with client_of(second.url), client_of(mqtt_broker.url):
            pass


async def test_broker_restarts_on_the_same_url(mqtt_broker: BrokerProcess) -> None:
    url = mqtt_broker.url
    async with client_of(url) as client:
        await client.publish("vigil/test/status", b"online", qos=1, retain=True)
    mqtt_broker.stop()
    assert not mqtt_broker.running
    with pytest.raises(aiomqtt.MqttError):
        async with client_of(url, timeout=2):
            pass
    mqtt_broker.start()
    assert mqtt_broker.url == url
    async with client_of(url) as client:
        await client.subscribe("vigil/test/#", qos=1)
        await client.publish("vigil/test/ping", b"1", qos=1)
        message = await first_message(client)
    # Persistence is off: the retained status did not survive the restart.
    assert str(message.topic) == "vigil/test/ping"


@pytest.mark.parametrize("implementation", ["mosquitto", "amqtt"])
async def test_each_implementation_serves_and_restarts(
    implementation: BrokerImplementation, tmp_path: Path
) -> None:
    if implementation == "mosquitto" and mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    with BrokerProcess(tmp_path, implementation=implementation) as broker:
        for _ in range(2):
            async with client_of(broker.url) as client:
                await client.subscribe("vigil/test/ping", qos=1)
                await client.publish("vigil/test/ping", implementation.encode(), qos=1)
                assert (await first_message(client)).payload == implementation.encode()
            broker.stop()
            broker.start()


_PROBES = """
import asyncio
import gc
import os
import subprocess
import sys
import threading


async def test_clean() -> None:
    await asyncio.sleep(0)


async def test_leaks_task() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="leaky-task")


async def test_cancels_its_task() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    task.cancel()


def test_leaks_child() -> None:
    # posix_spawn leaves no Popen object whose finalizer would complain on its own.
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    os.posix_spawn(sys.executable, argv, os.environ)


def test_reaps_child() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_unraisable() -> None:
    class Bad:
        def __del__(self) -> None:
            raise RuntimeError("boom in __del__")

    Bad()
    gc.collect()


def test_thread_exception() -> None:
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
"""


def test_checks_flag_leaks(pytester: pytest.Pytester) -> None:
    """Run probe tests under a copy of this conftest in a child pytest and read the verdicts."""
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(helpers=(TESTS / "helpers.py").read_text(), test_probes=_PROBES)
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "asyncio_default_test_loop_scope = function\n"
        "filterwarnings =\n    error\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    text = result.stdout.str()
    verdicts = {
        line.split(" ")[1].partition("::")[2]: line.split(" ")[0]
        for line in text.splitlines()
        if line.startswith(("PASSED ", "FAILED ", "ERROR "))
    }
    # A test whose body passed and whose teardown check failed is listed twice; ERROR wins here.
    assert verdicts == {
        "test_clean": "PASSED",
        "test_cancels_its_task": "PASSED",
        "test_reaps_child": "PASSED",
        "test_leaks_task": "ERROR",
        "test_leaks_child": "ERROR",
        "test_unraisable": "FAILED",
        "test_thread_exception": "FAILED",
    }, text
    assert "\ntest leaked asyncio tasks: leaky-task " in text
    assert "\ntest leaked child processes: " in text
    assert "RuntimeError: boom in __del__" in text
    assert "ZeroDivisionError" in text
