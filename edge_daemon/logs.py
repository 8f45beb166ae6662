"""Logging for the edge daemon: one JSON object per line, or plain text for people.

:func:`setup` configures the root logger once at start.  Fields passed with ``extra=``
become keys of the JSON object (or ``key=value`` pairs in text), so a log shipper or
``jq`` can filter on them.

>>> import logging, sys
>>> setup("info", "json", stream=sys.stdout)
>>> logging.getLogger("edge.store").info("event stored", extra={"seq": 5, "code": 120})  # doctest: +ELLIPSIS
{"ts": "...Z", "level": "info", "logger": "edge.store", "msg": "event stored", "seq": 5, "code": 120}

The text format puts the same fields on one line::

    2024-05-01T08:30:00.123Z warning edge.link: link lost silent_s=3.2
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("json", "text")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601 UTC with milliseconds, e.g. ``2024-05-01T08:30:00.123Z``."""
    when = datetime.fromtimestamp(record.created, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the extras, and ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key not in entry:  # an extra never hides a standard key
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``<ts> <level> <logger>: <msg> key=value ...``, then the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def setup(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (default stderr) in ``fmt``.

    ``level`` is debug, info, warning or error; ``fmt`` is json or text (as in the config's
    ``[log]`` section).  Calling it again replaces the previous setup.  Raises ValueError
    for an unknown level or format.
    """
    if level not in LEVELS:
        raise ValueError(f"log.level: {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log.format: {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
