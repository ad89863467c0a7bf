"""Structured logging: plain or JSON lines, with a fixed allowlist of extra fields.

Only the fields named in ``_SAFE_EXTRAS`` are ever emitted beside the message, so
a careless ``extra={"features": ...}`` cannot put patient data into a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from nexus_ml.api.request_id import RequestIdFilter

_SAFE_EXTRAS = (
    "model",
    "version",
    "endpoint",
    "method",
    "status",
    "error_type",
    "component",
    "count",
    "seconds",
    "run_id",
    "scope",
    "key_fingerprint",
    "alertname",
    "severity",
    "state",
    "feature",
    "segment",
    "class",
    "metric",
    "pending",
    "spilled",
    "operation",
    "workers",
    "url",
    "reason",
    # Opaque by construction (api/request_id.py): a client's id is kept only if it fits
    # [A-Za-z0-9._:-]{1,64}.
    "request_id",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and safe extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _SAFE_EXTRAS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages of library exceptions may quote input.
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


class PlainFormatter(logging.Formatter):
    """Human-readable line with the safe extras appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        extras = " ".join(f"{k}={record.__dict__[k]}" for k in _SAFE_EXTRAS if k in record.__dict__)
        if record.exc_info and record.exc_info[0] is not None:
            extras += f" exc_type={record.exc_info[0].__name__}"
        return f"{base} {extras}".rstrip()


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root and uvicorn loggers once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    # On the handler, not a logger: every line of a request carries its id, whoever logs it.
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Access logs carry full request lines (query strings may hold anything a
    # client sends); the metrics middleware already counts requests by template.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
