"""A bad bundle is refused alone, loudly and by name; the other models keep serving.

One app holds the two good bundled models and one model per kind of bad bundle
(``tests/ml/forge.py``), each a copy of ``diagnostic``: refused at start-up, or refused by the
model watcher while its old version keeps serving and another model's retrain still loads.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth
from tests.ml.forge import BAD_BUNDLES

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.bundle import load_bundle, save_bundle
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.service import wiring

WATCH_SECONDS = 0.1
POLL_TIMEOUT = 30.0


def copy_model(model_dir: Path, source: str, name: str) -> str:
    """Save ``source``'s CURRENT bundle as a new model ``name``; its version."""
    b = load_bundle(model_dir, source)
    return save_bundle(
        model_dir,
        name,
        b.pipeline,
        schema=FeatureSchema.from_list(b.metadata["features"]),
        classes=b.metadata["classes"],
        metrics=b.metadata["training_metrics"],
        profile=b.metadata["profile"],
    )


def retrain(model_dir: Path, name: str) -> str:
    """A good new version of ``name`` (the same pipeline, saved again)."""
    return copy_model(model_dir, name, name)


def poll(check: Callable[[], bool], what: str, timeout: float = POLL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_for_version(client: TestClient, name: str, version: str) -> None:
    poll(lambda: served_version(client, name) == version, f"{name} {version} to serve")


def refused(client: TestClient) -> dict[str, tuple[str | None, str]]:
    checks = client.get("/health").json()["checks"]["models"]
    return {r["model"]: (r["version"], r["reason"]) for r in checks["refused"]}


def served_version(client: TestClient, name: str) -> str | None:
    r = client.get(f"/api/v1/models/{name}", headers=auth("predict"))
    return r.json()["version"] if r.status_code == 200 else None


def predict(client: TestClient, name: str) -> Any:
    return client.post(
        f"/api/v1/models/{name}/predict",
        json={"features": diagnostic_row(1)},
        headers=auth("predict"),
    )


def errors_logged(caplog: pytest.LogCaptureFixture, model: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno == logging.ERROR and r.__dict__.get("model") == model
    ]


def failures(registry: CollectorRegistry, model: str, reason: str) -> float | None:
    return registry.get_sample_value(
        "ml_model_load_failures_total", {"model": model, "reason": reason}
    )


def refused_gauge(registry: CollectorRegistry, model: str, reason: str) -> float | None:
    """``ml_model_bundle_refused`` (what ModelBundleRefused reads); None when absent."""
    return registry.get_sample_value("ml_model_bundle_refused", {"model": model, "reason": reason})


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "MODEL_WATCH_SECONDS", WATCH_SECONDS)


def test_bad_bundles_are_refused_at_start_and_the_others_serve(
    model_dir: Path,
    settings: Settings,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected: dict[str, tuple[str | None, str]] = {}
    for kind, (make, reason) in BAD_BUNDLES.items():
        name = f"bad_{kind}"
        good = copy_model(model_dir, "diagnostic", name)
        version = make(model_dir, name)
        shutil.rmtree(model_dir / name / good)  # the bad version is the only one
        expected[name] = (None if kind == "bad_current" else version, reason)

    with caplog.at_level(logging.ERROR), TestClient(create_app(settings, registry=registry)) as c:
        health = c.get("/health")
        assert health.status_code == 200  # ready: the good models serve
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["models"]["loaded"] == ["diabetes_risk", "diagnostic"]
        assert refused(c) == expected
        assert c.get("/health/ready").status_code == 200
        listed = c.get("/api/v1/models", headers=auth("predict")).json()
        assert {m["name"] for m in listed} == {"diabetes_risk", "diagnostic"}
        assert predict(c, "diagnostic").status_code == 200
        for name, (version, reason) in expected.items():
            assert predict(c, name).status_code == 404, name
            assert failures(registry, name, reason) == 1, name
            # Set before the first scrape could happen: the alert needs no counter increase.
            assert refused_gauge(registry, name, reason) == 1, name
            [record] = errors_logged(caplog, name)
            assert (record.__dict__["version"], record.__dict__["reason"]) == (version, reason)
        assert refused_gauge(registry, "diagnostic", "integrity") is None
        assert registry.get_sample_value(
            "ml_errors_total", {"component": "model", "error_type": "BundleRefused"}
        ) == len(expected)


def test_no_model_loads_and_readiness_stays_503(
    model_dir: Path, settings: Settings, registry: CollectorRegistry
) -> None:
    for name in ("diagnostic", "diabetes_risk"):
        BAD_BUNDLES["nan_coef"].make(model_dir, name)
        for version in [v.name for v in (model_dir / name).iterdir() if v.name[0].isdigit()]:
            if version != (model_dir / name / "CURRENT").read_text().strip():
                shutil.rmtree(model_dir / name / version)
    with TestClient(create_app(settings, registry=registry)) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["models"]["status"] == "none_loaded"
        assert set(refused(c)) == {"diagnostic", "diabetes_risk"}


def test_the_watcher_refuses_bad_versions_once_and_keeps_serving(
    model_dir: Path,
    settings: Settings,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    fast_watch: None,
) -> None:
    old = {
        f"bad_{kind}": copy_model(model_dir, "diagnostic", f"bad_{kind}") for kind in BAD_BUNDLES
    }
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings, registry=registry)) as c:
        assert refused(c) == {}
        assert predict(c, "bad_nan_coef").json()["version"] == old["bad_nan_coef"]
        expected = {}
        for kind, (make, reason) in BAD_BUNDLES.items():
            name = f"bad_{kind}"
            version = make(model_dir, name)
            expected[name] = (None if kind == "bad_current" else version, reason)
        retrained = retrain(model_dir, "diabetes_risk")

        wait_for_version(c, "diabetes_risk", retrained)
        poll(lambda: refused(c) == expected, "every bad version refused")
        for name in expected:
            assert served_version(c, name) == old[name], name
            r = predict(c, name)
            assert r.status_code == 200 and r.json()["version"] == old[name], name

        # More rounds of the watcher: the refused versions are not tried (or logged) again.
        # Rounds run one after the other, so the round that loads the second of these two
        # versions started after every refusal above and looked at every bad model again.
        for _ in range(2):
            wait_for_version(c, "diabetes_risk", retrain(model_dir, "diabetes_risk"))
        for name, (version, reason) in expected.items():
            assert failures(registry, name, reason) == 1, name
            [record] = errors_logged(caplog, name)
            assert record.__dict__["version"] == version
            assert record.__dict__["reason"] == reason
            assert refused_gauge(registry, name, reason) == 1, name
        scrape = c.get("/metrics").text
        for name, (version, _) in expected.items():
            assert f'model="{name}",version="{version}"' not in scrape
            assert f'ml_model_info{{model="{name}",version="{old[name]}"}} 1.0' in scrape

        # A good version of one refused model clears its gauge; the others stay refused.
        fixed = "bad_nan_coef"
        wait_for_version(c, fixed, copy_model(model_dir, "diagnostic", fixed))
        poll(lambda: fixed not in refused(c), f"{fixed}'s refusal cleared")
        poll(
            lambda: refused_gauge(registry, fixed, expected[fixed][1]) is None,
            f"{fixed}'s ml_model_bundle_refused removed",
        )
        for name, (_, reason) in expected.items():
            if name != fixed:
                assert refused_gauge(registry, name, reason) == 1, name


@pytest.fixture
def quality_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(drift_min_window=10)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        yield c


def test_one_models_failure_does_not_break_the_quality_job(
    quality_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = quality_client
    for _ in range(3):
        assert predict(c, "diagnostic").status_code == 200
    service = c.app.state.service  # type: ignore[attr-defined]
    # Validation at load makes a bad profile impossible; break one in memory to prove the
    # job's own isolation (the backstop for a bug or an input nobody foresaw).
    service.models.get("diagnostic").metadata["profile"] = {}
    with caplog.at_level(logging.ERROR):
        r = c.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
    assert r.status_code == 200, r.text
    models = r.json()["models"]
    assert models["diagnostic"]["error"] == "KeyError"
    assert "drift" in models["diabetes_risk"] and "error" not in models["diabetes_risk"]
    assert (
        service.registry.get_sample_value(
            "ml_errors_total", {"component": "quality", "error_type": "KeyError"}
        )
        == 1
    )
    assert errors_logged(caplog, "diagnostic")
