"""Query parameters of the monitoring endpoints: the time window and the model filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query

from nexus_ml.api.errors import ApiError
from nexus_ml.service.views.results import TimeWindow
from nexus_ml.storage.records import utcnow

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
