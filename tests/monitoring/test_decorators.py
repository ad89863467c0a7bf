"""monitor_prediction / monitor_training on def and async def, functions and methods."""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.monitoring import decorators
from nexus_ml.monitoring.decorators import (
    default_metrics,
    monitor_prediction,
    monitor_training,
)
from nexus_ml.monitoring.metrics import Metrics, build_metrics


class ModelBroke(RuntimeError):
    pass


@pytest.fixture
def metrics() -> Metrics:
    return build_metrics(CollectorRegistry())


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def predictions(m: Metrics, cls: str, version: str = "unknown", model: str = "diag") -> float:
    return (
        value(m, "ml_model_predictions_total", model=model, version=version, predicted_class=cls)
        or 0.0
    )


@dataclass
class Prediction:
    predicted_class: str
    confidence: float
    version: str | None = None


def test_sync_function_records_duration_count_and_confidence(metrics: Metrics) -> None:
    @monitor_prediction("diag", metrics=metrics)
    def predict(x: int) -> dict[str, Any]:
        return {"predicted_class": "flu", "confidence": 0.9, "version": "3", "x": x}

    assert predict(7)["x"] == 7
    assert predictions(metrics, "flu", "3") == 1
    assert value(metrics, "ml_model_prediction_duration_seconds_count", model="diag") == 1
    assert value(metrics, "ml_model_confidence_score_count", model="diag") == 1
    assert value(metrics, "ml_model_confidence_score_sum", model="diag") == pytest.approx(0.9)
    assert predict.__name__ == "predict"


def test_async_timing_covers_the_awaited_work(metrics: Metrics) -> None:
    pause = 0.03

    @monitor_prediction("diag", metrics=metrics)
    async def predict() -> Prediction:
        await asyncio.sleep(pause)
        return Prediction("cold", 0.6)

    assert inspect.iscoroutinefunction(predict)
    result = asyncio.run(predict())
    assert result.predicted_class == "cold"
    total = value(metrics, "ml_model_prediction_duration_seconds_sum", model="diag")
    assert total is not None and total >= pause
    assert predictions(metrics, "cold") == 1


def test_methods_sync_and_async(metrics: Metrics) -> None:
    class Model:
        version = "ignored: only the return value names the version"

        def __init__(self) -> None:
            self.calls = 0

        @monitor_prediction("diag", metrics=metrics)
        def predict(self, x: float) -> Prediction:
            self.calls += 1
            return Prediction("a", x, version="2")

        @monitor_prediction("diag", metrics=metrics)
        async def apredict(self, x: float) -> Prediction:
            self.calls += 1
            return Prediction("b", x)

    model = Model()
    model.predict(0.5)
    asyncio.run(model.apredict(0.7))
    assert model.calls == 2
    assert predictions(metrics, "a", "2") == 1
    assert predictions(metrics, "b") == 1
    assert value(metrics, "ml_model_prediction_duration_seconds_count", model="diag") == 2


def test_batch_shapes(metrics: Metrics) -> None:
    @monitor_prediction("diag", metrics=metrics)
    def batch_list() -> list[Any]:
        return [{"prediction": "a", "confidence": 0.5}, Prediction("b", 0.75, "4")]

    @monitor_prediction("diag", metrics=metrics)
    def batch_response() -> dict[str, Any]:
        return {
            "version": "5",
            "predictions": [
                {"predicted_class": "a", "confidence": 0.25},
                {"predicted_class": "a", "confidence": 0.25, "version": "6"},
            ],
        }

    batch_list()
    batch_response()
    assert predictions(metrics, "a") == 1
    assert predictions(metrics, "b", "4") == 1
    assert predictions(metrics, "a", "5") == 1
    assert predictions(metrics, "a", "6") == 1
    assert value(metrics, "ml_model_confidence_score_count", model="diag") == 4
    assert value(metrics, "ml_model_confidence_score_sum", model="diag") == pytest.approx(1.75)
    # One call each, whatever the batch size.
    assert value(metrics, "ml_model_prediction_duration_seconds_count", model="diag") == 2


def test_unrecognised_result_counts_unknown_without_confidence(metrics: Metrics) -> None:
    @monitor_prediction("diag", metrics=metrics)
    def predict() -> float:
        return 1.0

    predict()
    assert predictions(metrics, "unknown") == 1
    assert value(metrics, "ml_model_confidence_score_count", model="diag") == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_confidence_is_not_observed(metrics: Metrics, bad: float) -> None:
    @monitor_prediction("diag", metrics=metrics)
    def predict() -> Prediction:
        return Prediction("a", bad)

    predict()
    assert predictions(metrics, "a") == 1
    assert value(metrics, "ml_model_confidence_score_count", model="diag") == 0
    assert value(metrics, "ml_model_confidence_score_sum", model="diag") == 0


@pytest.mark.parametrize("is_async", [False, True])
def test_exception_reraised_unchanged_and_counted_by_type(metrics: Metrics, is_async: bool) -> None:
    err = ModelBroke("bad input")

    if is_async:

        @monitor_prediction("diag", metrics=metrics)
        async def apredict() -> None:
            raise err

        def call() -> None:
            asyncio.run(apredict())
    else:

        @monitor_prediction("diag", metrics=metrics)
        def call() -> None:
            raise err

    with pytest.raises(ModelBroke) as excinfo:
        call()
    assert excinfo.value is err
    assert value(metrics, "ml_errors_total", component="model", error_type="ModelBroke") == 1
    assert value(metrics, "ml_model_prediction_duration_seconds_count", model="diag") == 1
    assert predictions(metrics, "unknown") == 0


def test_label_children_are_cached(metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = metrics.model_predictions_total
    calls: list[tuple[str, ...]] = []
    original = counter.labels

    def spy(*labels: str) -> Any:
        calls.append(labels)
        return original(*labels)

    monkeypatch.setattr(counter, "labels", spy)

    @monitor_prediction("diag", metrics=metrics)
    def predict(cls: str) -> Prediction:
        return Prediction(cls, 0.5, "1")

    for _ in range(50):
        predict("a")
        predict("b")
    assert sorted(calls) == [("diag", "1", "a"), ("diag", "1", "b")]
    assert predictions(metrics, "a", "1") == 50


def test_default_metrics_resolve_lazily_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private registry stands in for the global one, so this test leaves REGISTRY alone.
    registry = CollectorRegistry()
    monkeypatch.setattr(decorators, "REGISTRY", registry)
    monkeypatch.setattr(decorators, "_default", None)

    @monitor_prediction("diag")
    def predict() -> Prediction:
        return Prediction("a", 0.5)

    assert decorators._default is None  # decorating does no work
    predict()
    assert default_metrics() is default_metrics()
    assert default_metrics().registry is registry
    assert (
        registry.get_sample_value(
            "ml_model_predictions_total",
            {"model": "diag", "version": "unknown", "predicted_class": "a"},
        )
        == 1
    )


def test_prediction_context_manager(metrics: Metrics) -> None:
    with monitor_prediction("diag", metrics=metrics) as rec:
        rec.observe(0.8, "a", version="7")
        rec.record([{"predicted_class": "b", "confidence": 0.4}])
    assert predictions(metrics, "a", "7") == 1
    assert predictions(metrics, "b") == 1
    assert value(metrics, "ml_model_prediction_duration_seconds_count", model="diag") == 1

    err = ModelBroke()
    with pytest.raises(ModelBroke) as excinfo, monitor_prediction("diag", metrics=metrics):
        raise err
    assert excinfo.value is err
    assert value(metrics, "ml_errors_total", component="model", error_type="ModelBroke") == 1

    monitor = monitor_prediction("diag", metrics=metrics)
    with monitor, pytest.raises(RuntimeError, match="not reentrant"), monitor:
        pass


def test_training_success_sync(metrics: Metrics) -> None:
    @monitor_training("diag", metrics=metrics)
    def train(data: list[int]) -> dict[str, int]:
        return {"n_samples": len(data), "n_features": 7}

    before = time.time()
    train(list(range(120)))
    assert value(metrics, "ml_model_training_runs_total", model="diag", outcome="success") == 1
    assert value(metrics, "ml_model_training_samples", model="diag") == 120
    assert value(metrics, "ml_model_features_count", model="diag") == 7
    stamp = value(metrics, "ml_model_last_training_timestamp_seconds", model="diag")
    assert stamp is not None and before <= stamp <= time.time()
    assert value(metrics, "ml_model_training_duration_seconds_count", model="diag") == 1


def test_training_async_failure(metrics: Metrics) -> None:
    err = ValueError("no rows")

    @monitor_training("diag", metrics=metrics)
    async def train() -> None:
        await asyncio.sleep(0.01)
        raise err

    with pytest.raises(ValueError) as excinfo:
        asyncio.run(train())
    assert excinfo.value is err
    assert value(metrics, "ml_model_training_runs_total", model="diag", outcome="failure") == 1
    assert value(metrics, "ml_errors_total", component="training", error_type="ValueError") == 1
    assert value(metrics, "ml_model_last_training_timestamp_seconds", model="diag") is None
    total = value(metrics, "ml_model_training_duration_seconds_sum", model="diag")
    assert total is not None and total >= 0.01


def test_training_async_success_with_object_result(metrics: Metrics) -> None:
    @dataclass
    class Bundle:
        n_samples: int
        n_features: int

    @monitor_training("diag", metrics=metrics)
    async def train() -> Bundle:
        await asyncio.sleep(0)
        return Bundle(500, 12)

    asyncio.run(train())
    assert value(metrics, "ml_model_training_samples", model="diag") == 500
    assert value(metrics, "ml_model_features_count", model="diag") == 12


def test_training_context_manager(metrics: Metrics) -> None:
    with monitor_training("diag", metrics=metrics) as run:
        run.set_result({"training_samples": 10, "features_count": 3})
    assert value(metrics, "ml_model_training_runs_total", model="diag", outcome="success") == 1
    assert value(metrics, "ml_model_training_samples", model="diag") == 10

    with pytest.raises(KeyError), monitor_training("diag", metrics=metrics):
        raise KeyError("x")
    assert value(metrics, "ml_model_training_runs_total", model="diag", outcome="failure") == 1
    assert value(metrics, "ml_errors_total", component="training", error_type="KeyError") == 1
