"""Structured logs on request (``JOURNEYFLOW_LOG_FORMAT=json``): one JSON
object per line on standard output, with the ids an operator greps for.

Each line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, the record's fields among :data:`IDS` when the code logged
them (``topic``, ``partition``, ``offset``, ``records``, ...), and ``exc``
(the traceback) when there is one. The text format stays Faust's default.
Log lines never hold a raw phone number: identifiers are hashed at ingest,
before anything could log them (``tests/integration/test_privacy.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

#: Fields of a log record written as keys of their own when set (``extra=``):
#: where the consumer's lines point (``where``), and a failed batch's size.
IDS = ("topic", "partition", "offset", "records", "partitions")


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON.

    >>> record = logging.LogRecord("streams.transport", logging.WARNING, "f.py", 1,
    ...     "%s: records %d..%d are gone", ("t-3", 5, 9), None)
    >>> record.topic, record.partition = "t", 3
    >>> line = orjson.loads(JsonFormatter().format(record))
    >>> line["level"], line["logger"], line["message"], line["topic"], line["partition"]
    ('warning', 'streams.transport', 't-3: records 5..9 are gone', 't', 3)
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in IDS:
            value = fields.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any] | None:
    """The ``logging.config.dictConfig`` the worker starts with: None keeps
    Faust's own (text) setup; ``json`` writes :class:`JsonFormatter` lines to
    standard output."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def where(tp: Any, offset: int | None = None) -> dict[str, Any]:
    """``extra=`` for a log line about a topic partition (and an offset)."""
    return {"topic": tp.topic, "partition": tp.partition, "offset": offset}
