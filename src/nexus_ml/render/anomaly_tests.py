"""promtool tests of the anomaly rules, with the expected answers from ``stats/anomaly.py``.

``anomaly_rule_tests``: per alert, counters whose signal shifts (the alert fires) and shifts a
little (it stays silent), with the shipped specs. The moment it fires is not written by hand:
the signal is computed here as PromQL computes it from those counters (``rate`` over 5m of
counters starting at 0 is the increase over the last five minutes / 300 s; the P95 is
``histogram_quantile``'s interpolation), and ``stats.anomaly.firing`` says when it fires; promtool
checks the evaluation before (silent) and that one (firing). Within a week of history all three
baselines are the trailing hour: the seasonal path is proven by ``equivalence_test`` on a short
season (``tests/deploy/test_anomaly_rules.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.utils import floatToGoString

from nexus_ml.monitoring.alerts import format_number
from nexus_ml.render.anomaly_rules import (
    RULE_FILE,
    SOURCES,
    Source,
    alert_rule,
    band_rules,
    baselines,
    series,
    texts,
)
from nexus_ml.render.rules import to_yaml
from nexus_ml.stats.anomaly import (
    STEP_SECONDS,
    BandSpec,
    bands,
    default_specs,
    firing,
    specs_of,
)
from nexus_ml.thresholds import JOB, RUNBOOK_BASE, Thresholds

SHIFT = 90  # minutes of steady traffic before the change (the trailing hour fills first)
HORIZON = 130
RANGE_MINUTES = 5  # render.anomaly_rules.RATE
INSTANCE = "ml-1:8001"
MODEL = "diagnostic"
LATENCY_BOUNDS = (0.05, 0.1, math.inf)


def _sel(metric: str, **labels: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in {"job": JOB, "instance": INSTANCE, **labels}.items())
    return f"{metric}{{{body}}}"


def _counter(per_minute: float, after: float) -> np.ndarray:
    """A counter from 0 growing by ``per_minute``, then by ``after`` from minute SHIFT."""
    inc = np.where(np.arange(HORIZON + 1) <= SHIFT, per_minute, after)
    inc[0] = 0.0
    return np.cumsum(inc)


def _rate(c: np.ndarray) -> np.ndarray:
    """``rate(c[5m])`` at each minute: counters start at 0, so Prometheus extrapolates the
    first minutes' ranges back to that zero, and never past a range's start."""
    t = np.arange(len(c))
    out = (c - c[np.maximum(t - RANGE_MINUTES, 0)]) / (RANGE_MINUTES * 60)
    out[0] = np.nan  # one sample: no rate
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / b, np.nan)


def _p95(rates: list[np.ndarray]) -> np.ndarray:
    """``histogram_quantile(0.95, …)`` of cumulative bucket rates (Prometheus's bucketQuantile)."""
    out = np.full(len(rates[0]), np.nan)
    for i in range(len(out)):
        counts = [r[i] for r in rates]
        if np.isnan(counts[-1]) or counts[-1] == 0:
            continue
        rank = 0.95 * counts[-1]
        b = next(j for j, c in enumerate([*counts[:-1], math.inf]) if c >= rank)
        if b == len(counts) - 1:
            out[i] = LATENCY_BOUNDS[-2]
            continue
        start = LATENCY_BOUNDS[b - 1] if b else 0.0
        below = counts[b - 1] if b else 0.0
        out[i] = start + (LATENCY_BOUNDS[b] - start) * ((rank - below) / (counts[b] - below))
    return out


@dataclass(frozen=True)
class _Traffic:
    """Input counters and, per alert label set, the signal PromQL records from them."""

    counters: dict[str, np.ndarray]
    signals: dict[tuple[tuple[str, str], ...], np.ndarray]


def _labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"job": JOB, **extra}.items()))


def _requests(change: float) -> _Traffic:
    c = _counter(1200, 1200 * change)
    sel = _sel("ml_api_requests_total", method="POST", endpoint="/predict", status="200")
    return _Traffic({sel: c}, {_labels(): _rate(c)})


def _errors(per_minute: float) -> _Traffic:
    ok, bad = _counter(1200, 1200 - per_minute), _counter(0, per_minute)
    labels = {"method": "POST", "endpoint": "/predict"}
    return _Traffic(
        {
            _sel("ml_api_requests_total", **labels, status="200"): ok,
            _sel("ml_api_requests_total", **labels, status="500"): bad,
        },
        {_labels(): _ratio(_rate(bad), _rate(ok) + _rate(bad))},
    )


def _predictions(change: float) -> _Traffic:
    c = _counter(600, 600 * change)
    sel = _sel("ml_model_predictions_total", model=MODEL, version="1", predicted_class="yes")
    return _Traffic({sel: c}, {_labels(model=MODEL): _rate(c)})


def _latency(share_fast: float, share_mid: float) -> _Traffic:
    """1000 requests a minute, 97 % within 50 ms and all within 100 ms; then the given shares."""
    labels = {"method": "POST", "endpoint": "/predict"}
    before, after = (0.97, 1.0, 1.0), (share_fast, share_mid, 1.0)
    counters = {
        _sel("ml_api_request_duration_seconds_bucket", **labels, le=floatToGoString(b)): _counter(
            1000 * x, 1000 * y
        )
        for b, x, y in zip(LATENCY_BOUNDS, before, after, strict=True)
    }
    return _Traffic(counters, {_labels(): _p95([_rate(c) for c in counters.values()])})


def _confidence(mean_after: float) -> _Traffic:
    total, count = _counter(600 * 0.85, 600 * mean_after), _counter(600, 600)
    return _Traffic(
        {
            _sel("ml_model_confidence_score_sum", model=MODEL): total,
            _sel("ml_model_confidence_score_count", model=MODEL): count,
        },
        {_labels(model=MODEL): _ratio(_rate(total), _rate(count))},
    )


def _shares(share_after: float) -> _Traffic:
    yes, no = _counter(300, 600 * share_after), _counter(300, 600 * (1 - share_after))
    sel = "ml_model_predictions_total"
    counters = {
        _sel(sel, model=MODEL, version="1", predicted_class="yes"): yes,
        _sel(sel, model=MODEL, version="1", predicted_class="no"): no,
    }
    total = _rate(yes) + _rate(no)
    return _Traffic(
        counters,
        {
            _labels(model=MODEL, predicted_class="yes"): _ratio(_rate(yes), total),
            _labels(model=MODEL, predicted_class="no"): _ratio(_rate(no), total),
        },
    )


# Per signal: (traffic whose change fires, traffic whose small change does not, what changes).
CASES: dict[str, tuple[Callable[[], _Traffic], Callable[[], _Traffic], str]] = {
    "request_rate": (lambda: _requests(0.6), lambda: _requests(0.97), "-40 % / -3 %"),
    "error_ratio": (lambda: _errors(30), lambda: _errors(1), "0 to 2.5 % / 0.08 % errors"),
    "predictions": (lambda: _predictions(1.5), lambda: _predictions(1.03), "+50 % / +3 %"),
    "latency_p95": (lambda: _latency(0.8, 0.99), lambda: _latency(0.96, 1.0), "49 to 90 / 49.5 ms"),
    "confidence": (lambda: _confidence(0.7), lambda: _confidence(0.845), "0.85 to 0.7 / 0.845"),
    "class_share": (lambda: _shares(0.7), lambda: _shares(0.51), "50 % to 70 % / 51 %"),
}


def _values(c: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in c)


def _expected(
    source: Source, spec: BandSpec, at: int, traffic: _Traffic, runbook_base: str
) -> list[dict[str, Any]]:
    out = []
    for labels, signal in traffic.signals.items():
        if not firing(signal, spec)[at]:
            continue
        named = dict(labels)
        value = format_number(float(signal[at]))
        out.append(
            {
                "exp_labels": {**named, "severity": "warning", "category": source.category},
                "exp_annotations": {
                    **{
                        key: text.format_map({**named, "value": value})
                        for key, text in texts(source, spec, STEP_SECONDS).items()
                    },
                    "runbook_url": f"{runbook_base}#{source.alert.lower()}",
                },
            }
        )
    return out


def _test(
    source: Source, spec: BandSpec, traffic: _Traffic, fires: bool, note: str, runbook_base: str
) -> dict[str, Any]:
    fired = [np.flatnonzero(firing(s, spec)) for s in traffic.signals.values()]
    first = min((int(f[0]) for f in fired if f.size), default=None)
    if fires != (first is not None):
        # The case data is wrong, not the rules: say so at render time.
        raise ValueError(f"{source.alert}: the {'firing' if fires else 'quiet'} case does not")
    times = [first - 1, first, HORIZON] if first is not None else [HORIZON]
    return {
        "name": f"{source.alert}: {'fires' if fires else 'quiet'} — {note}",
        "interval": "1m",
        "input_series": [{"series": s, "values": _values(c)} for s, c in traffic.counters.items()],
        "alert_rule_test": [
            {
                "eval_time": f"{t}m",
                "alertname": source.alert,
                "exp_alerts": _expected(source, spec, t, traffic, runbook_base),
            }
            for t in times
        ],
    }


def anomaly_rule_tests(
    runbook_base: str = RUNBOOK_BASE, specs: dict[str, BandSpec] | None = None
) -> list[dict[str, Any]]:
    """Both sides of every anomaly alert (expected alerts from the reference on ``specs``,
    by default the shipped ones; the cases' traffic is chosen for those)."""
    specs = specs or default_specs()
    tests = []
    for source in SOURCES:
        loud, quiet, note = CASES[source.signal]
        spec = specs[source.signal]
        change, small = note.split(" / ")
        tests.append(_test(source, spec, loud(), True, change, runbook_base))
        tests.append(_test(source, spec, quiet(), False, small, runbook_base))
    return tests


# -- equivalence: every recorded value against the reference, on a short season --------------

TEST_SOURCE = Source(
    signal="equivalence",
    alert="EquivalenceAnomaly",
    category="model",
    labels=(),
    what="the test signal",
    unit="",
    expr=lambda j: f"anomaly_test_input{{{j}}}",
)


def equivalence_test(
    x: np.ndarray, spec: BandSpec, *, job: str = "t", tolerance: float = 1e-6
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(rule file, promtool test file) checking each step's centre, spread and score per
    baseline, and the alert, against ``stats.anomaly`` on ``x`` (NaN: a stale sample)."""
    name = series(TEST_SOURCE.signal)
    step = STEP_SECONDS
    alert = alert_rule(TEST_SOURCE, spec, step, RUNBOOK_BASE)
    del alert["annotations"]  # the values are the point here
    rules = {
        "groups": [
            {
                "name": "equivalence",
                "interval": "1m",
                "rules": [*band_rules(name, TEST_SOURCE.expr(f'job="{job}"'), spec, step), alert],
            }
        ]
    }
    checks: list[dict[str, Any]] = []
    labels = f'{{job="{job}"}}'
    fire = firing(x, spec)
    for (label, _), band in zip(baselines(spec, step), bands(x, spec), strict=True):
        at = f'{{baseline="{label}", job="{job}"}}'
        for t in range(len(x)):
            for part, values in (
                ("centre", band.centre),
                ("spread", band.spread),
                ("score", band.score),
            ):
                expr = f'{name}:{part}{{baseline="{label}"}}'
                v = float(values[t])
                if math.isnan(v):
                    checks.append({"expr": expr, "eval_time": f"{t}m", "exp_samples": []})
                else:
                    checks.append(
                        {
                            "expr": f"abs({expr} - {v!r}) < bool {tolerance}",
                            "eval_time": f"{t}m",
                            "exp_samples": [{"labels": at, "value": 1}],
                        }
                    )
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f"anomaly_test_input{labels}",
                        "values": " ".join("stale" if math.isnan(v) else repr(float(v)) for v in x),
                    }
                ],
                "promql_expr_test": checks,
                "alert_rule_test": [
                    {
                        "eval_time": f"{t}m",
                        "alertname": TEST_SOURCE.alert,
                        "exp_alerts": (
                            [
                                {
                                    "exp_labels": {
                                        "job": job,
                                        "severity": "warning",
                                        "category": "model",
                                    }
                                }
                            ]
                            if fire[t]
                            else []
                        ),
                    }
                    for t in range(len(x))
                ],
            }
        ],
    }
    return rules, test


def render_anomaly_tests_yaml(
    thresholds: Thresholds | None = None, runbook_base: str = RUNBOOK_BASE
) -> str:
    """``deploy/prometheus/ml_anomaly_test.yml`` as text, for the rules of ``thresholds``."""
    specs = specs_of(thresholds or Thresholds())
    return to_yaml(
        {
            "rule_files": [RULE_FILE],
            "evaluation_interval": "1m",
            "tests": anomaly_rule_tests(runbook_base, specs),
        }
    )
