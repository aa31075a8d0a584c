"""Who may command the bed: the broker-authenticated principal, not the payload's `user`.

A command payload names a `user`, but anybody can write any name into JSON. The broker is the
one party that checks a password, so the identity Vigil trusts is the broker login, carried by
the topic: a console logged in as `console-station1` publishes on
`vigil/<ward>/<bed>/cmd/console-station1`, and the ward broker's ACL lets each login write only
the command topic of its own name (config/mosquitto/acl, README.md "Commands and identity").
The bed takes the last topic level as the command's *principal*, records it beside the
asserted `user` (journal, alarm events, overrides, scores, `…/cmd/result`), and checks it
against `[commands]` of its config (docs/ARCHITECTURE.md "Commands and identity"):

- no `[commands.principals]` table: every command is accepted, as before; the principal is
  still recorded where the topic carries one (a broker without the ACL proves nothing, so this
  is for a bench or a single-user set-up);
- with the table: a command must come with a listed principal (the bare `…/cmd` is refused),
  the principal must hold the right the command needs (`RIGHTS`), and the `user` it names must
  be the principal itself unless the principal `speaks_for_others` (a central station, which
  logs its nurses in itself and names the nurse in `user`).

Pure: no I/O; the daemon calls `refusal` before applying a command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import Field

from kernel.settings import ConfigModel

if TYPE_CHECKING:
    from monitor.commands import Command

__all__ = [
    "RIGHTS",
    "CommandSettings",
    "PrincipalSettings",
    "Right",
    "command_topic",
    "principal_of",
    "refusal",
]

Right = Literal["acknowledge", "audio_pause", "session", "override", "score"]

# the right each command needs (docs/ARCHITECTURE.md "Commands and identity")
RIGHTS: Final[dict[str, Right]] = {
    "ack": "acknowledge",
    "audio_pause": "audio_pause",
    "open_session": "session",
    "start_infusion": "session",
    "stop_infusion": "session",
    "discharge": "session",
    "override": "override",
    "record_score": "score",
}

# The topic level after `cmd` that is the bed's own output, never a login: no broker user
# may be called this (config/mosquitto/README.md "Users").
RESULT_LEVEL: Final = "result"


class PrincipalSettings(ConfigModel):
    """What one broker login may do on this bed."""

    may: list[Right] = Field(description="the rights: acknowledge, audio_pause, session, …")
    speaks_for_others: bool = Field(
        default=False,
        description="may name another user in `user` (a central station acting for its nurses)",
    )


class CommandSettings(ConfigModel):
    """`[commands]`: which broker logins may command the bed, and how."""

    principals: dict[
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/+#\s]+$")],
        PrincipalSettings,
    ] = Field(default_factory=dict)


def command_topic(prefix: str, login: str | None) -> str:
    """Where a client logged in as `login` sends commands to the bed at `prefix`.

    `<prefix>/cmd/<login>`, the one command topic the shipped ACL lets that login write;
    without a login (a broker without passwords) the bare `<prefix>/cmd`.
    """
    return f"{prefix}/cmd" if not login else f"{prefix}/cmd/{login}"


def principal_of(prefix: str, topic: str) -> tuple[bool, str | None]:
    """(is this a command topic, its principal) for `topic` under the bed's `prefix`.

    `<prefix>/cmd` is a command without a principal; `<prefix>/cmd/<login>` one from `login`;
    `<prefix>/cmd/result` is the bed's own answer, no command.
    """
    base = f"{prefix}/cmd"
    if topic == base:
        return True, None
    login = topic.removeprefix(f"{base}/")
    if login == topic or "/" in login or login in {"", RESULT_LEVEL}:
        return False, None
    return True, login


def refusal(settings: CommandSettings, cmd: Command, principal: str | None) -> str | None:
    """Why `principal` may not give `cmd` under `settings`, or None if it may."""
    if not settings.principals:
        return None
    if principal is None:
        return (
            "not authenticated: this bed takes commands on …/cmd/<broker login> only "
            "([commands] principals)"
        )
    allowed = settings.principals.get(principal)
    if allowed is None:
        return f"{principal} may not command this bed"
    right = RIGHTS[cmd.cmd]
    if right not in allowed.may:
        return f"{principal} may not {right.replace('_', ' ')} ({cmd.cmd})"
    if cmd.user != principal and not allowed.speaks_for_others:
        return f"{principal} may not act for user {cmd.user!r}: send as {principal}"
    return None
