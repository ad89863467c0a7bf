"""The HTTP server's edge: uvicorn's httptools protocol with a size and a time bound on the
request head.

uvicorn with httptools (what ``uvicorn[standard]`` selects) limits neither the request line
nor the headers, and gives a client all the time it wants to send them: one 60 MiB header
took 9 s to parse and was then answered 200; a 60 MiB URL stalled ``/health/live`` for 5 s;
200 connections trickling header lines stayed open indefinitely (figures in
docs/reliability.md). h11 bounds the head but answers plain text and has no deadline either.
This subclass adds, per connection:

* a **size** bound: once the head of a request (request line and headers) passes
  ``ML_MAX_HEADER_BYTES``, it answers 414 (when the URL alone is past ``ML_MAX_URL_BYTES``) or
  431 and closes, having parsed at most the limit plus one read (256 KiB);
* a **time** bound: a head not received in full within ``ML_HEADER_TIMEOUT_SECONDS`` of its
  first byte (or of the connection opening) gets 408 and the connection is closed; a
  connection that sent nothing is closed silently;
* the service's JSON error shape for these answers and for malformed requests (uvicorn's 400
  is plain text), with an ``X-Request-ID`` like every other answer.

Finer limits (URL length, header count) and everything about bodies are the application's
(``api/limits.py``), so they hold under any server and are counted in the request metrics.
Refusals made here happen before there is a request and are not counted there.

Run with ``uvicorn --http nexus_ml.api.edge:BoundedHttpToolsProtocol`` (``nexus-ml serve``
does). The limits come from the environment's settings, read once per process, like the app
``nexus_ml.api.asgi:app_from_env`` builds.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from nexus_ml.api.limits import RequestLimits, head_bytes
from nexus_ml.api.request_id import request_id_from
from nexus_ml.config import Settings

__all__ = ["PROTOCOL", "BoundedHttpToolsProtocol"]

PROTOCOL = "nexus_ml.api.edge:BoundedHttpToolsProtocol"


@functools.cache
def _limits_from_environment() -> RequestLimits:
    return RequestLimits.from_settings(Settings())


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that bounds the size of and the time to receive a request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits_from_environment()
        self._in_head = True  # between requests, or inside a request head
        self._head_number = 0  # which head of this connection _head_size counts
        self._head_size = 0  # bytes of the current head received so far
        self._head_started = False  # any byte of the current head received
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a whole head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: nothing more is parsed
        head_number = self._head_number
        if self._in_head:
            self._head_started = True
            if self._head_timer is None:
                self._arm()
        super().data_received(data)
        if self._refused or not self._in_head or self._head_number != head_number:
            # Body bytes, or the head completed in this read (on_headers_complete measured
            # it). A next head begun in the same read is counted from the next read on.
            return
        self._head_size += len(data)
        if self._head_size > self._limits.max_header_bytes:
            self._refuse_oversized(len(getattr(self, "url", b"")))

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None and not self._refused:
            self._arm()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._disarm()
        url = len(self.url)
        if head_bytes(self.parser.get_method(), url, self.headers) > self._limits.max_header_bytes:
            self._refuse_oversized(url)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True
        self._head_number += 1
        self._head_size = 0
        self._head_started = False

    def send_400_response(self, msg: str) -> None:
        """A malformed request: the shared JSON error shape instead of uvicorn's text."""
        self._refuse(400, "invalid HTTP request")

    # -- refusals ----------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head arriving while the previous response is under way: the
            # answer to that one must not be cut short. Look again later.
            self._arm()
        elif self._head_started:
            self._refuse(408, "request headers not received in time")
        else:
            self._refused = True
            self.transport.close()  # idle: nothing was asked, nothing to answer

    def _refuse_oversized(self, url_bytes: int) -> None:
        limits = self._limits
        if url_bytes > limits.max_url_bytes:
            self._refuse(414, f"request URL exceeds the limit of {limits.max_url_bytes} bytes")
        else:
            self._refuse(
                431, f"request headers exceed the limit of {limits.max_header_bytes} bytes"
            )

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` in the shared error shape, then close; parse nothing more."""
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is being written on this connection: an answer now would be
            # spliced into it. Ending the connection is all that is left.
            self.transport.close()
            return
        body = json.dumps({"detail": detail, "field": None}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        # The client's id when its header was parsed before the refusal and is acceptable.
        rid = request_id_from(self.headers or ())
        head += [
            b"x-request-id: %s\r\n" % rid.encode("ascii"),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
