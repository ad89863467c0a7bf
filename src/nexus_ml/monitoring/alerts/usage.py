"""Business: how much the service is used, and whether one model takes all of it."""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import MODEL, Case, Series, const, ramp, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, Found, num, per_model, when
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.thresholds import JOB, Thresholds

PREDICTIONS = "ml_model_predictions_total"


def _predictions(model: str, per_minute: float) -> Series:
    labels = target(model=model, version="1", predicted_class="benign")
    return (sel(PREDICTIONS, **labels), ramp(per_minute))


def _volume_expr(t: Thresholds, j: str) -> str:
    # No prediction series at all is the lowest volume; count it while the target is up.
    return (
        f"(\n  sum by (job) (rate({PREDICTIONS}{{{j}}}[1h]))\n  or on (job)\n"
        f"  0 * (max by (job) (up{{{j}}}) == 1)\n) < {num(t.prediction_volume_low)}"
    )


def _volume_low(m: Measurements, t: Thresholds, instance: str) -> Found:
    # No measurement counts as zero, like the rule's `or 0 * up` branch.
    rate = m.prediction_rate or 0.0
    return when(m.service_up and rate < t.prediction_volume_low, {}, rate)


def _volume_cases(t: Thresholds, for_m: int) -> list[Case]:
    low, high = t.prediction_volume_low * 0.9, t.prediction_volume_low * 1.1
    up = (sel("up", **target()), const(1))
    return [
        # Counters start at zero with the test, so the 1h rate grows until the window is full.
        Case(
            series=[up, _predictions(MODEL, low * 60)],
            fires=True,
            labels={"job": JOB},
            value=low * min(for_m, 60) / 60,
        ),
        Case(
            series=[up],
            fires=True,
            labels={"job": JOB},
            value=0.0,
            note="no prediction series at all",
        ),
        Case(
            series=[up, _predictions(MODEL, high * 60)],
            fires=False,
            check_at=60 + for_m + 30,
            note="volume just above",
        ),
        Case(
            series=[(sel("up", **target()), const(0))],
            fires=False,
            check_at=for_m + 5,
            note="target down: MLServiceDown speaks instead",
        ),
    ]


LOW_VOLUME = Alert(
    name="LowPredictionVolume",
    severity="info",
    category="business",
    threshold="prediction_volume_low",
    for_key="prediction_volume_low_for",
    summary="Few predictions on {job}",
    description="{job} served {value} predictions/s over the last hour (threshold {threshold}/s).",
    window="1h",
    expr=_volume_expr,
    condition=_volume_low,
    cases=_volume_cases,
)


def _share_expr(t: Thresholds, j: str) -> str:
    preds = f"{PREDICTIONS}{{{j}}}"
    return (
        f"sum by (job, model) (rate({preds}[1h]))\n"
        f"  / on (job) group_left sum by (job) (rate({preds}[1h]))\n"
        f"  > {num(t.prediction_share_high)}\n"
        f"and on (job) count by (job) (count by (job, model) (ml_model_info{{{j}}})) > 1\n"
        f"and on (job) sum by (job) (rate({preds}[1h])) >= {num(t.prediction_volume_low)}"
    )


def _share_high(m: Measurements, t: Thresholds, instance: str) -> Found:
    rates = m.prediction_rate_by_model
    total = sum(rates.values())
    shares = {k: v / total for k, v in rates.items()} if total > 0 else {}
    return per_model(
        shares,
        lambda _, share: (
            share > t.prediction_share_high and len(rates) > 1 and total >= t.prediction_volume_low
        ),
    )


def _share_cases(t: Thresholds, for_m: int) -> list[Case]:
    total = max(60.0, 7200 * t.prediction_volume_low)
    over = t.prediction_share_high + (1 - t.prediction_share_high) / 2
    under = t.prediction_share_high - (1 - t.prediction_share_high) / 2

    def usage(
        share: float, per_minute: float, models: tuple[str, ...] = ("a", "b")
    ) -> list[Series]:
        out = [(sel("ml_model_info", **target(model=m, version="1")), const(1)) for m in models]
        out.append(_predictions("a", per_minute * share))
        if len(models) > 1:
            out.append(_predictions("b", per_minute * (1 - share)))
        return out

    return [
        Case(
            series=usage(over, total),
            fires=True,
            active_from=1,
            labels={"job": JOB, "model": "a"},
            value=over,
        ),
        Case(series=usage(under, total), fires=False, check_at=for_m + 6, note="share just below"),
        Case(
            series=usage(1.0, total, ("a",)),
            fires=False,
            check_at=for_m + 6,
            note="one model loaded",
        ),
        Case(
            series=usage(over, 30 * t.prediction_volume_low),
            fires=False,
            check_at=for_m + 6,
            note="too little traffic to judge",
        ),
    ]


UNBALANCED = Alert(
    name="UnbalancedPredictions",
    severity="info",
    category="business",
    threshold="prediction_share_high",
    for_key="prediction_share_high_for",
    summary="Model {model} takes almost all predictions",
    description="Model {model} served {value} of all predictions over the last hour while "
    "other models are loaded (threshold {threshold}).",
    labels=("model",),
    window="1h",
    expr=_share_expr,
    condition=_share_high,
    cases=_share_cases,
)
