"""Reading TOML files into pydantic models with located errors (file, dotted key, reason)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "ConfigProblem", "problems_from", "read_toml"]

_M = TypeVar("_M", bound=BaseModel)


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


def load_ward_process_config(
    model: type[_M],
    path: Path | None,
    *,
    own: str,
    overrides: Mapping[str, str | None],
    relative: Sequence[str],
    broker_url: str | None,
    environ: Mapping[str, str] | None,
) -> _M:
    """The validated config of a ward-level process (the station, the HL7 gateway).

    Shared by both: top-level sections other than `model`'s fields refused with their names;
    the command line's `overrides` that are not None put into the process's own section `own`;
    its `relative` paths (dotted below `own`) taken relative to the file; `--broker` and
    `VIGIL_BROKER__PASSWORD` (from `environ`, default `os.environ`) put into `[broker]`.

    Raises:
        ConfigError: every located problem.
    """
    data: dict[str, Any] = {} if path is None else read_toml(path)
    file = "(command line)" if path is None else str(path)
    extra = set(data) - set(model.model_fields)
    if extra:
        raise ConfigError(
            [ConfigProblem(file=file, key=k, reason="unknown section") for k in sorted(extra)]
        )
    section = data.setdefault(own, {})
    if isinstance(section, dict):
        section.update({k: v for k, v in overrides.items() if v is not None})
        for dotted in relative:
            *tables, key = dotted.split(".")
            table: Any = section
            for name in tables:
                table = table.get(name) if isinstance(table, dict) else None
            if isinstance(table, dict):
                beside(path, table, key)
    broker = data.setdefault("broker", {})
    environ = os.environ if environ is None else environ
    if isinstance(broker, dict):
        if broker_url is not None:
            broker["url"] = broker_url
        if environ.get("VIGIL_BROKER__PASSWORD"):
            broker["password"] = environ["VIGIL_BROKER__PASSWORD"]
    config: _M = validate(model, data, file=file)
    return config


def beside(path: Path | None, table: dict[str, Any], key: str) -> None:
    """A relative file path at `table[key]` is taken relative to the config file `path`."""
    value = table.get(key)
    if path is not None and isinstance(value, str) and not Path(value).is_absolute():
        table[key] = str(path.parent / value)
