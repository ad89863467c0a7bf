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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from nexus_ml.api.auth import KeyStore, check_key, key_of
from nexus_ml.api.deps import check_json_body
from nexus_ml.api.request_id import request_id_of
from nexus_ml.api.routes import predictions
from nexus_ml.api.routes.predictions import prediction_answer
from nexus_ml.service.serving import Serving

__all__ = ["HotRoute", "PredictEndpoint", "hot_routes"]

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
