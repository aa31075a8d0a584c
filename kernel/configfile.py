"""Reading TOML files into pydantic models with located errors (file, dotted key, reason)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "ConfigProblem", "problems_from", "read_toml"]


class ConfigProblem(BaseModel):
    """One located problem in a config file."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(Exception):
    """A configuration cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_toml(path: Path) -> dict[str, Any]:
    """Parse `path` as TOML, or raise `ConfigError` saying why not."""
    file = str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file=file, key="(file)", reason="no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(file=file, key="(file)", reason=str(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [ConfigProblem(file=file, key="(syntax)", reason=f"not valid TOML: {exc}")]
        ) from None


def _dotted(loc: tuple[int | str, ...], data: Any, tags: frozenset[str]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            continue
        # pydantic puts a discriminated union's tag, or a plain union's member type
        # ("literal['HRE']"), in the location; neither is a key
        if (item in tags and not (isinstance(node, dict) and item in node)) or (
            node is not None and not isinstance(node, dict)
        ):
            continue
        parts.append(item)
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def problems_from(
    exc: ValidationError, data: Any, *, file: str, tags: frozenset[str] = frozenset()
) -> list[ConfigProblem]:
    """Turn pydantic's errors into located, readable problems.

    `tags` are the discriminator values of tagged unions, left out of key paths.
    """
    problems: list[ConfigProblem] = []
    for err in exc.errors():
        reason = err["msg"].removeprefix("Value error, ")
        key = _dotted(err["loc"], data, tags)
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            ctx = err.get("ctx", {})
            key = f"{key}.{ctx.get('discriminator', 'kind').strip(chr(39))}"
            if err["type"] == "union_tag_invalid":
                reason = f"{ctx.get('tag')!r} does not exist (known: {', '.join(sorted(tags))})"
            else:
                reason = "missing key"
        same = next((p for p in problems if p.key == key), None)
        if same is None:
            problems.append(ConfigProblem(file=file, key=key, reason=reason))
        elif reason not in same.reason:
            # every member of a union failed: one problem, each way it could have been right
            same.reason = f"{same.reason}, or {reason}"
    return problems


def validate(
    model: type[BaseModel], data: Any, *, file: str, tags: frozenset[str] = frozenset()
) -> Any:
    """`model.model_validate(data)`, raising `ConfigError` with every located problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, data, file=file, tags=tags)) from None


def read_ward_process_config(
    path: Path | None,
    *,
    sections: frozenset[str],
    own: str,
    broker_url: str | None,
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """The raw config of a ward-level process (the station, the HL7 gateway), before validation.

    Shared by both: unknown top-level sections refused with their names, `--broker` and
    `VIGIL_BROKER__PASSWORD` put into `[broker]`. Returns the data, the file name errors name,
    and the process's own section (None when it is not a table: validation says so).
    """
    data: dict[str, Any] = {} if path is None else read_toml(path)
    file = "(command line)" if path is None else str(path)
    extra = set(data) - sections
    if extra:
        raise ConfigError(
            [ConfigProblem(file=file, key=k, reason="unknown section") for k in sorted(extra)]
        )
    section = data.setdefault(own, {})
    broker = data.setdefault("broker", {})
    if isinstance(broker, dict):
        if broker_url is not None:
            broker["url"] = broker_url
        if environ.get("VIGIL_BROKER__PASSWORD"):
            broker["password"] = environ["VIGIL_BROKER__PASSWORD"]
    return data, file, section if isinstance(section, dict) else None


def beside(path: Path | None, table: dict[str, Any], key: str) -> None:
    """A relative file path at `table[key]` is taken relative to the config file `path`."""
    value = table.get(key)
    if path is not None and isinstance(value, str) and not Path(value).is_absolute():
        table[key] = str(path.parent / value)
