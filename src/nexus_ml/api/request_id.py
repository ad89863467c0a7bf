"""X-Request-ID: one opaque id per request, echoed on the response, logged and stored.

A client may send its own id to find its request again in our logs and records: it is honoured
only when it matches ``[A-Za-z0-9._:-]{1,64}``, a charset and length that cannot carry free
text, markup, log-line breaks or a name with spaces. Anything else is replaced by a fresh
uuid4 hex, silently: a bad id is not a reason to refuse a prediction, and the value sent is
never logged (it may be exactly what we refuse to store, e.g. a patient identifier with a
space). The id must stay opaque: docs/security.md says why it must never be a patient
identifier.

The service's one middleware (``api/middleware.py``, ``RequestMiddleware``) gives each request
its id before anything else it does, so the header is on every response, the limits'
refusals included; the 500 that
Starlette's outermost error middleware sends reads the id from the request's state
(``api/errors.py``), and the server's own refusals (``api/edge.py``) add one too.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from typing import Any

from starlette.types import Scope

__all__ = [
    "HEADER",
    "REQUEST_ID_KEY",
    "REQUEST_ID_STATE_KEY",
    "RequestIdFilter",
    "current_request_id",
    "new_request_id",
    "request_id_from",
    "request_id_of",
]

HEADER = "X-Request-ID"
REQUEST_ID_KEY = b"x-request-id"  # ASGI header names arrive lower-cased
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID_STATE_KEY = "request_id"

# The id of the request this code runs for (None outside a request): read by the log filter.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A fresh uuid4 as 32 hex digits (``uuid.uuid4().hex``, at a third of its cost)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def request_id_from(headers: Any) -> str:
    """The client's id from ASGI ``headers`` if acceptable (the first one sent), else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_KEY:
            if _ACCEPTED.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def request_id_of(scope: Scope) -> str | None:
    """The id ``RequestMiddleware`` gave this request (None outside it)."""
    state = scope.get("state")
    return None if state is None else state.get(REQUEST_ID_STATE_KEY)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            rid = current_request_id.get()
            if rid is not None:
                record.request_id = rid
        return True
