"""One structured line per log record on stdout, which journald picks up (issue: operations).

Lines look like `2026-11-27T05:00:00.123+00:00 level=info logger=vigil.ward event=... k=v`.
A value that would not read back as one `k=v` field (a space, a quote, an `=`, nothing at all)
is written in double quotes with JSON escapes, `error="Connection refused"`, and a value logged
with `%r` always is, so every line splits into its fields the same way (logfmt, as journald's
readers and log shippers parse it). Secrets never reach a log line: settings hold passwords as
`SecretStr`, which prints as stars.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from kernel.vocabulary import iso8601

__all__ = ["quoted", "setup_logging"]


# A printf conversion of a log message: `%s`, `%r`, `%.1f`, `%%`...
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
_BARE = re.compile(r"[^\s\"'=\\]+")


def quoted(value: str) -> str:
    """`value` as one logfmt field value: as it is when it can be, else in JSON quotes."""
    return value if _BARE.fullmatch(value) else json.dumps(value)


def _message(record: logging.LogRecord) -> str:
    """`record.getMessage()`, with each `%s` and `%r` value quoted as `quoted` says."""
    args = record.args
    if not isinstance(args, tuple) or not args or not isinstance(record.msg, str):
        return record.getMessage()
    values = iter(args)
    parts: list[str] = []
    out_args: list[Any] = []
    last = 0
    for m in _CONVERSION.finditer(record.msg):
        parts.append(record.msg[last : m.start()])
        last = m.end()
        spec = m.group(0)
        if spec == "%%" or "(" in spec or "*" in spec:
            return record.getMessage()  # rare forms: left as logging formats them
        value = next(values, None)
        if spec[-1] == "s":
            parts.append("%s")
            out_args.append(quoted(str(value)))
        elif spec[-1] == "r":
            parts.append("%s")
            text = value if isinstance(value, str) else repr(value)
            out_args.append(json.dumps(text))
        else:
            parts.append(spec)
            out_args.append(value)
    parts.append(record.msg[last:])
    try:
        return "".join(parts) % tuple(out_args)
    except (TypeError, ValueError):
        return record.getMessage()


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso8601(record.created)} level={record.levelname.lower()} logger={record.name} "
        line += _message(record)
        if record.exc_info:
            line += " traceback=" + repr(self.formatException(record.exc_info))
        return line


def setup_logging(level: int = logging.INFO) -> None:
    """Send every `vigil.*` record to stdout, one line each."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("vigil")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
