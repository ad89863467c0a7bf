"""Feedback is checked against the classes of the version that made the prediction."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_class_labels import _csv
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.ml.pointers import current_version, set_current
from nexus_ml.ml.sources import train_from_csv

URL = "/api/v1/models/mine/predict"
ROW = {"age": 50, "sex": 1, "bmi": 32.0}


def _version(tmp_path: Path, labels: list[str], into: Path) -> str:
    """Train ``mine`` with ``labels`` apart, then copy its version folder into ``into``."""
    apart = tmp_path / "_".join(labels)
    train_from_csv(_csv(tmp_path / f"{apart.name}.csv", labels), "outcome", "mine", apart)
    version = current_version(apart, "mine")
    assert version is not None
    (into / "mine").mkdir(parents=True, exist_ok=True)
    shutil.copytree(apart / "mine" / version, into / "mine" / version)
    return version


def test_feedback_after_a_champion_change_uses_the_predicting_versions_classes(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    v1 = _version(tmp_path, ["low", "high"], settings.model_path)
    v2 = _version(tmp_path, ["lean", "obese"], settings.model_path)
    set_current(settings.model_path, "mine", v1)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        first = client.post(URL, json={"features": ROW}, headers=auth("predict")).json()
        second = client.post(URL, json={"features": ROW}, headers=auth("predict")).json()
        assert first["version"] == v1
        set_current(settings.model_path, "mine", v2)
        service.models.refresh()
        assert service.models.get("mine").version == v2
        now = client.post(URL, json={"features": ROW}, headers=auth("predict")).json()
        assert now["version"] == v2 and now["predicted_class"] in {"lean", "obese"}

        def label(pid: str, actual: str) -> Any:
            return client.post(
                f"/api/v1/predictions/{pid}/feedback",
                json={"actual": actual},
                headers=auth("predict"),
            )

        refused = label(second["id"], "obese")  # a class only the new champion has
        assert refused.status_code == 422 and refused.json()["field"] == "actual"
        assert "high" in refused.json()["detail"] and "obese" not in refused.json()["detail"]
        accepted = label(first["id"], "high")  # a class of v1, which the champion lacks
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["correct"] == (first["predicted_class"] == "high")
        # The prediction refused above is still unlabelled: the refusal changed nothing.
        assert label(second["id"], "low").status_code == 201
        # And the new champion's predictions take its own classes, not v1's.
        assert label(now["id"], "high").status_code == 422
        assert label(now["id"], "lean").status_code == 201
