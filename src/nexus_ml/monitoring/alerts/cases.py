"""Rule-test case data: synthetic input series and what an alert must do with them.

Plain data, next to each alert's definition; ``render/rule_tests.py`` only formats it as a
``promtool test rules`` file. Series use promtool's input notation (``0+5x240``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from nexus_ml.thresholds import JOB

INSTANCE = "ml-1:8001"
MODEL = "diagnostic"
HORIZON = 240  # minutes of synthetic samples; enough for every window plus `for`
Series = tuple[str, str]


@dataclass(kw_only=True, frozen=True)
class Case:
    """Input series and what the alert must do with them.

    A firing case is checked one evaluation before its ``for`` runs out (silent) and at the
    moment it does (firing with ``labels`` and ``value``); a quiet case at ``check_at``.
    """

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


def fires(series: list[Series], labels: dict[str, str], value: float, note: str = "") -> Case:
    """A case whose alert fires once its ``for`` has run, with ``labels`` and ``value``."""
    return Case(series=series, fires=True, labels=labels, value=value, note=note)


def quiet(series: list[Series], check_at: int, note: str) -> Case:
    """A case whose alert must be silent at ``check_at`` (minutes)."""
    return Case(series=series, fires=False, check_at=check_at, note=note)


def sel(metric: str, /, **labels: str) -> str:
    """A series selector in promtool's input notation."""
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{body}}}"


def const(value: float) -> str:
    """A constant series over the whole horizon."""
    return f"{value:.10g}+0x{HORIZON}"


def exact(value: float | str) -> str:
    """A constant series holding exactly ``value``; ``"NaN"`` for a withdrawn gauge.

    ``repr`` round-trips every float64: the at-the-limit cases need the very float the rule
    computes (``0.674 - 0.1`` is ``0.5740000000000001``), which ``const``'s ten digits miss.
    """
    return f"{value if isinstance(value, str) else repr(float(value))}+0x{HORIZON}"


def ramp(per_minute: float) -> str:
    """A counter growing by ``per_minute`` each minute from zero."""
    return f"0+{per_minute:.10g}x{HORIZON}"


def minutes(seconds: float) -> int:
    """Whole evaluation minutes that cover ``seconds``."""
    return math.ceil(seconds / 60)


def target(**extra: str) -> dict[str, str]:
    """The labels of one scraped series of the service (job, instance, ``extra``)."""
    return {"job": JOB, "instance": INSTANCE, **extra}


def histogram(
    metric: str,
    buckets: tuple[float, ...],
    q: float,
    value: float,
    labels: dict[str, str],
    per_minute: float = 1000.0,
) -> list[Series]:
    """Bucket counters whose ``histogram_quantile(q)`` is ``value`` (linear interpolation)."""
    bounds = list(buckets)
    hi_index = next(i for i, b in enumerate(bounds) if value <= b)
    hi = bounds[hi_index]
    lo = bounds[hi_index - 1] if hi_index else 0.0
    x = (value - lo) / (hi - lo)
    # Share p at or below lo, share c at or below hi; solve lo + (hi-lo)(q-p)/(c-p) = value.
    p, c = (0.0, q / x) if x >= q else ((q - x) / (1 - x), 1.0)
    if p > 0 and not hi_index:
        raise ValueError(f"cannot place quantile {q} at {value} in the first bucket")
    series = []
    for b in [*bounds, math.inf]:
        share = 0.0 if b < lo else p if b == lo else c if b == hi else 1.0
        series.append((sel(metric, **labels, le=floatToGoString(b)), ramp(per_minute * share)))
    return series


def gauge_cases(
    metric: str, limit: float, step: float, for_m: int, *, scale: float = 1.0
) -> list[Case]:
    """A host gauge ``step`` above its limit (fires at once), ``step`` below and exactly at it
    (quiet: the rules compare with a strict ``>``)."""
    bad, good = limit + step, limit - step
    return [
        Case(
            series=[(sel(metric, **target()), const(bad / scale))],
            fires=True,
            labels=target(),
            value=bad,
        ),
        Case(
            series=[(sel(metric, **target()), const(good / scale))],
            fires=False,
            check_at=for_m + 5,
            note="just inside the limit",
        ),
        Case(
            series=[(sel(metric, **target()), const(limit / scale))],
            fires=False,
            check_at=for_m + 5,
            note="exactly at the limit",
        ),
    ]
