"""Pure-ASGI request metrics: count, duration and response size by ROUTE TEMPLATE.

Add it with ``app.add_middleware(MetricsMiddleware, metrics=metrics)``: it then sits
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

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

# FastAPI >= 0.13x keeps included routers nested; this walks them with their prefixes (plain
# Starlette routes and mounts too). pyproject.toml pins a FastAPI that has it.
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_ml.monitoring.metrics import Metrics

__all__ = ["OTHER_METHOD", "STANDARD_METHODS", "UNMATCHED", "MetricsMiddleware", "route_templates"]

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


class MetricsMiddleware:
    """Records ml_api_requests_total, ml_api_request_duration_seconds and ml_response_size_bytes."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._m = metrics
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
                start_message = message
            elif kind == "http.response.pathsend":  # zero-copy file: no body chunks
                size = _content_length(start_message)
                await send(message)
                end = _perf()
                return
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            failed = True
            self._count_error(exc)
            raise
        finally:
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
