"""The data-science dashboard's "PromQL drift" row: drift from every replica's per-bin counters.

Reads the recording rules of ``render/drift_rules.py`` (``ml:feature_psi`` and friends), which
add the counts of every worker and replica; the "Drift" row beside it shows the service's own
drift job (a window by count, with its tests).
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.render.dashboards.common import MODEL, high_is_bad, q, table_q
from nexus_ml.render.dashboards.panels import stat_panel, table_panel, timeseries_panel
from nexus_ml.render.drift_rules import DRIFTED_SHARE, JS, KS, PSI, WASSERSTEIN
from nexus_ml.thresholds import Thresholds, format_duration


def promql_drift_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    """PSI over time with the alert's limit, the four statistics now, the drifted share."""
    window = format_duration(t.feature_drift_range)
    waiting = (
        f"No value yet: the PromQL drift rules need {t.feature_drift_min_count:g} instances of "
        f"a model version within the last {window} (feature_drift_min_count)"
    )
    return [
        timeseries_panel(
            f"PSI per feature over the last {window} (all replicas)",
            [q(f"{PSI}{{{MODEL}}}", "{{model}} {{feature}}")],
            unit="none",
            min_val=0,
            thresholds=high_is_bad(t.data_drift_high),
            no_value=waiting,
            description=f"{PSI}: PSI of the inputs counted per reference bin by every worker "
            "and replica against the reference; dashed line at FeatureDriftPromQL's limit.",
            span=12,
        ),
        table_panel(
            "Drift statistics now (PromQL, binned)",
            [
                table_q(f"{PSI}{{{MODEL}}}", "A"),
                table_q(f"{JS}{{{MODEL}}}", "B"),
                table_q(f"{KS}{{{MODEL}}}", "C"),
                table_q(f"{WASSERSTEIN}{{{MODEL}}}", "D"),
            ],
            rename={
                "Value #A": "PSI",
                "Value #B": "Jensen-Shannon",
                "Value #C": "KS (binned)",
                "Value #D": "Wasserstein / std (binned)",
            },
            hide_columns=("Time", "__name__", "job"),
            no_value=waiting,
            description="Per feature: PSI and Jensen-Shannon over every bin (missing and "
            "unseen included); KS and Wasserstein binned, numbers only (docs/metrics.md).",
            span=8,
        ),
        stat_panel(
            "Features drifted (PromQL)",
            [q(f"{DRIFTED_SHARE}{{{MODEL}}}", "{{model}}", instant=True)],
            unit="percentunit",
            thresholds=high_is_bad(0.01),
            no_value=waiting,
            description=f"Share of each model's features with {PSI} above "
            f"{t.data_drift_high:g} (data_drift_high).",
            span=4,
        ),
    ]
