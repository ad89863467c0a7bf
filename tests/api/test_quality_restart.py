"""Restart without amnesia, and a first model-quality round soon after start (issues 16, 18).

A new service over the same database exports every model-quality gauge of the last stored
round before it answers its first request; the first round of its own comes after
``ML_DRIFT_FIRST_RUN_SECONDS``, and rounds keep that pace until a window can be decided.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_model_quality_api import (
    MIN_WINDOW,
    MODEL,
    WINDOW,
    predict,
    reference_rows,
    run_job,
    scrape,
)
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.service.quality_job import QualityRunner

# Every gauge the model-quality job exports (clinical ones are covered by test_clinical_api).
QUALITY_GAUGES = {
    "ml_data_drift_window_size",
    "ml_data_drift_score",
    "ml_data_drift_detected",
    "ml_data_drift_share",
    "ml_model_estimated_accuracy",
    "ml_model_estimated_accuracy_stderr",
    "ml_model_accuracy",
    "ml_model_accuracy_samples",
}


def quality_samples(client: TestClient) -> dict[Any, float]:
    return {k: v for k, v in scrape(client).items() if k[0] in QUALITY_GAUGES}


def poll(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.05)


def test_every_quality_gauge_is_back_at_start_with_its_stored_value(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(drift_min_window=MIN_WINDOW, drift_window_size=WINDOW)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        preds = predict(c, reference_rows(WINDOW, seed=3, shift_std=3.0))
        for p in preds[:20]:
            r = c.post(
                f"/api/v1/predictions/{p['id']}/feedback",
                json={"actual": p["predicted_class"]},
                headers=auth("predict"),
            )
            assert r.status_code == 201, r.text
        result = run_job(c)
        assert result["drift"]["decided"] and result["drift"]["drifted_features"]
        before = quality_samples(c)
    assert {k[0] for k in before} == QUALITY_GAUGES

    # A new process over the same database, whose own first round is an hour away.
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        restored = quality_samples(c)
    assert restored == before


def test_a_result_of_another_version_is_not_restored(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(drift_min_window=MIN_WINDOW, drift_window_size=WINDOW)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        service = c.app.state.service  # type: ignore[attr-defined]
        version = service.models.get(MODEL).version
        service.store.save_drift_result(
            MODEL,
            "0-not-served",
            window_size=7,
            drift_share=0.0,
            results={"window_size": 7, "accuracy": {"accuracy": 0.1, "n": 3}},
        )
        assert c.portal.call(asyncio.to_thread, service.quality.job.restore_gauges) == 0
        assert ("ml_model_accuracy", frozenset({("model", MODEL)})) not in scrape(c)
        assert version != "0-not-served"


def test_the_first_round_comes_soon_and_repeats_until_a_window_is_decided(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        drift_min_window=MIN_WINDOW,
        drift_window_size=WINDOW,
        drift_first_run_seconds=0.2,
        drift_interval_seconds=3600.0,
    )
    share = ("ml_data_drift_share", frozenset({("model", MODEL)}))
    size = ("ml_data_drift_window_size", frozenset({("model", MODEL)}))
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        # No traffic yet: a round ran (window size 0), nothing could be decided.
        assert poll(lambda: size in scrape(c), timeout=10, what="first round")
        assert share not in scrape(c)
        # The window fills: a warm-up round decides it, an hour before the interval.
        predict(c, reference_rows(WINDOW, seed=4))
        poll(lambda: share in scrape(c), timeout=20, what="a decided window exported")
        # Decided as soon as a round found the minimum stored (the writer flushes as it goes:
        # CI once saw 150 of the 200 in the deciding round), never from fewer.
        assert MIN_WINDOW <= scrape(c)[size] <= WINDOW


class _Runner(QualityRunner):
    """The pacing alone: each round answers what the test queued."""

    def __init__(self, results: list[dict[str, Any]], **pace: float) -> None:
        super().__init__(None, None, None, **pace)  # type: ignore[arg-type]
        self.results = results

    async def run(self) -> dict[str, Any]:
        return self.results.pop(0)


def _round(*decided: bool) -> dict[str, Any]:
    return {
        "ran": True,
        "models": {f"m{i}": {"drift": {"decided": d}} for i, d in enumerate(decided)},
    }


def test_pacing_warm_until_every_model_is_decided_then_the_interval() -> None:
    rounds = [_round(False, True), {"ran": False}, _round(True, True), _round(False, False)]
    runner = _Runner(rounds, interval=300.0, first=10.0)
    paces = [asyncio.run(runner.scheduled()) for _ in range(4)]
    # Undecided, lock held elsewhere: keep the fast pace; all decided: the interval, for good.
    assert paces == [10.0, 10.0, 300.0, 300.0]
    assert runner.after_failure() == 300.0


def test_pacing_ends_after_one_interval_and_never_exceeds_it() -> None:
    runner = _Runner([_round(False)], interval=300.0, first=10.0)
    runner._warm_until = time.monotonic() - 1  # one interval has passed, still undecided
    assert asyncio.run(runner.scheduled()) == 300.0
    assert _Runner([], interval=2.0, first=10.0).first == 2.0  # never later than the interval
    assert _Runner([], interval=300.0, first=10.0).after_failure() == 10.0


@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_first_run_delay_must_be_positive(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DRIFT_FIRST_RUN_SECONDS", value)
    with pytest.raises(ValueError, match="drift_first_run_seconds"):
        Settings()
