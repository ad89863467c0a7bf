"""Request-body limits in time and size (pure ASGI).

The streamed body *size* limit is FastAPI's own (``FastAPI(max_body_size=...)``,
which stops reading past the limit with 413). Two things it leaves out are done
here: a body announced larger than the limit by its ``Content-Length`` is refused
at once in the service's one error shape (FastAPI answers that case in plain
text), and a client trickling its body a byte at a time is cut off after a
deadline with 408, so slow clients cannot hold a request open indefinitely.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.exceptions import HTTPException


class BodyDeadlineMiddleware:
    """413 for a body announced over ``max_bytes``; 408 for one not received within ``timeout``."""

    def __init__(self, app: Any, timeout: float = 15.0, max_bytes: int | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_bytes is not None:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > self.max_bytes:
                        await _too_large(send, self.max_bytes)
                        return
                    break
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        body_done = False

        async def receive_by_deadline() -> dict[str, Any]:
            nonlocal body_done
            if body_done:
                # After the body, receive() only waits for a disconnect: no deadline.
                return await receive()
            try:
                # asyncio.timeout_at costs no task per call, unlike wait_for.
                async with asyncio.timeout_at(deadline):
                    message: dict[str, Any] = await receive()
            except TimeoutError:
                # An HTTPException passes FastAPI's body parsing untouched and
                # reaches the shared error handler as a 408.
                raise HTTPException(408, "request body not received in time") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, receive_by_deadline, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body exceeds the limit of {limit} bytes", "field": None}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
