"""One router per module; what they share."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute


def answer_head_like_get(router: APIRouter) -> None:
    """Let every GET route of ``router`` answer HEAD too (probes, scrapers and link checkers
    ask with it), without the body: the server drops it. Call after the routes are defined;
    the HEAD twins stay out of the OpenAPI document, which lists GET."""
    for route in list(router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()):
            router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_class=route.response_class,
            )
