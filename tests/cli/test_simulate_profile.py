"""``simulate`` for any model: rows drawn from the bundle's reference profile."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats
from tests.cli.test_drift_cli import env_for, last_json
from tests.helpers import KEYS, LiveService, stored_window
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.cli.simulate import SimulationConfig, make_samplers, run_simulation
from nexus_ml.cli.traffic import ProfileSampler, Shift
from nexus_ml.ml.bundle import load_metadata
from nexus_ml.ml.profile import build_profile
from nexus_ml.ml.sources import train_from_csv
from nexus_ml.stats.drift import DriftDetector

N_REF = 20_000
NAMES = ["age", "creatinine", "admission", "site"]


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    """Metadata of an imported-like model: an integer, a partly missing lab, two categories."""
    rng = np.random.default_rng(1)
    table = np.empty((N_REF, 4), dtype=object)
    table[:, 0] = rng.integers(18, 90, size=N_REF).tolist()
    lab = rng.lognormal(0.0, 0.4, size=N_REF)
    gone = rng.random(N_REF) < 0.2
    table[:, 1] = [None if g else v for v, g in zip(lab.tolist(), gone.tolist(), strict=True)]
    admission = rng.choice(["elective", "emergency", "transfer"], size=N_REF, p=[0.5, 0.4, 0.1])
    table[:, 2] = admission.tolist()
    site = rng.choice(["north", "south"], size=N_REF, p=[0.7, 0.3]).astype(object)
    site[rng.random(N_REF) < 0.05] = None
    table[:, 3] = site
    profile = build_profile(table, NAMES, categorical=["admission", "site"])
    features = [
        {"name": "age", "type": "integer", "nullable": False},
        {"name": "creatinine", "type": "number", "nullable": True},
        {"name": "admission", "type": "category", "nullable": False},
        {"name": "site", "type": "category", "nullable": True},
    ]
    return {"profile": profile, "features": features, "classes": ["no", "yes"]}


def draw(metadata: dict[str, Any], n: int, seed: int, **kwargs: Any) -> list[dict[str, Any]]:
    sampler = ProfileSampler("imported", metadata, seed=seed, **kwargs)
    return [sampler.sample().features for _ in range(n)]


def test_a_feature_segmented_by_value_is_drawn_on_its_values(metadata: dict[str, Any]) -> None:
    # "creatinine" declared as if segmented by value: every draw is one of the values (or
    # missing), never a number between them that would fall in "other".
    segmented = {
        **metadata,
        "segments": [
            {
                "feature": "creatinine",
                "groups": ["0.5", "1", "2.5", "missing", "other"],
                "edges": None,
            }
        ],
    }
    values = [r["creatinine"] for r in draw(segmented, 3000, seed=2)]
    assert set(values) == {0.5, 1.0, 2.5, None}
    # Without the declaration the same draws are continuous.
    assert len({r["creatinine"] for r in draw(metadata, 3000, seed=2)}) > 1000


def test_rows_follow_the_profile_for_every_type(metadata: dict[str, Any]) -> None:
    rows = draw(metadata, 10_000, seed=2)
    assert all(type(r["age"]) is int for r in rows)  # declared integer: sent as integers
    assert min(r["age"] for r in rows) >= 18 and max(r["age"] for r in rows) <= 89
    lab = np.array([np.nan if r["creatinine"] is None else r["creatinine"] for r in rows])
    assert np.isnan(lab).mean() == pytest.approx(0.2, abs=0.015)
    ref = np.asarray(metadata["profile"]["features"]["creatinine"]["quantiles"])
    # Against the sketch's own quantiles: the drawn values have the reference's distribution.
    assert stats.ks_2samp(lab[~np.isnan(lab)], ref).statistic < 0.03
    admission = [r["admission"] for r in rows]
    assert admission.count("emergency") / 10_000 == pytest.approx(0.4, abs=0.015)
    assert None not in admission  # never missing in training: never sent missing
    assert [r["site"] for r in rows].count(None) / 10_000 == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize("size", [1_000, 5_000])
def test_profile_traffic_is_not_drifted(metadata: dict[str, Any], size: int) -> None:
    det = DriftDetector.from_profile(metadata["profile"])
    for seed in range(3):
        window = stored_window(draw(metadata, size, seed=10 + seed), NAMES)
        assert det.score(window, NAMES).drifted_features == [], seed


def test_a_numeric_shift_is_drift_and_other_features_cannot_shift(
    metadata: dict[str, Any],
) -> None:
    det = DriftDetector.from_profile(metadata["profile"])
    shifted = draw(metadata, 1_000, seed=3, shifts=(Shift("creatinine", "add", 0.5),))
    assert det.score(stored_window(shifted, NAMES), NAMES).drifted_features == ["creatinine"]
    for feature in ("admission", "nope"):
        with pytest.raises(ValueError) as err:
            ProfileSampler("imported", metadata, (Shift(feature, "add", 1.0),))
        assert str(err.value) == (
            f"model 'imported' has no numeric feature {feature!r} to shift; "
            "its numeric features: 'age', 'creatinine'"
        )


def test_labels_follow_the_calibrated_confidence(metadata: dict[str, Any]) -> None:
    sampler = ProfileSampler("imported", metadata, seed=4)
    labels = [sampler.label_for({"predicted_class": "yes", "confidence": 0.8}) for _ in range(5000)]
    assert labels.count("yes") / 5000 == pytest.approx(0.8, abs=0.02)
    assert set(labels) == {"yes", "no"}


# -- against the service ----------------------------------------------------------------


@pytest.fixture
def custom(model_dir: Path, tmp_path: Path) -> str:
    """A model trained from a user's CSV (integer ages with ties), beside the bundled ones."""
    rng = np.random.default_rng(5)
    age = rng.integers(20, 90, size=400)
    marker = rng.normal(1.0, 0.3, size=400)
    label = np.where(age / 90 + marker + rng.normal(0, 0.3, 400) > 1.5, "yes", "no")
    lines = [
        "age,marker,label",
        *(f"{a},{m:.3f},{y}" for a, m, y in zip(age, marker, label, strict=True)),
    ]
    (tmp_path / "custom.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    train_from_csv(tmp_path / "custom.csv", "label", "custom", model_dir)
    return "custom"


def test_cli_simulates_a_model_that_is_not_bundled(custom: str, live: LiveService) -> None:
    args = ["simulate", "--url", live.url, "--model", custom, "--count", "8", "--batch", "25"]
    r = CliRunner().invoke(
        app, [*args, "--feedback-rate", "1", "--json"], env=env_for(live.settings)
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ok"] == 8 and summary["predictions"] == 200
    assert summary["feedback_ok"] == summary["feedback_sent"] == 200
    # It said what it does before doing it, and showed progress (on stderr).
    assert "simulating 8 requests to" in r.stderr and "8/8" in r.stderr
    deadline = time.monotonic() + 10
    while live.service.store.count_predictions(custom) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = live.service.store.recent_predictions(custom, limit=1000)
    assert len(rows) == 200
    # Integer ages stay integers (the schema's type, or integral training data).
    assert all(type(p.features["age"]) is int for p in rows)
    assert not all(type(p.features["marker"]) is int for p in rows)
    drift = CliRunner().invoke(app, ["drift", "--json"], env=env_for(live.settings))
    assert drift.exit_code == 0, drift.output
    assert last_json(drift.stdout)["models"][custom]["drift"]["drifted_features"] == []


def test_cli_names_the_numeric_features_when_a_shift_is_not_one(
    custom: str, tmp_path: Path
) -> None:
    env = {"ML_MODEL_PATH": str(tmp_path / "models"), "ML_DATA_DIR": str(tmp_path / "data")}
    r = CliRunner().invoke(
        app,
        ["simulate", "--model", custom, "--count", "1", "--shift", "label=1"],
        env={**env, "ML_API_KEYS": f"predict:{KEYS['predict']}"},
    )
    assert r.exit_code == 2
    assert "numeric feature 'label'" in r.output and "custom: age, marker" in r.output


def test_profile_drawn_diabetes_traffic_flags_nothing(live: LiveService) -> None:
    # The s4 report came from this model: profile-drawn rows, through the whole service.
    metadata = {"diabetes_risk": load_metadata(live.settings.model_path, "diabetes_risk")}
    config = SimulationConfig(models=("diabetes_risk",), count=12, batch=25, seed=9)
    samplers = {"diabetes_risk": ProfileSampler("diabetes_risk", metadata["diabetes_risk"])}
    assert set(make_samplers(config, metadata)) == {"diabetes_risk"}

    async def go() -> None:
        headers = {"Authorization": f"Bearer {KEYS['predict']}"}
        async with httpx.AsyncClient(base_url=live.url, headers=headers, timeout=10) as client:
            result = await run_simulation(client, config, samplers)
        assert result.by_class["ok"] == 12

    asyncio.run(go())
    deadline = time.monotonic() + 10
    while live.service.store.count_predictions("diabetes_risk") < 300:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = CliRunner().invoke(app, ["drift", "--json"], env=env_for(live.settings))
    drift = last_json(r.stdout)["models"]["diabetes_risk"]["drift"]
    assert drift["decided"] and drift["drifted_features"] == []
