"""The local alert receiver: bounded labels, last N kept in memory, file and endpoint, bad input."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus_ml.cli.alert_receiver import Inbox, make_server, summarise


def payload(*alerts: dict[str, Any], receiver: str = "ml-pager") -> dict[str, Any]:
    """An Alertmanager webhook payload (version 4) holding ``alerts``."""
    return {"version": "4", "status": "firing", "receiver": receiver, "alerts": list(alerts)}


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "warning", **labels},
        "annotations": {"summary": "free text", "description": "could name a patient"},
        "startsAt": "2026-12-02T01:00:00Z",
    }


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    file = tmp_path / "notifications.json"
    server = make_server(0, Inbox(3, file))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client, file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_only_bounded_labels_and_the_status_are_kept() -> None:
    [entry] = summarise(payload(alert("DataDriftDetected", model="diagnostic", patient="Ann")))
    assert entry == {
        "receiver": "ml-pager",
        "status": "firing",
        "starts_at": "2026-12-02T01:00:00Z",
        "labels": {"alertname": "DataDriftDetected", "severity": "warning", "model": "diagnostic"},
    }
    [odd] = summarise(payload(alert("X", status="weird", model="m" * 500)))
    assert odd["status"] == "unknown" and len(odd["labels"]["model"]) == 128


def test_notifications_are_numbered_kept_and_written(
    receiver: tuple[httpx.Client, Path],
) -> None:
    client, file = receiver
    assert client.get("/-/ready").status_code == 200
    r = client.post("/", json=payload(alert("A", model="diagnostic"), alert("B")))
    assert r.status_code == 200 and r.json() == {"received": 2}
    client.post("/", json=payload(alert("C"), alert("A", status="resolved"), receiver="ml-tickets"))
    body = client.get("/notifications").json()
    # Only the last three are kept (keep=3); sequence numbers keep counting.
    assert [(n["seq"], n["labels"]["alertname"], n["status"]) for n in body["notifications"]] == [
        (1, "B", "firing"),
        (2, "C", "firing"),
        (3, "A", "resolved"),
    ]
    assert body["next_seq"] == 4
    assert body["notifications"][-1]["receiver"] == "ml-tickets"
    assert json.loads(file.read_text(encoding="utf-8")) == body
    assert "could name a patient" not in file.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"alerts": "x"}', 400),
        (b'{"alerts": [{"labels": "x"}]}', 400),
        (b"\xff\xfe", 400),
    ],
)
def test_bad_payloads_get_400_and_change_nothing(
    receiver: tuple[httpx.Client, Path], body: bytes, status: int
) -> None:
    client, file = receiver
    r = client.post("/", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status
    assert client.get("/notifications").json() == {"notifications": [], "next_seq": 0}
    assert not file.exists()


def test_an_oversized_body_gets_413(receiver: tuple[httpx.Client, Path]) -> None:
    client, _ = receiver
    r = client.post("/", content=b"x" * (1_048_576 + 1))
    assert r.status_code == 413
    assert client.get("/notifications").json()["next_seq"] == 0
    assert client.get("/nowhere").status_code == 404
