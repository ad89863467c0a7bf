"""Recording rules for drift computed by Prometheus from the per-bin input counters.

Every worker and replica counts its answered instances per feature and reference bin
(``ml_feature_bin_total``, ``monitoring/feature_bins.py``) and exports the reference's share of
each bin (``ml_feature_reference_share``). Prometheus adds the counts over every target and
compares them with the reference over ``feature_drift_range`` (default 1h): no job, no lock, no
raw rows. A model version with fewer than ``feature_drift_min_count`` instances in the range
gets no value (noise alone reads as drift on a few dozen rows).

Per model version, then the largest over the versions served in the range, by model and feature:

* ``ml:feature_psi`` — PSI over every bin, missing (and unseen) included, empty bins floored at
  ``PSI_EPS`` as the drift job's PSI does;
* ``ml:feature_js`` — Jensen–Shannon distance (base 2) over the same bins;
* ``ml:feature_ks`` — binned Kolmogorov–Smirnov: the largest gap of the CDFs of present values at
  the inner edges (numeric features);
* ``ml:feature_wasserstein`` — binned Wasserstein-1 in reference standard deviations (numeric);
* ``ml:feature_drifted_share`` — per model, the share of its features whose PSI exceeds
  ``data_drift_high``.

Prometheus has no cumulative sum across series, so the CDF at edge ``k`` is one rule per edge
summing bins ``0..k`` (the profile has at most ``N_BINS - 1`` edges). ``stats/binned.py`` holds the
same statistics in Python; the live test holds both to 1e-6 on the same counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nexus_ml.monitoring.feature_bins import MISSING, UNSEEN
from nexus_ml.stats.binned import binned_ks, binned_wasserstein, js_distance, psi
from nexus_ml.stats.drift_methods import N_BINS, PSI_EPS
from nexus_ml.thresholds import JOB, Thresholds, format_duration

GROUP = "nexus-ml-feature-drift"
BIN_KEYS = "job, model, version, feature, bin"
FEATURE_KEYS = "job, model, version, feature"
MAX_EDGES = N_BINS - 1  # decile bins: nine inner edges at most (ml.profile)

COUNT = "ml:feature_bin_count"
WINDOW = "ml:feature_window_count"
SHARE = "ml:feature_bin_share"
REFERENCE = "ml:feature_reference_share"
MID = "ml:feature_bin_mid_share"
PRESENT = "ml:feature_bin_present_share"
REFERENCE_PRESENT = "ml:feature_reference_present_share"
CDF_GAP = "ml:feature_cdf_gap"
WIDTH = "ml:feature_bin_width"
PSI = "ml:feature_psi"
JS = "ml:feature_js"
KS = "ml:feature_ks"
WASSERSTEIN = "ml:feature_wasserstein"
DRIFTED_SHARE = "ml:feature_drifted_share"
STATISTICS = (PSI, JS, KS, WASSERSTEIN)


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _present(metric: str) -> str:
    """Shares of the present bins of numeric features, normalised to the present values."""
    numeric = (
        f'(\n  {metric}{{bin!="{MISSING}"}}\n'
        f'  unless on ({FEATURE_KEYS}) {metric}{{bin="{UNSEEN}"}}\n)'
    )
    return (
        f"{numeric}\n/ on ({FEATURE_KEYS}) group_left ()\n"
        f'(sum by ({FEATURE_KEYS}) ({metric}{{bin!="{MISSING}"}}) > 0)'
    )


def _upto(k: int) -> str:
    return "|".join(str(i) for i in range(k + 1))


def drift_recording_rules(t: Thresholds, job: str = JOB) -> list[dict[str, Any]]:
    """The rules of the feature-drift group, in evaluation order."""
    j = f'job="{job}"'
    rng = format_duration(t.feature_drift_range)
    eps = _num(PSI_EPS)
    on_bin = f"on ({BIN_KEYS})"
    rules: list[dict[str, Any]] = [
        {
            "record": COUNT,
            "expr": f"sum by ({BIN_KEYS}) (increase(ml_feature_bin_total{{{j}}}[{rng}]))",
        },
        {
            # Each instance is counted once per feature: a feature's bins add up to the
            # version's instances in the range. Below the minimum count: no value at all.
            "record": WINDOW,
            "expr": f"sum by ({FEATURE_KEYS}) ({COUNT}) >= {_num(t.feature_drift_min_count)}",
        },
        {
            "record": SHARE,
            "expr": f"{COUNT}\n/ on ({FEATURE_KEYS}) group_left\n{WINDOW}",
        },
        {
            # Every worker of a version exports the same shares: one of them.
            "record": REFERENCE,
            "expr": f"max by ({BIN_KEYS}) (ml_feature_reference_share{{{j}}})",
        },
        {
            "record": WIDTH,
            "expr": f"max by ({BIN_KEYS}) (ml_feature_bin_width{{{j}}})",
        },
        {
            "record": f"{PSI}_by_version",
            "expr": f"sum by ({FEATURE_KEYS}) (\n"
            f"  (clamp_min({SHARE}, {eps}) - {on_bin} clamp_min({REFERENCE}, {eps}))\n"
            f"  * {on_bin}\n"
            f"  ln(clamp_min({SHARE}, {eps}) / {on_bin} clamp_min({REFERENCE}, {eps}))\n"
            ")",
        },
        {
            "record": MID,
            "expr": f"({SHARE} + {on_bin} {REFERENCE}) / 2",
        },
        {
            # 0 * log 0 = 0: the `> 0` filters leave empty bins out of each side's sum.
            "record": f"{JS}_by_version",
            "expr": "sqrt(clamp_min(\n"
            f"  (\n    sum by ({FEATURE_KEYS}) (({SHARE} > 0) * {on_bin} "
            f"ln(({SHARE} > 0) / {on_bin} {MID}))\n"
            f"    + on ({FEATURE_KEYS})\n"
            f"    sum by ({FEATURE_KEYS}) (({REFERENCE} > 0) * {on_bin} "
            f"ln(({REFERENCE} > 0) / {on_bin} {MID}))\n"
            f"  ) / {2 * math.log(2.0)!r},\n  0\n))",
        },
        {"record": PRESENT, "expr": _present(SHARE)},
        {"record": REFERENCE_PRESENT, "expr": _present(REFERENCE)},
    ]
    for k in range(MAX_EDGES):
        # The CDFs after bin k (at edge k): one rule per edge, labelled with it.
        rules.append(
            {
                "record": CDF_GAP,
                "expr": f'sum by ({FEATURE_KEYS}) ({PRESENT}{{bin=~"{_upto(k)}"}})\n'
                f"- on ({FEATURE_KEYS})\n"
                f'sum by ({FEATURE_KEYS}) ({REFERENCE_PRESENT}{{bin=~"{_upto(k)}"}})',
                "labels": {"bin": str(k)},
            }
        )
    rules += [
        {
            "record": f"{KS}_by_version",
            "expr": f"max by ({FEATURE_KEYS}) (abs({CDF_GAP}))",
        },
        {
            # Edges without a next edge have no width: the one-to-one match leaves them out.
            "record": f"{WASSERSTEIN}_by_version",
            "expr": f"sum by ({FEATURE_KEYS}) (abs({CDF_GAP}) * {on_bin} {WIDTH})",
        },
    ]
    for stat in STATISTICS:
        # Several versions in the range (a swap, a shadow): the most drifted one speaks.
        rules.append({"record": stat, "expr": f"max by (job, model, feature) ({stat}_by_version)"})
    rules.append(
        {
            "record": DRIFTED_SHARE,
            "expr": f"avg by (job, model) ({PSI} > bool {_num(t.data_drift_high)})",
        }
    )
    return rules


def drift_rule_names() -> list[str]:
    """Every series the group records (dashboards and tests read them)."""
    seen: dict[str, None] = {}
    for rule in drift_recording_rules(Thresholds()):
        seen.setdefault(rule["record"])
    return list(seen)


# -- promtool tests: the rules against the Python statistics on the same counts ------------------

# (bin, reference share, instances a minute in the window) of the tests' two features.
_NUMERIC = (("0", 0.2, 30), ("1", 0.3, 20), ("2", 0.3, 25), ("3", 0.15, 15), (MISSING, 0.05, 10))
_WIDTHS = (("0", 0.5), ("1", 0.8))  # edge 0 to 1 and edge 1 to 2, in reference std
_CATEGORY = (("0", 0.6, 50), ("1", 0.4, 30), (UNSEEN, 0.0, 15), (MISSING, 0.0, 5))


def drift_rule_tests(t: Thresholds, job: str = JOB) -> list[dict[str, Any]]:
    """promtool tests: each statistic equals ``stats.binned`` on the counts (to 1e-9)."""
    per_minute = max(10.0, t.feature_drift_min_count / 5) / 100  # both features: 100 shares
    at = max(1, math.ceil(t.feature_drift_min_count / (100 * per_minute))) + 1
    base = {"job": job, "instance": "ml-1:8001", "model": "diagnostic", "version": "1"}

    def series(metric: str, feature: str, b: str, values: str) -> dict[str, str]:
        labels = ",".join(f'{k}="{v}"' for k, v in {**base, "feature": feature, "bin": b}.items())
        return {"series": f"{metric}{{{labels}}}", "values": values}

    inputs = []
    for feature, rows in (("x", _NUMERIC), ("c", _CATEGORY)):
        for b, share, count in rows:
            inputs.append(series("ml_feature_reference_share", feature, b, f"{share}+0x{at + 5}"))
            inputs.append(
                series("ml_feature_bin_total", feature, b, f"0+{count * per_minute:.10g}x{at + 5}")
            )
    inputs += [series("ml_feature_bin_width", "x", b, f"{w}+0x{at + 5}") for b, w in _WIDTHS]

    ref_x = [share for _, share, _ in _NUMERIC]
    win_x = [float(count) for _, _, count in _NUMERIC]
    ref_c = [share for _, share, _ in _CATEGORY]
    win_c = [float(count) for _, _, count in _CATEGORY]
    widths = [w for _, w in _WIDTHS]
    expected = {
        (PSI, "x"): psi(np.asarray(ref_x), np.asarray(win_x)),
        (PSI, "c"): psi(np.asarray(ref_c), np.asarray(win_c)),
        (JS, "x"): js_distance(ref_x, win_x),
        (JS, "c"): js_distance(ref_c, win_c),
        (KS, "x"): binned_ks(ref_x[:-1], win_x[:-1]),
        (WASSERSTEIN, "x"): binned_wasserstein(ref_x[:-1], win_x[:-1], widths),
    }
    drifted = sum(v > t.data_drift_high for (s, _), v in expected.items() if s == PSI) / 2

    def close(expr: str, value: float, labels: str) -> dict[str, Any]:
        return {
            "expr": f"abs({expr} - {value!r}) < bool 1e-9",
            "eval_time": f"{at}m",
            "exp_samples": [{"labels": labels, "value": 1}],
        }

    checks = [
        close(
            f'{stat}{{feature="{feature}"}}',
            value,
            f'{{feature="{feature}", job="{job}", model="diagnostic"}}',
        )
        for (stat, feature), value in expected.items()
    ]
    checks.append(close(DRIFTED_SHARE, drifted, f'{{job="{job}", model="diagnostic"}}'))
    # KS and Wasserstein are for numbers only; below the minimum count nothing is recorded.
    checks.append({"expr": f'{KS}{{feature="c"}}', "eval_time": f"{at}m", "exp_samples": []})
    if t.feature_drift_min_count > 100 * per_minute * (at - 2):
        checks.append({"expr": PSI, "eval_time": f"{at - 2}m", "exp_samples": []})
    return [
        {
            "name": "feature drift rules equal stats.binned on the same counts",
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": checks,
        }
    ]
