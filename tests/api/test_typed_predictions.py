"""Typed features over HTTP, on SQLite and PostgreSQL: the null rule, warnings, problems."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import WINE, auth, write_mixed_csv

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.sources import train_from_csv

MODEL = "ward"
PREDICT = f"/api/v1/models/{MODEL}/predict"
GOOD: dict[str, Any] = {"age": 50, WINE: 2.0, "sex": "F", "site": "north"}
SECRET = "secret-7731"

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture
def typed(
    settings: Settings, registry: CollectorRegistry, model_dir: Path, tmp_path: Path
) -> Iterator[TestClient]:
    """A service serving, beside the bundled models, one trained on a typed CSV."""
    csv_path = write_mixed_csv(tmp_path / "ward.csv")
    train_from_csv(csv_path, "outcome", MODEL, model_dir, estimator="random_forest")
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


@pytest.fixture(scope="module")
def shared_typed(
    shared_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The same service, one per module and database, for the tests below that neither count
    metrics nor depend on each other's requests (a training and a start saved per test)."""
    csv_path = write_mixed_csv(tmp_path_factory.mktemp("ward") / "ward.csv")
    train_from_csv(
        csv_path, "outcome", MODEL, shared_settings.model_path, estimator="random_forest"
    )
    with TestClient(create_app(shared_settings, registry=CollectorRegistry())) as c:
        yield c


def issues(registry: CollectorRegistry, feature: str, kind: str) -> float:
    labels = {"model": MODEL, "feature": feature, "kind": kind}
    return registry.get_sample_value("ml_data_quality_issues_total", labels) or 0.0


def predictions(registry: CollectorRegistry) -> float:
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "ml_model_predictions"
        for s in m.samples
        if s.name == "ml_model_predictions_total" and s.labels.get("model") == MODEL
    )


def test_the_schema_lists_types_categories_and_nullability(shared_typed: TestClient) -> None:
    r = shared_typed.get(f"/api/v1/models/{MODEL}", headers=auth("predict"))
    assert r.status_code == 200, r.text
    features = {f["name"]: f for f in r.json()["features"]}
    assert list(features) == ["age", WINE, "sex", "site"]
    assert features["age"]["type"] == "integer" and not features["age"]["nullable"]
    assert features[WINE]["type"] == "number" and features[WINE]["nullable"]
    assert features["sex"] == {
        "name": "sex",
        "type": "category",
        "nullable": False,
        "min": None,
        "max": None,
        "categories": ["F", "M"],
    }
    assert r.json()["classes"] == ["a", "b", "c"]


def test_nulls_where_allowed_and_the_files_own_names_are_answered(
    typed: TestClient, registry: CollectorRegistry
) -> None:
    r = typed.post(
        PREDICT,
        json={"features": {**GOOD, WINE: None, "site": None}},
        headers=auth("predict"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predicted_class"] in ("a", "b", "c")
    assert body["warnings"] == []
    assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-9
    assert issues(registry, WINE, "missing") == 0  # a declared missing value is no issue


def test_unseen_categories_and_out_of_range_values_are_answered_with_warnings(
    typed: TestClient, registry: CollectorRegistry
) -> None:
    r = typed.post(
        PREDICT,
        json={"features": {**GOOD, "age": 130, "site": SECRET}},
        headers=auth("predict"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [
        {"feature": "age", "kind": "out_of_range"},
        {"feature": "site", "kind": "unseen_category"},
    ]
    assert SECRET not in r.text
    assert issues(registry, "age", "out_of_range") == 1
    assert issues(registry, "site", "unseen_category") == 1
    batch = typed.post(
        PREDICT,
        json={"instances": [GOOD, {**GOOD, "site": SECRET}]},
        headers=auth("predict"),
    )
    assert batch.status_code == 200, batch.text
    assert [p["warnings"] for p in batch.json()["predictions"]] == [
        [],
        [{"feature": "site", "kind": "unseen_category"}],
    ]
    assert issues(registry, "site", "unseen_category") == 2
    metrics = typed.get("/metrics", headers=auth("monitor")).text
    assert SECRET not in metrics


def test_every_problem_is_listed_and_nothing_is_served(
    typed: TestClient, registry: CollectorRegistry
) -> None:
    before = predictions(registry)
    features = {**GOOD, "age": 2.5, "sex": None, "site": 3, "extra": SECRET}
    del features[WINE]
    r = typed.post(PREDICT, json={"features": features}, headers=auth("predict"))
    assert r.status_code == 422, r.text
    body = r.json()
    assert [p["field"] for p in body["problems"]] == [WINE, "extra", "age", "sex", "site"]
    assert body["field"] == WINE and body["detail"].startswith(f"{WINE}: ")
    assert all(p["detail"].startswith(p["field"] + ": ") for p in body["problems"])
    assert SECRET not in r.text and "2.5" not in r.text
    assert predictions(registry) == before
    # Each value refused is a data-quality issue of its kind; an unknown name is not a label.
    assert issues(registry, "sex", "missing") == 1
    assert issues(registry, "age", "wrong_type") == 1
    assert issues(registry, WINE, "missing") == 1
    assert issues(registry, "extra", "wrong_type") == 0
    assert typed.post(PREDICT, json={"features": GOOD}, headers=auth("predict")).status_code == 200
    assert predictions(registry) == before + 1  # the count above could have moved


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "missing"), (True, "wrong_type"), ("50", "wrong_type"), (50.5, "wrong_type")],
)
def test_an_integer_feature_refuses_what_is_not_a_whole_number(
    shared_typed: TestClient, value: Any, kind: str
) -> None:
    r = shared_typed.post(
        PREDICT, json={"features": {**GOOD, "age": value}}, headers=auth("predict")
    )
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["age"]


def test_a_batch_names_each_instance(shared_typed: TestClient) -> None:
    r = shared_typed.post(
        PREDICT,
        json={"instances": [GOOD, {**GOOD, "sex": 1}, {**GOOD, "age": None}]},
        headers=auth("predict"),
    )
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["instances[1].sex", "instances[2].age"]


def test_the_bundled_models_answer_as_before(shared_typed: TestClient) -> None:
    r = shared_typed.get("/api/v1/models/diagnostic", headers=auth("predict"))
    features = r.json()["features"]
    assert features[0]["name"] == "mean_radius"
    assert {f["type"] for f in features} == {"number"}
    row = {f["name"]: (f["min"] + f["max"]) / 2 for f in features}
    answer = shared_typed.post(
        "/api/v1/models/diagnostic/predict", json={"features": row}, headers=auth("predict")
    )
    assert answer.status_code == 200
    assert answer.json()["warnings"] == []


def test_the_quality_job_reads_stored_categories_as_categories(typed: TestClient) -> None:
    rows = [GOOD, {**GOOD, "site": None}, {**GOOD, "site": "west"}]
    r = typed.post(PREDICT, json={"instances": rows}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    run = typed.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
    assert run.status_code == 200, run.text
    quality = run.json()["models"][MODEL]["quality"]
    assert quality["n_rows"] == 3
    # A stored category is its string, not a number that failed to parse (every value missing);
    # a null where the schema allows one is no quality issue (its rate is a drift test's job).
    assert quality["by_feature"] == {"site": {"unseen_category": 1}}


@pytest.mark.parametrize(
    "value", ["north\u0000", "\ud800", "x" * 257], ids=["nul", "lone-surrogate", "too-long"]
)
def test_a_category_no_store_can_hold_is_refused_before_predicting(
    typed: TestClient, registry: CollectorRegistry, value: str
) -> None:
    before = predictions(registry)
    body = json.dumps({"features": {**GOOD, "site": value}})  # \ud800 survives as an escape
    r = typed.post(
        PREDICT, content=body, headers={**auth("predict"), "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["site"]
    assert predictions(registry) == before


ODD = 'BMI "kg\\m²" [/] {x}=1,'  # quote, backslash, brackets, braces, equals, comma


def test_a_feature_name_with_label_syntax_reaches_metrics_escaped(
    settings: Settings, registry: CollectorRegistry, model_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "odd.csv"
    rows = [f"{i % 7}.5,{i % 2},{'yes' if i % 2 else 'no'}" for i in range(40)]
    header = '"' + ODD.replace('"', '""') + '",other,y'
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    train_from_csv(path, "y", "odd", model_dir)
    with TestClient(create_app(settings, registry=registry)) as c:
        r = c.post(
            "/api/v1/models/odd/predict",
            json={"features": {ODD: 1e6, "other": 1}},
            headers=auth("predict"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["warnings"] == [{"feature": ODD, "kind": "out_of_range"}]
        text = c.get("/metrics", headers=auth("monitor")).text
    found = [
        s.labels
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ml_data_quality_issues_total" and s.labels.get("model") == "odd"
    ]
    assert found == [{"model": "odd", "feature": ODD, "kind": "out_of_range"}]
