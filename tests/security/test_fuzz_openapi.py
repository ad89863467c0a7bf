"""Property-based fuzzing of the whole OpenAPI surface with schemathesis.

Every test runs on SQLite and on PostgreSQL (the ``db_url`` fixture): input handling does
depend on the backend — PostgreSQL refuses a NUL byte in a string, which SQLite stores, so a
NUL in a path id was a 500 on PostgreSQL only. Every operation the OpenAPI document lists
gets generated valid and invalid requests with the admin key (so every route is reachable),
then valid requests with no key or a wrong one. Every answer must be a documented status
with a documented content type, conform to its schema, and never be a 5xx.

Operations are discovered from the schema at run time, so a new route is fuzzed without
editing this file. Cases are seeded (``derandomize``) so a failure reproduces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi as schemathesis_asgi
from tests.helpers import auth
from tests.security._support import sqlite_app

MODELS = ("diagnostic", "diabetes_risk")
TRAIN = "POST /api/v1/models/{name}/train"
BODY_OPERATIONS = (
    "POST /api/v1/models/{name}/predict",
    "POST /api/v1/predictions/{prediction_id}/feedback",
    TRAIN,
    "PUT /api/v1/monitoring/config/thresholds",
)
# 20 keyed operations x 50, the keyless pass and the feature-value pass: ~1,400 cases per
# backend, above the 1,000 the issue asks for, in about half a minute per backend (each case
# costs ~25-45 ms: generation, the in-process call, validation).
EXAMPLES_PER_OPERATION = 50
TRAIN_EXAMPLES = 12  # every accepted case starts a real training run; later ones get 409
KEYLESS_EXAMPLES = 10
MIN_TOTAL_CASES = 1000

# Documentation gaps the fuzzer found, tolerated one (operation, status) at a time with the
# reason, until the lead documents them; test_known_gaps_are_still_gaps fails once one is
# fixed, so the entry is removed and the check is back in full force.
# Statuses / content types a route may answer without documenting them, each
# with its reason. Empty: every answer the fuzzer met is documented.
UNDOCUMENTED_STATUS: dict[tuple[str, int], str] = {}
UNDOCUMENTED_CONTENT_TYPE: dict[tuple[str, str], str] = {}
CASES: Counter[str] = Counter()


def documented_status(ctx: Any, response: Any, case: Any) -> bool | None:
    """status_code_conformance, except the listed gaps."""
    if (case.operation.label, response.status_code) in UNDOCUMENTED_STATUS:
        return None
    return status_code_conformance(ctx, response, case)


def documented_content_type(ctx: Any, response: Any, case: Any) -> bool | None:
    """content_type_conformance, except the listed gaps."""
    media = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    if (case.operation.label, media) in UNDOCUMENTED_CONTENT_TYPE:
        return None
    return content_type_conformance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    documented_status,
    documented_content_type,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def fuzz_app(bundled_models: Path, tmp_path: Path, db_url: str) -> Iterator[FastAPI]:
    """The service under fuzz, one per test and backend: schemathesis starts its lifespan on
    the first request and its pytest plugin stops it after each test (a stopped service stays
    draining)."""
    app = sqlite_app(bundled_models, tmp_path, database_url=db_url)  # the helper, any backend
    try:
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()


def _real_model_names(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    # Random names only reach the 404 branch: mix in the loaded models so the
    # validation and prediction code behind the lookup is fuzzed too.
    if not path_parameters or "name" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters["name"], *MODELS]).map(
        lambda name: {**path_parameters, "name": name}
    )


@pytest.fixture
def fuzz_schema(fuzz_app: FastAPI) -> Any:
    config = schemathesis.Config.from_dict({"seed": 20240611})
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=config)
    schema.hook("flatmap_path_parameters")(_real_model_names)
    return schema


def _operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 20, [op.label for op in ops]  # the schema really lists the API
    return ops


def _is_secured(operation: Any) -> bool:
    return bool(operation.definition.raw.get("security"))


_SETTINGS = settings(
    deadline=None,
    derandomize=True,  # seeded from the test: the same cases every run
    database=None,
    suppress_health_check=list(HealthCheck),  # slow data / filtering are expected here
)


def _fuzz_with_key(operation: Any, schema: Any, max_examples: int) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, hooks=schema.hooks),
        operation.as_strategy(GenerationMode.NEGATIVE, hooks=schema.hooks),
    )

    @settings(_SETTINGS, max_examples=max_examples)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        CASES[operation.label] += 1
        case.call_and_validate(headers=auth("admin"), checks=CHECKS)

    run()


_AUTH_HEADERS = {"authorization", "x-api-key"}
_NO_KEY: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer not-a-valid-key-0123456789"},
    {"X-API-Key": "not-a-valid-key-0123456789"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="},
]


def _fuzz_without_key(operation: Any, schema: Any, max_examples: int) -> None:
    strategy = operation.as_strategy(GenerationMode.POSITIVE, hooks=schema.hooks)

    @settings(_SETTINGS, max_examples=max_examples)
    @given(case=strategy, headers=st.sampled_from(_NO_KEY))
    def run(case: schemathesis.Case, headers: dict[str, str]) -> None:
        CASES[operation.label] += 1
        # Drop whatever credentials the generator made up for the security schemes.
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() not in _AUTH_HEADERS
        }
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS)
        if _is_secured(operation):
            assert response.status_code == 401, (operation.label, headers, response.text)
            assert response.headers.get("www-authenticate") == ["Bearer"]

    run()


def test_fuzz_every_operation_with_admin_key(fuzz_schema: Any, subtests: Any) -> None:
    for operation in _operations(fuzz_schema):
        n = TRAIN_EXAMPLES if operation.label == TRAIN else EXAMPLES_PER_OPERATION
        with subtests.test(operation.label):
            _fuzz_with_key(operation, fuzz_schema, n)


def test_fuzz_every_operation_without_a_valid_key(fuzz_schema: Any, subtests: Any) -> None:
    secured = 0
    for operation in _operations(fuzz_schema):
        secured += _is_secured(operation)
        with subtests.test(operation.label):
            _fuzz_without_key(operation, fuzz_schema, KEYLESS_EXAMPLES)
    assert secured >= 15  # the security requirement is in the document, not just the code


# -- the prediction hot path with the real feature names ---------------------------------------
# The schema cannot know each model's feature names, so the generic pass above rarely gets
# past the 422 for unknown features. Here every case uses the real names with hostile values.

_HOSTILE_VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # huge, tiny, subnormal, -0.0
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond int64 and float precision
    st.sampled_from([None, True, False, "1.5", "", [], {}, [1.0], {"x": 1.0}]),
)


def _feature_names(model: str) -> list[str]:
    from nexus_ml.ml.datasets import load_dataset

    return list(load_dataset(model).feature_names)


@pytest.mark.parametrize("model", MODELS)
def test_fuzz_prediction_values(fuzz_app: FastAPI, model: str) -> None:
    from fastapi.testclient import TestClient

    from nexus_ml.api.schemas import BatchPredictResponse, PredictResponse

    names = _feature_names(model)
    row = st.fixed_dictionaries({n: _HOSTILE_VALUE for n in names})
    body = st.one_of(
        row.map(lambda r: {"features": r}),
        st.lists(row, min_size=1, max_size=3).map(lambda rs: {"instances": rs}),
    )
    url = f"/api/v1/models/{model}/predict"
    seen: Counter[int] = Counter()

    with TestClient(fuzz_app) as client:

        @settings(_SETTINGS, max_examples=100)
        @given(payload=body)
        def run(payload: dict[str, Any]) -> None:
            CASES[f"POST {url} (feature values)"] += 1
            r = client.post(url, json=payload, headers=auth("predict"))
            seen[r.status_code] += 1
            assert r.status_code in (200, 422), (r.status_code, r.text)
            if r.status_code == 200:
                model_cls = PredictResponse if "features" in payload else BatchPredictResponse
                model_cls.model_validate(r.json())
            else:
                assert r.json()["field"], r.text

        run()
    assert seen[200] and seen[422], seen  # both branches were reached


def test_fuzzing_generated_enough_cases() -> None:
    if not CASES:
        pytest.skip("the fuzz tests were not selected")
    assert sum(CASES.values()) >= MIN_TOTAL_CASES, CASES


def test_known_gaps_are_still_gaps(fuzz_app: FastAPI) -> None:
    """Each tolerated gap must still exist: once documented, its entry has to go."""
    paths = fuzz_app.openapi()["paths"]

    def operation(label: str) -> dict[str, Any]:
        method, path = label.split(" ", 1)
        return paths[path][method.lower()]

    for label, status in UNDOCUMENTED_STATUS:
        assert str(status) not in operation(label)["responses"], (
            f"{label} now documents {status}: remove it from UNDOCUMENTED_STATUS"
        )
    for label, media in UNDOCUMENTED_CONTENT_TYPE:
        documented = operation(label)["responses"]["200"].get("content", {})
        assert media not in documented, (
            f"{label} now documents {media}: remove it from UNDOCUMENTED_CONTENT_TYPE"
        )
