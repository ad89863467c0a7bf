"""Clinical performance end to end: traffic and labels in through the API, gauges and answers out.

Every realised number is compared with scikit-learn on the labelled predictions the store
holds for the window, segment by segment; the positive rate with the predictions it holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score
from tests.api.test_metrics_scrape import assert_only_documented_findings
from tests.api.test_model_quality_api import scrape
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.bundle import load_bundle, save_bundle
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.segments import parse_segments
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.storage.records import LabelledPrediction, utcnow

MODEL = "diagnostic"
CLINICAL = "/api/v1/monitoring/performance/clinical"
N_PREDICTIONS = 300
N_LABELLED = 240
MIN_COUNT = 10
DATA = load_dataset(MODEL)
# Declared on a re-saved diagnostic bundle: numeric bins, as `--segments` would declare them.
SEGMENTS = {"mean_radius": [0.0, 12.0, 15.0, 40.0], "mean_texture": [0.0, 18.0, 22.0, 50.0]}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def declare_segments(model_dir: Path) -> None:
    """A new CURRENT version of the diagnostic bundle declaring SEGMENTS (same pipeline)."""
    b = load_bundle(model_dir, MODEL)
    schema = b.info.feature_schema()
    text = ",".join(f"{f}:{'-'.join(f'{e:g}' for e in edges)}" for f, edges in SEGMENTS.items())
    md = b.metadata
    save_bundle(
        model_dir,
        MODEL,
        b.pipeline,
        schema=schema,
        classes=b.info.classes,
        metrics=md["training_metrics"],
        profile=md["profile"],
        source=md["source"],
        operating_point=md.get("operating_point"),
        segments=[s.to_dict() for s in parse_segments(text, schema)],
        baseline=md.get("baseline"),
    )


def oracle_masks(features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Segment masks computed here, independently of ml.segments: [lo, hi), the last closed."""
    out = {"all": np.ones(len(features), dtype=bool)}
    for f, edges in SEGMENTS.items():
        x = np.array([row[f] for row in features], dtype=float)
        inside = np.zeros(len(x), dtype=bool)
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            last = i == len(edges) - 2
            mask = (x >= lo) & ((x <= hi) if last else (x < hi))
            out[f"{f}={lo:g}-{hi:g}"] = mask
            inside |= mask
        out[f"{f}=other"] = ~inside
    return out


@pytest.fixture
def settings(make_settings: Callable[..., Settings], model_dir: Path) -> Settings:
    declare_segments(model_dir)
    return make_settings(clinical_min_count=MIN_COUNT)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        yield c


def service(client: TestClient) -> Any:
    return client.app.state.service  # type: ignore[attr-defined]


def predict(client: TestClient, rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), 50):
        r = client.post(
            f"/api/v1/models/{MODEL}/predict",
            json={"instances": rows[start : start + 50]},
            headers=auth("predict"),
        )
        assert r.status_code == 200, r.text
        out.extend(r.json()["predictions"])
    return out


def label(client: TestClient, prediction_id: str, actual: str) -> None:
    r = client.post(
        f"/api/v1/predictions/{prediction_id}/feedback",
        json={"actual": actual},
        headers=auth("predict"),
    )
    assert r.status_code == 201, r.text


def traffic(client: TestClient, *, seed: int = 0, flip: int = 24) -> None:
    """N_PREDICTIONS reference rows, N_LABELLED of them labelled with the truth, ``flip`` of
    those with the other class (so no metric is trivially 0 or 1)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(DATA.y), size=N_PREDICTIONS, replace=False)
    rows = [dict(zip(DATA.feature_names, map(float, DATA.X[i]), strict=True)) for i in idx]
    answers = predict(client, rows)
    classes = sorted(set(DATA.y))
    for k, (i, answer) in enumerate(zip(idx[:N_LABELLED], answers, strict=False)):
        truth = str(DATA.y[i])
        if k < flip:
            truth = next(c for c in classes if c != truth)
        label(client, answer["id"], truth)
    client.portal.call(service(client).writer.flush)


def run_job(client: TestClient) -> dict[str, Any]:
    client.portal.call(service(client).writer.flush)
    r = client.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["ran"], r.text
    result: dict[str, Any] = r.json()["models"][MODEL]
    return result


def gauge(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def stored_labelled(client: TestClient, hours: float = 24 * 7) -> list[LabelledPrediction]:
    store = service(client).store
    return store.labelled_predictions(MODEL, utcnow() - timedelta(hours=hours), with_features=True)


def model_info(client: TestClient) -> tuple[list[str], str]:
    loaded = service(client).models.get(MODEL)
    positive = loaded.info.positive_class
    assert positive is not None
    return list(loaded.classes), positive


def expected(
    labelled: list[LabelledPrediction], classes: list[str], positive: str
) -> dict[Any, float | None]:
    """scikit-learn's metrics of stored labelled predictions (the oracle), None where the
    denominator is below MIN_COUNT or the metric is undefined."""
    actual = [r.actual for r in labelled]
    predicted = [r.predicted_class for r in labelled]
    truth = [a == positive for a in actual]
    p_pos = [r.probabilities[positive] for r in labelled]  # type: ignore[index]
    enough = len(labelled) >= MIN_COUNT
    out: dict[Any, float | None] = {
        "n": len(labelled),
        "roc_auc": roc_auc_score(truth, p_pos) if enough and 0 < sum(truth) < len(truth) else None,
        "brier_score": brier_score_loss(truth, p_pos, pos_label=True) if enough else None,
    }
    for c in classes:
        n_actual, n_pred = actual.count(c), predicted.count(c)
        out[("recall", c)] = (
            recall_score(actual, predicted, pos_label=c, average="binary")
            if n_actual >= MIN_COUNT
            else None
        )
        out[("precision", c)] = (
            precision_score(actual, predicted, pos_label=c, average="binary")
            if n_pred >= MIN_COUNT
            else None
        )
        out[("prevalence", c)] = n_actual / len(actual) if enough else None
    return out


def close(got: float | None, want: float | None) -> bool:
    """Equal to 1e-12, or both absent."""
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= 1e-12


def test_job_gauges_equal_sklearn_per_segment(client: TestClient) -> None:
    traffic(client)
    result = run_job(client)
    classes, positive = model_info(client)
    labelled = stored_labelled(client)
    assert len(labelled) == N_LABELLED
    window = service(client).store.recent_predictions(MODEL)
    assert len(window) == N_PREDICTIONS
    m = scrape(client)
    lab_masks = oracle_masks([r.features for r in labelled])  # type: ignore[misc]
    win_masks = oracle_masks([w.features for w in window])
    exported = {
        dict(k[1])["segment"]
        for k in m
        if k[0] == "ml_model_labelled_samples" and dict(k[1])["model"] == MODEL
    }
    assert exported == set(lab_masks)
    checked = 0
    for segment, mask in lab_masks.items():
        rows = [r for r, keep in zip(labelled, mask, strict=True) if keep]
        want = expected(rows, classes, positive)
        seg = {"model": MODEL, "segment": segment}
        assert gauge(m, "ml_model_labelled_samples", **seg) == len(rows)
        assert close(gauge(m, "ml_model_roc_auc", **seg), want["roc_auc"]), segment
        assert close(gauge(m, "ml_model_brier_score", **seg), want["brier_score"]), segment
        for c in classes:
            for metric in ("recall", "precision", "prevalence"):
                got = gauge(m, f"ml_model_{metric}", **seg, **{"class": c})
                assert close(got, want[(metric, c)]), (segment, metric, c, got)
                checked += want[(metric, c)] is not None
            # The positive rate: every prediction of the segment in the drift window.
            in_window = [w for w, keep in zip(window, win_masks[segment], strict=True) if keep]
            share = np.mean([w.predicted_class == c for w in in_window]) if in_window else None
            rate = gauge(m, "ml_model_positive_rate", **seg, **{"class": c})
            assert close(rate, share if len(in_window) >= MIN_COUNT else None), (segment, c)
    assert checked > 30  # most segments are above the minimum: the comparison is not empty

    everyone = {"model": MODEL, "segment": "all"}
    for c in classes:
        lower = gauge(m, "ml_model_recall_lower", **everyone, **{"class": c})
        upper = gauge(m, "ml_model_recall_upper", **everyone, **{"class": c})
        recall = gauge(m, "ml_model_recall", **everyone, **{"class": c})
        assert lower is not None and upper is not None and recall is not None
        assert lower < recall < upper
        assert gauge(m, "ml_model_recall_estimated", **everyone, **{"class": c}) is not None
    assert gauge(m, "ml_model_roc_auc_estimated", **everyone) is not None
    assert 0.0 <= (gauge(m, "ml_model_calibration_error", **everyone) or -1.0) <= 1.0
    bins = {
        dict(k[1])["bin"]
        for k in m
        if k[0] == "ml_model_reliability_observed" and dict(k[1])["model"] == MODEL
    }
    assert bins and bins <= {f"{0.1 * i:.1f}" for i in range(1, 11)}

    # promtool finds nothing in the clinical gauges beyond the documented exceptions.
    assert_only_documented_findings(client.get("/metrics").text)

    # What the job exported is what it stored.
    stored = service(client).store.latest_drift_result(MODEL).results["clinical"]
    assert stored == result["clinical"]
    assert stored["min_count"] == MIN_COUNT and stored["classes"] == classes
    assert [s["segment"] for s in stored["segments"]] == list(lab_masks)
    assert stored["segments"][0]["predictions"] == N_PREDICTIONS


def test_below_min_count_a_value_is_absent_and_its_count_present(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(clinical_min_count=N_LABELLED + 1)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        traffic(c)
        run_job(c)
        m = scrape(c)
    seg = {"model": MODEL, "segment": "all"}
    assert gauge(m, "ml_model_labelled_samples", **seg) == N_LABELLED
    for name in ("ml_model_roc_auc", "ml_model_brier_score", "ml_model_calibration_error"):
        assert gauge(m, name, **seg) is None, name
    names = [k[0] for k in m if dict(k[1]).get("model") == MODEL]
    assert "ml_model_recall" not in names and "ml_model_precision" not in names
    # The positive rate counts all N_PREDICTIONS predictions: above the minimum, exported.
    assert "ml_model_positive_rate" in names


CLINICAL_GAUGES = {
    f"ml_model_{name}"
    for name in (
        "recall", "recall_lower", "recall_upper", "precision", "precision_lower",
        "precision_upper", "prevalence", "positive_rate", "roc_auc", "brier_score",
        "calibration_error", "labelled_samples", "recall_estimated", "precision_estimated",
        "roc_auc_estimated", "reliability_predicted", "reliability_observed",
    )
}  # fmt: skip


def ours(sample: tuple[str, frozenset[tuple[str, str]]]) -> bool:
    """A clinical gauge sample of MODEL."""
    return sample[0] in CLINICAL_GAUGES and dict(sample[1])["model"] == MODEL


def test_a_fresh_service_restores_the_gauges_and_withdraws_what_fell_below_min_count(
    make_settings: Callable[..., Settings], model_dir: Path
) -> None:
    declare_segments(model_dir)
    first = make_settings(clinical_min_count=MIN_COUNT)
    with TestClient(create_app(first, registry=CollectorRegistry())) as c:
        traffic(c)
        run_job(c)
        before = scrape(c)
    clinical = {k: v for k, v in before.items() if ours(k)}
    assert {k[0] for k in clinical} == CLINICAL_GAUGES

    # A new process over the same database: the gauges are back before any job round.
    with TestClient(create_app(first, registry=CollectorRegistry())) as c:
        restored = scrape(c)
    assert {k: v for k, v in restored.items() if ours(k)} == clinical

    # A service whose minimum the labels no longer reach: the next round withdraws (NaN)
    # what the previous result exported, although this process never computed it itself.
    stricter = make_settings(clinical_min_count=N_LABELLED + 1)
    with TestClient(create_app(stricter, registry=CollectorRegistry())) as c:
        run_job(c)
        after = scrape(c)
    recall = ("ml_model_recall", frozenset({"model": MODEL, "class": "malignant",
                                           "segment": "all"}.items()))  # fmt: skip
    assert recall in clinical
    assert math.isnan(after[recall])
    withdrawn = [k for k in clinical if k[0] == "ml_model_recall"]
    assert len(withdrawn) > 2 and all(math.isnan(after[k]) for k in withdrawn)
    for k in clinical:
        if k[0] == "ml_model_labelled_samples":  # counts stay, whatever the minimum
            assert after[k] == clinical[k]


def test_api_answers_equal_sklearn_per_segment_for_the_window(client: TestClient) -> None:
    traffic(client)
    r = client.get(CLINICAL, params={"model": MODEL, "hours": 1}, headers=auth("monitor"))
    assert r.status_code == 200, r.text
    body = r.json()
    classes, positive = model_info(client)
    assert body["model"] == MODEL and body["hours"] == pytest.approx(1.0)
    assert body["version"] == service(client).models.get(MODEL).version
    assert body["classes"] == classes and body["min_count"] == MIN_COUNT
    assert body["positive_class"] == positive and body["threshold"] is None
    labelled = stored_labelled(client, hours=1)
    window = service(client).store.recent_predictions(MODEL)
    lab_masks = oracle_masks([r.features for r in labelled])  # type: ignore[misc]
    win_masks = oracle_masks([w.features for w in window])
    assert [s["segment"] for s in body["segments"]] == list(lab_masks)
    for entry in body["segments"]:
        segment = entry["segment"]
        rows = [r for r, keep in zip(labelled, lab_masks[segment], strict=True) if keep]
        in_window = [w for w, keep in zip(window, win_masks[segment], strict=True) if keep]
        want = expected(rows, classes, positive)
        assert entry["labelled"] == len(rows) and entry["predictions"] == len(in_window)
        assert close(entry["roc_auc"]["value"], want["roc_auc"]), segment
        assert close(entry["brier_score"], want["brier_score"]), segment
        for c in classes:
            got = entry["classes"][c]
            for metric in ("recall", "precision", "prevalence"):
                assert close(got[metric]["value"], want[(metric, c)]), (segment, metric, c)
            assert got["recall"]["n"] == sum(r.actual == c for r in rows)
            assert got["precision"]["n"] == sum(r.predicted_class == c for r in rows)
            assert got["positive_rate"]["n"] == len(in_window)
            assert set(got["recall_estimated"]) == {"value", "stderr", "n"}
        assert len(entry["reliability"]) == 10
        assert sum(b["count"] for b in entry["reliability"]) == len(rows)
    everyone = body["segments"][0]
    assert everyone["labelled"] == N_LABELLED and everyone["predictions"] == N_PREDICTIONS
    assert (
        everyone["roc_auc"]["lower"] < everyone["roc_auc"]["value"] < everyone["roc_auc"]["upper"]
    )

    # A window before the traffic holds nothing: counts 0, values null.
    until = (utcnow() - timedelta(hours=2)).isoformat()
    r = client.get(
        CLINICAL, params={"model": MODEL, "hours": 1, "until": until}, headers=auth("monitor")
    )
    assert r.status_code == 200, r.text
    empty = r.json()["segments"][0]
    assert empty["labelled"] == 0 and empty["predictions"] == 0
    assert empty["accuracy"]["value"] is None and empty["roc_auc"]["value"] is None


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"model": "nobody", "hours": 1}, 404),
        ({"hours": 1}, 422),  # model is required
        ({"model": MODEL, "hours": 0}, 422),
        ({"model": MODEL, "hours": -1}, 422),
        ({"model": MODEL, "hours": "nan"}, 422),
        ({"model": MODEL, "hours": "a day"}, 422),
        ({"model": MODEL, "hours": 10**9}, 422),
        ({"model": "../x", "hours": 1}, 422),
    ],
)
def test_bad_requests_are_refused(
    shared_client: TestClient, params: dict[str, Any], status: int
) -> None:
    r = shared_client.get(CLINICAL, params=params, headers=auth("monitor"))
    assert r.status_code == status, r.text
    assert "nobody" not in r.text  # the detail names the field, never echoes the value


def test_the_clinical_api_needs_a_monitor_key(shared_client: TestClient) -> None:
    params = {"model": MODEL}
    assert shared_client.get(CLINICAL, params=params).status_code == 401
    assert shared_client.get(CLINICAL, params=params, headers=auth("predict")).status_code == 403
    ok = shared_client.get(CLINICAL, params=params, headers=auth("monitor"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["hours"] == pytest.approx(7 * 24)  # default: the accuracy window


def test_a_failing_clinical_evaluation_keeps_drift_and_accuracy(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    traffic(client)

    def broken(*_args: Any) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(ClinicalEvaluator, "evaluate", broken)
    result = run_job(client)
    assert result["clinical_error"] == "ZeroDivisionError" and "clinical" not in result
    assert result["accuracy"]["n"] == N_LABELLED and result["window_size"] == N_PREDICTIONS
    stored = service(client).store.latest_drift_result(MODEL)
    assert stored is not None and stored.results["accuracy"]["n"] == N_LABELLED
    m = scrape(client)
    errors = gauge(m, "ml_errors_total", component="quality", error_type="ZeroDivisionError")
    assert errors == 2  # each of the two models' rounds, counted, and the round went on


def test_without_a_window_the_answer_is_the_jobs_stored_result(client: TestClient) -> None:
    traffic(client)
    # Before the job's first result: computed now, over the default window, capped.
    before = client.get(CLINICAL, params={"model": MODEL}, headers=auth("monitor")).json()
    assert before["source"] == "on_demand"
    assert before["rows_read"] == N_PREDICTIONS and before["rows_limit"] >= N_PREDICTIONS
    job = run_job(client)
    r = client.get(CLINICAL, params={"model": MODEL}, headers=auth("monitor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "quality_job" and body["rows_read"] is None
    latest = service(client).store.latest_drift_result(MODEL)
    assert latest.results["clinical"] == job["clinical"]
    assert body["segments"] == job["clinical"]["segments"]
    until = datetime.fromisoformat(body["until"])
    assert until == latest.computed_at
    assert (until - datetime.fromisoformat(body["since"])).total_seconds() == 7 * 86400
    # An explicit window is computed on demand, and says how many rows it read.
    windowed = client.get(
        CLINICAL, params={"model": MODEL, "hours": 1}, headers=auth("monitor")
    ).json()
    assert windowed["source"] == "on_demand" and windowed["rows_read"] == N_PREDICTIONS
