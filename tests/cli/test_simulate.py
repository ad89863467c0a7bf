"""``nexus-ml simulate`` against a real service on a loopback port (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.helpers import KEYS, LiveService, free_port
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.cli import simulate as simulate_module
from nexus_ml.cli.simulate import (
    SimulationConfig,
    SimulationResult,
    live_counts,
    run_simulation,
)
from nexus_ml.cli.traffic import RowSampler, Shift, parse_shift, percentiles
from nexus_ml.ml.datasets import load_dataset

WAIT_SECONDS = 10.0


def simulate(live: LiveService, **config: Any) -> SimulationResult:
    async def go() -> SimulationResult:
        async with httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {KEYS['predict']}"}, timeout=10
        ) as client:
            return await run_simulation(client, SimulationConfig(**config))

    return asyncio.run(go())


def stored(live: LiveService, n: int, model: str = "diagnostic") -> list[Any]:
    """The model's stored predictions once the writer has written ``n`` (bounded wait)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while live.service.store.count_predictions(model) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return live.service.store.recent_predictions(model, limit=10_000)


def sample(live: LiveService, name: str, **labels: str) -> float:
    value = live.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- pure helpers -----------------------------------------------------------------------


def test_parse_shift() -> None:
    assert parse_shift("mean_radius=0.5") == Shift("mean_radius", "add", 0.5)
    assert parse_shift("bmi=-1") == Shift("bmi", "add", -1.0)
    assert parse_shift("bmi=x1.5") == Shift("bmi", "scale", 1.5)
    # Feature names are the user's column names: any printable text, "=" included.
    assert parse_shift("od280/od315 of wines=0.5") == Shift("od280/od315 of wines", "add", 0.5)
    assert parse_shift("a=b=x2") == Shift("a=b", "scale", 2.0)
    for bad in ("mean_radius", "=1", "a=b", "a=x"):
        with pytest.raises(ValueError):
            parse_shift(bad)


def test_sampler_is_reproducible_and_shifts_in_stds() -> None:
    data = load_dataset("diagnostic")
    j = data.feature_names.index("mean_radius")
    a = RowSampler("diagnostic", seed=5)
    b = RowSampler("diagnostic", seed=5)
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]
    shifted = RowSampler("diagnostic", (Shift("mean_radius", "add", 1.0),), seed=1)
    values = np.array([shifted.sample().features["mean_radius"] for _ in range(4000)])
    moved = (values.mean() - data.X[:, j].mean()) / data.X[:, j].std()
    assert moved == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="no numeric feature 'bmi'"):
        RowSampler("diagnostic", (Shift("bmi", "add", 1.0),))


def test_whole_numbered_and_by_value_segment_features_keep_their_values() -> None:
    # diabetes_risk segments by sex (1 or 2) and age bands; age is in whole years.
    data = load_dataset("diabetes_risk")
    sampler = RowSampler("diabetes_risk", seed=3)
    rows = [sampler.sample().features for _ in range(2000)]
    assert {r["sex"] for r in rows} == {1.0, 2.0}
    for name in ("age", "s1", "s6"):  # whole numbers in every row of the dataset
        values = np.array([r[name] for r in rows])
        assert (values == np.round(values)).all(), name
        assert set(values) <= set(data.X[:, data.feature_names.index(name)]), name
    # The others are still jittered: rows are not verbatim copies of the dataset's.
    bmi = np.array([r["bmi"] for r in rows])
    assert not set(bmi) <= set(data.X[:, data.feature_names.index("bmi")])


def test_percentiles_of_nothing_are_nan() -> None:
    assert all(v != v for v in percentiles([]).values())
    assert percentiles([1.0, 2.0, 3.0])["p50"] == 2.0


def test_config_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="--count or --duration"):
        SimulationConfig()


# -- against the service ------------------------------------------------------------------


def test_counts_and_feedback_with_true_labels(live: LiveService) -> None:
    result = simulate(
        live, models=("diagnostic",), count=40, feedback_rate=1.0, feedback_delay=0.1, seed=3
    )
    assert (result.sent, result.by_class["ok"], result.predictions) == (40, 40, 40)
    assert result.by_class["4xx"] == result.by_class["5xx"] == result.by_class["error"] == 0
    assert (result.feedback_sent, result.feedback_ok) == (40, 40)
    assert len(result.latencies) == 40
    # The labels are the dataset's truth: the service's verdict agrees with ours.
    right = sample(live, "ml_model_feedback_total", model="diagnostic", correct="true")
    wrong = sample(live, "ml_model_feedback_total", model="diagnostic", correct="false")
    assert (right, wrong) == (result.correct, 40 - result.correct)
    assert result.correct / 40 > 0.85  # a real model on real rows
    assert len(stored(live, 40)) == 40


def test_batches_and_both_models(live: LiveService) -> None:
    result = simulate(live, count=6, batch=4, seed=2)
    assert result.sent == 6 and result.predictions == 24
    assert len(stored(live, 12, "diagnostic")) == 12
    assert len(stored(live, 12, "diabetes_risk")) == 12


def test_shift_moves_only_the_shifted_feature(live: LiveService) -> None:
    simulate(
        live,
        models=("diagnostic",),
        count=30,
        batch=10,
        seed=4,
        shifts=(Shift("mean_radius", "add", 2.0),),
    )
    rows = stored(live, 300)
    data = load_dataset("diagnostic")

    def moved(feature: str) -> float:
        j = data.feature_names.index(feature)
        live_values = np.array([r.features[feature] for r in rows])
        return float((live_values.mean() - data.X[:, j].mean()) / data.X[:, j].std())

    assert moved("mean_radius") == pytest.approx(2.0, abs=0.25)
    assert abs(moved("mean_texture")) < 0.25


def test_bad_rate_gives_4xx_and_lowers_quality(live: LiveService) -> None:
    result = simulate(live, models=("diagnostic",), count=40, bad_rate=1.0, seed=6)
    assert result.bad_rows == 40
    assert result.by_class["4xx"] > 0 and result.by_class["ok"] > 0
    assert result.by_class["4xx"] + result.by_class["ok"] == 40
    assert sample(live, "ml_data_quality_score", model="diagnostic") < 1.0
    issues = [
        s
        for metric in live.registry.collect()
        if metric.name == "ml_data_quality_issues"
        for s in metric.samples
        if s.name.endswith("_total")
    ]
    kinds = {s.labels["kind"] for s in issues if s.value > 0}
    assert "out_of_range" in kinds and kinds & {"missing", "wrong_type"}


def test_rate_and_duration_bound_the_run(live: LiveService) -> None:
    result = simulate(live, models=("diabetes_risk",), duration=0.5, rate=20.0)
    # An open-loop schedule never sends more than rate x duration (+ the first at t=0). How
    # many it reaches below that depends on the host (a loaded CI host once answered the first
    # request after 0.6 s, past the deadline): the bound is what this test states.
    assert 1 <= result.sent <= 11
    assert result.sent <= 20.0 * result.seconds + 1
    assert result.seconds < 5


# -- the command --------------------------------------------------------------------------


def test_cli_prints_json_summary(live: LiveService) -> None:
    runner = CliRunner()
    args = ["simulate", "--url", live.url, "--api-key", KEYS["predict"], "--count", "6"]
    r = runner.invoke(app, [*args, "--model", "diabetes_risk", "--batch", "2", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 6 and summary["ok"] == 6 and summary["predictions"] == 12
    assert summary["latency_seconds"]["p50"] > 0


def test_cli_table_and_key_from_environment(live: LiveService) -> None:
    env = {"ML_API_KEYS": live.settings.api_keys.get_secret_value()}
    r = CliRunner().invoke(app, ["simulate", "--url", live.url, "--count", "3"], env=env)
    assert r.exit_code == 0, r.output
    assert "simulated traffic" in r.stdout and "latency p99" in r.stdout


def test_cli_key_from_generated_file(live: LiveService, tmp_path: object) -> None:
    data_dir = live.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "api_key").write_text(KEYS["admin"] + "\n")
    env = {"ML_API_KEYS": "", "ML_DATA_DIR": str(data_dir)}
    r = CliRunner().invoke(app, ["simulate", "--url", live.url, "--count", "2", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--count or --duration"),
        (["--count", "1", "--shift", "nope=1"], "no selected model has a numeric feature 'nope'"),
        (["--count", "1", "--shift", "mean_radius"], "FEATURE=DELTA"),
        (["--count", "1", "--model", "other"], "model 'other': no bundle to draw rows from"),
    ],
)
def test_cli_refuses_bad_options(extra: list[str], message: str, tmp_path: Path) -> None:
    env = {"ML_MODEL_PATH": str(tmp_path / "models")}  # nothing on disk: the bundled datasets
    r = CliRunner().invoke(app, ["simulate", "--api-key", KEYS["predict"], *extra], env=env)
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())


def test_cli_unreachable_service_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(
        app, ["simulate", "--url", url, "--api-key", KEYS["predict"], "--count", "2"]
    )
    assert r.exit_code == 1
    assert "no response" in r.output


def test_live_counts_name_every_outcome_and_the_rate() -> None:
    r = SimulationResult(sent=10)
    r.by_class.update(ok=6, **{"4xx": 2, "5xx": 1, "error": 1})
    assert live_counts(r, 4.0) == "sent 10 · ok 6 · 4xx 2 · 5xx 1 · errors 1 · 2.5/s"
    assert live_counts(SimulationResult(), 0.0).endswith("0.0/s")


def test_cli_prints_running_counts_when_not_on_a_terminal(
    live: LiveService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log or CI shows no redrawn bar: the counts come as lines while the run goes on.
    monkeypatch.setattr(simulate_module, "PLAIN_PROGRESS_SECONDS", 0.0)
    args = ["simulate", "--url", live.url, "--api-key", KEYS["predict"], "--count", "4"]
    r = CliRunner().invoke(app, [*args, "--model", "diabetes_risk", "--concurrency", "1"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sent ")]
    # One line per answer here (then the bar's own last frame, which ends the run).
    assert [ln.split(" · ")[0] for ln in lines[:4]] == ["sent 1", "sent 2", "sent 3", "sent 4"]
    assert lines[3].startswith("sent 4 · ok 4 · 4xx 0 · 5xx 0 · errors 0 · ")
