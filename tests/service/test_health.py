"""Health reports are typed values; their verdicts and their JSON shape."""

from __future__ import annotations

import pytest
from tests.helpers import active_alert

from nexus_ml.service.health import (
    DatabaseHealth,
    HealthReport,
    ModelsHealth,
    Readiness,
    RefusedBundle,
    SystemLoad,
)

UP = DatabaseHealth(reachable=True, latency_seconds=0.001)
DOWN = DatabaseHealth(reachable=False)
REFUSED = [RefusedBundle(model="m", version="2", reason="hash_mismatch")]
SYSTEM = SystemLoad(cpu_percent=12.0, memory_ratio=0.4, disk_ratio=0.5)


def readiness(
    loaded: list[str], *, database: DatabaseHealth = UP, refused=(), draining: bool = False
) -> Readiness:
    return Readiness(
        models=ModelsHealth(loaded=loaded, refused=list(refused)),
        database=database,
        shutting_down=draining,
        records_pending=3,
    )


@pytest.mark.parametrize(
    ("r", "ready", "status"),
    [
        (readiness(["a"]), True, "ok"),
        (readiness(["a", "b"], database=DOWN), True, "degraded"),
        (readiness(["a"], refused=REFUSED), True, "degraded"),
        (readiness([]), False, "not_ready"),
        (readiness([], database=DOWN), False, "not_ready"),
        (readiness(["a"], draining=True), False, "not_ready"),
    ],
)
def test_readiness_verdict(r: Readiness, ready: bool, status: str) -> None:
    assert (r.ready, r.status) == (ready, status)
    body = r.to_dict()
    assert (body["ready"], body["status"]) == (ready, status)
    assert body["checks"]["models"]["status"] == ("ok" if r.models.loaded else "none_loaded")


def test_readiness_json_shape() -> None:
    assert readiness(["a"], database=DOWN, refused=REFUSED).to_dict() == {
        "ready": True,
        "status": "degraded",
        "checks": {
            "models": {
                "status": "ok",
                "loaded": ["a"],
                "refused": [{"model": "m", "version": "2", "reason": "hash_mismatch"}],
            },
            "database": {"status": "unreachable"},
            "shutting_down": False,
            "records_pending": 3,
        },
    }
    assert UP.to_dict() == {"status": "ok", "latency_seconds": 0.001}


@pytest.mark.parametrize(
    ("r", "firing", "status"),
    [
        (readiness(["a"]), False, "ok"),
        (readiness(["a"]), True, "degraded"),
        (readiness(["a"], database=DOWN), True, "degraded"),
        (readiness([]), True, "not_ready"),
    ],
)
def test_a_firing_alert_degrades_only_a_healthy_report(
    r: Readiness, firing: bool, status: str
) -> None:
    alerts = [active_alert("firing")] if firing else []
    report = HealthReport(readiness=r, system=SYSTEM, alerts=alerts, uptime_seconds=1.5)
    assert report.status == status and report.ready == r.ready
    body = report.to_dict()
    assert list(body) == ["ready", "status", "checks", "alerts", "uptime_seconds"]
    assert body["checks"]["system"] == {"cpu_percent": 12.0, "memory_ratio": 0.4, "disk_ratio": 0.5}
    assert [a["name"] for a in body["alerts"]] == ["HighCPU"] * len(alerts)
