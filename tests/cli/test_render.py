"""``nexus-ml render`` applies the overrides the service applies; ``serve`` refuses bad ones.

File and environment overrides, then those stored through ``PUT /config/thresholds`` (on
SQLite and PostgreSQL); ``--defaults`` renders the checked-in ``deploy/`` files byte for byte.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.storage.db import make_engine
from nexus_ml.storage.migrate import migrate
from nexus_ml.storage.repositories import Store

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = "prometheus/ml_alerts.yml"


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test sets: no overrides, database or data folder from the caller's shell."""
    import os

    for name in list(os.environ):
        if name.startswith(("ML_THRESHOLD", "ML_DATABASE_URL", "DATABASE_URL", "ML_API_KEYS")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "data"))


def _render(out: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["render", str(out), *args], env=env)


def _alert(out: Path, name: str) -> dict[str, Any]:
    document = yaml.safe_load((out / RULES).read_text(encoding="utf-8"))
    rules = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == name]
    assert len(rules) == 1, name
    rule: dict[str, Any] = rules[0]
    return rule


def test_file_and_environment_overrides_change_the_rule_file(tmp_path: Path) -> None:
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text("cpu_usage_high: 70\ncpu_usage_high_for: 10m\ndisk_usage_high: 80\n")
    env = {"ML_THRESHOLDS_FILE": str(overrides), "ML_THRESHOLD_DISK_USAGE_HIGH": "75"}
    result = _render(tmp_path / "out", env=env)
    assert result.exit_code == 0, result.output
    cpu = _alert(tmp_path / "out", "HighCPUUsage")
    assert cpu["expr"].endswith("> 70") and cpu["for"] == "10m", cpu
    assert _alert(tmp_path / "out", "HighDiskUsage")["expr"].endswith("> 75")  # env wins
    assert "threshold 70%" in cpu["annotations"]["description"]
    # The promtool tests follow the rules, so the rendered pair still agrees.
    rule_tests = (tmp_path / "out/prometheus/ml_alerts_test.yml").read_text(encoding="utf-8")
    assert rule_tests != (DEPLOY / "prometheus/ml_alerts_test.yml").read_text(encoding="utf-8")
    assert not (tmp_path / "data").exists()  # no database file was created to look for more


def test_defaults_renders_the_checked_in_files_whatever_the_environment(tmp_path: Path) -> None:
    env = {"ML_THRESHOLD_CPU_USAGE_HIGH": "70", "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/x"}
    result = _render(tmp_path / "out", "--defaults", env=env)
    assert result.exit_code == 0, result.output
    written = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert len(written) > 10
    for path in written:
        relative = path.relative_to(tmp_path / "out")
        assert path.read_bytes() == (DEPLOY / relative).read_bytes(), relative


def test_overrides_stored_in_the_database_change_the_rule_file(db_url: str, tmp_path: Path) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        store = Store(engine)
        store.set_threshold_override("cpu_usage_high", 65, "operator01")
        store.set_threshold_override("memory_usage_high_for", 900, "operator01")
        # Stored by a version that accepted it: refused alone, by name, as the service does.
        store.set_threshold_override("cpu_usage_high_for", math.inf, "operator01")
    finally:
        engine.dispose()
    env = {"DATABASE_URL": db_url, "ML_THRESHOLD_DISK_USAGE_HIGH": "75"}
    result = _render(tmp_path / "db", env=env)
    assert result.exit_code == 0, result.output
    cpu = _alert(tmp_path / "db", "HighCPUUsage")
    assert cpu["expr"].endswith("> 65") and cpu["for"] == "5m", cpu
    assert _alert(tmp_path / "db", "HighMemoryUsage")["for"] == "15m"
    assert _alert(tmp_path / "db", "HighDiskUsage")["expr"].endswith("> 75")
    assert "cpu_usage_high_for" in result.output and "refused" in result.output

    result = _render(tmp_path / "nodb", "--no-database", env=env)
    assert result.exit_code == 0, result.output
    assert _alert(tmp_path / "nodb", "HighCPUUsage")["expr"].endswith("> 80")


def test_a_database_without_the_table_holds_no_overrides(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()  # an empty file is an empty SQLite database
    result = _render(tmp_path / "out", env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert _alert(tmp_path / "out", "HighCPUUsage")["expr"].endswith("> 80")


def test_an_unreachable_database_stops_the_render(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    result = _render(tmp_path / "out", env=env)
    assert result.exit_code == 1, result.output
    assert "--no-database" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
    assert "nobody" not in result.output  # the URL (it may hold a password) is not printed


def test_stack_renders_with_the_stored_overrides_and_starts_without_the_database(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `stack up` renders the rules Prometheus runs through this: the limits the service shows.
    from nexus_ml.cli.render import thresholds_to_render
    from nexus_ml.config import Settings

    migrate(db_url)
    engine = make_engine(db_url)
    try:
        Store(engine).set_threshold_override("data_drift_high_for", 30, "operator01")
    finally:
        engine.dispose()
    monkeypatch.setenv("DATABASE_URL", db_url)
    settings = Settings()
    applied = thresholds_to_render(settings, database=True, database_required=False)
    assert applied.data_drift_high_for == 30
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    fallback = thresholds_to_render(Settings(), database=True, database_required=False)
    assert fallback.data_drift_high_for == 600  # file and environment only, and no exit


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ML_THRESHOLD_LATENCY_SLO_THRESHOLD": "0.3"}, "latency_slo_threshold"),
        ({"ML_THRESHOLD_CPU_USAGE_HIGH_FOR": "inf"}, "cpu_usage_high_for"),
        ({"ML_THRESHOLD_TRAINING_MAX_AGE": "Infinity"}, "training_max_age"),
        ({"ML_THRESHOLD_CPU_USAGE_HIHG": "70"}, "cpu_usage_hihg"),
    ],
)
@pytest.mark.parametrize("command", ["render", "serve"])
def test_bad_overrides_stop_render_and_serve_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    key: str,
    command: str,
) -> None:
    import uvicorn

    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("the service started with a bad threshold override")

    monkeypatch.setattr(uvicorn, "run", must_not_start)
    args = [command, str(tmp_path / "out")] if command == "render" else [command]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert key in result.output and "thresholds" in result.output, result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_a_bad_overrides_file_stops_serve_naming_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the service started"))
    bad = tmp_path / "thresholds.yaml"
    bad.write_text("cpu_usage_high: 70\ncpu_usage_high_for: .inf\n")
    result = CliRunner().invoke(app, ["serve"], env={"ML_THRESHOLDS_FILE": str(bad)})
    assert result.exit_code == 2, result.output
    flat = "".join(result.output.split())
    assert "thresholds.yaml" in flat and "cpu_usage_high_for(seconds)" in flat, result.output
    missing = CliRunner().invoke(app, ["serve"], env={"ML_THRESHOLDS_FILE": str(tmp_path / "no")})
    assert missing.exit_code == 2, missing.output


def test_band_thresholds_change_the_anomaly_rules(tmp_path: Path) -> None:
    env = {
        "ML_THRESHOLD_ANOMALY_K": "3.5",
        "ML_THRESHOLD_ANOMALY_FOR": "5m",
        "ML_THRESHOLD_ANOMALY_KEEP_FIRING_FOR": "0s",
        "ML_THRESHOLD_ANOMALY_WINDOW": "30m",
        "ML_THRESHOLD_ANOMALY_SEASONS": "1",
        "ML_THRESHOLD_ANOMALY_SEASON": "1d",
    }
    result = _render(tmp_path / "out", env=env)
    assert result.exit_code == 0, result.output
    path = tmp_path / "out/prometheus/ml_anomaly.yml"
    rules = [
        r for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for r in g["rules"]
    ]
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) == 6
    for alert in alerts:
        assert alert["for"] == "5m" and "keep_firing_for" not in alert, alert
        assert "bool 3.5" in alert["expr"] or "bool -3.5" in alert["expr"], alert["expr"]
        assert "3.5 robust" in alert["annotations"]["description"]
    centres = [r for r in rules if r.get("record", "").endswith(":centre")]
    assert {r["labels"]["baseline"] for r in centres} == {"1d"}
    # A 30-step window: 29.5 steps of range, a day back less half the window.
    assert all("[29m30s] offset 23h45m" in r["expr"] for r in centres), centres[0]["expr"]
    checked_in = (DEPLOY / "prometheus/ml_anomaly.yml").read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8") != checked_in
