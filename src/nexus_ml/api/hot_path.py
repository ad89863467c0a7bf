"""The prediction hot path: ``POST /api/v1/models/{name}/predict`` without FastAPI's
per-request dependency solving.

Why: profiled in process (docs/benchmarks.md, "A leaner request"), FastAPI spent most of a
prediction's CPU time resolving the route's dependencies (``solve_dependencies``: the key,
its two documented security schemes, the JSON check, the serving part) and walking its
route tree, against a few tens of µs for the prediction itself.

How it stays the same route: the declaration in ``routes/predictions.py`` is untouched and
remains what OpenAPI documents (and what answers when the hot path is off). ``HotRoute`` is a
plain Starlette route with that declaration's full path template, put in front of the app's
routes, matching only the declared methods (any other method falls through to the declared
route, whose 405 it keeps), and it reports itself as the declared route in
``scope["route"]``, so the metrics label it with the same template. Its endpoint does the
declaration's steps in the order FastAPI resolves them — the key (401/403), the JSON content
type (415), the model (404), the body (400, 413 from the limits, 422) — with the very same
functions, and raises the same exceptions, which the app's exception handlers turn into the
same bodies. ``tests/api/test_hot_path.py`` compares both routes answer by answer.

A shorter stack (``HotApp``): a request the hot routes answer passes, besides them, through
every layer of the app's stack that does something for it — Starlette's
``ServerErrorMiddleware`` (the 500 body, with the app's handler), the user middleware
(``RequestMiddleware``, CORS when configured), Starlette's ``ExceptionMiddleware`` (the app's
handlers turn the same exceptions into the same bodies) — built once from the same classes
and arguments as the app's stack, without those that do nothing for it: FastAPI's
telemetry layer (telemetry is off), its body-limit layer (no ``max_body_size``: the limits are
``RequestMiddleware``'s), its exit stack (nothing to close) and the router's walk (the route
is matched once, at the end, exactly as the router would; ``scope["router"]`` is the app's).
Over HTTP those layers were ≈ 10 % of a prediction's worker CPU (issue 16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nexus_ml.api.auth import KeyStore, check_key, key_of
from nexus_ml.api.deps import check_json_body
from nexus_ml.api.request_id import request_id_of
from nexus_ml.api.routes import predictions
from nexus_ml.api.routes.predictions import prediction_answer
from nexus_ml.service.serving import Serving

__all__ = ["HotApp", "HotRoute", "PredictEndpoint", "hot_routes"]

# The request headers the endpoint reads, as ASGI gives them (lower-case bytes).
_WANTED = frozenset(
    {b"authorization", b"x-api-key", b"content-type", b"content-length", b"transfer-encoding"}
)
_JSON_HEADERS = [(b"content-type", b"application/json")]


class HotRoute(Route):
    """A route answering for ``declared`` (same template, same methods) with an ASGI app."""

    def __init__(self, path: str, app: Callable[..., Any], declared: APIRoute) -> None:
        super().__init__(path, app, methods=sorted(declared.methods or ()), include_in_schema=False)
        self.declared = declared

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Full matches only: a wrong method is left to the declared route's 405."""
        match, child_scope = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        child_scope["route"] = self.declared  # what the metrics middleware labels by
        return match, child_scope


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The wanted headers, first occurrence of each (as Starlette's ``Headers.get``)."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _body(receive: Receive) -> bytes:
    """The whole request body (as Starlette's ``Request.body``, without a Request)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class PredictEndpoint:
    """ASGI endpoint of the hot path, over the parts it uses."""

    def __init__(self, serving: Serving, keys: KeyStore) -> None:
        self.serving = serving
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope["headers"])
        check_key(
            self.keys, key_of(headers.get(b"authorization"), headers.get(b"x-api-key")), "predict"
        )
        check_json_body(
            headers.get(b"content-type", ""),
            b"transfer-encoding" in headers or headers.get(b"content-length", "0") != "0",
        )
        loaded = self.serving.model(scope["path_params"]["name"])
        body = await _body(receive)
        content = prediction_answer(self.serving, loaded, body, request_id_of(scope))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                # Starlette's Response sends these two, in this order.
                "headers": [(b"content-length", str(len(content)).encode()), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": content})


def hot_routes(prefix: str, serving: Serving, keys: KeyStore) -> list[HotRoute]:
    """The hot routes for the routers included under ``prefix``, to put before them."""
    declared = _declared(predictions.router, predictions.predict)
    return [HotRoute(prefix + declared.path, PredictEndpoint(serving, keys), declared)]


def _declared(router: APIRouter, endpoint: Callable[..., Any]) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route declares {endpoint.__name__}")  # pragma: no cover


class _Routed:
    """The innermost layer of the short stack: what the router does for a hot route."""

    def __init__(self, route: HotRoute, router: Any) -> None:
        self.route = route
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "router" not in scope:
            scope["router"] = self.router
        _, child_scope = self.route.matches(scope)
        scope.update(child_scope)
        await self.route.handle(scope, receive, send)


class HotApp(FastAPI):
    """FastAPI whose hot routes (set ``hot``) are answered through a shorter stack."""

    hot: tuple[HotRoute, ...] = ()
    _hot_stacks: dict[int, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # root_path set on the app (FastAPI writes it into the scope): the usual way.
        if scope["type"] == "http" and self.hot and not self.root_path:
            for route in self.hot:
                methods = route.methods or ()
                if scope["method"] in methods and route.matches(scope)[0] is Match.FULL:
                    scope["app"] = self  # as Starlette.__call__
                    await self._hot_stack(route)(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    def _hot_stack(self, route: HotRoute) -> ASGIApp:
        stacks = self._hot_stacks
        if stacks is None:
            stacks = self._hot_stacks = {}
        stack = stacks.get(id(route))
        if stack is None:
            stack = stacks[id(route)] = self._build_hot_stack(route)
        return stack

    def _build_hot_stack(self, route: HotRoute) -> ASGIApp:
        # The layers of FastAPI.build_middleware_stack that act on this route, built the same way.
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        app: ASGIApp = ExceptionMiddleware(
            _Routed(route, self.router), handlers=handlers, debug=self.debug
        )
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, handler=error_handler, debug=self.debug)
