"""The on-call dashboard's "Anomaly bands" row: each signal with its band, from the rules.

Reads the recording rules of ``render/anomaly_rules.py``: the signal and, for the newest
baseline (the same hour a week back), ``centre ± k·spread`` on the side its alert watches. The
alert asks a majority of the three baselines; the panel draws one band to stay readable.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.render.anomaly_rules import SOURCES, baselines, series
from nexus_ml.render.dashboards.common import MODEL, q
from nexus_ml.render.dashboards.panels import dashed, timeseries_panel
from nexus_ml.stats.anomaly import STEP_SECONDS, specs_of
from nexus_ml.thresholds import JOB, Thresholds, format_duration

JOB_MATCHER = f'job="{JOB}"'

UNITS = {
    "request_rate": "reqps",
    "error_ratio": "percentunit",
    "predictions": "ops",
    "latency_p95": "s",
    "confidence": "percentunit",
    "class_share": "percentunit",
}
TITLES = {
    "request_rate": "Request rate and its band",
    "error_ratio": "5xx share and its band",
    "predictions": "Predictions per model and their band",
    "latency_p95": "P95 latency and its band",
    "confidence": "Mean confidence per model and its band",
    "class_share": "Class shares and their band",
}


def anomaly_row(thresholds: Thresholds) -> list[Builder[dm.Panel]]:
    """A panel per signal: its value and the newest baseline's band, dashed."""
    specs = specs_of(thresholds)
    panels: list[Builder[dm.Panel]] = []
    for source in SOURCES:
        spec = specs[source.signal]
        name = series(source.signal)
        label, _ = baselines(spec, STEP_SECONDS)[0]
        own = f"{JOB_MATCHER},{MODEL}" if "model" in source.labels else JOB_MATCHER
        match = f'{own},baseline="{label}"'
        keys = "{{model}} {{predicted_class}}" if source.labels else "{{job}}"
        centre, spread = f"{name}:centre{{{match}}}", f"{name}:spread{{{match}}}"
        sides = {"up": ("upper",), "down": ("lower",), "both": ("upper", "lower")}
        targets = [q(f"{name}{{{own}}}", keys)]
        for i, side in enumerate(sides[spec.direction]):
            sign = "+" if side == "upper" else "-"
            targets.append(
                q(f"{centre} {sign} {spec.k:g} * {spread}", f"{side} ({label}) {keys}", "BC"[i])
            )
        window = format_duration(spec.window * STEP_SECONDS)
        panel = timeseries_panel(
            TITLES[source.signal],
            targets,
            unit=UNITS[source.signal],
            no_value="No value yet: the anomaly rules (deploy/prometheus/ml_anomaly.yml) need "
            f"{format_duration(spec.min_samples * STEP_SECONDS)} of the signal within the last "
            f"{window}, and traffic to measure",
            description=f"{name} and the band of its {label} baseline: median ± "
            f"{spec.k:g} robust σ of the same time {label} back (the last {window} before "
            f"that history exists). {source.alert} fires when a majority of the baselines "
            "put the value beyond theirs (docs/anomaly-detection.md).",
            span=8,
        )
        panels.append(dashed(panel, "^(upper|lower) "))
    return panels
