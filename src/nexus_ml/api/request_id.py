"""X-Request-ID: one opaque id per request, echoed on the response, logged and stored.

A client may send its own id to find its request again in our logs and records: it is honoured
only when it matches ``[A-Za-z0-9._:-]{1,64}``, a charset and length that cannot carry free
text, markup, log-line breaks or a name with spaces. Anything else is replaced by a fresh
uuid4 hex, silently: a bad id is not a reason to refuse a prediction, and the value sent is
never logged (it may be exactly what we refuse to store, e.g. a patient identifier with a
space). The id must stay opaque: docs/security.md says why it must never be a patient
identifier.

``RequestIdMiddleware`` is pure ASGI and sits outside every other middleware of ours, so the
header is on every response they make, the limits' refusals included; the 500 that
Starlette's outermost error middleware sends reads the id from the request's state
(``api/errors.py``), and the server's own refusals (``api/edge.py``) add one too.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HEADER",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "current_request_id",
    "request_id_from",
    "request_id_of",
]

HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"  # ASGI header names arrive lower-cased
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_STATE_KEY = "request_id"

# The id of the request this code runs for (None outside a request): read by the log filter.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id_from(headers: Any) -> str:
    """The client's id from ASGI ``headers`` if acceptable (the first one sent), else a new one."""
    for name, value in headers:
        if name == _HEADER_KEY:
            if _ACCEPTED.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str | None:
    """The id ``RequestIdMiddleware`` gave this request (None outside it)."""
    state = scope.get("state")
    return None if state is None else state.get(_STATE_KEY)


class RequestIdMiddleware:
    """Gives each HTTP request an id, puts it in the request's state, log lines and response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope["headers"])
        # The scope's state, not only the context variable: the 500 handler runs outside us.
        scope.setdefault("state", {})[_STATE_KEY] = rid
        header = (_HEADER_KEY, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A copy: a response object may hand the same header list to every send.
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = current_request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            rid = current_request_id.get()
            if rid is not None:
                record.request_id = rid
        return True
