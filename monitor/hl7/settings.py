"""The gateway's configuration: a TOML file with an `[hl7]` section (and optionally `[broker]`).

```toml
[hl7]
to = "engine.hospital.example:2575"   # or --to HOST:PORT
ward = "w1"                           # default: every ward on the broker
interval_s = 60
facility = "CLINIC"
queue = "/var/lib/vigil/hl7-queue.sqlite"
[hl7.tls]                             # MLLP over TLS, where the site wants it
enabled = true
ca_file = "/etc/vigil/engine-ca.pem"
[broker]                              # credentials and TLS for the ward broker, as a bed's
username = "hl7"
```
Relative paths are relative to the file's folder. Every problem is reported with the file, the
dotted key and the reason (`kernel.configfile.ConfigError`).
"""

from __future__ import annotations

import re
import ssl
import sys
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kernel.configfile import ConfigError, ConfigProblem, load_ward_process_config
from kernel.settings import BrokerSettings, Number, TopicPrefix
from monitor.metrics import listen_address
from monitor.wire import TOPIC_ROOT

__all__ = [
    "GatewayConfig",
    "Hl7Settings",
    "MllpTls",
    "check_gateway_main",
    "load_gateway_config",
    "parse_destination",
]

_ID = r"^[A-Za-z0-9_-]{1,64}$"
# HL7 delimiters have no place in a name that goes into MSH-3/4/5/6 or PID-3.4
_NAME = r"^[^|^~\\&\r\n]{0,64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_destination(value: str) -> tuple[str, int]:
    """("host", port) of "HOST:PORT" (IPv6 as "[::1]:PORT").

    Raises:
        ValueError: not HOST:PORT with a port in 1-65535.
    """
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise ValueError(f"bad host in {value!r}")
    return host, int(port)


class MllpTls(_Model):
    """TLS around MLLP: off unless the site's interface engine listens with TLS."""

    enabled: bool = False
    ca_file: Path | None = Field(default=None, description="CA of the receiver's certificate")
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = None
    server_hostname: str | None = Field(
        default=None, description="name to check the certificate against (default: the host)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if files and not self.enabled:
            raise ValueError(f"{', '.join(files)} given, but enabled is false")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file without cert_file")
        return self

    def context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None when TLS is off."""
        if not self.enabled:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file or self.cert_file))
        return context


class Hl7Settings(_Model):
    """The `[hl7]` section: where to send, how often, who we are, how long to wait."""

    to: str | None = Field(default=None, description="receiver HOST:PORT; --to overrides")
    ward: Annotated[str, Field(pattern=_ID)] | None = Field(
        default=None, description="the ward whose beds are reported (default: every ward)"
    )
    prefix: TopicPrefix = Field(default=TOPIC_ROOT, description="first topic level of the beds")
    interval_s: Number = Field(default=60.0, gt=0, description="seconds between PCD-01 reports")
    application: Annotated[str, Field(pattern=_NAME, min_length=1)] = "VIGIL"
    facility: Annotated[str, Field(pattern=_NAME, min_length=1)] = "VIGIL"
    receiving_application: Annotated[str, Field(pattern=_NAME)] = ""
    receiving_facility: Annotated[str, Field(pattern=_NAME)] = ""
    processing_id: Literal["P", "T", "D"] = Field(
        default="P", description="MSH-11: production, training or debugging"
    )
    patient_class: Literal["I", "O", "E", "P", "R", "B", "N", "U"] = Field(
        default="O", description="PV1-2; an infusion clinic's patients are outpatients"
    )
    eui64: Annotated[str, Field(pattern=r"^[0-9A-F]{16}$")] | None = Field(
        default=None, description="the gateway's EUI-64 in MSH-3 (default: derived from ward)"
    )
    ack_timeout_s: Number = Field(
        default=5.0, gt=0, description="an ACK not in by then: the message is sent again"
    )
    connect_timeout_s: Number = Field(default=10.0, gt=0)
    retry_base_s: Number = Field(
        default=1.0, gt=0, description="first delay after a refusal (AE/AR) or a lost link"
    )
    retry_max_s: Number = Field(default=30.0, gt=0, description="cap of the jittered backoff")
    link_down_s: Number = Field(
        default=60.0,
        gt=0,
        description="HL7_LINK_DOWN on the ward once the oldest queued alarm is this old",
    )
    queue: Path = Path("/var/lib/vigil/hl7-queue.sqlite")
    metrics_listen: str | None = Field(
        default="127.0.0.1:9465", description="Prometheus endpoint; empty to turn it off"
    )
    tls: MllpTls = MllpTls()

    @field_validator("to")
    @classmethod
    def _check_to(cls, v: str | None) -> str | None:
        if v is not None:
            parse_destination(v)
        return v

    @field_validator("metrics_listen")
    @classmethod
    def _check_listen(cls, v: str | None) -> str | None:
        return listen_address(v) if v else None  # port 0: any free port


class GatewayConfig(_Model):
    """The whole gateway file."""

    hl7: Hl7Settings = Hl7Settings()
    broker: BrokerSettings = BrokerSettings()


def load_gateway_config(
    path: Path | None,
    *,
    to: str | None = None,
    broker_url: str | None = None,
    environ: dict[str, str] | None = None,
) -> GatewayConfig:
    """Read and validate the gateway file (None: defaults); `to` and `broker_url` override it.

    The broker password comes from `VIGIL_BROKER__PASSWORD`, as a bed's does, so it need not
    be in the file.

    Raises:
        ConfigError: every located problem.
    """
    return load_ward_process_config(
        GatewayConfig,
        path,
        own="hl7",
        overrides={"to": to},
        relative=("queue", "tls.ca_file", "tls.cert_file", "tls.key_file"),
        broker_url=broker_url,
        environ=environ,
    )


def check_gateway_main(path: Path) -> int:
    """`vigil check-config FILE` for a gateway file: every problem located; 0 if usable."""
    try:
        config = load_gateway_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)  # noqa: T201
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)  # noqa: T201
        return 1
    problems = []
    h = config.hl7
    for key in ("ca_file", "cert_file", "key_file"):
        file = getattr(h.tls, key)
        if file is not None and not file.exists():
            problems.append(
                ConfigProblem(file=str(path), key=f"hl7.tls.{key}", reason=f"{file}: no such file")
            )
    for p in problems:
        print(p, file=sys.stderr)  # noqa: T201
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)  # noqa: T201
        return 1
    to = h.to or "(--to needed)"
    print(  # noqa: T201
        f"{path}: ok (hl7 gateway to {to}, ward {h.ward or '*'}, every {h.interval_s:g} s)"
    )
    return 0
