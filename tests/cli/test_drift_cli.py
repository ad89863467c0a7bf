"""``nexus-ml drift``: directly on the database, and through a running service."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from tests.cli.test_simulate import simulate
from tests.helpers import KEYS, LiveService
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.cli.drift import top_scores
from nexus_ml.cli.traffic import Shift
from nexus_ml.config import Settings

ROWS = 250  # above the default min_window (200): a drift decision is taken


@pytest.fixture
def shifted(live: LiveService) -> LiveService:
    """The live service after ROWS diagnostic predictions with mean_radius shifted by 1.5 std."""
    simulate(
        live,
        models=("diagnostic",),
        count=ROWS // 25,
        batch=25,
        seed=11,
        shifts=(Shift("mean_radius", "add", 1.5),),
        feedback_rate=0.2,
    )
    deadline = time.monotonic() + 10
    while live.service.store.count_predictions("diagnostic") < ROWS and time.monotonic() < deadline:
        time.sleep(0.05)
    return live


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "ML_DATABASE_URL": settings.resolved_database_url,
        "ML_MODEL_PATH": str(settings.model_path),
        "ML_DATA_DIR": str(settings.data_dir),
        "ML_API_KEYS": settings.api_keys.get_secret_value(),
    }


def last_json(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def test_local_run_finds_the_shifted_feature(shifted: LiveService) -> None:
    r = CliRunner().invoke(app, ["drift", "--json"], env=env_for(shifted.settings))
    assert r.exit_code == 0, r.output
    result = last_json(r.stdout)
    assert result["ran"] is True
    diag = result["models"]["diagnostic"]
    assert diag["window_size"] == ROWS
    assert diag["drift"]["drifted_features"] == ["mean_radius"]
    # Only the shift can leave the training range, so only mean_radius has quality issues.
    assert 0.9 < diag["quality"]["score"] < 1.0
    assert set(diag["quality"]["by_feature"]) == {"mean_radius"}
    assert diag["accuracy"]["n"] > 0
    assert diag["estimated_accuracy"]["stderr"] is not None
    # Too few rows for the other model: scores may show, no decision is taken.
    assert result["models"]["diabetes_risk"]["drift"]["decided"] is False
    # The stored result is what outlives the command: the service's overview shows it.
    stored = shifted.service.store.latest_drift_result("diagnostic")
    assert stored is not None and stored.window_size == ROWS


def test_local_table(shifted: LiveService) -> None:
    # Wide enough that no table row wraps: each row is one line to look at.
    env = {**env_for(shifted.settings), "COLUMNS": "250"}
    r = CliRunner().invoke(app, ["drift"], env=env)
    assert r.exit_code == 0, r.output
    rows = {
        cells[0]: cells[1]
        for line in r.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 2
    }
    assert rows["features drifted"] == "1/30: mean_radius"
    assert rows["top psi"].startswith("mean_radius ")
    assert rows["window size"] == "250"  # the last table printed is diagnostic's
    assert " ± " in rows["estimated accuracy"]
    assert "diabetes_risk" in r.stdout and "not decided" in r.stdout


def test_fail_on_drift(shifted: LiveService) -> None:
    r = CliRunner().invoke(app, ["drift", "--fail-on-drift"], env=env_for(shifted.settings))
    assert r.exit_code == 1, r.output


def test_remote_run_through_the_service(shifted: LiveService) -> None:
    r = CliRunner().invoke(
        app, ["drift", "--url", shifted.url, "--api-key", KEYS["admin"], "--json"]
    )
    assert r.exit_code == 0, r.output
    assert last_json(r.stdout)["models"]["diagnostic"]["drift"]["drifted_features"] == [
        "mean_radius"
    ]
    # The service ran it, so its own gauges moved.
    value = shifted.registry.get_sample_value(
        "ml_data_drift_detected", {"model": "diagnostic", "feature": "mean_radius"}
    )
    assert value == 1.0


def test_remote_needs_admin(live: LiveService) -> None:
    r = CliRunner().invoke(app, ["drift", "--url", live.url, "--api-key", KEYS["predict"]])
    assert r.exit_code == 2
    assert "403" in r.output


def test_undrifted_local_run_finds_nothing(live: LiveService) -> None:
    simulate(live, models=("diagnostic",), count=10, batch=25, seed=12)
    deadline = time.monotonic() + 10
    while live.service.store.count_predictions("diagnostic") < ROWS and time.monotonic() < deadline:
        time.sleep(0.05)
    r = CliRunner().invoke(app, ["drift", "--json", "--fail-on-drift"], env=env_for(live.settings))
    assert r.exit_code == 0, r.output
    diag = last_json(r.stdout)["models"]["diagnostic"]["drift"]
    assert diag["decided"] is True and diag["drifted_features"] == []


def test_top_scores_orders_and_skips_missing() -> None:
    drift = {
        "features": {
            "a": {"scores": {"psi": 0.1, "ks": None}},
            "b": {"scores": {"psi": 0.3, "ks": 0.2}},
            "c": {"scores": {"psi": float("nan"), "ks": 0.1}},
        }
    }
    assert top_scores(drift, 2) == {"psi": [("b", 0.3), ("a", 0.1)], "ks": [("b", 0.2), ("c", 0.1)]}


def test_local_run_honours_a_threshold_saved_through_the_api(shifted: LiveService) -> None:
    # mean_radius's PSI after a 1.5 std shift is far above 0.1 but below 1000: with the
    # limit raised through the API, the CLI (another process, same database) must agree
    # with the service that nothing has drifted.
    put = httpx.put(
        shifted.url + "/api/v1/monitoring/config/thresholds",
        json={"data_drift_high": 1000},
        headers={"Authorization": f"Bearer {KEYS['admin']}"},
        timeout=10,
    )
    assert put.status_code == 200, put.text
    r = CliRunner().invoke(app, ["drift", "--json"], env=env_for(shifted.settings))
    assert r.exit_code == 0, r.output
    diag = last_json(r.stdout)["models"]["diagnostic"]["drift"]
    assert diag["decided"] is True
    assert diag["drifted_features"] == []


def test_local_run_builds_the_job_not_the_service(
    model_dir: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job gets its collaborators (store, models, metrics, thresholds) directly: no
    # writer, collector, scheduler or HTTP app is built for a one-off command.
    from nexus_ml.service import wiring

    def no_service(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nexus-ml drift must not build the whole service")

    monkeypatch.setattr(wiring, "Service", no_service)
    env = {
        "ML_DATABASE_URL": f"sqlite:///{tmp_path / 'drift.db'}",
        "ML_MODEL_PATH": str(model_dir),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "ML_API_KEYS": f"admin:{KEYS['admin']}",
    }
    r = CliRunner().invoke(app, ["drift", "--json"], env=env)
    assert r.exit_code == 0, r.output
    result = last_json(r.stdout)
    assert result["ran"] is True
    assert sorted(result["models"]) == ["diabetes_risk", "diagnostic"]
    assert all(m["window_size"] == 0 for m in result["models"].values())
