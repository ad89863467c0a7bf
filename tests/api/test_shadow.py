"""Shadow challengers: scored off the answer path, stored with their role, labelled with the
champion's feedback, compared by GET /models/{name}/comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.bundle import load_bundle, save_bundle
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.pointers import set_shadow
from nexus_ml.storage.records import challenger_id

MODEL = "diagnostic"
PREDICT = f"/api/v1/models/{MODEL}/predict"
COMPARE = f"/api/v1/models/{MODEL}/comparison"


def save_challenger(model_dir: Path, *, like: str = MODEL, threshold: float = 0.9) -> str:
    """A new, not CURRENT, version of ``diagnostic``: ``like``'s pipeline, schema and profile
    with another decision threshold (so some answers differ)."""
    b = load_bundle(model_dir, like)
    md = b.metadata
    point = dict(md.get("operating_point") or {})
    if like == MODEL:
        point["threshold"] = threshold
    return save_bundle(
        model_dir,
        MODEL,
        b.pipeline,
        schema=b.info.feature_schema(),
        classes=b.info.classes,
        metrics=md["training_metrics"],
        profile=md["profile"],
        source=md["source"],
        operating_point=point or None,
        segments=md.get("segments") or (),
        baseline=md.get("baseline"),
        activate=False,
    )


def _service(client: TestClient) -> Any:
    return client.app.state.service  # type: ignore[attr-defined]


def start_shadow(client: TestClient, version: str) -> None:
    service = _service(client)
    set_shadow(service.settings.model_path, MODEL, version)
    service.models.refresh()  # what the model watcher does every few seconds
    assert service.models.shadow(MODEL).version == version


def settle(client: TestClient) -> Any:
    """Wait (no sleep) until the scorer's queue is empty and every record is written."""
    service = _service(client)
    client.portal.call(service.shadow.drain)
    assert client.portal.call(service.writer.flush, 10.0)
    return service.store


def _value(registry: CollectorRegistry, name: str, version: str) -> float:
    return registry.get_sample_value(name, {"model": MODEL, "version": version}) or 0.0


def test_each_answered_instance_is_scored_in_shadow_and_stored_as_challenger(
    client: TestClient, settings: Settings, registry: CollectorRegistry
) -> None:
    challenger = save_challenger(settings.model_path)
    start_shadow(client, challenger)
    champion = _service(client).models.get(MODEL)
    h = {**auth("predict"), "X-Request-ID": "shadow-req-1"}
    one = client.post(PREDICT, json={"features": diagnostic_row(0)}, headers=h)
    many = client.post(
        PREDICT, json={"instances": [diagnostic_row(i) for i in range(1, 41)]}, headers=h
    )
    assert one.status_code == 200 and many.status_code == 200
    # The client sees only the champion's answer.
    assert one.json()["version"] == many.json()["version"] == champion.version
    store = settle(client)
    answers = [one.json(), *many.json()["predictions"]]
    differ = 0
    for a in answers:
        shadow = store.get_prediction(challenger_id(a["id"]))
        answer = store.get_prediction(a["id"])
        assert (shadow.role, shadow.version) == ("challenger", challenger)
        assert (answer.role, answer.version) == ("champion", champion.version)
        assert shadow.request_id == answer.request_id == "shadow-req-1"
        assert shadow.created_at == answer.created_at and shadow.features == answer.features
        assert shadow.profile_hash == _service(client).models.shadow(MODEL).profile_hash
        assert shadow.probabilities == pytest.approx(answer.probabilities)
        differ += shadow.predicted_class != answer.predicted_class
    assert differ > 0  # the threshold moved some answers: the challenger really scored them
    assert _value(registry, "ml_shadow_predictions_total", challenger) == 41
    assert _value(registry, "ml_shadow_dropped_total", challenger) == 0
    # The champion's own reads and counters see the answers only.
    assert store.count_predictions(MODEL) == 41
    assert store.count_predictions(MODEL, role="challenger") == 41
    assert len(store.recent_predictions(MODEL)) == 41
    served = registry.get_sample_value(
        "ml_model_predictions_total",
        {"model": MODEL, "version": challenger, "predicted_class": "malignant"},
    )
    assert served is None


def test_feedback_on_the_answer_labels_the_challengers_score_too(
    client: TestClient, settings: Settings
) -> None:
    start_shadow(client, save_challenger(settings.model_path))
    a = client.post(PREDICT, json={"features": diagnostic_row(5)}, headers=auth("predict")).json()
    store = settle(client)
    shadow = store.get_prediction(challenger_id(a["id"]))
    # A challenger's score is not an answer: no label of its own.
    r = client.post(
        f"/api/v1/predictions/{shadow.id}/feedback",
        json={"actual": "benign"},
        headers=auth("predict"),
    )
    assert r.status_code == 404
    r = client.post(
        f"/api/v1/predictions/{a['id']}/feedback",
        json={"actual": "benign"},
        headers=auth("predict"),
    )
    assert r.status_code == 201, r.text
    again = client.post(
        f"/api/v1/predictions/{a['id']}/feedback",
        json={"actual": "malignant"},
        headers=auth("predict"),
    )
    assert again.status_code == 409  # one label per prediction, the challenger's included
    since = answer_time = store.get_prediction(a["id"]).created_at
    (mine,) = store.labelled_predictions(MODEL, since)
    (theirs,) = store.labelled_predictions(MODEL, answer_time, role="challenger")
    assert mine.prediction_id == a["id"] and theirs.prediction_id == shadow.id
    assert theirs.actual == "benign" and theirs.correct == (shadow.predicted_class == "benign")


def test_a_challenger_that_refuses_the_instances_is_counted_and_the_champion_answers(
    client: TestClient, settings: Settings, registry: CollectorRegistry
) -> None:
    other = save_challenger(settings.model_path, like="diabetes_risk")  # other features
    start_shadow(client, other)
    r = client.post(PREDICT, json={"features": diagnostic_row(0)}, headers=auth("predict"))
    assert r.status_code == 200
    store = settle(client)
    assert _value(registry, "ml_shadow_refused_total", other) == 1
    assert _value(registry, "ml_shadow_predictions_total", other) == 0
    assert store.count_predictions(MODEL, role="challenger") == 0


def test_a_full_shadow_queue_drops_and_counts_instead_of_waiting(
    make_settings: Any, settings: Settings
) -> None:
    small = make_settings(shadow_queue_size=3)
    registry = CollectorRegistry()
    with TestClient(create_app(small, registry=registry)) as client:
        challenger = save_challenger(small.model_path)
        start_shadow(client, challenger)
        rows = [diagnostic_row(i) for i in range(5)]
        r = client.post(PREDICT, json={"instances": rows}, headers=auth("predict"))
        assert r.status_code == 200 and len(r.json()["predictions"]) == 5
        r = client.post(PREDICT, json={"instances": rows[:2]}, headers=auth("predict"))
        assert r.status_code == 200
        store = settle(client)
        assert _value(registry, "ml_shadow_dropped_total", challenger) == 5
        assert _value(registry, "ml_shadow_predictions_total", challenger) == 2
        assert store.count_predictions(MODEL, role="challenger") == 2


def test_no_shadow_no_challenger_scores(client: TestClient, registry: CollectorRegistry) -> None:
    client.post(PREDICT, json={"features": diagnostic_row(0)}, headers=auth("predict"))
    store = settle(client)
    assert store.count_predictions(MODEL, role="challenger") == 0
    assert (
        registry.get_sample_value("ml_shadow_predictions_total", {"model": MODEL, "version": "x"})
        is None
    )


# -- GET /models/{name}/comparison -----------------------------------------------------------


def test_comparison_sets_both_versions_side_by_side_on_the_same_labelled_requests(
    client: TestClient, settings: Settings
) -> None:
    challenger = save_challenger(settings.model_path)
    start_shadow(client, challenger)
    rows = [diagnostic_row(i) for i in range(60)]
    answers = client.post(PREDICT, json={"instances": rows}, headers=auth("predict")).json()
    settle(client)
    # The true classes of the dataset's first rows, as a clinician would report them.
    truth = [str(y) for y in load_dataset(MODEL).y[:60]]
    for a, actual in zip(answers["predictions"][:50], truth[:50], strict=True):
        r = client.post(
            f"/api/v1/predictions/{a['id']}/feedback",
            json={"actual": actual},
            headers=auth("predict"),
        )
        assert r.status_code == 201
    r = client.get(COMPARE, headers=auth("monitor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["champion"]["version"] == answers["version"] and body["champion"]["role"] == "champion"
    )
    assert (
        body["challenger"]["version"] == challenger and body["challenger"]["role"] == "challenger"
    )
    champ_all = body["champion"]["segments"][0]
    chall_all = body["challenger"]["segments"][0]
    assert champ_all["segment"] == chall_all["segment"] == "all"
    assert champ_all["labelled"] == chall_all["labelled"] == 50
    for side in (champ_all, chall_all):
        acc = side["accuracy"]
        assert acc["lower"] <= acc["value"] <= acc["upper"] and acc["n"] == 50
    labelled = answers["predictions"][:50]
    expected = sum(p["predicted_class"] == t for p, t in zip(labelled, truth[:50], strict=True))
    assert champ_all["accuracy"]["value"] == pytest.approx(expected / 50)
    store = _service(client).store
    theirs = [store.get_prediction(challenger_id(p["id"])) for p in answers["predictions"][:50]]
    right = sum(t.predicted_class == actual for t, actual in zip(theirs, truth, strict=False))
    assert chall_all["accuracy"]["value"] == pytest.approx(right / 50)
    assert set(champ_all["classes"]) == {"benign", "malignant"}
    assert champ_all["classes"]["malignant"]["recall"]["value"] is not None


def test_comparison_of_an_unknown_model_is_404(client: TestClient) -> None:
    r = client.get("/api/v1/models/nope/comparison", headers=auth("monitor"))
    assert r.status_code == 404 and r.json()["field"] == "name"


def test_comparison_without_a_challenger_is_409(client: TestClient) -> None:
    r = client.get(COMPARE, headers=auth("monitor"))
    assert r.status_code == 409 and r.json()["field"] == "name"
    assert "shadow" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"), [({"hours": 0}, "hours"), ({"since": "yesterday"}, "since")]
)
def test_comparison_with_a_bad_window_is_422(
    client: TestClient, settings: Settings, params: dict[str, Any], field: str
) -> None:
    start_shadow(client, save_challenger(settings.model_path))
    r = client.get(COMPARE, params=params, headers=auth("monitor"))
    assert r.status_code == 422 and r.json()["field"] == field


@pytest.mark.parametrize(("scope", "status"), [(None, 401), ("predict", 403), ("admin", 409)])
def test_comparison_needs_a_monitor_scope(
    shared_client: TestClient, scope: str | None, status: int
) -> None:
    r = shared_client.get(COMPARE, headers=auth(scope) if scope else {})
    assert r.status_code == status
