"""Query windows and path ids at the extremes, on SQLite and PostgreSQL: a 4xx naming the
field, or a correct (empty) answer, never a 500.

Windows: year 1 and year 9999 with every offset, naive and aware; ``hours`` huge, tiny and
fractional; since after until. Ids: NUL and control characters, non-hex, wrong lengths,
very long — PostgreSQL refuses a NUL in a string, so an id must be checked before a query.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers import auth

from nexus_ml.api.params import EARLIEST, LATEST

M = "/api/v1/monitoring"
WINDOWED = (
    "/metrics/predictions",
    "/metrics/predictions/timeline",
    "/metrics/training",
    "/performance/models",
    "/reports/summary",
)
WINDOW_FIELDS = {"since", "until", "hours"}

# (query, the field of the 422) for windows that cannot be answered.
REFUSED: list[tuple[dict[str, str], str]] = [
    # The three, then the class: outside year 1..9999 once converted to UTC.
    ({"until": "0001-01-01T00:00:00"}, "until"),
    ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
    ({"until": "9999-12-31T23:59:59-12:00"}, "until"),
    ({"since": "0001-01-01T00:00:00Z"}, "since"),
    ({"since": "0001-01-01T23:58:59+00:01"}, "since"),
    ({"since": "0001-01-01T12:00:00+23:59"}, "since"),
    ({"until": "9999-12-31T23:59:59.999999Z"}, "until"),
    ({"until": "9999-12-31T00:00:01+00:00"}, "until"),
    ({"until": "9999-12-31T00:00:00-23:59"}, "until"),
    ({"since": "9999-12-31T23:59:59", "until": "9999-12-31T23:59:59.5"}, "since"),
    ({"since": "0001-01-01T00:00:00", "until": "9999-12-31T23:59:59"}, "since"),
    # A window that would start before year 1 (default length or hours).
    ({"until": "0001-01-02T00:00:00Z"}, "until"),
    ({"until": "0001-01-03T00:00:00Z", "hours": "8784"}, "hours"),
    ({"until": "0001-01-02T00:00:01Z", "hours": "0.5"}, "hours"),
    # hours: tiny (under a microsecond), non-positive, not finite, too long, not a number.
    ({"hours": "1e-300"}, "hours"),
    ({"hours": "1e-12"}, "hours"),
    ({"hours": "5e-324"}, "hours"),
    ({"hours": "0"}, "hours"),
    ({"hours": "-0.0"}, "hours"),
    ({"hours": "nan"}, "hours"),
    ({"hours": "inf"}, "hours"),
    ({"hours": "-inf"}, "hours"),
    ({"hours": "1e308"}, "hours"),
    ({"hours": "8784.000001"}, "hours"),
    ({"hours": "0x10"}, "hours"),
    # since at or after until, naive and aware, across offsets.
    ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
    ({"since": "2024-01-01T00:00:00", "until": "2024-01-01T00:00:00Z"}, "until"),
    ({"since": "2024-01-01T10:00:00+10:00", "until": "2024-01-01T00:00:00Z"}, "until"),
    ({"since": "2024-01-01T00:00:00.000001Z", "until": "2024-01-01T00:00:00"}, "until"),
    # Not a date at all, or not a real one.
    ({"since": "0000-01-01T00:00:00Z"}, "since"),
    ({"until": "10000-01-01T00:00:00Z"}, "until"),
    ({"since": "2024-02-30T00:00:00Z"}, "since"),
    ({"since": "2024-01-01T00:00:00+24:00"}, "since"),
    ({"until": "2024-01-01T25:00:00"}, "until"),
]

# Legal windows at the edges: answered, and empty (nothing was stored then).
EMPTY: list[dict[str, str]] = [
    {"since": "0001-01-02T00:00:00Z", "until": "0001-01-03T00:00:00Z"},
    {"since": "0001-01-02T00:00:00", "until": "0001-01-02T00:00:00.000001"},
    {"since": "0001-01-02T13:59:00+13:59", "until": "0001-01-02T13:00:00"},
    {"since": "9999-12-29T00:00:00Z", "until": "9999-12-30T23:59:59.999999"},
    {"since": "9999-12-30T10:00:00-13:00", "until": "9999-12-30T23:59:59.999999+00:00"},
    {"until": "9999-12-30T10:00:00-13:00"},
    {"until": "0001-01-09T00:00:00Z", "hours": "0.000001"},
    {"until": "0001-01-09T00:00:00Z", "hours": "0.25"},
    {"until": "5000-06-15T12:00:00+05:30", "hours": "1.5"},
]


@pytest.fixture
def client(shared_client: TestClient) -> TestClient:
    """Every test here stores nothing: one service per database for the whole module."""
    return shared_client


def _get(client: TestClient, path: str, query: dict[str, str]) -> Any:
    return client.get(M + path, params=query, headers=auth("monitor"))


@pytest.mark.parametrize(("query", "field"), REFUSED)
def test_unanswerable_windows_are_422_naming_the_field(
    client: TestClient, query: dict[str, str], field: str
) -> None:
    for path in WINDOWED:
        r = _get(client, path, query)
        assert r.status_code == 422, (path, query, r.text)
        assert r.json()["field"] == field, (path, query, r.json())
        detail = r.json()["detail"]
        assert detail.startswith(f"{field}: "), detail
        for value in query.values():  # the rule, never the value (short ones match limits)
            assert len(value) < 10 or value not in detail, (value, detail)


@pytest.mark.parametrize("query", EMPTY)
def test_legal_windows_at_the_edges_are_answered_empty(
    client: TestClient, query: dict[str, str]
) -> None:
    for path in WINDOWED:
        # Hourly buckets: a day-long window at the default minute would exceed the bucket cap.
        extra = {"step_seconds": "3600"} if path.endswith("/timeline") else {}
        r = _get(client, path, {**query, **extra})
        assert r.status_code == 200, (path, query, r.text)
        body = r.json()
        since = datetime.fromisoformat(body["window"]["since"])
        until = datetime.fromisoformat(body["window"]["until"])
        # The prediction answers widen the window to whole minutes (the aggregates' unit).
        assert EARLIEST <= since < until <= LATEST + timedelta(minutes=1), body["window"]
        assert body["window"]["seconds"] == (until - since).total_seconds() > 0
        if "total" in body:  # predictions, training runs
            assert body["total"] == 0, (path, body)
        if path == "/metrics/predictions/timeline":
            assert all(sum(counts) == 0 for counts in body["series"].values()), body


def test_edge_window_bounds_are_echoed_in_utc(client: TestClient) -> None:
    r = _get(
        client,
        "/metrics/predictions",
        {"since": "0001-01-02T13:59:00+13:59", "until": "9999-12-30T10:00:00-13:00"},
    )
    assert r.status_code == 200, r.text
    window = r.json()["window"]
    assert datetime.fromisoformat(window["since"]) == datetime(1, 1, 2, tzinfo=UTC)
    assert datetime.fromisoformat(window["until"]) == datetime(9999, 12, 30, 23, tzinfo=UTC)


# -- property: any instant, any offset, naive or aware, any hours --------------------------------

_OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)
_INSTANT = st.one_of(
    st.datetimes(),  # naive: read as UTC
    st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), _OFFSETS),
    # The edges themselves, where the overflows were.
    st.builds(
        lambda d, tz: d.replace(tzinfo=tz),
        st.sampled_from(
            [datetime.min, datetime.max, datetime(1, 1, 2), datetime(9999, 12, 30, 23, 59)]
        ),
        _OFFSETS,
    ),
)
_HOURS = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=1e-320, max_value=1e-6),
    st.sampled_from(["nan", "inf", "-1", "1e400", "8784", "8784.0000001"]),
)


@st.composite
def _window_queries(draw: st.DrawFn) -> dict[str, str]:
    query: dict[str, str] = {}
    if draw(st.booleans()):
        query["until"] = draw(_INSTANT).isoformat()
    if draw(st.booleans()):
        query["since"] = draw(_INSTANT).isoformat()
    elif draw(st.booleans()):
        query["hours"] = str(draw(_HOURS))
    return query


def test_any_window_is_answered_or_refused_never_a_500(client: TestClient) -> None:
    seen: set[int] = set()

    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(path=st.sampled_from(WINDOWED), query=_window_queries())
    def run(path: str, query: dict[str, str]) -> None:
        r = _get(client, path, query)
        seen.add(r.status_code)
        assert r.status_code in (200, 422), (path, query, r.text)
        if r.status_code == 422:
            assert r.json()["field"] in WINDOW_FIELDS | {"step_seconds"}, (query, r.text)
        else:
            window = r.json()["window"]
            since = datetime.fromisoformat(window["since"])
            until = datetime.fromisoformat(window["until"])
            assert EARLIEST <= since < until <= LATEST, (query, window)

    run()
    assert seen == {200, 422}, seen  # both branches were reached


# -- path ids -------------------------------------------------------------------------------------

BAD_IDS = [
    "%00",
    "a%00b",
    "0" * 31 + "%00",
    "%01",
    "%7F",
    "%09" + "0" * 31,
    "%E2%80%AE" + "0" * 29,
    "%20",
    "0" * 31,
    "0" * 33,
    "A" * 32,  # upper case: new_id() writes lower-case hex
    "g" * 32,
    "0x" + "0" * 30,
    "x" * 65,
    "f" * 5000,
    "PATIENT7777",
]
ID_ROUTES = (
    ("GET", "/api/v1/training/runs/{}", "run_id", "admin", "get_training_run"),
    ("POST", "/api/v1/predictions/{}/feedback", "prediction_id", "predict", "get_prediction"),
)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_404_before_any_query(
    client: TestClient, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.service.store  # type: ignore[attr-defined]
    for method, template, field, scope, lookup in ID_ROUTES:

        def refuse(*args: object, _lookup: str = lookup, **kwargs: object) -> None:
            raise AssertionError(f"{_lookup} was called with a malformed id")

        monkeypatch.setattr(store, lookup, refuse)
        r = client.request(
            method, template.format(bad), json={"actual": "benign"}, headers=auth(scope)
        )
        assert r.status_code == 404, (method, bad, r.text)
        assert r.json()["field"] == field, r.json()
        assert "PATIENT" not in r.text and "000000" not in r.text


def test_well_formed_unknown_ids_reach_the_store_and_are_404(client: TestClient) -> None:
    for unknown in ("0" * 32, "f" * 32, "0123456789abcdef" * 2):
        r = client.get(f"/api/v1/training/runs/{unknown}", headers=auth("admin"))
        assert r.status_code == 404 and r.json()["field"] == "run_id", r.text
        r = client.post(
            f"/api/v1/predictions/{unknown}/feedback",
            json={"actual": "benign"},
            headers=auth("predict"),
        )
        assert r.status_code == 404 and r.json()["field"] == "prediction_id", r.text
