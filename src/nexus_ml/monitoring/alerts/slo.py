"""SLO burn-rate alerts: multiwindow, multi-burn-rate over a 30-day budget (SRE workbook).

Prometheus only: they read days of history through the recording rules
``job:<bad>:ratio_rate<window>`` and ``job:<total>:rate<window>`` of ``render/rules.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client.utils import floatToGoString

from nexus_ml.monitoring.alerts.cases import MODEL, Case, Series, ramp, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, num
from nexus_ml.thresholds import JOB, Thresholds

# (long window, short window, burn rate) per the SRE workbook, 30-day budget.
Burns = tuple[tuple[str, str, float], ...]
FAST_BURNS: Burns = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
SLOW_BURNS: Burns = (("1d", "2h", 3.0), ("3d", "6h", 1.0))


@dataclass(kw_only=True, frozen=True)
class Objective:
    """One SLO: its recording rules, its target's key and test traffic that misses it."""

    bad: str  # recording rule `job:<bad>:ratio_rate<w>`: the share of bad events
    total: str  # recording rule `job:<total>:rate<w>`: events per second
    target_key: str  # the Thresholds key of the target (0.999): the budget is 1 - target
    # (thresholds, share of bad events, events per minute) -> promtool input series
    traffic: Callable[[Thresholds, float, float], list[Series]]


@dataclass(kw_only=True, frozen=True)
class Speed:
    """A pair of burn-rate windows and the traffic guard's window."""

    burns: Burns
    guard: str  # range of the request-rate guard
    guard_seconds: int


FAST = Speed(burns=FAST_BURNS, guard="1h", guard_seconds=3600)
SLOW = Speed(burns=SLOW_BURNS, guard="1d", guard_seconds=86400)


def _failing(t: Thresholds, ratio: float, per_minute: float) -> list[Series]:
    r = "ml_api_requests_total"
    labels = target(method="POST", endpoint="/predict")
    return [
        (sel(r, **labels, status="500"), ramp(per_minute * ratio)),
        (sel(r, **labels, status="200"), ramp(per_minute * (1 - ratio))),
    ]


def _slow(t: Thresholds, ratio: float, per_minute: float) -> list[Series]:
    h = "ml_model_prediction_duration_seconds"
    labels = target(model=MODEL)
    le = floatToGoString(t.latency_slo_threshold)
    return [
        (sel(f"{h}_bucket", **labels, le=le), ramp(per_minute * (1 - ratio))),
        (sel(f"{h}_count", **labels), ramp(per_minute)),
    ]


AVAILABILITY = Objective(
    bad="ml_api_request_errors",
    total="ml_api_requests",
    target_key="availability_slo",
    traffic=_failing,
)
LATENCY = Objective(
    bad="ml_model_predictions_slow",
    total="ml_model_prediction_calls",
    target_key="latency_slo",
    traffic=_slow,
)


def _budget(objective: Objective, t: Thresholds) -> float:
    return 1 - float(getattr(t, objective.target_key))


def burn_expr(objective: Objective, speed: Speed, t: Thresholds, j: str) -> str:
    """Both window pairs of ``speed`` burning ``objective``'s budget, above the traffic guard."""
    budget, bad = _budget(objective, t), objective.bad
    pairs = [
        f"(job:{bad}:ratio_rate{long}{{{j}}} > {num(rate * budget)}\n"
        f"   and job:{bad}:ratio_rate{short}{{{j}}} > {num(rate * budget)})"
        for long, short, rate in speed.burns
    ]
    joined = "\n  or\n  ".join(pairs)
    # Too few requests make any ratio meaningless; HighErrorRate's own guard covers bursts.
    return (
        f"(\n  {joined}\n)\nand on (job)\njob:{objective.total}:rate{speed.guard}{{{j}}} >= "
        f"{num(t.slo_min_request_rate)}"
    )


def burn_cases(objective: Objective, speed: Speed, t: Thresholds, for_m: int) -> list[Case]:
    """Above the highest and just above the lowest burn rate (fires), below it and too
    little traffic (quiet)."""
    budget = _budget(objective, t)
    # Enough traffic that the first, partial guard window already clears the minimum.
    per_minute = max(600.0, 2 * speed.guard_seconds * t.slo_min_request_rate)
    top, low = speed.burns[0][2], speed.burns[-1][2]
    return [
        Case(
            series=objective.traffic(t, top * budget * 1.1, per_minute),
            fires=True,
            active_from=1,
            labels={"job": JOB},
            value=top * budget * 1.1,
            note="above the highest burn rate",
        ),
        Case(
            series=objective.traffic(t, low * budget * 1.1, per_minute),
            fires=True,
            active_from=1,
            labels={"job": JOB},
            value=low * budget * 1.1,
            note="just above the lowest burn rate",
        ),
        Case(
            series=objective.traffic(t, low * budget * 0.9, per_minute),
            fires=False,
            check_at=for_m + 10,
            note="just below the lowest burn rate",
        ),
        Case(
            series=objective.traffic(t, 0.5, 30 * t.slo_min_request_rate),
            fires=False,
            check_at=for_m + 10,
            note="half the requests fail but traffic is below the minimum",
        ),
    ]


# Bound with functools.partial, not made by a factory returning a closure: mutation testing
# swaps module-level functions at each call and cannot reach a closure made at import
# (docs/testing.md, "Why mutmut").
AVAILABILITY_FAST_BURN = Alert(
    name="AvailabilitySLOFastBurn",
    severity="critical",
    category="slo",
    threshold=AVAILABILITY.target_key,
    for_key="slo_fast_burn_for",
    summary="Availability error budget burning fast on {job}",
    description="5xx responses on {job} burn the {threshold} availability budget at over 6x "
    "(1h/5m or 6h/30m windows).",
    expr=partial(burn_expr, AVAILABILITY, FAST),
    cases=partial(burn_cases, AVAILABILITY, FAST),
)

AVAILABILITY_SLOW_BURN = Alert(
    name="AvailabilitySLOSlowBurn",
    severity="warning",
    category="slo",
    threshold=AVAILABILITY.target_key,
    for_key="slo_slow_burn_for",
    summary="Availability error budget burning on {job}",
    description="5xx responses on {job} burn the {threshold} availability budget at over 1x "
    "(1d/2h or 3d/6h windows).",
    expr=partial(burn_expr, AVAILABILITY, SLOW),
    cases=partial(burn_cases, AVAILABILITY, SLOW),
)

LATENCY_FAST_BURN = Alert(
    name="LatencySLOFastBurn",
    severity="critical",
    category="slo",
    threshold=LATENCY.target_key,
    for_key="slo_fast_burn_for",
    summary="Latency error budget burning fast on {job}",
    description="Predictions slower than the SLO bound on {job} burn the {threshold} latency "
    "budget at over 6x (1h/5m or 6h/30m windows).",
    expr=partial(burn_expr, LATENCY, FAST),
    cases=partial(burn_cases, LATENCY, FAST),
)

LATENCY_SLOW_BURN = Alert(
    name="LatencySLOSlowBurn",
    severity="warning",
    category="slo",
    threshold=LATENCY.target_key,
    for_key="slo_slow_burn_for",
    summary="Latency error budget burning on {job}",
    description="Predictions slower than the SLO bound on {job} burn the {threshold} latency "
    "budget at over 1x (1d/2h or 3d/6h windows).",
    expr=partial(burn_expr, LATENCY, SLOW),
    cases=partial(burn_cases, LATENCY, SLOW),
)
