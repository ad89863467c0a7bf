"""One alert, defined once: limit, PromQL, in-process condition, rule-test cases, runbook.

The Prometheus renderer (``render/rules.py``), the promtool test renderer
(``render/rule_tests.py``), the in-process evaluator (``monitoring/alerting.py``) and the
threshold API all iterate over the same :class:`Alert` objects; nothing matches alerts by
name between modules.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from nexus_ml.monitoring.alerts.cases import Case, minutes
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.thresholds import RUNBOOK_BASE, Thresholds, format_duration

Severity = Literal["critical", "warning", "info"]
Category = Literal["availability", "resources", "training", "model", "data", "business", "slo"]
# Each breach as (labels beyond alertname/severity/category/job, the measured value).
Found = Iterable[tuple[dict[str, str], float]]
# (thresholds, job matcher such as `job="nexus-ml"`) -> the PromQL condition.
Expr = Callable[[Thresholds, str], str]
# (snapshot, thresholds, this process's instance label) -> the breaches.
Condition = Callable[[Measurements, Thresholds, str], Found]
# (thresholds, the alert's `for` in whole minutes) -> promtool cases.
Cases = Callable[[Thresholds, int], list[Case]]


@dataclass(kw_only=True, frozen=True)
class Alert:
    """One alert: routing labels, the keys it reads, its texts and its three behaviours.

    Templates use ``{model}``, ``{feature}``, ``{instance}``, ``{job}`` (bounded labels only),
    ``{value}`` (the measured number), ``{threshold}``, ``{window}`` and the secondary limits
    of :func:`template_extras`; the Prometheus renderer and the in-process evaluator both fill
    them, so the wording is identical on both paths. ``condition`` is ``None`` for alerts
    that need Prometheus's scrape or days of history (they exist only as rules).
    """

    name: str
    severity: Severity
    category: Category
    threshold: str | None  # the Thresholds key of the limit; None: the alert has none
    for_key: str  # the Thresholds key of the `for` duration
    summary: str
    description: str
    labels: tuple[str, ...] = ()  # bounded labels each instance carries beyond `job`
    window: str | None = None  # the range the expression reads, when it is fixed
    window_key: str | None = None  # a Thresholds key that sets the range instead
    threshold_divisor: float = 1.0  # annotations show the limit divided by this (86400: days)
    reads: tuple[str, ...] = ()  # further Thresholds keys the condition reads (guards, floors)
    expr: Expr
    condition: Condition | None = None
    cases: Cases

    @property
    def anchor(self) -> str:
        """The runbook heading anchor (GitHub lower-cases the heading)."""
        return self.name.lower()

    @property
    def in_process(self) -> bool:
        """Whether the service evaluates this alert itself (else Prometheus only)."""
        return self.condition is not None

    def runbook_url(self, base: str = RUNBOOK_BASE) -> str:
        """``<base>#<alertname-lowercase>``: the heading anchor in docs/runbooks.md."""
        return f"{base}#{self.anchor}"

    def window_text(self, thresholds: Thresholds) -> str | None:
        """The range the expression reads (``5m``), from ``window_key`` when it has one."""
        if self.window_key is not None:
            return format_duration(getattr(thresholds, self.window_key))
        return self.window

    def for_seconds(self, thresholds: Thresholds) -> float:
        """How long the condition must hold before the alert fires."""
        return float(getattr(thresholds, self.for_key))

    def for_minutes(self, thresholds: Thresholds) -> int:
        """The ``for`` duration in whole rule-test evaluations (one a minute)."""
        return minutes(self.for_seconds(thresholds))

    def threshold_text(self, thresholds: Thresholds) -> str:
        """The limit as annotations write it ("" for an alert without one)."""
        if self.threshold is None:
            return ""
        value = getattr(thresholds, self.threshold) / self.threshold_divisor
        # Limits are configuration: six digits keep 0.999 and 0.9995 apart.
        return f"{value:.6g}"

    def literals(self, thresholds: Thresholds) -> dict[str, str]:
        """Placeholders both paths fill with fixed text: ``{threshold}``, ``{window}``, ..."""
        return {
            **template_extras(thresholds),
            "threshold": self.threshold_text(thresholds),
            "window": self.window_text(thresholds) or "",
        }

    def fill(
        self, text: str, thresholds: Thresholds, labels: Mapping[str, str], value: float
    ) -> str:
        """A template of this alert filled as Prometheus fills the rendered annotation."""
        return text.format_map(
            {**labels, **self.literals(thresholds), "value": format_number(value)}
        )

    def promtool_cases(self, thresholds: Thresholds) -> list[Case]:
        """This alert's rule-test cases for ``thresholds``."""
        return self.cases(thresholds, self.for_minutes(thresholds))

    def breaches(self, m: Measurements, thresholds: Thresholds, instance: str) -> Found:
        """The in-process condition's breaches (none for a Prometheus-only alert)."""
        return () if self.condition is None else self.condition(m, thresholds, instance)


def format_number(value: float) -> str:
    """Three significant digits, as Go's ``printf "%.3g"`` writes them in rule annotations."""
    if math.isnan(value):
        return "NaN"
    return f"{value:.3g}"


def template_extras(thresholds: Thresholds) -> dict[str, str]:
    """Secondary limits some templates mention (``{min_rate}``, ``{min_samples}``, ...)."""
    return {
        "min_rate": format_number(thresholds.error_rate_min_per_second),
        "min_samples": format_number(thresholds.accuracy_min_samples),
        "accuracy_tolerance": format_number(thresholds.accuracy_baseline_tolerance),
        "clinical_min_samples": format_number(thresholds.clinical_min_samples),
        "calibration_min_samples": format_number(thresholds.calibration_min_samples),
    }


def num(value: float) -> str:
    """A PromQL literal without float noise (0.0144, not 0.014400000000000001)."""
    rounded = round(value, 10)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


# -- helpers for in-process conditions ----------------------------------------


def host(instance: str) -> dict[str, str]:
    """The labels of a per-host alert."""
    return {"instance": instance}


def when(ok: bool, labels: dict[str, str], value: float | None) -> Found:
    """One breach with ``labels`` and ``value`` if ``ok`` (and there is a value)."""
    return [(labels, value)] if ok and value is not None else []


def per_model(values: Mapping[str, float], test: Callable[[str, float], bool]) -> Found:
    """A breach per model whose value passes ``test(model, value)``."""
    return [({"model": model}, v) for model, v in sorted(values.items()) if test(model, v)]


def wall_clock(m: Measurements) -> float:
    """The snapshot's wall-clock time (now, if it carries none)."""
    return m.now if m.now is not None else time.time()
