"""GET /api/v1/monitoring/audit: admin only, newest first, keyset pages, filters, bad params."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth

URL = "/api/v1/monitoring/audit"


def _store(client: TestClient) -> Any:
    return client.app.state.service.store  # type: ignore[attr-defined]


def _fill(client: TestClient) -> list[int]:
    """Seven entries over two models and two actors; their ids, oldest first."""
    store = _store(client)
    entries = [
        ("cli:ana", "train", "diagnostic"),
        ("abc123def456", "promote", "diagnostic"),
        ("cli:ana", "shadow_start", "diabetes_risk"),
        ("abc123def456", "rollback", "diagnostic"),
        ("service", "purge", "predictions"),
        ("cli:ana", "promote", "diabetes_risk"),
        ("abc123def456", "promote", "diagnostic"),
    ]
    return [
        store.audit(actor, action, target, {"before": "v1", "after": "v2"})
        for actor, action, target in entries
    ]


def _pages(client: TestClient, **params: Any) -> list[list[dict[str, Any]]]:
    pages, before = [], None
    while True:
        query = {**params, **({"before": before} if before is not None else {})}
        r = client.get(URL, params=query, headers=auth("admin"))
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["entries"])
        before = body["next_before"]
        if before is None:
            return pages
        assert before == body["entries"][-1]["id"]
        assert len(pages) < 20, "pagination does not end"


def test_pages_walk_the_whole_log_newest_first_without_gaps_or_repeats(
    client: TestClient,
) -> None:
    ids = _fill(client)
    pages = _pages(client, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [e["id"] for page in pages for e in page]
    assert seen == sorted(ids, reverse=True)
    first = pages[0][0]
    assert first["action"] == "promote" and first["target"] == "diagnostic"
    assert first["actor"] == "abc123def456" and first["details"] == {"before": "v1", "after": "v2"}
    assert first["at"].endswith(("Z", "+00:00"))


def test_an_exact_last_page_says_there_is_no_next(client: TestClient) -> None:
    _fill(client)
    assert [len(p) for p in _pages(client, limit=7)] == [7]
    assert [len(p) for p in _pages(client)] == [7]  # default limit 100


def test_entries_written_between_pages_do_not_shift_the_next_page(client: TestClient) -> None:
    ids = _fill(client)
    r = client.get(URL, params={"limit": 4}, headers=auth("admin")).json()
    _store(client).audit("cli:bo", "train", "diagnostic")
    rest = client.get(
        URL, params={"limit": 4, "before": r["next_before"]}, headers=auth("admin")
    ).json()
    assert [e["id"] for e in rest["entries"]] == sorted(ids, reverse=True)[4:]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "promote"}, [6, 5, 1]),
        ({"target": "diagnostic"}, [6, 3, 1, 0]),
        ({"actor": "cli:ana"}, [5, 2, 0]),
        ({"action": "promote", "target": "diagnostic", "limit": 1}, [6, 1]),
        ({"action": "promote", "actor": "cli:ana", "target": "diabetes_risk"}, [5]),
        ({"action": "import"}, []),
    ],
)
def test_filters_combine_and_page(
    client: TestClient, params: dict[str, Any], expected: list[int]
) -> None:
    ids = _fill(client)
    got = [e["id"] for page in _pages(client, **params) for e in page]
    assert got == [ids[i] for i in expected]


def test_api_actions_are_in_the_log(client: TestClient) -> None:
    r = client.put(
        "/api/v1/monitoring/config/thresholds", json={"cpu_usage_high": 70}, headers=auth("admin")
    )
    assert r.status_code == 200, r.text
    (entry,) = client.get(URL, headers=auth("admin")).json()["entries"]
    assert entry["action"] == "update_thresholds" and len(entry["actor"]) == 12


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"before": "abc"}, "before"),
        ({"before": "1e3"}, "before"),
        ({"before": 0}, "before"),
        ({"before": 2**31}, "before"),  # past PostgreSQL's integer id: found by the fuzzer
        ({"action": ""}, "action"),
        ({"action": "\x00"}, "action"),  # NUL, which PostgreSQL refuses in text
        ({"target": "a\nb"}, "target"),
        ({"actor": "\x7f"}, "actor"),
        ({"target": "t" * 201}, "target"),
        ({"actor": "a" * 65}, "actor"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    shared_client: TestClient, params: dict[str, Any], field: str
) -> None:
    _fill(shared_client)
    r = shared_client.get(URL, params=params, headers=auth("admin"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert "ten" not in r.json()["detail"] and "abc" not in r.json()["detail"]


def test_the_largest_page_is_500(shared_client: TestClient) -> None:
    assert shared_client.get(URL, params={"limit": 500}, headers=auth("admin")).status_code == 200


@pytest.mark.parametrize(("scope", "status"), [(None, 401), ("predict", 403), ("monitor", 403)])
def test_only_admin_reads_the_audit_log(
    shared_client: TestClient, scope: str | None, status: int
) -> None:
    _fill(shared_client)
    r = shared_client.get(URL, headers=auth(scope) if scope else {})
    assert r.status_code == status
    assert "entries" not in r.json()
