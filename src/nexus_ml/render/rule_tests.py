"""Render ``ml_alerts_test.yml``: promtool unit tests for every alert, from the thresholds.

For each alert there is a breach just past its limit, checked one evaluation before the
``for`` duration runs out (no alert) and at the moment it does (alert with exact labels and
annotations), and quiet cases just on the safe side of the limit (and of its guards).
Generated from the same Thresholds as the rules, so overrides keep both in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.utils import floatToGoString

from nexus_ml.monitoring.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from nexus_ml.render.rules import (
    FAST_BURNS,
    GROUPS,
    SLOW_BURNS,
    to_yaml,
)
from nexus_ml.thresholds import (
    ALERTS,
    ALERTS_BY_NAME,
    JOB,
    RUNBOOK_BASE,
    Thresholds,
    fill_template,
    format_duration,
    runbook_url,
)

INSTANCE = "ml-1:8001"
MODEL = "diagnostic"
HORIZON = 240  # minutes of synthetic samples; enough for every window plus `for`
Series = tuple[str, str]


@dataclass
class Case:
    """Input series and what the alert must do with them."""

    series: list[Series]
    fires: bool
    active_from: int = 0  # first evaluation (minutes) at which the condition holds
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    check_at: int | None = None  # quiet cases: when to assert silence
    note: str = ""
    interval: int = 60  # seconds between input samples
    # Further checks (minute, value): firing with that value, or silent where it is None.
    later: list[tuple[int, float | None]] = field(default_factory=list)


def sel(metric: str, **labels: str) -> str:
    """A series selector in promtool's input notation."""
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{body}}}"


def const(value: float) -> str:
    """A constant series over the whole horizon."""
    return f"{value:.10g}+0x{HORIZON}"


def ramp(per_minute: float) -> str:
    """A counter growing by ``per_minute`` each minute from zero."""
    return f"0+{per_minute:.10g}x{HORIZON}"


def _m(seconds: float) -> int:
    return math.ceil(seconds / 60)


def _base(**extra: str) -> dict[str, str]:
    return {"job": JOB, "instance": INSTANCE, **extra}


def _histogram(
    metric: str,
    buckets: tuple[float, ...],
    q: float,
    target: float,
    labels: dict[str, str],
    per_minute: float = 1000.0,
) -> list[Series]:
    """Bucket counters whose ``histogram_quantile(q)`` is ``target`` (linear interpolation)."""
    bounds = list(buckets)
    hi_index = next(i for i, b in enumerate(bounds) if target <= b)
    hi = bounds[hi_index]
    lo = bounds[hi_index - 1] if hi_index else 0.0
    x = (target - lo) / (hi - lo)
    # Share p at or below lo, share c at or below hi; solve lo + (hi-lo)(q-p)/(c-p) = target.
    p, c = (0.0, q / x) if x >= q else ((q - x) / (1 - x), 1.0)
    if p > 0 and not hi_index:
        raise ValueError(f"cannot place quantile {q} at {target} in the first bucket")
    series = []
    for b in [*bounds, math.inf]:
        share = 0.0 if b < lo else p if b == lo else c if b == hi else 1.0
        series.append((sel(metric, **labels, le=floatToGoString(b)), ramp(per_minute * share)))
    return series


def _cases(t: Thresholds) -> dict[str, list[Case]]:
    """Breach and quiet cases per alert."""
    base = _base()
    cpu = "ml_system_cpu_usage_percent"
    cases: dict[str, list[Case]] = {}

    def gauge_pair(
        name: str, metric: str, limit: float, step: float, scale: float = 1.0, above: bool = True
    ) -> None:
        bad, good = (limit + step, limit - step) if above else (limit - step, limit + step)
        for_m = _m(getattr(t, ALERTS_BY_NAME[name].for_key))
        cases[name] = [
            Case([(sel(metric, **base), const(bad / scale))], True, 0, _base(), bad),
            Case(
                [(sel(metric, **base), const(good / scale))],
                False,
                check_at=for_m + 5,
                note="just inside the limit",
            ),
        ]

    cases["MLServiceDown"] = [
        Case([(sel("up", **base), const(0))], True, 0, _base(), 0),
        Case([(sel("up", **base), const(1))], False, check_at=30, note="target up"),
    ]
    cases["MLServiceTargetMissing"] = [
        Case(
            [(sel("up", job="node-exporter", instance="node:9100"), const(1))],
            True,
            0,
            {"job": JOB},
            1,
        ),
        Case([(sel("up", **base), const(1))], False, check_at=30, note="target present"),
    ]
    gauge_pair("CriticalCPUUsage", cpu, t.cpu_usage_critical, 0.5)
    gauge_pair("HighCPUUsage", cpu, t.cpu_usage_high, 0.5)
    gauge_pair("HighMemoryUsage", "ml_system_memory_usage_ratio", t.memory_usage_high, 0.5, 100)
    gauge_pair("HighDiskUsage", "ml_system_disk_usage_ratio", t.disk_usage_high, 0.5, 100)

    # Errors fast enough that even the first, partial 5m window clears the minimum rate.
    errs = max(60.0, 600 * t.error_rate_min_per_second)

    def requests(ratio: float, errors: float) -> list[Series]:
        ok = errors / ratio - errors
        r = "ml_api_requests_total"
        return [
            (sel(r, **base, method="POST", endpoint="/predict", status="500"), ramp(errors)),
            (sel(r, **base, method="POST", endpoint="/predict", status="200"), ramp(ok)),
        ]

    for_err = _m(t.error_rate_high_for)
    cases["HighErrorRate"] = [
        Case(
            requests(t.error_rate_high * 1.05, errs),
            True,
            1,
            {"job": JOB},
            t.error_rate_high * 1.05,
        ),
        Case(
            requests(t.error_rate_high * 0.95, errs),
            False,
            check_at=for_err + 10,
            note="ratio just below",
        ),
        Case(
            requests(0.5, 30 * t.error_rate_min_per_second),
            False,
            check_at=for_err + 10,
            note="one error in two requests, below the minimum rate",
        ),
    ]

    runs = "ml_model_training_runs_total"
    one_failure = "0 0 0 " + " ".join(["1"] * HORIZON)
    cases["TrainingFailure"] = [
        Case(
            [(sel(runs, **base, model=MODEL, outcome="failure"), one_failure)],
            True,
            3,
            {"job": JOB, "model": MODEL},
            1,
        ),
        Case(
            [
                (sel(runs, **base, model=MODEL, outcome="failure"), const(0)),
                (sel(runs, **base, model=MODEL, outcome="success"), ramp(1)),
            ],
            False,
            check_at=10,
            note="only successful runs",
        ),
        Case(
            [(sel(runs, **base, model=MODEL, outcome="failure"), one_failure)],
            False,
            check_at=3 + 60 + 2,
            note="failure older than the 1h window",
        ),
    ]

    cases["DatabaseConnectionErrors"] = _db_cases(t)

    acc_for = _m(t.training_accuracy_low_for)
    acc, acc_n = "ml_model_accuracy", "ml_model_accuracy_samples"
    mlab = {"job": JOB, "model": MODEL}
    cases["LowModelAccuracy"] = [
        Case(
            [
                (sel(acc, **base, model=MODEL), const(t.training_accuracy_low - 0.01)),
                (sel(acc_n, **base, model=MODEL), const(t.accuracy_min_samples)),
            ],
            True,
            0,
            mlab,
            t.training_accuracy_low - 0.01,
        ),
        Case(
            [
                (sel(acc, **base, model=MODEL), const(t.training_accuracy_low + 0.01)),
                (sel(acc_n, **base, model=MODEL), const(t.accuracy_min_samples)),
            ],
            False,
            check_at=acc_for + 5,
            note="accuracy just above",
        ),
        Case(
            [
                (sel(acc, **base, model=MODEL), const(t.training_accuracy_low - 0.01)),
                (sel(acc_n, **base, model=MODEL), const(max(t.accuracy_min_samples - 1, 0))),
            ],
            False,
            check_at=acc_for + 5,
            note="too few labelled predictions",
        ),
    ]

    lat = "ml_model_prediction_duration_seconds_bucket"
    lat_for = _m(t.prediction_latency_high_for)
    hi_lat, lo_lat = t.prediction_latency_high * 1.05, t.prediction_latency_high * 0.95
    cases["HighPredictionLatency"] = [
        Case(
            _histogram(lat, LATENCY_BUCKETS, 0.95, hi_lat, {**base, "model": MODEL}),
            True,
            1,
            mlab,
            hi_lat,
        ),
        Case(
            _histogram(lat, LATENCY_BUCKETS, 0.95, lo_lat, {**base, "model": MODEL}),
            False,
            check_at=lat_for + 6,
            note="P95 just below",
        ),
    ]
    conf = "ml_model_confidence_score_bucket"
    conf_for = _m(t.model_confidence_low_for)
    lo_conf, hi_conf = t.model_confidence_low * 0.95, t.model_confidence_low * 1.05
    cases["LowModelConfidence"] = [
        Case(
            _histogram(conf, CONFIDENCE_BUCKETS, 0.5, lo_conf, {**base, "model": MODEL}),
            True,
            1,
            mlab,
            lo_conf,
        ),
        Case(
            _histogram(conf, CONFIDENCE_BUCKETS, 0.5, hi_conf, {**base, "model": MODEL}),
            False,
            check_at=conf_for + 6,
            note="median just above",
        ),
    ]

    drift_for = _m(t.data_drift_high_for)
    fl = {"model": MODEL, "feature": "age"}
    score, flag = "ml_data_drift_score", "ml_data_drift_detected"
    hi_psi = t.data_drift_high * 1.1 or 0.01
    cases["DataDriftDetected"] = [
        Case(
            [
                (sel(score, **base, **fl, method="psi"), const(hi_psi)),
                (sel(flag, **base, **fl), const(1)),
            ],
            True,
            0,
            {"job": JOB, **fl},
            hi_psi,
        ),
        Case(
            [
                (sel(score, **base, **fl, method="psi"), const(t.data_drift_high * 0.9)),
                (sel(flag, **base, **fl), const(1)),
            ],
            False,
            check_at=drift_for + 5,
            note="PSI just below",
        ),
        Case(
            [
                (sel(score, **base, **fl, method="psi"), const(hi_psi)),
                (sel(flag, **base, **fl), const(0)),
            ],
            False,
            check_at=drift_for + 5,
            note="PSI high but the drift test does not flag the feature",
        ),
    ]

    ts = "ml_model_last_training_timestamp_seconds"
    age_for = _m(t.no_recent_training_for)
    # promtool's clock starts at the epoch, so "trained N days ago" is a negative timestamp.
    old = -(t.training_max_age + 3600)
    cases["NoRecentTraining"] = [
        Case(
            [(sel(ts, **base, model=MODEL), const(old))],
            True,
            0,
            mlab,
            (age_for * 60 - old) / 86400,
        ),
        Case(
            [
                (
                    sel(ts, **base, model=MODEL),
                    const(-(t.training_max_age - age_for * 60 - 3600)),
                )
            ],
            False,
            check_at=age_for + 5,
            note="trained just inside the limit",
        ),
    ]

    preds = "ml_model_predictions_total"
    vol_for = _m(t.prediction_volume_low_for)
    low, high = t.prediction_volume_low * 0.9, t.prediction_volume_low * 1.1
    up = (sel("up", **base), const(1))

    def pred(model: str, per_minute: float) -> Series:
        labels = _base(model=model, version="1", predicted_class="benign")
        return (sel(preds, **labels), ramp(per_minute))

    cases["LowPredictionVolume"] = [
        # Counters start at zero with the test, so the 1h rate grows until the window is full.
        Case([up, pred(MODEL, low * 60)], True, 0, {"job": JOB}, low * min(vol_for, 60) / 60),
        Case([up], True, 0, {"job": JOB}, 0.0, note="no prediction series at all"),
        Case(
            [up, pred(MODEL, high * 60)],
            False,
            check_at=60 + vol_for + 30,
            note="volume just above",
        ),
        Case(
            [(sel("up", **base), const(0))],
            False,
            check_at=vol_for + 5,
            note="target down: MLServiceDown speaks instead",
        ),
    ]

    share_for = _m(t.prediction_share_high_for)
    total = max(60.0, 7200 * t.prediction_volume_low)
    over = t.prediction_share_high + (1 - t.prediction_share_high) / 2
    under = t.prediction_share_high - (1 - t.prediction_share_high) / 2
    info = "ml_model_info"

    def usage(
        share: float, per_minute: float, models: tuple[str, ...] = ("a", "b")
    ) -> list[Series]:
        out = [(sel(info, **_base(model=m, version="1")), const(1)) for m in models]
        out.append(pred("a", per_minute * share))
        if len(models) > 1:
            out.append(pred("b", per_minute * (1 - share)))
        return out

    cases["UnbalancedPredictions"] = [
        Case(usage(over, total), True, 1, {"job": JOB, "model": "a"}, over),
        Case(usage(under, total), False, check_at=share_for + 6, note="share just below"),
        Case(usage(1.0, total, ("a",)), False, check_at=share_for + 6, note="one model loaded"),
        Case(
            usage(over, 30 * t.prediction_volume_low),
            False,
            check_at=share_for + 6,
            note="too little traffic to judge",
        ),
    ]

    _slo_cases(t, cases)
    return cases


def _db_step(window: int) -> int:
    """Seconds between samples for the DatabaseConnectionErrors cases.

    A divisor of 60 (every evaluation lands on a sample), at most half the window (its
    range always holds two samples) and with ``window - step`` not a whole number of
    minutes, so no range ever starts exactly on a sample: Prometheus 2 includes a sample
    there and Prometheus 3 does not, and the expected values must hold for both.
    """
    for step in (30, 20, 15, 12, 10, 6, 5, 4, 3, 2, 1):
        if 2 * step <= window and (window - step) % 60:
            return step
    raise ValueError(f"no sample step fits db_connection_errors_window {window}s")


def _db_cases(t: Thresholds) -> list[Case]:
    """Errors counted over ``db_connection_errors_window``: fire, then resolve one window later.

    Samples every ``step`` seconds; evaluations every minute. Counters start at 0, so the
    increase over a range that still holds a zero sample is exactly the newest value, and
    over a steady ramp exactly its slope times the window (Prometheus extrapolates both ways
    to the range's edges and stops at the counter's zero).
    """
    dberr = "ml_db_operation_errors_total"
    window = round(t.db_connection_errors_window)
    step = _db_step(window)
    per_min = 60 // step
    db_for = _m(t.db_connection_errors_for)
    fire_at = 2 + db_for
    over = math.floor(t.db_connection_errors_high) + 1  # errors just past the limit
    conn = sel(dberr, **_base(operation="write", error_type="connection"))

    def series(*parts: tuple[float, float, int]) -> str:
        """(start, increment, samples) runs: ``start+incrementx(samples-1)`` each."""
        return " ".join(f"{a:.10g}+{b:.10g}x{n - 1}" for a, b, n in parts)

    # Errors from the second minute on, `over` per sample, without end.
    horizon = (fire_at + 5) * per_min
    ramp_series = series((0, 0, per_min + 1), (over, over, horizon))
    # Minute T of the ramp: the range still holds the zero at 60s, or a full window of ramp.
    ramp_value = over * min(fire_at * 60 - 60, window) / step
    # One burst of `over` errors at 2m: active from 2m while the range holds the zero before it
    # (the sample at 120 - step), silent from the first minute whose range starts after it.
    quiet_at = _m(120 - step + window)  # (120 - step + window) is never a whole minute
    last_firing = quiet_at - 1
    burst = series((0, 0, 120 // step), (over, 0, (quiet_at + 2) * per_min))
    cases = [
        Case([(conn, ramp_series)], True, 2, _base(), ramp_value, interval=step),
        Case(
            [
                (conn, series((0, 0, horizon + per_min + 1))),
                (
                    sel(dberr, **_base(operation="write", error_type="other")),
                    series((0, 1, horizon + per_min + 1)),
                ),
            ],
            False,
            check_at=fire_at + 5,
            note="only non-connection errors",
            interval=step,
        ),
    ]
    if last_firing >= fire_at:  # a burst shorter than `for` minus the window cannot fire
        cases.append(
            Case(
                [(conn, burst)],
                True,
                2,
                _base(),
                over,
                note=f"one burst: firing until its {format_duration(window)} window has passed",
                interval=step,
                later=[(last_firing, over), (quiet_at, None)],
            )
        )
    return cases


def _slo_cases(t: Thresholds, cases: dict[str, list[Case]]) -> None:
    avail_budget, lat_budget = 1 - t.availability_slo, 1 - t.latency_slo
    le = floatToGoString(t.latency_slo_threshold)

    def avail(ratio: float, per_minute: float) -> list[Series]:
        r = "ml_api_requests_total"
        lab = _base(method="POST", endpoint="/predict")
        return [
            (sel(r, **lab, status="500"), ramp(per_minute * ratio)),
            (sel(r, **lab, status="200"), ramp(per_minute * (1 - ratio))),
        ]

    def slow(ratio: float, per_minute: float) -> list[Series]:
        h = "ml_model_prediction_duration_seconds"
        lab = _base(model=MODEL)
        return [
            (sel(f"{h}_bucket", **lab, le=le), ramp(per_minute * (1 - ratio))),
            (sel(f"{h}_count", **lab), ramp(per_minute)),
        ]

    for kind, make, budget in (
        ("Availability", avail, avail_budget),
        ("Latency", slow, lat_budget),
    ):
        for speed, burns, guard_s in (("Fast", FAST_BURNS, 3600), ("Slow", SLOW_BURNS, 86400)):
            name = f"{kind}SLO{speed}Burn"
            for_m = _m(getattr(t, ALERTS_BY_NAME[name].for_key))
            # Enough traffic that the first, partial guard window already clears the minimum.
            per_minute = max(600.0, 2 * guard_s * t.slo_min_request_rate)
            top, low = burns[0][2], burns[-1][2]
            lab = {"job": JOB}
            cases[name] = [
                Case(
                    make(top * budget * 1.1, per_minute),
                    True,
                    1,
                    lab,
                    top * budget * 1.1,
                    note="above the highest burn rate",
                ),
                Case(
                    make(low * budget * 1.1, per_minute),
                    True,
                    1,
                    lab,
                    low * budget * 1.1,
                    note="just above the lowest burn rate",
                ),
                Case(
                    make(low * budget * 0.9, per_minute),
                    False,
                    check_at=for_m + 10,
                    note="just below the lowest burn rate",
                ),
                Case(
                    make(0.5, 30 * t.slo_min_request_rate),
                    False,
                    check_at=for_m + 10,
                    note="half the requests fail but traffic is below the minimum",
                ),
            ]


def _expected(name: str, case: Case, t: Thresholds, runbook_base: str) -> dict[str, Any]:
    spec = ALERTS_BY_NAME[name]
    return {
        "exp_labels": {**case.labels, "severity": spec.severity, "category": spec.category},
        "exp_annotations": {
            "summary": fill_template(spec.summary, spec, t, case.labels, case.value),
            "description": fill_template(spec.description, spec, t, case.labels, case.value),
            "runbook_url": runbook_url(spec, runbook_base),
        },
    }


def _test_group(name: str, case: Case, t: Thresholds, runbook_base: str) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    if case.fires:
        fire_at = case.active_from + _m(getattr(t, ALERTS_BY_NAME[name].for_key))
        if fire_at > 0:
            checks.append({"eval_time": f"{fire_at - 1}m", "alertname": name, "exp_alerts": []})
        checks.append(
            {
                "eval_time": f"{fire_at}m",
                "alertname": name,
                "exp_alerts": [_expected(name, case, t, runbook_base)],
            }
        )
    else:
        checks.append({"eval_time": f"{case.check_at}m", "alertname": name, "exp_alerts": []})
    for minute, value in case.later:
        exp = (
            [] if value is None else [_expected(name, replace(case, value=value), t, runbook_base)]
        )
        checks.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": exp})
    return {
        "name": f"{name}: {'fires' if case.fires else 'quiet'}"
        + (f" — {case.note}" if case.note else ""),
        "interval": format_duration(case.interval),
        "input_series": [{"series": s, "values": v} for s, v in case.series],
        "alert_rule_test": checks,
    }


def render_rule_tests(
    thresholds: Thresholds | None = None,
    *,
    rules_file: str = "ml_alerts.yml",
    runbook_base: str = RUNBOOK_BASE,
) -> dict[str, Any]:
    """The promtool test document for ``rules_file`` rendered from the same thresholds."""
    t = thresholds or Thresholds()
    cases = _cases(t)
    missing = {a.name for a in ALERTS} - set(cases)
    if missing:  # every alert must be tested; a new AlertSpec without a case fails here
        raise ValueError(f"no promtool cases for {sorted(missing)}")
    tests = [_test_group(a.name, c, t, runbook_base) for a in ALERTS for c in cases[a.name]]
    return {
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "group_eval_order": list(GROUPS),
        "tests": tests,
    }


def render_rule_tests_yaml(
    thresholds: Thresholds | None = None,
    *,
    rules_file: str = "ml_alerts.yml",
    runbook_base: str = RUNBOOK_BASE,
) -> str:
    """``deploy/prometheus/ml_alerts_test.yml`` as text."""
    return to_yaml(render_rule_tests(thresholds, rules_file=rules_file, runbook_base=runbook_base))


def case_names(thresholds: Thresholds | None = None) -> Mapping[str, int]:
    """How many promtool cases each alert has (for the coverage test)."""
    return {name: len(c) for name, c in _cases(thresholds or Thresholds()).items()}
