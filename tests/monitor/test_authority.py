"""Who may command the bed (monitor/authority.py, docs/ARCHITECTURE.md "Commands and identity")."""

from __future__ import annotations

import json

import pytest

from monitor.authority import CommandSettings, command_topic, principal_of, refusal
from monitor.commands import CommandRejectedError, parse_command
from monitor.report import who

PREFIX = "vigil/w1/b3"
SETTINGS = CommandSettings.model_validate(
    {
        "principals": {
            "console-station1": {"may": ["acknowledge", "session"], "speaks_for_others": True},
            "console-tablet3": {"may": ["audio_pause", "score"]},
        }
    }
)


def cmd(name: str, user: str, **fields: object) -> bytes:
    return json.dumps({"cmd": name, "request_id": "r1", "user": user, **fields}).encode()


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (f"{PREFIX}/cmd", (True, None)),
        (f"{PREFIX}/cmd/console-station1", (True, "console-station1")),
        (f"{PREFIX}/cmd/result", (False, None)),  # the bed's own answer
        (f"{PREFIX}/cmd/a/b", (False, None)),
        (f"{PREFIX}/cmdx", (False, None)),
        ("vigil/w1/b4/cmd/console-station1", (False, None)),
    ],
)
def test_the_principal_is_the_topic_level_after_cmd(
    topic: str, expected: tuple[bool, str | None]
) -> None:
    assert principal_of(PREFIX, topic) == expected


def test_clients_send_on_the_topic_of_their_login() -> None:
    assert command_topic(PREFIX, "console-station1") == f"{PREFIX}/cmd/console-station1"
    assert command_topic(PREFIX, None) == f"{PREFIX}/cmd"


@pytest.mark.parametrize(
    ("payload", "principal", "expected"),
    [
        # the station acts for its nurses
        (cmd("ack", "ann", code="DESAT"), "console-station1", None),
        (cmd("discharge", "dr.lee"), "console-station1", None),
        (cmd("audio_pause", "ann"), "console-station1", "console-station1 may not audio pause"),
        # the tablet only in its own name, only what it may
        (cmd("audio_pause", "console-tablet3"), "console-tablet3", None),
        (
            cmd("audio_pause", "ann"),
            "console-tablet3",
            "console-tablet3 may not act for user 'ann': send as console-tablet3",
        ),
        (
            cmd("ack", "console-tablet3", code="DESAT"),
            "console-tablet3",
            "console-tablet3 may not acknowledge",
        ),
        (cmd("override", "x", what="bp_pre_gate", reason="checked"), "console-x", "console-x"),
        (cmd("ack", "ann", code="DESAT"), None, "not authenticated"),
    ],
)
def test_the_bed_config_says_who_may_do_what(
    payload: bytes, principal: str | None, expected: str | None
) -> None:
    got = refusal(SETTINGS, parse_command(payload), principal)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.startswith(expected), got


def test_without_a_principals_table_every_command_is_accepted() -> None:
    assert refusal(CommandSettings(), parse_command(cmd("discharge", "anyone")), None) is None


def test_a_payload_cannot_assert_its_principal() -> None:
    with pytest.raises(CommandRejectedError, match="principal: unknown field"):
        parse_command(cmd("audio_pause", "ann", principal="console-station1"))


def test_reports_name_the_login_when_it_is_not_the_user() -> None:
    assert who("ann", "console-station1") == "ann via console-station1"
    assert who("console-tablet3", "console-tablet3") == "console-tablet3"
    assert who("ann", None) == "ann"
