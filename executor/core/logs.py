"""How dagyo's processes log: human lines by default, one JSON object a line on request.

``DAGYO_LOG_FORMAT=json`` makes the scheduler and executors write each record as JSON with
``time``, ``level``, ``logger``, ``message`` and, where they apply, ``flow``, ``node``,
``progdef``, ``executor`` and ``job`` (set through ``extra=`` or a job's logger), plus
``traceback`` for an exception. Log shippers (Loki, Elasticsearch, Cloud Logging) read it
as is.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from executor.core.errors import DagyoError

ENV_LOG_FORMAT = "DAGYO_LOG_FORMAT"
FORMATS = ("human", "json")
HUMAN_FORMAT = "%(asctime)s %(name)s %(message)s"
#: The context fields a record may carry, in the order they are written.
CONTEXT_FIELDS = ("flow", "node", "progdef", "executor", "job")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, context."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                data[name] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """``human`` or ``json``, from ``DAGYO_LOG_FORMAT``.

    Raises:
        DagyoError: for another value, naming the variable and the choices.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_LOG_FORMAT, "").strip().lower() or "human"
    if value not in FORMATS:
        raise DagyoError(f"{ENV_LOG_FORMAT}={value!r}: use human or json")
    return value


def configure_logging(
    environ: Mapping[str, str] | None = None, *, level: int = logging.INFO
) -> None:
    """Send the process's log records to stderr in the format ``DAGYO_LOG_FORMAT`` asks.

    Raises:
        DagyoError: for an unknown format.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format(environ) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
