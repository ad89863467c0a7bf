"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from nexus_ml.api.errors import ApiError, ErrorResponse
from nexus_ml.api.state import Nexus


async def get_nexus(request: Request) -> Nexus:
    """The running service's parts (async: a sync dependency costs a thread hop)."""
    nexus: Nexus = request.app.state.nexus
    return nexus


NexusDep = Annotated[Nexus, Depends(get_nexus)]


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/merge-patch+json``."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """415 for a request whose body is not declared as JSON (a request without a body passes).

    Every route that takes a body takes JSON, and says so the same way: the hot path that
    parses its own body and the routes FastAPI parses alike.
    """
    headers = request.headers
    has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
    if has_body and not is_json_media_type(headers.get("content-type", "")):
        raise ApiError(
            415, "Content-Type must be application/json for a request body", "content-type"
        )


# After the key in a route's parameters, so a caller without a key learns only that (401).
JsonBody = Annotated[None, Depends(require_json_body)]
JSON_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    415: {"model": ErrorResponse, "description": "The body is not declared as application/json"},
}
