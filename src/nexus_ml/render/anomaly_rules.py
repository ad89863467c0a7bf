"""Recording rules and alerts for the anomaly bands of ``stats/anomaly.py``, generated from it.

Per signal (``SOURCES``: request rate, error ratio, predictions per model, latency p95, mean
confidence, each class's share), in one group evaluated once a step (the series' resolution):

* ``ml:anomaly_<signal>`` — the signal itself, from the service's metrics; never NaN (a ratio
  without a denominator, a quantile without requests has no sample): a missing sample is what
  the Python reference calls NaN;
* per baseline (label ``baseline``: the season, ``7d``, ``14d``, ``21d``):
  ``ml:anomaly_<signal>:centre`` — ``quantile_over_time(0.5, …)`` of the window one season back
  (``[W] offset (season - W/2)``), ``ml:anomaly_<signal>:spread`` — its IQR / 1.349 with the
  signal's floors, ``ml:anomaly_<signal>:score`` — ``(x - centre) / spread``.

Missing history: a range selector with no samples gives no value, but one with a few gives a
quantile of those few — a baseline made of the first minutes of a series. So each window is used
only ``and count_over_time(…) >= min_samples`` (half its steps, as ``BandSpec.min_samples``);
otherwise the seasonal window ``or`` the trailing one (``[W]`` ending now) under the same guard.
The centre and the spread are guarded alike, so both come from the same window.

The range is ``(W - 1)`` steps and a half: Prometheus 2's ranges include both ends, and the
group's evaluations are exactly a step apart, so it holds the ``W`` samples the reference's window
holds. The alert is the signal ``and`` a majority of the baselines' ``bool`` votes on one side
(``sum without (baseline)``: a baseline without a score does not vote, as in the reference), with
``for`` and ``keep_firing_for`` (Prometheus 2.42+) from the spec's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus_ml.render.rules import to_yaml
from nexus_ml.stats.anomaly import (
    IQR_TO_SIGMA,
    SEVERITY,
    SIGNALS,
    STEP_SECONDS,
    BandSpec,
    default_specs,
    specs_of,
)
from nexus_ml.thresholds import JOB, RUNBOOK_BASE, Thresholds, format_duration

GROUP = "nexus-ml-anomaly"
RULE_FILE = "ml_anomaly.yml"
RATE = "5m"  # the rate window of the signals (the recording rules' percentiles use 5m too)


@dataclass(kw_only=True, frozen=True)
class Source:
    """A signal as the service's metrics give it, and the alert on its band."""

    signal: str  # the key in stats.anomaly.SIGNALS
    alert: str
    category: str  # the routing category (as the alerts of monitoring/alerts/)
    labels: tuple[str, ...]  # bounded labels beyond job
    what: str  # how the texts name it ("the request rate of {job}")
    unit: str  # appended to the value in the description
    expr: Callable[[str], str]  # job matcher -> PromQL of the signal


def _rate(metric: str, j: str, by: str, extra: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{{{j}{extra}}}[{RATE}]))"


def _error_ratio(j: str) -> str:
    requests = _rate("ml_api_requests_total", j, "job")
    errors = _rate("ml_api_requests_total", j, "job", ',status=~"5.."')
    # No 5xx series at all is a ratio of 0; no requests at all is no sample (not NaN).
    return f"(\n  {errors}\n  or 0 * {requests}\n)\n/\n({requests} > 0)"


def _latency(j: str) -> str:
    buckets = _rate("ml_api_request_duration_seconds_bucket", j, "job, le")
    # histogram_quantile of no requests is NaN: `>= 0` leaves no sample instead.
    return f"histogram_quantile(0.95, {buckets}) >= 0"


def _confidence(j: str) -> str:
    total = _rate("ml_model_confidence_score_sum", j, "job, model")
    count = _rate("ml_model_confidence_score_count", j, "job, model")
    return f"{total}\n/\n({count} > 0)"


def _class_share(j: str) -> str:
    per_class = _rate("ml_model_predictions_total", j, "job, model, predicted_class")
    per_model = _rate("ml_model_predictions_total", j, "job, model")
    return f"{per_class}\n/ on (job, model) group_left ()\n({per_model} > 0)"


SOURCES: tuple[Source, ...] = (
    Source(
        signal="request_rate",
        alert=SIGNALS["request_rate"].alert,
        category="availability",
        labels=(),
        what="the request rate of {job}",
        unit=" requests/s",
        expr=lambda j: _rate("ml_api_requests_total", j, "job"),
    ),
    Source(
        signal="error_ratio",
        alert=SIGNALS["error_ratio"].alert,
        category="availability",
        labels=(),
        what="the 5xx share of {job}'s requests",
        unit="",
        expr=_error_ratio,
    ),
    Source(
        signal="predictions",
        alert=SIGNALS["predictions"].alert,
        category="model",
        labels=("model",),
        what="the predictions per second of model {model}",
        unit="/s",
        expr=lambda j: _rate("ml_model_predictions_total", j, "job, model"),
    ),
    Source(
        signal="latency_p95",
        alert=SIGNALS["latency_p95"].alert,
        category="availability",
        labels=(),
        what="the P95 request latency of {job}",
        unit=" s",
        expr=_latency,
    ),
    Source(
        signal="confidence",
        alert=SIGNALS["confidence"].alert,
        category="model",
        labels=("model",),
        what="the mean confidence of model {model}",
        unit="",
        expr=_confidence,
    ),
    Source(
        signal="class_share",
        alert=SIGNALS["class_share"].alert,
        category="model",
        labels=("model", "predicted_class"),
        what="the share of class {predicted_class} in model {model}'s predictions",
        unit="",
        expr=_class_share,
    ),
)
ALERT_NAMES = tuple(s.alert for s in SOURCES)


def series(signal: str) -> str:
    """The recorded signal; ``:centre``, ``:spread`` and ``:score`` follow its name."""
    return f"ml:anomaly_{signal}"


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def baselines(spec: BandSpec, step: float) -> list[tuple[str, str | None]]:
    """(label, offset) of each baseline: a season back, or the trailing window alone."""
    if not spec.seasons:
        return [("trailing", None)]
    return [
        (format_duration(season * step), format_duration((season - spec.window // 2) * step))
        for season in spec.seasons
    ]


def _guarded(
    body: Callable[[str], str], name: str, spec: BandSpec, step: float, offset: str | None
) -> str:
    """``body`` over the window a season back if it holds enough samples, else the trailing one."""
    # (W - 1) steps and a half: both ends of a Prometheus 2 range count, samples are a step apart.
    rng = format_duration((spec.window - 0.5) * step)
    windows = (
        [f"{name}[{rng}]"]
        if offset is None
        else [f"{name}[{rng}] offset {offset}", f"{name}[{rng}]"]
    )
    parts = [
        f"(\n  {body(w)}\n  and\n  count_over_time({w}) >= {spec.min_samples}\n)" for w in windows
    ]
    return "\nor\n".join(parts)


def band_rules(name: str, expr: str, spec: BandSpec, step: float) -> list[dict[str, Any]]:
    """The signal's rule, then centre, spread and score per baseline (evaluation order)."""

    def q(phi: float) -> Callable[[str], str]:
        return lambda w: f"quantile_over_time({phi}, {w})"

    def iqr(w: str) -> str:
        return f"(quantile_over_time(0.75, {w}) - quantile_over_time(0.25, {w})) / {IQR_TO_SIGMA}"

    rules: list[dict[str, Any]] = [{"record": name, "expr": expr}]
    for label, offset in baselines(spec, step):
        centre = _guarded(q(0.5), name, spec, step, offset)
        spread = f"(\n{_guarded(iqr, name, spec, step, offset)}\n)"
        if spec.rel_floor > 0:
            # The larger of two series with the same labels: the first where it is, else the other.
            floor = f"{_num(spec.rel_floor)} * abs(\n{centre}\n)"
            spread = f"(\n{spread}\n>=\n{floor}\n)\nor\n{floor}"
        only = f'{{baseline="{label}"}}'
        rules += [
            {"record": f"{name}:centre", "expr": centre, "labels": {"baseline": label}},
            {
                "record": f"{name}:spread",
                "expr": f"clamp_min(\n{spread},\n{_num(spec.abs_floor)}\n)",
                "labels": {"baseline": label},
            },
            {
                "record": f"{name}:score",
                "expr": f"({name} - ignoring (baseline) {name}:centre{only})\n"
                f"/ ignoring (baseline)\n{name}:spread{only}",
                "labels": {"baseline": label},
            },
        ]
    return rules


def condition(name: str, spec: BandSpec, step: float) -> str:
    """The alert's expression: the signal where a majority of baselines vote on one side."""
    need = len(baselines(spec, step)) // 2 + 1
    k = _num(spec.k)
    up = f"sum without (baseline) ({name}:score > bool {k}) >= {need}"
    down = f"sum without (baseline) ({name}:score < bool -{k}) >= {need}"
    votes = {"up": up, "down": down, "both": f"({up})\nor\n({down})"}[spec.direction]
    return f"{name}\nand\n(\n{votes}\n)"


def _template(text: str) -> str:
    """Our ``{label}`` placeholders as Prometheus annotation templates."""
    out = text.replace("{value}", '{{ $value | printf "%.3g" }}')
    for label in ("job", "model", "predicted_class"):
        out = out.replace("{" + label + "}", "{{ $labels.%s }}" % label)  # noqa: UP031
    return out


def texts(source: Source, spec: BandSpec, step: float) -> dict[str, str]:
    """Summary and description with ``{label}`` and ``{value}`` placeholders."""
    side = {"up": "above", "down": "below", "both": "outside"}[spec.direction]
    seasons = ", ".join(label for label, _ in baselines(spec, step))
    what = source.what[0].upper() + source.what[1:]
    return {
        "summary": f"{what} is {side} its usual band",
        "description": f"{what} is {{value}}{source.unit}: more than {_num(spec.k)} robust "
        f"standard deviations {side.replace('outside', 'away from')} the median of the same "
        f"time {seasons} back (the last {format_duration(spec.window * step)} where that "
        f"history does not exist) for a majority of them, for "
        f"{format_duration(spec.for_steps * step)}.",
    }


def alert_rule(source: Source, spec: BandSpec, step: float, runbook_base: str) -> dict[str, Any]:
    """One alerting rule: labels severity and category only, the runbook at its anchor."""
    rule: dict[str, Any] = {
        "alert": source.alert,
        "expr": condition(series(source.signal), spec, step),
        "for": format_duration(spec.for_steps * step),
    }
    if spec.keep_steps:
        rule["keep_firing_for"] = format_duration(spec.keep_steps * step)
    rule["labels"] = {"severity": SEVERITY, "category": source.category}
    rule["annotations"] = {
        **{key: _template(text) for key, text in texts(source, spec, step).items()},
        "runbook_url": f"{runbook_base}#{source.alert.lower()}",
    }
    return rule


def anomaly_group(
    *,
    job: str = JOB,
    runbook_base: str = RUNBOOK_BASE,
    specs: dict[str, BandSpec] | None = None,
    step: float = STEP_SECONDS,
) -> dict[str, Any]:
    """The group: every signal's rules, then the alerts (they read this evaluation's scores)."""
    chosen = specs or default_specs()
    j = f'job="{job}"'
    rules: list[dict[str, Any]] = []
    for source in SOURCES:
        rules += band_rules(series(source.signal), source.expr(j), chosen[source.signal], step)
    rules += [alert_rule(s, chosen[s.signal], step, runbook_base) for s in SOURCES]
    # The step is the group's interval: the reference's windows count steps.
    return {"name": GROUP, "interval": format_duration(step), "rules": rules}


def render_anomaly_rules_yaml(
    thresholds: Thresholds | None = None, *, job: str = JOB, runbook_base: str = RUNBOOK_BASE
) -> str:
    """``deploy/prometheus/ml_anomaly.yml`` with the bands of ``thresholds`` (``anomaly_*``):
    a file of its own, so that promtool's tests of ``ml_alerts.yml`` do not evaluate its
    60-odd rules at every minute of every case."""
    specs = specs_of(thresholds or Thresholds())
    return to_yaml({"groups": [anomaly_group(job=job, runbook_base=runbook_base, specs=specs)]})
