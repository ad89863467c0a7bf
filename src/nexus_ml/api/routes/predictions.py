"""Predictions and feedback.

``predict`` is the hot path. It reads and parses the body itself rather than
through a pydantic model: the schema check in ``ml.schema`` is stricter (no
bool-as-number, no string coercion, no NaN) and several times faster, and the
documented request model is still published in OpenAPI via ``openapi_extra``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from nexus_ml.api.auth import PredictKey
from nexus_ml.api.deps import JSON_BODY_RESPONSES, JsonBody, ServingDep
from nexus_ml.api.errors import ApiError, ErrorResponse
from nexus_ml.api.request_id import request_id_of
from nexus_ml.api.schemas import (
    BatchPredictResponse,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
)
from nexus_ml.ml.registry import LoadedModel
from nexus_ml.service.serving import Serving

router = APIRouter(tags=["predictions"])

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


# A run of 19 or more digits: an integer literal of that length may lie outside 64 bits, which
# orjson reads as a float where json.loads keeps the exact integer. Found by mapping every
# digit to "0" and everything else to " ", then a substring search: both in C, ≈ 0.8 µs on a
# prediction's body, against ≈ 8 µs for the regular expression [0-9]{19}.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def parse_json(body: bytes) -> Any:
    """``body`` as json.loads reads it (400 if it is not JSON, 422 if it is empty).

    orjson first (a quarter of json.loads's CPU on a prediction's body, issue 16), json.loads
    for every body orjson refuses or could read otherwise: the literals NaN and Infinity,
    numbers past a float (json.loads reads them as infinity), text that is not UTF-8 (json.loads
    also reads UTF-16, UTF-32 and a byte-order mark), lone surrogates, nesting past 1,024 levels,
    and any run of 19 digits (an integer past 64 bits, which orjson would turn into a float).
    So every body parses to the same value, of the same types, as with json.loads alone
    (tests/api/test_parse_json.py), and gets the same answer; the one exception: nesting
    between ≈ 990 and 1,024 levels, which json.loads refused only for Python's stack depth,
    now parses and is answered 422 as a body that is not a prediction request, not 400.
    """
    if not body:
        raise ApiError(422, 'request body is empty: send {"features": {...}}', "body")
    if _LONG_DIGITS not in body.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON", "body") from None


@router.post(
    "/models/{name}/predict",
    response_model=PredictResponse | BatchPredictResponse,
    openapi_extra=_PREDICT_BODY,
    summary="Predict for one instance (features) or a batch (instances)",
    responses={
        404: {"description": "Unknown model"},
        503: {"model": ErrorResponse, "description": "The prediction could not be recorded"},
        **JSON_BODY_RESPONSES,
    },
)
async def predict(
    name: str, request: Request, serving: ServingDep, _key: PredictKey, _json: JsonBody
) -> Response:
    """Validate, predict, record; answers identical to the model's predict_proba."""
    # Served by api/hot_path.py in the running service; this declaration is what OpenAPI
    # documents, and the route FastAPI resolves when the hot path is off.
    loaded = serving.model(name)
    content = prediction_answer(serving, loaded, await request.body(), request_id_of(request.scope))
    return Response(content, media_type="application/json")


def prediction_answer(
    serving: Serving, loaded: LoadedModel, body: bytes, request_id: str | None
) -> bytes:
    """The answer to a prediction request's ``body`` (raises the 400/422/503 to answer)."""
    payload = parse_json(body)
    if type(payload) is not dict:
        raise ApiError(422, "body must be a JSON object", "body")
    features = payload.get("features")
    instances = payload.get("instances")
    if len(payload) != 1 or (features is None) == (instances is None):
        extra = sorted(k for k in payload if k not in ("features", "instances"))
        if extra:
            field = str(extra[0])[:64]
            raise ApiError(422, f"{field}: unknown field; send 'features' or 'instances'", field)
        raise ApiError(422, "send exactly one of 'features' or 'instances'", "body")
    # Every instance of a batch shares the request's id: one request, one trace.
    if features is not None:
        answer = serving.predict_one(loaded, features, request_id)
    else:
        answer = serving.predict_many(loaded, instances, request_id)
    # orjson (issue 16): a twentieth of json.dumps's cost. It writes a NaN or an infinity as
    # null where the standard library refused it; none gets here: every number of the answer
    # is one of its record's, and the journal refuses a record holding one (storage/journal.py:
    # a 500, never a 200; tests/api/test_non_finite.py).
    return orjson.dumps(answer)


@router.post(
    "/predictions/{prediction_id}/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    summary="Record the true class of a past prediction",
    responses={
        404: {"description": "Unknown prediction"},
        409: {"description": "Already labelled"},
        **JSON_BODY_RESPONSES,
    },
)
async def feedback(
    prediction_id: str,
    body: FeedbackRequest,
    serving: ServingDep,
    _key: PredictKey,
    _json: JsonBody,
) -> FeedbackResponse:
    """Store the actual outcome; accuracy monitoring joins it to the prediction's time."""
    stored = await serving.add_feedback(prediction_id, body.actual)
    return FeedbackResponse(
        prediction_id=stored.prediction_id,
        model=stored.model,
        actual=stored.actual,
        correct=stored.correct,
    )
