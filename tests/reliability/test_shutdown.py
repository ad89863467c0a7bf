"""SIGTERM: accepted requests finish, queued records are written or kept, exit within the grace.

The service runs as operators run it (``nexus-ml serve``, one process), with
ML_SHUTDOWN_GRACE_SECONDS=5 and a flush period longer than the test, so a record is still
queued when the signal arrives: what reaches the database got there through the shutdown drain.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from tests.helpers import auth
from tests.reliability.service import (
    MODEL,
    Load,
    Service,
    feature_rows,
    free_port,
    journal_ids,
    ok_ids,
    poll,
    serve_command,
    service_env,
    stored_once,
)
from tests.reliability.tcp_proxy import TcpProxy

GRACE = 5.0


class GraceExceeded(AssertionError):
    """The process outlived ML_SHUTDOWN_GRACE_SECONDS after SIGTERM."""


def _assert_within_grace(seconds: float) -> None:
    # The grace is the budget for the whole exit, from the signal to the process being gone
    # (an orchestrator SIGKILLs at its own deadline, whatever the process is doing).
    if seconds > GRACE:
        raise GraceExceeded(f"exit took {seconds:.2f} s, grace is {GRACE:.0f} s")


def _service(database_url: str, models: Path, tmp_path: Path, **env: str) -> Service:
    port = free_port()
    settings = {
        "ML_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "ML_WRITER_FLUSH_SECONDS": "30",  # nothing is flushed by the timer during the test
        **env,
    }
    environ = service_env(
        models=models, data_dir=tmp_path / "data", database_url=database_url, **settings
    )
    return Service(serve_command(port, 1), environ, port, tmp_path / "service.log")


def _assert_clean_exit(svc: Service) -> None:
    # uvicorn re-raises the signal it handled once shutdown is complete: -SIGTERM is a clean exit.
    assert svc.proc is not None
    assert svc.proc.returncode in (0, -signal.SIGTERM), svc.log_tail()


def _predict(svc: Service, n: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=svc.base, headers=auth("predict"), timeout=10) as c:
        for features in feature_rows(n):
            r = c.post(f"/api/v1/models/{MODEL}/predict", json={"features": features})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
    return ids


def test_prediction_just_before_sigterm_is_stored(
    db_url: str, model_dir: Path, tmp_path: Path
) -> None:
    with _service(db_url, model_dir, tmp_path) as svc:
        svc.start()
        ids = _predict(svc, 1)
        seconds = svc.terminate()
        _assert_clean_exit(svc)
    _assert_within_grace(seconds)
    assert stored_once(db_url, ids), "the prediction made before SIGTERM is not in the database"
    assert journal_ids(tmp_path / "data" / "spill") == []


# A request written on a keep-alive connection just before the signal may still sit unread in
# the socket when the server closes its idle connections: never accepted, so never recorded
# (the journal proof below covers it), but "broken" for the client. Seen once at 0.16 s on a
# loaded 2-core CI host; requests sent earlier than this must all be answered.
KEEPALIVE_RACE_SECONDS = 0.5


@pytest.mark.slow
def test_sigterm_under_load(db_url: str, model_dir: Path, tmp_path: Path) -> None:
    with _service(db_url, model_dir, tmp_path) as svc:
        svc.start()
        load = Load(svc.base, rate=0, max_seconds=60, threads=4).start()
        try:
            poll(lambda: len(ok_ids(load.results)) >= 200, timeout=30, what="load running")
            signalled = time.monotonic()
            seconds = svc.terminate()
        finally:
            results = load.stop()
        _assert_clean_exit(svc)
    _assert_within_grace(seconds)
    before = [r for r in results if r.sent < signalled - KEEPALIVE_RACE_SECONDS]
    after = [r for r in results if r.sent >= signalled - KEEPALIVE_RACE_SECONDS]
    assert all(r.status == 200 for r in before), [r for r in before if r.status != 200][:3]
    # After the signal a request either gets its answer or is never accepted: refused at
    # connect, or sent on a keep-alive connection the server closed as idle ("broken").
    # Anything else (a timeout, an HTTP error) means an accepted request was dropped.
    unexpected = [r for r in after if r.status != 200 and r.error not in ("connect", "broken")]
    assert not unexpected, unexpected[:3]
    ids = ok_ids(results)
    # The proof that no "broken" request had been accepted: the app journals a record before
    # it answers, so an accepted request that lost its answer would leave an extra row.
    assert stored_once(db_url, ids), "the database does not hold exactly the answered predictions"
    assert journal_ids(tmp_path / "data" / "spill") == []
    answered = sum(r.status == 200 for r in after)
    broken = sum(r.error == "broken" for r in after)
    refused = sum(r.error == "connect" for r in after)
    print(
        f"SIGTERM under load: exit in {seconds:.2f} s (grace {GRACE:.0f} s); {len(ids)} answered "
        f"({answered} sent after the signal); after it {refused} refused at connect and "
        f"{broken} sent on a keep-alive connection closed as idle; none accepted and dropped"
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_with_database_down_keeps_journal(
    proxy: TcpProxy, proxied_url: str, pg_url: str, model_dir: Path, tmp_path: Path
) -> None:
    spill = tmp_path / "data" / "spill"
    with _service(proxied_url, model_dir, tmp_path) as svc:
        svc.start()
        ids = _predict(svc, 10)
        proxy.cut()
        ids += _predict(svc, 30)
        seconds = svc.terminate()
        _assert_clean_exit(svc)
    journaled = journal_ids(spill)
    assert set(ids) <= set(journaled), "records not written are missing from the journal"

    proxy.restore()
    with _service(proxied_url, model_dir, tmp_path, ML_WRITER_FLUSH_SECONDS="0.05") as again:
        again.start()
        poll(lambda: stored_once(pg_url, ids), timeout=30, what="journal replayed once")
        poll(lambda: journal_ids(spill) == [], timeout=30, what="journal emptied")
    print(f"SIGTERM with the database down: exit in {seconds:.2f} s; {len(journaled)} journaled")
    _assert_within_grace(seconds)
