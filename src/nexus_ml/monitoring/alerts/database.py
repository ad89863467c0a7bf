"""The database: connection errors, counted over a range that is itself a threshold."""

from __future__ import annotations

import math

from nexus_ml.monitoring.alerts.cases import Case, minutes, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, host, num, when
from nexus_ml.thresholds import Thresholds, format_duration

ERRORS = "ml_db_operation_errors_total"


def _sample_step(window: int) -> int:
    """Seconds between samples for the rule-test cases.

    A divisor of 60 (every evaluation lands on a sample), at most half the window (its
    range always holds two samples) and with ``window - step`` not a whole number of
    minutes, so no range ever starts exactly on a sample: Prometheus 2 includes a sample
    there and Prometheus 3 does not, and the expected values must hold for both.
    """
    for step in (30, 20, 15, 12, 10, 6, 5, 4, 3, 2, 1):
        if 2 * step <= window and (window - step) % 60:
            return step
    raise ValueError(f"no sample step fits db_connection_errors_window {window}s")


def _cases(t: Thresholds, for_m: int) -> list[Case]:
    """Errors counted over ``db_connection_errors_window``: fire, then resolve one window later.

    Samples every ``step`` seconds; evaluations every minute. Counters start at 0, so the
    increase over a range that still holds a zero sample is exactly the newest value, and
    over a steady ramp exactly its slope times the window (Prometheus extrapolates both ways
    to the range's edges and stops at the counter's zero).
    """
    window = round(t.db_connection_errors_window)
    step = _sample_step(window)
    per_min = 60 // step
    fire_at = 2 + for_m
    over = math.floor(t.db_connection_errors_high) + 1  # errors just past the limit
    conn = sel(ERRORS, **target(operation="write", error_type="connection"))

    def series(*parts: tuple[float, float, int]) -> str:
        """(start, increment, samples) runs: ``start+incrementx(samples-1)`` each."""
        return " ".join(f"{a:.10g}+{b:.10g}x{n - 1}" for a, b, n in parts)

    # Errors from the second minute on, `over` per sample, without end.
    horizon = (fire_at + 5) * per_min
    ramp_series = series((0, 0, per_min + 1), (over, over, horizon))
    # Minute T of the ramp: the range still holds the zero at 60s, or a full window of ramp.
    ramp_value = over * min(fire_at * 60 - 60, window) / step
    # One burst of `over` errors at 2m: active from 2m while the range holds the zero before it
    # (the sample at 120 - step), silent from the first minute whose range starts after it.
    quiet_at = minutes(120 - step + window)  # never a whole minute
    last_firing = quiet_at - 1
    burst = series((0, 0, 120 // step), (over, 0, (quiet_at + 2) * per_min))
    cases = [
        Case(
            series=[(conn, ramp_series)],
            fires=True,
            active_from=2,
            labels=target(),
            value=ramp_value,
            interval=step,
        ),
        Case(
            series=[
                (conn, series((0, 0, horizon + per_min + 1))),
                (
                    sel(ERRORS, **target(operation="write", error_type="other")),
                    series((0, 1, horizon + per_min + 1)),
                ),
            ],
            fires=False,
            check_at=fire_at + 5,
            note="only non-connection errors",
            interval=step,
        ),
    ]
    if last_firing >= fire_at:  # a burst shorter than `for` minus the window cannot fire
        cases.append(
            Case(
                series=[(conn, burst)],
                fires=True,
                active_from=2,
                labels=target(),
                value=over,
                note=f"one burst: firing until its {format_duration(window)} window has passed",
                interval=step,
                later=[(last_firing, over), (quiet_at, None)],
            )
        )
    return cases


CONNECTION_ERRORS = Alert(
    name="DatabaseConnectionErrors",
    severity="critical",
    category="availability",
    threshold="db_connection_errors_high",
    for_key="db_connection_errors_for",
    summary="Database connection errors on {instance}",
    description="{value} database connection error(s) on {instance} in the last {window}; "
    "prediction records are being buffered.",
    labels=("instance",),
    window_key="db_connection_errors_window",
    # The range is a threshold: the alert resolves one range after the last error.
    expr=lambda t, j: (
        f"sum by (job, instance) (increase({ERRORS}"
        f'{{{j},error_type="connection"}}[{format_duration(t.db_connection_errors_window)}])) > '
        f"{num(t.db_connection_errors_high)}"
    ),
    condition=lambda m, t, instance: when(
        m.db_connection_errors > t.db_connection_errors_high, host(instance), m.db_connection_errors
    ),
    cases=_cases,
)
