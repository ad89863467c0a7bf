"""Domain errors become statuses in one place (api/errors.py), in the shared error shape."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from nexus_ml.api.errors import STATUS_OF, install_error_handlers, status_of
from nexus_ml.service import errors


class _Unmapped(errors.ServiceError):
    """A domain error nobody mapped yet."""


CASES = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Invalid, 422),
    (errors.Failed, 500),
    (errors.Unavailable, 503),
    (_Unmapped, 500),
]


def test_every_domain_error_is_mapped() -> None:
    mapped = set(STATUS_OF)
    declared = {
        c
        for c in vars(errors).values()
        if isinstance(c, type)
        and issubclass(c, errors.ServiceError)
        and c is not errors.ServiceError
    }
    assert declared == mapped


@pytest.mark.parametrize(("cls", "status"), CASES)
def test_a_domain_error_answers_its_status_with_field(
    cls: type[errors.ServiceError], status: int
) -> None:
    counted: list[tuple[str, str]] = []
    app = FastAPI()
    install_error_handlers(app, lambda c, e: counted.append((c, e)))

    @app.get("/boom")
    async def boom() -> None:
        raise cls("what went wrong", "some_field")

    assert status_of(cls("x")) == status
    with TestClient(app) as client:
        r = client.get("/boom")
    assert r.status_code == status
    assert r.json() == {"detail": "what went wrong", "field": "some_field"}
    # 5xx answers are errors of the service; refusals of the request are not.
    assert counted == ([("api", "ApiError")] if status >= 500 else [])
