"""Versions, promote, rollback, shadow and promotion reports over HTTP: scopes, bad input,
audit, and the worker switching at once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import KEYS, auth, save_candidate, write_wine_csv

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.bundle import load_metadata
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.pointers import current_version, shadow_version
from nexus_ml.ml.sources import train_from_csv

pytestmark = pytest.mark.usefixtures("one_openmp_thread")
API = "/api/v1/models/diagnostic"
ADMIN = hashlib.sha256(KEYS["admin"].encode()).hexdigest()[:12]
UNKNOWN_VERSION = "20990101T000000Z-0123abcd"


def predict_version(client: TestClient) -> str:
    data = load_dataset("diagnostic")
    row = dict(zip(data.feature_names, map(float, data.X[0]), strict=True))
    r = client.post(f"{API}/predict", json={"features": row}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


def audit(client: TestClient) -> list[tuple[str, str, dict]]:
    store = client.app.state.service.store  # type: ignore[attr-defined]
    return [(e.actor, e.action, e.details) for e in reversed(store.list_audit())]


def test_versions_show_roles_provenance_and_fingerprints(
    client: TestClient, settings: Settings
) -> None:
    champion = current_version(settings.model_path, "diagnostic")
    candidate = save_candidate(settings.model_path, "diagnostic")
    body = client.get(f"{API}/versions", headers=auth("monitor")).json()
    assert (body["champion"], body["challenger"]) == (champion, None)
    newest, oldest = body["versions"]
    assert (newest["version"], newest["role"]) == (candidate, "retired")
    assert (oldest["version"], oldest["role"]) == (champion, "champion")
    assert newest["source"] == {"kind": "bundled", "dataset": "diagnostic"}
    assert 0.9 < newest["holdout"]["accuracy"] <= 1
    assert set(newest["holdout"]["recall"]) == {"benign", "malignant"}
    assert newest["schema_hash"] == oldest["schema_hash"] and len(newest["schema_hash"]) == 64
    assert newest["compatible_with_champion"] is True
    assert len(newest["profile_hash"]) == 64
    assert newest["created_at"].endswith("Z")


def test_promote_switches_this_worker_at_once_idempotently_and_is_audited(
    client: TestClient, settings: Settings
) -> None:
    champion = predict_version(client)
    candidate = save_candidate(settings.model_path, "diagnostic")
    r = client.post(f"{API}/versions/{candidate}/promote", headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": "diagnostic",
        "before": champion,
        "after": candidate,
        "changed": True,
        "action": "promote",
        "differences": [],
    }
    assert predict_version(client) == candidate  # no wait: this worker refreshed
    again = client.post(f"{API}/versions/{candidate}/promote", json={}, headers=auth("admin"))
    assert again.status_code == 200 and again.json()["changed"] is False
    assert audit(client) == [(ADMIN, "promote", {"before": champion, "after": candidate})]
    # Rollback: back to the champion in force before the promote.
    r = client.post(f"{API}/rollback", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["after"] == champion, r.text
    assert predict_version(client) == champion
    assert audit(client)[-1] == (ADMIN, "rollback", {"before": candidate, "after": champion})


def test_an_incompatible_version_needs_the_flag_and_is_audited_as_breaking(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    champion = current_version(settings.model_path, "diagnostic")
    wine = save_candidate(
        settings.model_path, "diagnostic", csv_path=write_wine_csv(tmp_path / "w.csv")
    )
    versions = client.get(f"{API}/versions", headers=auth("monitor")).json()["versions"]
    assert versions[0]["compatible_with_champion"] is False
    r = client.post(f"{API}/versions/{wine}/promote", headers=auth("admin"))
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "version"
    assert "features removed: mean_radius" in r.json()["detail"]
    assert "replace_incompatible" in r.json()["detail"]
    assert current_version(settings.model_path, "diagnostic") == champion
    assert predict_version(client) == champion
    assert audit(client) == []
    # Nor can it run in shadow: it cannot score the champion's requests.
    r = client.post(f"{API}/versions/{wine}/shadow", headers=auth("admin"))
    assert r.status_code == 409 and "features removed" in r.json()["detail"]
    r = client.post(
        f"{API}/versions/{wine}/promote", json={"replace_incompatible": True}, headers=auth("admin")
    )
    assert r.status_code == 200 and r.json()["action"] == "breaking_replace", r.text
    [(actor, action, details)] = audit(client)
    assert (actor, action, details["before"], details["after"]) == (
        ADMIN,
        "breaking_replace",
        champion,
        wine,
    )


def test_shadow_start_and_stop(client: TestClient, settings: Settings) -> None:
    champion = current_version(settings.model_path, "diagnostic")
    candidate = save_candidate(settings.model_path, "diagnostic")
    models = client.app.state.service.models  # type: ignore[attr-defined]
    r = client.post(f"{API}/versions/{candidate}/shadow", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["changed"], r.text
    assert models.shadow("diagnostic").version == candidate
    assert predict_version(client) == champion  # clients still get the champion
    body = client.get(f"{API}/versions", headers=auth("monitor")).json()
    assert body["challenger"] == candidate and body["versions"][0]["role"] == "challenger"
    again = client.post(f"{API}/versions/{candidate}/shadow", headers=auth("admin"))
    assert again.json()["changed"] is False
    r = client.post(f"{API}/versions/{champion}/shadow", headers=auth("admin"))
    assert r.status_code == 409 and "champion" in r.json()["detail"]
    r = client.delete(f"{API}/shadow", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["before"] == candidate
    assert models.shadow("diagnostic") is None
    assert shadow_version(settings.model_path, "diagnostic") is None
    assert client.delete(f"{API}/shadow", headers=auth("admin")).json()["changed"] is False
    assert [a for _, a, _ in audit(client)] == ["shadow_start", "shadow_stop"]


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/api/v1/models/nope/versions", 404, "unknown model"),
        ("GET", "/api/v1/models/NOPE/versions", 404, "unknown model"),
        ("GET", "/api/v1/models/nope/promotion-reports", 404, "unknown model"),
        ("POST", f"/api/v1/models/nope/versions/{UNKNOWN_VERSION}/promote", 404, "unknown model"),
        ("POST", f"{API}/versions/{UNKNOWN_VERSION}/promote", 404, "unknown version"),
        ("POST", f"{API}/versions/not-a-version/promote", 404, "unknown version"),
        ("POST", f"{API}/versions/{UNKNOWN_VERSION}/shadow", 404, "unknown version"),
        ("POST", "/api/v1/models/nope/rollback", 404, "unknown model"),
        ("DELETE", "/api/v1/models/nope/shadow", 404, "unknown model"),
        ("POST", f"{API}/rollback", 409, "no previous champion"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    shared_client: TestClient,
    shared_settings: Settings,
    method: str,
    path: str,
    status: int,
    detail: str,
) -> None:
    champion = current_version(shared_settings.model_path, "diagnostic")
    r = shared_client.request(method, path, headers=auth("admin"))
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert current_version(shared_settings.model_path, "diagnostic") == champion
    assert audit(shared_client) == []


def test_a_bad_promote_body_is_a_422(shared_client: TestClient, shared_settings: Settings) -> None:
    champion = current_version(shared_settings.model_path, "diagnostic")
    r = shared_client.post(
        f"{API}/versions/{champion}/promote", json={"replace": True}, headers=auth("admin")
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", f"{API}/versions", "monitor"),
        ("GET", f"{API}/promotion-reports", "monitor"),
        ("POST", f"{API}/versions/{UNKNOWN_VERSION}/promote", "admin"),
        ("POST", f"{API}/rollback", "admin"),
        ("POST", f"{API}/versions/{UNKNOWN_VERSION}/shadow", "admin"),
        ("DELETE", f"{API}/shadow", "admin"),
    ],
)
def test_scopes(shared_client: TestClient, method: str, path: str, allowed: str) -> None:
    assert shared_client.request(method, path).status_code == 401
    below = {"monitor": ["predict"], "admin": ["predict", "monitor"]}[allowed]
    for scope in below:
        assert shared_client.request(method, path, headers=auth(scope)).status_code == 403
    assert shared_client.request(method, path, headers=auth(allowed)).status_code not in (401, 403)


@pytest.fixture
def auto_client(
    make_settings: Callable[..., Settings], registry: CollectorRegistry, tmp_path: Path
) -> Iterator[TestClient]:
    """A service whose diagnostic model is under an ``auto`` policy with generous tolerances."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[models.diagnostic]\nmode = "auto"\naccuracy_tolerance = 1.0\n'
        "recall_tolerance = 1.0\nsegment_recall_tolerance = 1.0\n"
    )
    with TestClient(
        create_app(make_settings(promotion_policy_file=policy), registry=registry)
    ) as c:
        yield c


def train(client: TestClient, model: str = "diagnostic") -> dict:
    r = client.post(f"/api/v1/models/{model}/train", json={"seed": 5}, headers=auth("admin"))
    assert r.status_code == 202, r.text
    client.portal.call(client.app.state.service.trainer.wait_idle)  # type: ignore[attr-defined,union-attr]
    return client.get(f"/api/v1/training/runs/{r.json()['id']}", headers=auth("admin")).json()


def test_an_auto_policy_promotes_an_accepted_retrain_and_stores_the_report(
    auto_client: TestClient, settings: Settings
) -> None:
    champion = predict_version(auto_client)
    run = train(auto_client)
    assert run["status"] == "succeeded", run
    assert predict_version(auto_client) == run["version"] != champion
    [report] = auto_client.get(f"{API}/promotion-reports", headers=auth("monitor")).json()
    assert report["decision"] == "promoted" and report["policy"] == "auto"
    assert (report["candidate_version"], report["champion_version"]) == (run["version"], champion)
    assert report["actor"] == ADMIN
    body = report["report"]
    assert body["data"]["holdout_rows"] == run["metrics"]["n_holdout"]
    side = body["metrics"]
    assert set(side) == {"candidate", "champion"}
    assert side["candidate"]["accuracy"] == pytest.approx(run["metrics"]["holdout_accuracy"])
    metrics = [c["metric"] for c in body["criteria"]]
    assert metrics == ["accuracy", "recall[malignant]"]
    actions = [(a, d.get("after")) for _, a, d in audit(auto_client) if a != "train"]
    assert actions == [("promotion_report", None), ("promote", run["version"])]
    assert audit(auto_client)[-1][0] == "service"  # the policy promoted it


@pytest.fixture
def wine_diagnostic(client: TestClient, settings: Settings, tmp_path: Path) -> Path:
    """``diagnostic`` replaced (on purpose) by a model trained on the wine CSV; its path."""
    wine = write_wine_csv(tmp_path / "wine.csv")
    train_from_csv(wine, "cultivar", "diagnostic", settings.model_path, replace_incompatible=True)
    client.app.state.service.models.refresh()  # type: ignore[attr-defined]
    return wine


def test_retraining_a_csv_model_with_a_bundled_name_retrains_its_csv(
    client: TestClient, settings: Settings, wine_diagnostic: Path
) -> None:
    """The hostile read: it used to retrain the bundled dataset over the CSV-trained model."""
    run = train(client)
    assert run["status"] == "succeeded", run
    metadata = load_metadata(settings.model_path, "diagnostic", run["version"])
    assert metadata["source"]["kind"] == "csv" and metadata["classes"] == ["c0", "c1", "c2"]
    assert run["metrics"]["n_features"] == 13


def test_a_retrain_whose_schema_changed_fails_and_saves_nothing(
    client: TestClient, settings: Settings, wine_diagnostic: Path
) -> None:
    wine = wine_diagnostic
    lines = wine.read_text().splitlines()
    header = lines[0].replace("alcohol,", "alcohol_pct,")
    wine.write_text("\n".join([header, *lines[1:]]) + "\n")  # the file changed under the model
    before = sorted(p.name for p in (settings.model_path / "diagnostic").iterdir() if p.is_dir())
    run = train(client)
    assert run["status"] == "failed"
    assert "features removed: alcohol" in run["error"]
    after = sorted(p.name for p in (settings.model_path / "diagnostic").iterdir() if p.is_dir())
    assert after == before


def test_changes_are_read_back_from_the_audit_endpoint(
    client: TestClient, settings: Settings
) -> None:
    champion = current_version(settings.model_path, "diagnostic")
    candidate = save_candidate(settings.model_path, "diagnostic")
    for path in (f"{API}/versions/{candidate}/shadow", f"{API}/versions/{candidate}/promote"):
        assert client.post(path, headers=auth("admin")).status_code == 200
    body = client.get("/api/v1/monitoring/audit?target=diagnostic", headers=auth("admin")).json()
    assert [(e["actor"], e["action"], e["details"]) for e in body["entries"]] == [
        (ADMIN, "promote", {"before": champion, "after": candidate}),
        (ADMIN, "shadow_start", {"before": None, "after": candidate}),
    ]
