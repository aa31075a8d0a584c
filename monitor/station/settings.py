"""The station's configuration: a TOML file with `[station]`, `[[users]]` and optionally `[broker]`.

```toml
[station]
listen = "0.0.0.0:8080"                 # or --listen HOST:PORT
ward = "w1"                             # default: every ward on the broker
database = "/var/lib/vigil/station.sqlite"
origins = ["https://station.ward1.example"]   # pages allowed to open the WebSocket
secure_cookies = true                   # false only on a loopback test set-up without TLS
[[users]]
name = "anna"
role = "nurse"                          # nurse, clinician or viewer
password_hash = "$argon2id$v=19$..."    # `vigil station --hash-password`
[broker]                                # credentials and TLS for the ward broker, as a bed's
username = "station"
```
Relative paths are relative to the file's folder. Every problem is reported with the file, the
dotted key and the reason (`kernel.configfile.ConfigError`). What each role may do is in
docs/station.md "Roles".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from kernel.configfile import load_ward_process_config
from kernel.settings import BrokerSettings, Number, TopicPrefix
from monitor.metrics import listen_address
from monitor.wire import TOPIC_ROOT

__all__ = ["ROLES", "Role", "StationConfig", "StationSettings", "User", "load_station_config"]

Role = Literal["nurse", "clinician", "viewer"]
ROLES: tuple[Role, ...] = ("nurse", "clinician", "viewer")
_ID = r"^[A-Za-z0-9_-]{1,64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class User(_Model):
    """One person who may log in; the name goes on every command they send."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    role: Role
    password_hash: Annotated[str, Field(pattern=r"^\$argon2(id|i|d)\$")] = Field(
        description="an argon2 hash (argon2-cffi's format); `vigil station --hash-password`"
    )
    full_name: str | None = Field(default=None, max_length=100)


class StationSettings(_Model):
    """The `[station]` section."""

    listen: Annotated[str, AfterValidator(listen_address)] = Field(
        default="127.0.0.1:8080", description="HOST:PORT; --listen overrides"
    )
    ward: Annotated[str, Field(pattern=_ID)] | None = None
    prefix: TopicPrefix = Field(default=TOPIC_ROOT, description="first topic level of the beds")
    database: Path = Path("/var/lib/vigil/station.sqlite")
    origins: list[str] = Field(
        default_factory=list,
        description="origins (scheme://host:port) allowed to log in and open the WebSocket; "
        "the station's own address is always allowed",
    )
    secure_cookies: bool = True
    session_hours: Number = Field(default=12.0, gt=0, le=24 * 7)
    keep_days: Number = Field(default=30.0, gt=0, description="history kept in the database")
    stale_factor: Number = Field(
        default=3.0, ge=1.0, description="a value older than this many expected intervals is stale"
    )
    connect_timeout_s: Number = Field(default=10.0, gt=0)
    retry_base_s: Number = Field(default=0.5, gt=0)
    retry_max_s: Number = Field(default=10.0, gt=0)

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin like https://host:port")
        return v


class StationConfig(_Model):
    """The whole station file."""

    station: StationSettings = StationSettings()
    users: list[User] = Field(default_factory=list)
    broker: BrokerSettings = BrokerSettings()

    @model_validator(mode="after")
    def _unique_users(self) -> StationConfig:
        names = [u.name for u in self.users]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"users named more than once: {', '.join(twice)}")
        return self

    def user(self, name: str) -> User | None:
        """The user called `name`, if any."""
        return next((u for u in self.users if u.name == name), None)


def load_station_config(
    path: Path | None,
    *,
    listen: str | None = None,
    broker_url: str | None = None,
    environ: dict[str, str] | None = None,
) -> StationConfig:
    """Read and validate the station file (None: defaults); `listen`, `broker_url` override it.

    The broker password comes from `VIGIL_BROKER__PASSWORD`, as a bed's does.

    Raises:
        ConfigError: every located problem.
    """
    return load_ward_process_config(
        StationConfig,
        path,
        own="station",
        overrides={"listen": listen},
        relative=("database",),
        broker_url=broker_url,
        environ=environ,
    )
