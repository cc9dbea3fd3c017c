"""Structured JSON logs: one object per line, for log pipelines and SIEMs.

Log messages in aisoar carry ids, counts and exception types, never prompt or
response text (detectors redact where they inspect; the pipeline logs a
detector's exception type, not its message). This formatter adds no fields
from the record beyond the standard ones, so nothing else can slip in - except
ECS ``labels`` (flat string key/values) a call passes on purpose with
``extra={"labels": {...}}``, e.g. the worker's start record.

>>> import json, logging
>>> record = logging.LogRecord("aisoar.test", logging.WARNING, __file__, 1, "dead-lettered %s", ("e1",), None)
>>> doc = json.loads(JsonFormatter().format(record))
>>> doc["log.level"], doc["log.logger"], doc["message"]
('warning', 'aisoar.test', 'dead-lettered e1')
>>> record.labels = {"id": "w1", "web": None}  # what extra={"labels": ...} sets
>>> json.loads(JsonFormatter().format(record))["labels"]
{'id': 'w1'}
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timezone

import msgspec

__all__ = ["JsonFormatter", "logging_config"]

_ENCODE = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    """ECS-flavoured JSON lines: ``@timestamp``, ``log.level``, ``log.logger``, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "@timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.pid": record.process,
        }
        labels = getattr(record, "labels", None)
        if isinstance(labels, dict):
            doc["labels"] = {str(key): str(value) for key, value in labels.items() if value is not None}
        if record.exc_info and record.exc_info[0] is not None:
            # The type and where it happened; exception messages can quote inspected data.
            doc["error.type"] = record.exc_info[0].__name__
            doc["error.stack_trace"] = "".join(
                f"{frame.filename}:{frame.lineno} in {frame.name}\n" for frame in traceback.extract_tb(record.exc_info[2]))
        return _ENCODE(doc).decode()


def logging_config(level: str = "INFO") -> dict[str, object]:
    """A ``dictConfig`` sending everything to stderr as JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
