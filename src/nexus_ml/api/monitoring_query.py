"""Shared plumbing of the monitoring endpoints: query windows, database calls, metric reads."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, Query

from nexus_ml.api.errors import ApiError
from nexus_ml.api.monitoring_schemas import Percentiles, TimeWindow
from nexus_ml.storage.records import utcnow

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

T = TypeVar("T")
MAX_HOURS = 24 * 366
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


# The bounds a window may have, in UTC: Python's datetime range less one day at each end, so
# that aligning a bound to a day or to a timeline step (at most a day) stays representable.
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
_FIRST = EARLIEST.date().isoformat()  # strftime("%Y") drops year 1's leading zeros
_RANGE = f"between {_FIRST} and {LATEST.date().isoformat()} (UTC)"


@dataclass(frozen=True, slots=True)
class WindowQuery:
    """The raw ``since``/``until``/``hours`` query parameters, resolved per endpoint."""

    since: datetime | None
    until: datetime | None
    hours: float | None

    def resolve(self, default_seconds: float) -> TimeWindow:
        """``[since, until)``: explicit bounds, or the last ``hours`` (or the default) to until.

        Every bound is checked here, so the endpoints' own date arithmetic cannot overflow:
        a bound outside :data:`EARLIEST`..:data:`LATEST` (after conversion to UTC), a window
        that would start before :data:`EARLIEST`, or an empty window is a 422 naming the field.
        """
        since = _utc(self.since, "since") if self.since is not None else None
        until = _utc(self.until, "until") if self.until is not None else utcnow()
        if since is None:
            field = "hours" if self.hours is not None else "until"
            seconds = self.hours * 3600 if self.hours is not None else default_seconds
            try:
                length = timedelta(seconds=seconds)
            except OverflowError:  # a default from the settings, which bound it below only
                length = timedelta.max
            if length <= timedelta(0):
                raise ApiError(422, f"{field}: the window must last at least a microsecond", field)
            if until - EARLIEST < length:
                raise ApiError(422, f"{field}: the window would start before {_FIRST} (UTC)", field)
            since = until - length
        if since >= until:
            raise ApiError(422, "until: must be later than since", "until")
        return TimeWindow(since=since, until=until, seconds=(until - since).total_seconds())


def _utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC, or a 422 if it falls outside the window range."""
    try:
        # A time without an offset is read as UTC (documented): the store refuses naive times.
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 east of UTC, year 9999 west of it
        aware = None
    if aware is None or not EARLIEST <= aware <= LATEST:
        raise ApiError(422, f"{field}: must be {_RANGE}", field)
    return aware


def window_query(
    since: Annotated[
        datetime | None, Query(description="Start (ISO 8601; without offset = UTC).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="End, exclusive (ISO 8601); default now.")
    ] = None,
    hours: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_HOURS,
            allow_inf_nan=False,
            description="Length of the window ending at until.",
        ),
    ] = None,
) -> WindowQuery:
    """Dependency: the window parameters, checked for contradictions."""
    if hours is not None and since is not None:
        raise ApiError(422, "hours: give either hours or since, not both", "hours")
    return WindowQuery(since=since, until=until, hours=hours)


WindowDep = Annotated[WindowQuery, Depends(window_query)]
ModelParam = Annotated[
    str | None, Query(pattern=MODEL_PATTERN, description="Only this (loaded) model.")
]


def check_model(nexus: Nexus, model: str | None) -> list[str]:
    """The models to report on: ``[model]`` if it is loaded (else 422), or every loaded one."""
    names = nexus.models.names()
    if model is None:
        return names
    if model not in names:
        raise ApiError(422, "model: not a loaded model (see GET /models)", "model")
    return [model]


async def db_call(nexus: Nexus, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a thread; an unreachable database becomes a 503."""
    return await nexus.db(fn, *args, **kwargs)


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None for None/NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def percentiles(values: Iterable[float]) -> Percentiles:
    """P50/P95/P99 (numpy, linear interpolation), mean and max of ``values``."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return Percentiles()
    p50, p95, p99 = np.percentile(arr, [50, 95, 99], method="linear")
    return Percentiles(
        p50=float(p50), p95=float(p95), p99=float(p99), mean=float(arr.mean()), max=float(arr.max())
    )


# -- reading the service's own metrics -----------------------------------------------------------


def collect_families(nexus: Nexus) -> list[Any]:
    """The metric families, summed over workers in multiprocess mode."""
    # Same source as the alert evaluator, so the API and the alerts agree.
    return nexus.collect_families()


def sample_sums(
    families: Iterable[Any],
    sample_name: str,
    by: tuple[str, ...] = (),
    where: Callable[[Mapping[str, str]], bool] | None = None,
) -> dict[tuple[str, ...], float]:
    """``sum by (<by>) (<sample_name>)`` over the collected samples."""
    out: dict[tuple[str, ...], float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name != sample_name or (where is not None and not where(sample.labels)):
                continue
            key = tuple(sample.labels.get(k, "") for k in by)
            out[key] = out.get(key, 0.0) + sample.value
    return out


def gauge_max(families: Iterable[Any], name: str, by: str) -> dict[str, float]:
    """``max by (<by>) (<name>)`` over the collected samples."""
    out: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get(by, "")
                out[key] = max(sample.value, out.get(key, -math.inf))
    return out


def status_classes(families: Iterable[Any]) -> dict[str, int]:
    """Responses counted by ml_api_requests_total, by status class (``2xx``, ``5xx``, ...)."""
    out: dict[str, int] = {}
    for (status,), value in sample_sums(families, "ml_api_requests_total", ("status",)).items():
        cls = f"{status[:1]}xx" if status[:1].isdigit() else "other"
        out[cls] = out.get(cls, 0) + round(value)
    return out


def availability(classes: Mapping[str, int]) -> float | None:
    """Share of responses that are not 5xx; None before the first response."""
    total = sum(classes.values())
    return None if total == 0 else 1.0 - classes.get("5xx", 0) / total
