"""Feedback accepted by any instance for a prediction another instance still holds (issue 16).

Two services over one database, as two workers or two replicas are: the prediction is made
on A, whose writer has not written it yet; its label is sent at once to B. B's own flush
cannot help (the record is in A's queue), so B looks the id up again for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_model_quality_api import reference_rows
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.service import serving
from nexus_ml.storage.records import minted_within, new_id

MODEL = "diagnostic"


@pytest.fixture
def pair(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``pair(wait, flush=2.0)``: A (a slow writer: its records stay queued ``flush`` seconds)
    and B (waits ``wait``)."""
    opened: list[TestClient] = []

    def make(wait: float, flush: float = 2.0) -> tuple[TestClient, TestClient]:
        a = TestClient(
            create_app(make_settings(writer_flush_seconds=flush), registry=CollectorRegistry())
        )
        b = TestClient(
            create_app(make_settings(feedback_wait_seconds=wait), registry=CollectorRegistry())
        )
        for c in (a, b):
            c.__enter__()
            opened.append(c)
        return a, b

    yield make
    for c in reversed(opened):
        c.__exit__(None, None, None)


def predict(client: TestClient) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/models/{MODEL}/predict",
        json={"features": reference_rows(1, seed=5)[0]},
        headers=auth("predict"),
    )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def feedback(client: TestClient, pid: str, actual: str) -> int:
    r = client.post(
        f"/api/v1/predictions/{pid}/feedback", json={"actual": actual}, headers=auth("predict")
    )
    return r.status_code


def test_a_label_sent_to_another_instance_at_once_is_accepted(
    pair: Callable[..., tuple[TestClient, TestClient]],
) -> None:
    a, b = pair(5.0)
    answers = [predict(a) for _ in range(5)]
    # All five are still in A's queue (2 s flush period); B accepts each label.
    assert [feedback(b, p["id"], p["predicted_class"]) for p in answers] == [201] * 5
    # Stored once, labelled once: a second label is a conflict on either instance.
    assert feedback(a, answers[0]["id"], answers[0]["predicted_class"]) == 409


def test_without_the_wait_the_same_label_is_refused(
    pair: Callable[..., tuple[TestClient, TestClient]],
) -> None:
    # What the hostile read found (66 of 100 refused with two workers): the wait is the fix.
    # A holds its record far longer than a loaded host can take between the two requests (with
    # 2 s, CI once saw the label arrive after A's flush).
    a, b = pair(0.0, flush=60.0)
    answer = predict(a)
    assert feedback(b, answer["id"], answer["predicted_class"]) == 404


def test_only_a_recently_minted_id_is_waited_for(
    pair: Callable[..., tuple[TestClient, TestClient]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b = pair(0.3)
    waited: list[str] = []
    real = serving._wait_for_prediction

    async def spy(db: Any, pid: str, wait: float) -> Any:
        waited.append(pid)
        return await real(db, pid, wait)

    monkeypatch.setattr(serving, "_wait_for_prediction", spy)
    fresh, old = new_id(), "0" * 12 + new_id()[12:]  # minted now / in 1970 (or a uuid4)
    assert feedback(b, fresh, "benign") == 404  # never stored: 404 after the bounded wait
    assert feedback(b, old, "benign") == 404  # at once, no wait
    assert waited == [fresh]


def test_ids_are_time_ordered_and_keep_their_shape() -> None:
    first = second = new_id()
    deadline = time.monotonic() + 5
    while second[:12] == first[:12] and time.monotonic() < deadline:
        second = new_id()  # until the next millisecond

    assert len(first) == len(second) == 32 and int(first, 16) >= 0
    assert first[:12] < second[:12]
    assert minted_within(first, 60.0)
    now = int(first[:12], 16) / 1000
    assert not minted_within(first, 60.0, now=now + 61)
    assert not minted_within(first, 60.0, now=now - 2)  # more than 1 s in the future
    assert minted_within(first, 60.0, now=now - 0.5)  # another machine's clock, slightly ahead
