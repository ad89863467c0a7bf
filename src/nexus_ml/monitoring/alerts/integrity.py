"""What the service refused to keep or to serve: rejected records and refused model bundles.

Both are silent today unless someone reads the counters: a record the database rejects is
kept only in a ``rejected-*.jsonl`` file (the audit trail and every monitoring figure miss
it), and a refused bundle leaves a model serving an older version, or not at all, after
someone meant to change it. Labels are the model, and for bundles the refusal's reason (a
bounded enum, ``ml.errors.RefusalReason``); never a value or a message.
"""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import HORIZON, MODEL, Case, const, sel
from nexus_ml.monitoring.alerts.cases import target as series_labels
from nexus_ml.monitoring.alerts.definition import Alert, Found, num, per_model
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.thresholds import JOB, Thresholds

REJECTED = "ml_db_records_rejected_total"
REFUSED = "ml_model_bundle_refused"
BY_MODEL = {"job": JOB, "model": MODEL}


def _rejected_cases(t: Thresholds, for_m: int) -> list[Case]:
    """Records rejected past the limit within the hour fire; fewer, or older ones, do not.

    The series exist at 0 from the model's load (``ModelPublisher.publish``), so the first
    rejection is an increase Prometheus sees.
    """
    over = int(t.records_rejected_high) + 1  # the first count past the limit
    at_limit = int(t.records_rejected_high)
    integrity = series_labels(model=MODEL, reason="integrity")

    def step_to(value: int) -> str:
        """0 for three minutes, then ``value`` held to the horizon."""
        return "0 0 0 " + " ".join([str(value)] * HORIZON)

    cases = [
        Case(
            series=[(sel(REJECTED, **integrity), step_to(over))],
            fires=True,
            active_from=3,
            labels=BY_MODEL,
            value=over,
        ),
        Case(
            series=[
                (sel(REJECTED, **integrity), step_to(over)),
                (sel(REJECTED, **series_labels(model=MODEL, reason="data")), const(0)),
            ],
            fires=False,
            check_at=3 + 60 + 2,
            note="rejections older than the 1h window",
        ),
    ]
    if at_limit > 0:  # at the limit (0 is the default: no records at all is "at the limit")
        cases.append(
            Case(
                series=[(sel(REJECTED, **integrity), step_to(at_limit))],
                fires=False,
                check_at=3 + for_m + 2,
                note="exactly at the limit",
            )
        )
    else:
        cases.append(
            Case(
                series=[(sel(REJECTED, **integrity), const(0))],
                fires=False,
                check_at=3 + for_m + 5,
                note="no record rejected",
            )
        )
    return cases


RECORDS_REJECTED = Alert(
    name="PredictionRecordsRejected",
    severity="critical",
    category="availability",
    threshold="records_rejected_high",
    for_key="records_rejected_for",
    summary="Prediction records of model {model} rejected by the database",
    description="{value} prediction record(s) of model {model} were rejected by the database "
    "in the last hour; they are kept in rejected-*.jsonl files, outside every monitoring "
    "figure and the audit trail.",
    labels=("model",),
    window="1h",
    expr=lambda t, j: (
        f"sum by (job, model) (increase({REJECTED}{{{j}}}[1h])) > {num(t.records_rejected_high)}"
    ),
    condition=lambda m, t, instance: per_model(
        m.records_rejected, lambda _, v: v > t.records_rejected_high
    ),
    cases=_rejected_cases,
)


def _refused(m: Measurements, t: Thresholds, instance: str) -> Found:
    return [
        ({"model": model, "reason": reason}, v)
        for (model, reason), v in sorted(m.bundles_refused.items())
        if v > 0
    ]


def _refused_cases(t: Thresholds, for_m: int) -> list[Case]:
    """A refusal held fires per model and reason; a cleared one (the gauge gone) does not."""
    labels = series_labels(model=MODEL, reason="integrity")
    # The gauge exists only while the refusal holds: absent, refused from minute 3 on.
    refused = "_ _ _ " + " ".join(["1"] * HORIZON)
    # Refused for 30 minutes, then replaced by a good version: the series disappears.
    cleared = " ".join(["1"] * 30)
    return [
        Case(
            series=[(sel(REFUSED, **labels), refused)],
            fires=True,
            active_from=3,
            labels={**BY_MODEL, "reason": "integrity"},
            value=1,
        ),
        Case(
            series=[(sel(REFUSED, **labels), cleared)],
            fires=False,
            check_at=30 + 6,  # past the 5-minute lookback
            note="a refusal cleared by a good version",
        ),
    ]


BUNDLE_REFUSED = Alert(
    name="ModelBundleRefused",
    severity="critical",
    category="model",
    threshold=None,
    for_key="model_bundle_refused_for",
    summary="Model {model}: bundle refused ({reason})",
    description="The bundle CURRENT names for model {model} was refused at load ({reason}); "
    "the model serves its previous version, or nothing if it had none.",
    labels=("model", "reason"),
    expr=lambda t, j: f"max by (job, model, reason) ({REFUSED}{{{j}}}) > 0",
    condition=_refused,
    cases=_refused_cases,
)
