"""One error shape for every 4xx/5xx: ``{"detail": str, "field": str | null}``.

A 422 for a request that breaks several rules adds ``"problems": [{"field", "detail"}, ...]``,
every problem found (``detail`` and ``field`` are the first one's).

Messages name the offending field, never its value: request bodies hold patient
features, and an error echoed into a log or a client-side report must not leak them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_core.core_schema import ErrorType
from starlette.exceptions import HTTPException as StarletteHTTPException

from nexus_ml.api.request_id import HEADER, request_id_of
from nexus_ml.ml.schema import MAX_PROBLEMS
from nexus_ml.service.errors import (
    Conflict,
    Failed,
    Invalid,
    NotFound,
    ServiceError,
    Unavailable,
    echoes,
)

log = logging.getLogger("nexus_ml.api")


class ProblemDetail(BaseModel):
    """One problem of a refused request: the field and the rule broken (never the value)."""

    field: str
    detail: str


class ErrorResponse(BaseModel):
    """Body of every error response."""

    detail: str
    field: str | None = None
    problems: list[ProblemDetail] | None = Field(
        default=None, description="Every problem found (422 of a request's values only)."
    )


class ApiError(Exception):
    """An error with a status, a message and the field it concerns."""

    def __init__(self, status_code: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.field = field


# The one place a domain error becomes a status.
STATUS_OF: dict[type[ServiceError], int] = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Failed: 500,
    Unavailable: 503,
}


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a domain error (500 for a class not mapped)."""
    for cls, status in STATUS_OF.items():
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status_code: int,
    detail: str,
    field: str | None = None,
    headers=None,
    problems: list[dict[str, str]] | None = None,
):
    """A JSONResponse in the shared error shape."""
    body: dict[str, Any] = {"detail": detail, "field": field}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(body, status_code=status_code, headers=headers)


# pydantic error types whose message carries text that can come from the input: a
# validator's own message, a parser's error that quotes a character, a discriminator's
# value, an attribute name. Every other built-in type fills its template from the schema
# (limits, patterns, expected values) only. A type not known to pydantic-core is a custom
# error, free text as well.
_FREE_TEXT = frozenset(
    {
        "assertion_error",
        "datetime_object_invalid",
        "get_attribute_error",
        "iteration_error",
        "json_invalid",
        "mapping_type",
        "no_such_attribute",
        "union_tag_invalid",
        "uuid_parsing",
        "value_error",
    }
)
_TEMPLATED = frozenset(get_args(ErrorType)) - _FREE_TEXT
_FALLBACK = {"json_invalid": "not valid JSON"}
MAX_FIELD_CHARS = 64


def _loc_to_field(loc: Any) -> str:
    # A location can hold a client's own key (an extra field): bounded, like every name we echo.
    parts = [str(p)[:MAX_FIELD_CHARS] for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def rule_message(error: Mapping[str, Any]) -> str:
    """What rule a pydantic error says was broken, without the input that broke it.

    pydantic's message when its template holds only schema facts; otherwise (free text)
    the message only if no part of the input appears in it, else a fixed description.
    """
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    if kind in _TEMPLATED:
        return message
    if message and not echoes(message, error.get("input")):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return _FALLBACK.get(kind, "invalid value")


def install_error_handlers(app: FastAPI, count_error) -> None:
    """Register handlers; ``count_error(component, error_type)`` feeds ml_errors_total."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status_code >= 500:
            count_error("api", type(exc).__name__)
        return error_response(exc.status_code, exc.detail, exc.field)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            # Counted under the same label as before the domain errors existed.
            count_error("api", "ApiError")
        return error_response(
            status, exc.detail, exc.field, problems=getattr(exc, "problems", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors()) or [{"loc": (), "type": "", "msg": "invalid request"}]
        # 'input' and 'ctx' are dropped; the message states the rule, never the value.
        problems = []
        for error in errors[:MAX_PROBLEMS]:
            where = _loc_to_field(error.get("loc", ()))
            problems.append({"field": where, "detail": f"{where}: {rule_message(error)}"})
        first = problems[0]
        return error_response(422, first["detail"], first["field"], problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Counted by RequestMiddleware, which sees the exception first (this handler
        # runs in Starlette's outermost ServerErrorMiddleware).
        # Outside RequestMiddleware: the id comes from the request's state, not the context.
        rid = request_id_of(request.scope)
        log.error("unhandled error", extra={"error_type": type(exc).__name__, "request_id": rid})
        return error_response(500, "internal error", headers=None if rid is None else {HEADER: rid})
