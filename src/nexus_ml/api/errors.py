"""One error shape for every 4xx/5xx: ``{"detail": str, "field": str | null}``.

Messages name the offending field, never its value: request bodies hold patient
features, and an error echoed into a log or a client-side report must not leak them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("nexus_ml.api")


class ErrorResponse(BaseModel):
    """Body of every error response."""

    detail: str
    field: str | None = None


class ApiError(Exception):
    """An error with a status, a message and the field it concerns."""

    def __init__(self, status_code: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.field = field


def error_response(status_code: int, detail: str, field: str | None = None, headers=None):
    """A JSONResponse in the shared error shape."""
    return JSONResponse(
        {"detail": detail, "field": field}, status_code=status_code, headers=headers
    )


def _loc_to_field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI, count_error) -> None:
    """Register handlers; ``count_error(component, error_type)`` feeds ml_errors_total."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status_code >= 500:
            count_error("api", type(exc).__name__)
        return error_response(exc.status_code, exc.detail, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _loc_to_field(first.get("loc", ()))
        # pydantic's msg describes the rule broken, not the input; 'input' is dropped.
        return error_response(422, f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Counted by MetricsMiddleware, which sees the exception first (this handler
        # runs in Starlette's outermost ServerErrorMiddleware).
        log.error("unhandled error", extra={"error_type": type(exc).__name__})
        return error_response(500, "internal error")
