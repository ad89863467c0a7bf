"""The one pure-ASGI middleware of the service: request id, metrics and limits.

Metrics are count, duration and response size by ROUTE TEMPLATE. Add it with
``app.add_middleware(RequestMiddleware, metrics=metrics, limits=limits)``: it then sits
inside Starlette's ServerErrorMiddleware (so an unhandled exception reaches it
before the 500 page is sent) and outside ExceptionMiddleware (so HTTPExceptions
arrive as ordinary responses).

The template comes from the route the router matched, ``scope["route"]``. Since
FastAPI 0.13x ``include_router`` no longer flattens routes: ``scope["route"]`` is the
original ``APIRoute`` whose ``.path`` lacks the router prefixes (verified with
FastAPI 0.165 / Starlette 1.10). So the full template is looked up in a map built
once from the app's route tree (``fastapi.routing.iter_route_contexts``), keyed by
route object; a route object reachable under several templates falls back to
matching the path against those templates.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

# FastAPI >= 0.13x keeps included routers nested; this walks them with their prefixes (plain
# Starlette routes and mounts too). pyproject.toml pins a FastAPI that has it.
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_ml.api.limits import (
    REFUSED_SCOPE_KEY,
    RefusalApp,
    Refused,
    RequestLimits,
    refusal_of_head,
    too_large,
)
from nexus_ml.api.request_id import (
    REQUEST_ID_KEY,
    REQUEST_ID_STATE_KEY,
    current_request_id,
    request_id_from,
)
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.monitoring.request_tally import RequestTally

__all__ = ["OTHER_METHOD", "STANDARD_METHODS", "UNMATCHED", "RequestMiddleware", "route_templates"]

UNMATCHED = "<unmatched>"
OTHER_METHOD = "OTHER"
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_perf = time.perf_counter
_AMBIGUOUS = object()


def _contexts(routes: Sequence[Any]) -> Iterable[tuple[Any, str | None]]:
    """(route object as set in scope["route"], its full path template) for each route."""
    for ctx in iter_route_contexts(routes):
        yield ctx.original_route, ctx.path_format


def route_templates(routes: Sequence[Any], prefix: str = "") -> list[tuple[Any, str]]:
    """Every (route object, full template) of an app's route tree, mounts included."""
    out: list[tuple[Any, str]] = []
    for route, fmt in _contexts(routes):
        children = getattr(route, "routes", None)
        if fmt is None:  # Host and the like: no path of their own
            if children:
                out += route_templates(children, prefix)
            continue
        template = prefix + fmt
        out.append((route, template))
        # A Mount's format ends in "/{path}"; its inner router sets scope["route"]
        # to an inner route whose path is relative to the mount.
        if children and template.endswith("/{path}"):
            out += route_templates(children, template.removesuffix("/{path}"))
    return out


class _Templates:
    """Route object -> template, built from one router; paths matched only when ambiguous."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.by_id: dict[int, tuple[Any, Any]]  # set by rebuild()
        self.patterns: list[tuple[re.Pattern[str], str]]
        self.rebuild()

    def rebuild(self) -> None:
        by_id: dict[int, tuple[Any, Any]] = {}
        patterns = []
        for route, template in route_templates(self.router.routes):
            seen = by_id.get(id(route))
            if seen is not None and seen[1] != template:
                by_id[id(route)] = (route, _AMBIGUOUS)
            elif seen is None:
                by_id[id(route)] = (route, template)  # holding route keeps its id unique
            patterns.append((compile_path(template)[0], template))
        self.by_id, self.patterns = by_id, patterns

    def match(self, route_path: str) -> str:
        for regex, template in self.patterns:
            if regex.match(route_path):
                return template
        return UNMATCHED

    def resolve(self, route: Any, route_path: str) -> str:
        entry = self.by_id.get(id(route))
        if entry is None:
            self.rebuild()  # routes added after the first request
            entry = self.by_id.get(id(route))
            if entry is None:
                # e.g. FastAPI's internal wrapper around a non-API route: remember it
                # as ambiguous so we never rebuild for it again.
                self.by_id[id(route)] = entry = (route, _AMBIGUOUS)
        template = entry[1]
        if template is _AMBIGUOUS:
            return self.match(route_path)
        return str(template)


class RequestMiddleware:
    """The service's one middleware: request id, request metrics and request limits.

    Records ml_api_requests_total, ml_api_request_duration_seconds and ml_response_size_bytes
    (labelled by route template); gives the request its id (``api/request_id.py``: state, log
    context, response header); and, with ``limits``, refuses what is over them
    (``api/limits.py``: 414/431/413 from the head, 413/408 while the body is read). One layer
    instead of three (issue 16): one ``send`` wrapper and, with limits, one ``receive`` wrapper
    per request, and one timer for the body deadline instead of an ``asyncio.timeout_at`` per
    ``receive`` (docs/benchmarks.md, "A leaner request").

    ``refusals`` is the ASGI app that answers a refusal (``limits.RefusalApp``, or that app
    behind CORS when CORS is configured, so a refusal gets the CORS headers and a preflight
    the CORS answer, as when the limits sat inside the CORS layer).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limits: RequestLimits | None = None,
        refusals: ASGIApp | None = None,
        tally: RequestTally | None = None,
    ) -> None:
        self.app = app
        self._m = metrics
        # Per-minute counts for the in-process anomaly bands (monitoring/request_tally.py).
        self._tally = tally.add if tally is not None else None
        self.limits = limits
        self._refusals = refusals if refusals is not None else RefusalApp()
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._errors: dict[type, Any] = {}
        self._templates: _Templates | None = None

    def _template(self, scope: Scope, root_path: str) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED  # 404s and slash redirects: one label, whatever the path
        router = scope.get("router")
        if router is None:  # pragma: no cover - not behind a Starlette router
            return getattr(route, "path", None) or UNMATCHED
        templates = self._templates
        if templates is None or templates.router is not router:
            templates = self._templates = _Templates(router)
        path = scope["path"]
        route_path = path[len(root_path) :] if root_path and path.startswith(root_path) else path
        return templates.resolve(route, route_path)

    def _record(self, method: str, template: str, status: int, duration: float, size: int) -> None:
        key = (method, template, status)
        children = self._children.get(key)
        if children is None:
            m = self._m
            children = self._children[key] = (
                m.api_requests_total.labels(method, template, str(status)),
                m.api_request_duration_seconds.labels(method, template),
                m.response_size_bytes.labels(method, template),
            )
        children[0].inc()
        children[1].observe(duration)
        children[2].observe(size)
        if self._tally is not None:
            self._tally(status, duration)

    def _count_error(self, exc: BaseException) -> None:
        typ = type(exc)
        child = self._errors.get(typ)
        if child is None:
            child = self._errors[typ] = self._m.errors_total.labels("api", typ.__name__)
        child.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = _perf()
        root_path = scope.get("root_path", "")
        rid = request_id_from(scope["headers"])
        # The scope's state, not only the context variable: the 500 handler runs outside us.
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = rid
        id_header = (REQUEST_ID_KEY, rid.encode("ascii"))
        status = 0
        size = 0
        end = 0.0
        start_message: Message | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, size, end, start_message
            kind = message["type"]
            if kind == "http.response.body":
                size += len(message.get("body", b""))
                await send(message)
                if not message.get("more_body", False):
                    # The response is complete here; background tasks run after this
                    # and must not count as request time.
                    end = _perf()
                return
            if kind == "http.response.start":
                status = message["status"]
                # A copy: a response object may hand the same header list to every send.
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
                start_message = message
            elif kind == "http.response.pathsend":  # zero-copy file: no body chunks
                size = _content_length(start_message)
                await send(message)
                end = _perf()
                return
            await send(message)

        token = current_request_id.set(rid)
        failed = False
        body_limit: _BodyLimit | None = None
        try:
            limits = self.limits
            if limits is None:
                await self.app(scope, receive, send_wrapper)
            else:
                refused = refusal_of_head(limits, scope)
                if refused is not None:
                    await self._refuse(scope, receive, send_wrapper, refused)
                else:
                    body_limit = _BodyLimit(receive, limits)
                    try:
                        await self.app(scope, body_limit.receive, send_wrapper)
                    except Refused as refused_late:
                        if status != 0:  # too late to answer: the response is under way
                            raise
                        await self._refuse(scope, receive, send_wrapper, refused_late)
        except Exception as exc:
            failed = True
            self._count_error(exc)
            raise
        finally:
            if body_limit is not None:
                body_limit.close()
            current_request_id.reset(token)
            if end == 0.0:
                # Unfinished response: an exception (ServerErrorMiddleware outside us
                # will send the 500), or an app that never answered (the server will).
                end = _perf()
                if failed or status == 0:
                    status = 500
            # An exception after the response was complete (a background task) is
            # counted in errors_total above; the request keeps the status it was sent.
            method = scope["method"]
            if method not in STANDARD_METHODS:
                method = OTHER_METHOD
            self._record(method, self._template(scope, root_path), status, end - start, size)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, refused: Refused) -> None:
        await self._refusals({**scope, REFUSED_SCOPE_KEY: refused}, receive, send)


class _BodyLimit:
    """``receive`` within the body's size and time limits, for one request.

    The deadline (``body_timeout`` after the request arrived) is one timer, armed at the first
    ``receive`` and dropped once the body is complete: if it fires while the application waits
    in ``receive``, that wait is cancelled and becomes a 408 (what ``asyncio.timeout_at``
    around each ``receive`` did, without its per-call cost); if it fires between two reads,
    the next read is refused. After the body, ``receive`` only waits for a disconnect: no
    deadline.
    """

    __slots__ = ("_cancelling", "_deadline", "_done", "_expired", "_loop", "_receive",
                 "_received", "_task", "_timer", "_waiting", "limits")  # fmt: skip

    def __init__(self, receive: Receive, limits: RequestLimits) -> None:
        self._receive = receive
        self.limits = limits
        self._loop = loop = asyncio.get_running_loop()
        self._deadline = loop.time() + limits.body_timeout
        self._received = 0
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting = False
        self._expired = False
        self._cancelling = 0

    def _on_deadline(self) -> None:
        self._timer = None
        self._expired = True
        if self._waiting and self._task is not None:
            self._cancelling = self._task.cancelling()
            self._task.cancel()

    def close(self) -> None:
        """Drop the timer (the body is complete, or the request is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def receive(self) -> Message:
        if self._done:
            return await self._receive()
        if self._expired:
            raise Refused(408, "request body not received in time")
        if self._timer is None:
            self._task = asyncio.current_task()
            self._timer = self._loop.call_at(self._deadline, self._on_deadline)
        self._waiting = True
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            task = self._task
            if self._expired and task is not None and task.uncancel() <= self._cancelling:
                raise Refused(408, "request body not received in time") from None
            raise
        finally:
            self._waiting = False
        if message["type"] != "http.request":
            self._done = True
            self.close()
            return message
        self._received += len(message.get("body", b""))
        if self._received > self.limits.max_body_bytes:
            raise too_large(self.limits.max_body_bytes)
        if not message.get("more_body", False):
            self._done = True
            self.close()
        return message


def _content_length(start_message: Message | None) -> int:
    if start_message is None:
        return 0
    for name, value in start_message.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
