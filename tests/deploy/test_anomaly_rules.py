"""Anomaly-band rules: promtool on both sides of each alert, and PromQL = stats.anomaly."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from nexus_ml.render.anomaly_rules import (
    ALERT_NAMES,
    GROUP,
    SOURCES,
    anomaly_group,
    render_anomaly_rules_yaml,
    series,
)
from nexus_ml.render.anomaly_tests import equivalence_test, render_anomaly_tests_yaml
from nexus_ml.render.rules import to_yaml
from nexus_ml.stats.anomaly import SIGNALS, BandSpec, anomalous, default_specs, firing
from nexus_ml.thresholds import RUNBOOK_BASE, Thresholds

pytestmark = pytest.mark.stack


def _promtool(promtool: str, cwd: Path, test_file: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", test_file],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_checked_in_anomaly_files_are_current(deploy_dir: Path) -> None:
    prom = deploy_dir / "prometheus"
    assert (prom / "ml_anomaly.yml").read_text(encoding="utf-8") == render_anomaly_rules_yaml()
    assert (prom / "ml_anomaly_test.yml").read_text(encoding="utf-8") == (
        render_anomaly_tests_yaml()
    )


def test_an_alert_per_signal_with_the_issues_names() -> None:
    assert {s.signal for s in SOURCES} == set(SIGNALS)
    assert {
        "PredictionVolumeAnomaly",
        "LatencyAnomaly",
        "ConfidenceAnomaly",
        "ClassShareAnomaly",
    } <= set(ALERT_NAMES)
    assert len(set(ALERT_NAMES)) == len(SOURCES)


def test_alerts_carry_severity_and_category_only_and_their_runbook() -> None:
    group = anomaly_group()
    alerts = [r for r in group["rules"] if "alert" in r]
    assert [a["alert"] for a in alerts] == list(ALERT_NAMES)
    specs = default_specs()
    for rule, source in zip(alerts, SOURCES, strict=True):
        spec = specs[source.signal]
        assert set(rule["labels"]) == {"severity", "category"}
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
        # `for` and keep_firing_for are the spec's steps at the group's interval (1m).
        assert group["interval"] == "1m"
        assert rule["for"] == f"{spec.for_steps}m"
        assert rule["keep_firing_for"] == f"{spec.keep_steps}m"
    assert group["name"] == GROUP


def test_the_rule_file_and_the_checked_in_tests_pass_promtool(
    deploy_dir: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    _promtool(promtool, deploy_dir / "prometheus", "ml_anomaly_test.yml")


def _series(n: int, seed: int) -> np.ndarray:
    """A periodic signal with noise, a level shift, a spike and a few missing samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 10 + 2 * np.sin(2 * np.pi * t / 30) + rng.normal(0, 0.3, n)
    x[150:165] += 4.0
    x[120:123] -= 5.0
    x[[40, 41, 97, 170]] = np.nan  # stale: no sample (as a series that is not recorded)
    return x


SPECS = {
    "three seasons, both sides, relative floor": BandSpec(
        window=10,
        seasons=(30, 60, 90),
        k=3.0,
        rel_floor=0.05,
        abs_floor=0.01,
        for_steps=2,
        keep_steps=3,
    ),
    "trailing only, upwards, absolute floor": BandSpec(
        window=8,
        seasons=(),
        k=2.5,
        rel_floor=0.0,
        abs_floor=0.2,
        for_steps=1,
        direction="up",
    ),
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_promql_values_and_alerts_equal_the_python_reference(
    spec: BandSpec, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    x = _series(200, seed=17)
    # The series must exercise what is compared: anomalies, quiet stretches, fallbacks.
    fired = firing(x, spec)
    assert fired.any() and not fired[:100].all() and anomalous(x, spec).sum() < len(x) / 4
    rules, tests = equivalence_test(x, spec)
    (tmp_path / "rules.yml").write_text(to_yaml(rules), encoding="utf-8")
    (tmp_path / "test.yml").write_text(to_yaml(tests), encoding="utf-8")
    checks = tests["tests"][0]["promql_expr_test"]
    assert sum(bool(c["exp_samples"]) for c in checks) > len(checks) * 0.8  # values, mostly
    _promtool(promtool, tmp_path, "test.yml")


def test_the_equivalence_test_catches_a_wrong_rule(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    spec = SPECS["three seasons, both sides, relative floor"]
    rules, tests = equivalence_test(_series(200, seed=17), spec)
    # A range one step short: the windows no longer hold the reference's samples.
    text = to_yaml(rules).replace("[9m30s]", "[8m30s]")
    (tmp_path / "rules.yml").write_text(text, encoding="utf-8")
    (tmp_path / "test.yml").write_text(to_yaml(tests), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", "test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_each_seasonal_window_is_centred_on_the_same_hour_weeks_back() -> None:
    text = yaml.safe_dump(anomaly_group())
    for source in SOURCES:
        assert f"ml:anomaly_{source.signal}[59m30s] offset 6d23h30m" in text
        assert f"ml:anomaly_{source.signal}[59m30s] offset 20d23h30m" in text


def test_a_band_panel_per_signal_that_says_why_it_is_empty() -> None:
    from nexus_ml.render.dashboards import dashboard_panels

    for source in SOURCES:
        name = series(source.signal)
        (panel,) = [p for p in dashboard_panels() if any(q.startswith(name + "{") for q in p[1])]
        _, queries, no_value = panel
        assert any(f"{name}:centre" in q and f"{name}:spread" in q for q in queries), queries
        assert "ml_anomaly.yml" in no_value


def test_the_signals_read_only_metrics_that_metrics_py_exports() -> None:
    import re

    from prometheus_client import CollectorRegistry

    from nexus_ml.monitoring.metrics import build_metrics

    registry = CollectorRegistry()
    build_metrics(registry)
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",)}
    exported = {m.name + sfx for m in registry.collect() for sfx in suffixes.get(m.type, ("",))}
    signals = {r["record"]: r["expr"] for r in anomaly_group()["rules"] if "record" in r}
    for source in SOURCES:
        names = re.findall(r"(?<![:\w])(ml_[a-z_]+)\b", signals[series(source.signal)])
        assert names and set(names) <= exported, (source.signal, names)


def test_rules_rendered_from_tuned_thresholds_pass_their_promtool_tests(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # The rule file and its test file follow the anomaly_* thresholds together: the expected
    # alerts come from the reference on the tuned specs. Not k = 4: the class-share case steps
    # 0.02 a minute against a spread of 0.02, and a score of exactly 4 falls on either side of
    # the limit by the last bit of the arithmetic's order (numpy's and PromQL's differ).
    tuned = Thresholds(anomaly_k=4.5, anomaly_for="2m", anomaly_keep_firing_for="5m")
    (tmp_path / "ml_anomaly.yml").write_text(render_anomaly_rules_yaml(tuned), encoding="utf-8")
    tests = render_anomaly_tests_yaml(tuned)
    assert tests != render_anomaly_tests_yaml()
    (tmp_path / "ml_anomaly_test.yml").write_text(tests, encoding="utf-8")
    _promtool(require_tool("promtool"), tmp_path, "ml_anomaly_test.yml")
