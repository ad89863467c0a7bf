"""No error body echoes a value the client sent: it names the field and the rule.

pydantic's messages mostly state the rule (limits, patterns, expected values), but some carry
free text that can hold the input: a validator's own message, a parser error quoting a
character, a discriminator's value. ``api/errors.rule_message`` keeps the former and replaces
the latter when the input appears in it. The sweep sends marker values in every query
parameter and body of every operation the OpenAPI document lists, and in every threshold key.

One backend (SQLite): what an error message says does not depend on the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic_core import PydanticCustomError
from tests.helpers import auth
from tests.security._support import sqlite_app

from nexus_ml.api.errors import rule_message
from nexus_ml.thresholds import Thresholds

MARKERS = ("PATIENT7777", "Maria da Silva 1957", "7777.7777e1", "1957-03-04T05:06:07+25:00")


def _echoing(value: object) -> object:
    raise ValueError(f"{value!r} is not acceptable")


def _custom(value: object) -> object:
    raise PydanticCustomError("patient_rule", "patient {v} refused", {"v": value})


class _Cat(BaseModel):
    kind: Literal["cat"]


class _Dog(BaseModel):
    kind: Literal["dog"]


class _Probe(BaseModel):
    echoing: Annotated[str, AfterValidator(_echoing)] | None = None
    custom: Annotated[str, AfterValidator(_custom)] | None = None
    pet: Annotated[_Cat | _Dog, Field(discriminator="kind")] | None = None
    ident: uuid.UUID | None = None
    limited: Annotated[float, Field(le=10)] | None = None
    patterned: Annotated[str, Field(pattern=r"^[a-z]+$")] | None = None


def _error(**data: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        _Probe.model_validate(data)
    error: dict[str, Any] = info.value.errors()[0]
    return error


@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize(
    "make",
    [
        lambda m: {"echoing": m},  # value_error quoting the input
        lambda m: {"custom": m},  # a custom error type interpolating it
        lambda m: {"pet": {"kind": m}},  # union_tag_invalid: "Input tag '<m>' ..."
        lambda m: {"ident": m + "-not-a-uuid"},  # uuid_parsing quotes a character
        lambda m: {"limited": m},  # templated: float_parsing
        lambda m: {"patterned": m},  # templated: the pattern, not the input
    ],
)
def test_rule_message_never_carries_the_input(make: Any, marker: str) -> None:
    error = _error(**make(marker))
    message = rule_message(error)
    assert message, error
    assert marker not in message, (error["type"], message)
    assert "PATIENT" not in message and "Maria" not in message


def test_rule_message_keeps_rules_that_hold_no_input() -> None:
    assert rule_message(_error(limited=11)) == "Input should be less than or equal to 10"
    assert "pattern" in rule_message(_error(patterned="ABC"))
    # Free text that does not quote the input is kept (minus pydantic's prefix).
    kept = {"type": "value_error", "msg": "Value error, must be later", "input": "x" * 20}
    assert rule_message(kept) == "must be later"
    quoted = {"type": "value_error", "msg": "Value error, 'secret' is bad", "input": "secret"}
    assert rule_message(quoted) == "invalid value"
    nested = {"type": "custom", "msg": "bad 4242.5", "input": {"a": [1, 4242.5]}}
    assert rule_message(nested) == "invalid value"


# -- every operation, every parameter ---------------------------------------------------------


@pytest.fixture
def client(bundled_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    app: FastAPI = sqlite_app(bundled_models, tmp_path)
    with TestClient(app) as c:
        yield c


_PATH_VALUES = {"name": "diagnostic", "prediction_id": "0" * 32, "run_id": "0" * 32}


def _requests(openapi: dict[str, Any], marker: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, url, httpx kwargs) carrying ``marker`` as a value, one place at a time."""
    for template, item in openapi["paths"].items():
        url = template
        for name, value in _PATH_VALUES.items():
            url = url.replace("{" + name + "}", value)
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                if param["in"] == "query":
                    yield method, url, {"params": {param["name"]: marker}}
            if "requestBody" in operation:
                for body in ({"features": marker}, {"instances": [marker]}, {"actual": 1}):
                    yield method, url, {"json": body}
                yield method, url, {"json": {"seed": marker}}
                yield method, url, {"json": {"features": {"mean_radius": marker}}}
                yield method, url, {"json": {"actual": marker}}
                yield method, url, {"json": marker}


@pytest.mark.parametrize("marker", MARKERS)
def test_no_4xx_body_echoes_a_value(client: TestClient, marker: str) -> None:
    openapi = client.app.openapi()  # type: ignore[attr-defined]
    statuses: dict[int, int] = {}
    for method, url, kwargs in _requests(openapi, marker):
        r = client.request(method.upper(), url, headers=auth("admin"), **kwargs)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, url, kwargs, r.text)
        if r.status_code >= 400:
            assert marker not in r.text, (method, url, kwargs, r.text)
    assert statuses.get(422, 0) >= 20, statuses  # the sweep reached the validation paths


# Values no key accepts: text, and numbers beyond any limit ("inf" is checked for the
# key only: the word is part of "finite", the rule it breaks).
TEXT_MARKERS = tuple(m for m in MARKERS if m != "7777.7777e1")  # that one is a valid rate


@pytest.mark.parametrize("marker", [*TEXT_MARKERS, "inf", "-1e999", "Infinity", "NaN"])
def test_threshold_updates_name_the_key_never_the_value(client: TestClient, marker: str) -> None:
    url = "/api/v1/monitoring/config/thresholds"
    for key in Thresholds.model_fields:
        r = client.put(url, json={key: marker}, headers=auth("admin"))
        assert r.status_code == 422, (key, marker, r.text)
        body = r.json()
        assert body["field"] == key and body["detail"].startswith(key), body
        if marker in MARKERS:
            assert marker not in body["detail"], body
    stored = client.app.state.service.store.threshold_overrides()  # type: ignore[attr-defined]
    assert stored == {}  # nothing was written
