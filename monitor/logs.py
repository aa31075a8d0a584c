"""One structured line per log record on stdout, which journald picks up (issue: operations).

Lines look like `2026-11-27T05:00:00.123+00:00 level=info logger=vigil.ward event=... k=v`.
Secrets never reach a log line: settings hold passwords as `SecretStr`, which prints as stars.
"""

from __future__ import annotations

import logging
import sys

from kernel.vocabulary import iso8601

__all__ = ["setup_logging"]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso8601(record.created)} level={record.levelname.lower()} logger={record.name} "
        line += record.getMessage()
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
