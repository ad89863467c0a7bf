"""Drift computed by Prometheus from the per-bin input counters (``ml:feature_psi``).

The recording rules (``render/drift_rules.py``) add every worker's and replica's counts; this
alert reads their PSI. It complements DataDriftDetected (the service's own drift job over a
window by count, with its tests and corrections) and needs no job, lock or database: it keeps
working across any number of replicas. Prometheus only (no in-process condition).
"""

from __future__ import annotations

import math

from nexus_ml.monitoring.alerts.cases import MODEL, Case, Series, const, ramp, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, num
from nexus_ml.thresholds import JOB, Thresholds

BINS, SHARES = "ml_feature_bin_total", "ml_feature_reference_share"
PSI_RULE = "ml:feature_psi"
FEATURE = "age"
# The reference of the cases: half the rows in each of two bins, none missing.
_REFERENCE = {"0": 0.5, "1": 0.5, "missing": 0.0}
_EPS = 1e-4  # stats.drift_methods.PSI_EPS (monitoring cannot import stats)


def _expr(t: Thresholds, j: str) -> str:
    return f"max by (job, model, feature) ({PSI_RULE}{{{j}}}) > {num(t.data_drift_high)}"


def _series(per_minute: float, low_share: float) -> list[Series]:
    """Instances at ``per_minute`` of which ``low_share`` land in bin 0, the rest in bin 1."""
    labels = {"model": MODEL, "version": "1", "feature": FEATURE}
    window = {"0": low_share, "1": 1.0 - low_share, "missing": 0.0}
    out: list[Series] = []
    for b, share in _REFERENCE.items():
        out.append((sel(SHARES, **target(**labels, bin=b)), const(share)))
        out.append((sel(BINS, **target(**labels, bin=b)), ramp(per_minute * window[b])))
    return out


def _psi(low_share: float) -> float:
    """PSI of the cases' window against their reference (as stats.drift_methods.psi)."""
    window = {"0": low_share, "1": 1.0 - low_share, "missing": 0.0}
    total = 0.0
    for b, p in _REFERENCE.items():
        p, q = max(p, _EPS), max(window[b], _EPS)
        total += (q - p) * math.log(q / p)
    return total


def _cases(t: Thresholds, for_m: int) -> list[Case]:
    # Enough instances a minute to pass the minimum count after five minutes (counters start
    # at zero with the test, so the range holds the minutes since then).
    per_minute = max(10.0, t.feature_drift_min_count / 5)
    active = max(1, math.ceil(t.feature_drift_min_count / per_minute))
    labels = {"job": JOB, "model": MODEL, "feature": FEATURE}
    # A 70/30 split of a 50/50 reference is PSI 0.17; find one just past the limit.
    high = next((s / 100 for s in range(51, 100) if _psi(s / 100) > t.data_drift_high), 0.99)
    low = next((s / 100 for s in range(99, 50, -1) if _psi(s / 100) <= t.data_drift_high), 0.5)
    few = t.feature_drift_min_count / (for_m + 10) * 0.9
    return [
        Case(
            series=_series(per_minute, high),
            fires=True,
            active_from=active,
            labels=labels,
            value=_psi(high),
        ),
        Case(
            series=_series(per_minute, low),
            fires=False,
            check_at=active + for_m + 5,
            note="PSI just below the limit",
        ),
        Case(
            series=_series(few, high),
            fires=False,
            check_at=for_m + 5,
            note="too few instances in the range",
        ),
    ]


FEATURE_DRIFT = Alert(
    name="FeatureDriftPromQL",
    severity="warning",
    category="data",
    threshold="data_drift_high",
    for_key="feature_drift_for",
    summary="Feature {feature} of model {model} drifted (PromQL, all replicas)",
    description="PSI of feature {feature} (model {model}) over the last {window}, from the "
    "per-bin counters of every worker and replica, is {value} (threshold {threshold}).",
    labels=("model", "feature"),
    window_key="feature_drift_range",
    reads=("feature_drift_min_count",),
    expr=_expr,
    cases=_cases,
)
