"""Slow-client protection (pure ASGI).

The body *size* limit is FastAPI's own (``FastAPI(max_body_size=...)``, which
refuses a declared or streamed body past the limit with 413 before reading it
whole). What it does not bound is time: a client trickling its body a byte at a
time would hold its request open indefinitely. This middleware gives the whole
body a deadline and answers 408 when it passes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException


class BodyDeadlineMiddleware:
    """Answer 408 when a request body is not fully received within ``timeout`` seconds."""

    def __init__(self, app: Any, timeout: float = 15.0) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
