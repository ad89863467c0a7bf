"""Request limits enforced by the application (pure ASGI): URL, headers, body size and time.

The service's one middleware (``api/middleware.py``, ``RequestMiddleware``) enforces them with
the functions here, and every refusal a limit makes is answered in the service's one error
shape (``{"detail", "field"}``) with the status the client gets:

* 414 for a request target (path and query) over ``max_url_bytes``;
* 431 for more than ``max_header_count`` header fields, or a request line and headers over
  ``max_header_bytes``;
* 413 for a body announced (``Content-Length``) or streamed (chunked) over ``max_body_bytes``,
  before the rest of it is read;
* 408 for a body not received in full within ``body_timeout`` seconds.

The same middleware records the request metrics, so each refusal is recorded as the status
the client was told. No refusal travels as an exception past the metrics (Starlette's and
FastAPI's own body limit did: its ``_RequestBodyLimitResponseSent`` left a plain-text 413 on
the wire and a 500 plus an ``ml_errors_total`` entry in the metrics). A refusal raised while
the application reads the body is a ``Refused`` (an ``HTTPException``, which FastAPI's body
parsing passes on untouched), answered by the shared HTTP error handler; one that reaches
the middleware unanswered is answered by ``RefusalApp``.

The server bounds what reaches the application in the first place (``api/edge.py``: the size
of a request head as it arrives, and the time to receive it); these checks hold under any
ASGI server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException

from nexus_ml.config import Settings

# Bytes a header line adds to its name and value: ": " and CRLF.
_LINE_OVERHEAD = 4
# Bytes of a request line besides method and target: two spaces, "HTTP/1.1", CRLF.
_REQUEST_LINE_OVERHEAD = 12


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestLimits:
    """The limits a request must stay within, from the settings (the server's edge uses the
    head's size and time, this module's middleware the rest)."""

    max_url_bytes: int
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    max_body_bytes: int
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            header_timeout=settings.header_timeout_seconds,
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout_seconds,
        )


def head_bytes(
    method: bytes | str, target_bytes: int, headers: Iterable[tuple[bytes, bytes]]
) -> int:
    """Size of a request line and its header lines as sent (the final blank line excluded)."""
    size = len(method) + target_bytes + _REQUEST_LINE_OVERHEAD
    for name, value in headers:
        size += len(name) + len(value) + _LINE_OVERHEAD
    return size


class Refused(HTTPException):
    """A limit refused the request; the connection is closed after the answer."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail, headers={"Connection": "close"})


# Where RequestMiddleware hands a refusal to the app that answers it (RefusalApp, maybe
# behind CORS).
REFUSED_SCOPE_KEY = "nexus.refused"


def refusal_of_head(limits: RequestLimits, scope: MutableMapping[str, Any]) -> Refused | None:
    """The refusal the request line and headers call for (414, 431, 413 announced), if any."""
    query = scope.get("query_string", b"")
    target = len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
    if target > limits.max_url_bytes:
        return Refused(414, f"request URL exceeds the limit of {limits.max_url_bytes} bytes")
    headers = scope["headers"]
    if len(headers) > limits.max_header_count:
        return Refused(
            431, f"request has more than the limit of {limits.max_header_count} header fields"
        )
    if head_bytes(scope["method"], target, headers) > limits.max_header_bytes:
        return Refused(431, f"request headers exceed the limit of {limits.max_header_bytes} bytes")
    for name, value in headers:
        if name == b"content-length":
            if value.isdigit() and int(value) > limits.max_body_bytes:
                return too_large(limits.max_body_bytes)
            break
    return None


def too_large(limit: int) -> Refused:
    """The 413 for a body over ``limit`` bytes."""
    return Refused(413, f"request body exceeds the limit of {limit} bytes")


class RefusalApp:
    """ASGI app answering the refusal ``RequestMiddleware`` put in the scope."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send_refusal(send, scope[REFUSED_SCOPE_KEY])


async def send_refusal(send: Any, refused: Refused) -> None:
    """Answer ``refused`` in the shared error shape and ask the server to close."""
    body = json.dumps({"detail": refused.detail, "field": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
