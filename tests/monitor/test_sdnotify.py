"""`SdNotifier` against real AF_UNIX datagram sockets (path and abstract), no mocks."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.sdnotify import SdNotifier
from tests.helpers import NotifyReceiver


@pytest.fixture
def abstract_receiver() -> Iterator[NotifyReceiver]:
    r = NotifyReceiver(f"@vigil-test-{uuid.uuid4().hex}")
    yield r
    r.close()


def test_path_socket_receives_one_datagram_per_notification(receiver: NotifyReceiver) -> None:
    n = SdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_address})
    assert n.enabled
    assert n.ready("phase=none ward=connecting devices=0/0") is True
    assert receiver.recv() == ["READY=1", "STATUS=phase=none ward=connecting devices=0/0"]
    assert n.status("phase=pre") is True
    assert receiver.recv() == ["STATUS=phase=pre"]
    assert n.watchdog() is True
    assert receiver.recv() == ["WATCHDOG=1"]
    assert n.stopping() is True
    assert receiver.recv() == ["STOPPING=1"]
    assert n.notify("A=1", "B=2") is True
    assert receiver.recv() == ["A=1", "B=2"]
    assert receiver.pending() == []


def test_abstract_socket(abstract_receiver: NotifyReceiver) -> None:
    n = SdNotifier.from_env({"NOTIFY_SOCKET": abstract_receiver.env_address})
    assert n.ready() is True
    assert abstract_receiver.recv() == ["READY=1"]
    assert n.watchdog() is True
    assert abstract_receiver.recv() == ["WATCHDOG=1"]


def test_no_socket_is_a_no_op() -> None:
    n = SdNotifier.from_env({"WATCHDOG_USEC": "2000000"})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert [n.ready(), n.status("x"), n.watchdog(), n.stopping()] == [False] * 4


def test_an_unsupported_address_disables_notifications(caplog: pytest.LogCaptureFixture) -> None:
    n = SdNotifier.from_env({"NOTIFY_SOCKET": "relative/notify"})
    assert not n.enabled
    assert n.ready() is False
    assert "notify_socket_unsupported" in caplog.text


@pytest.mark.parametrize(
    ("usec", "expected"),
    [("400000", 0.2), ("30000000", 15.0), ("1", 0.5e-6), ("0", None), ("-5", None),
     ("abc", None), ("", None), (None, None)],
)  # fmt: skip
def test_watchdog_interval_is_half_of_watchdog_usec(
    receiver: NotifyReceiver, usec: str | None, expected: float | None
) -> None:
    env = {"NOTIFY_SOCKET": receiver.env_address}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    assert SdNotifier.from_env(env).watchdog_interval_s == expected


@pytest.mark.parametrize(
    ("pid", "expected"),
    # "self"/"next" are resolved when the test runs, so the test ids do not depend on the
    # collecting process's pid (pytest-xdist workers must collect the same ids)
    [("self", 0.2), ("next", None), ("1", None), ("me", None)],
)
def test_watchdog_pid_of_another_process_disables_the_watchdog(
    receiver: NotifyReceiver, pid: str, expected: float | None
) -> None:
    pid = {"self": str(os.getpid()), "next": str(os.getpid() + 1)}.get(pid, pid)
    env = {"NOTIFY_SOCKET": receiver.env_address, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": pid}
    n = SdNotifier.from_env(env)
    assert n.watchdog_interval_s == expected
    assert n.enabled  # only the watchdog is another process's; other notifications still go


def test_send_errors_are_swallowed_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = SdNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="vigil.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
    warnings = [r for r in caplog.records if "sd_notify_failed" in r.getMessage()]
    assert len(warnings) == 1


def test_a_full_receiver_never_blocks_the_sender(receiver: NotifyReceiver) -> None:
    n = SdNotifier.from_env({"NOTIFY_SOCKET": receiver.env_address})
    started = time.monotonic()
    sent = [n.notify("STATUS=" + "x" * 1000) for _ in range(5000)]
    assert time.monotonic() - started < 10.0
    assert sent[0] is True
    assert False in sent  # the receiver's queue filled up: dropped, not waited for
    assert len(receiver.pending()) == sent.count(True)
