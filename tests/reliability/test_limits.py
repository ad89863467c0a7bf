"""Faults at the edges, against the real service: slow clients, oversized bodies, a full disk."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.helpers import auth
from tests.reliability.attacks import send_request
from tests.reliability.service import (
    MODEL,
    Service,
    feature_rows,
    free_port,
    journal_ids,
    metric_sum,
    poll,
    service_env,
    stored_once,
    uvicorn_command,
)
from tests.reliability.tcp_proxy import TcpProxy

# ``python -c _LIMITED <bytes> <uvicorn arguments>``: uvicorn with RLIMIT_FSIZE set.
_LIMITED = (
    "import resource, runpy, sys; n = int(sys.argv[1]);"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); sys.argv = ['uvicorn', *sys.argv[2:]];"
    "runpy.run_module('uvicorn', run_name='__main__', alter_sys=True)"
)
FILE_LIMIT = 32 * 1024
BODY_TIMEOUT = 1.0
MAX_BODY = 4096
PREDICT = f"/api/v1/models/{MODEL}/predict"


def _raw_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and body of the HTTP response on ``sock`` (read until it closes)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _is_error_shape(body: bytes) -> bool:
    error = json.loads(body)
    return set(error) == {"detail", "field"} and bool(error["detail"])


def test_slow_client_gets_408_and_oversized_body_413(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = service_env(
        models=model_dir,
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'db' / 'nexus.db'}",
        ML_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        ML_MAX_BODY_BYTES=str(MAX_BODY),
    )
    body = json.dumps({"features": feature_rows(1)[0]}).encode()
    with Service(uvicorn_command(port, 5), env, port, tmp_path / "service.log") as svc:
        svc.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            head = (
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: {auth('predict')['Authorization']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            start = time.monotonic()
            slow.sendall(head.encode() + body[:10])  # ... and the rest never comes
            # A trickling client holds no one else up.
            json_headers = {**auth("predict"), "Content-Type": "application/json"}
            r = httpx.post(f"{svc.base}{PREDICT}", content=body, headers=json_headers)
            assert r.status_code == 200, r.text
            status, answer = _raw_response(slow)  # the server closes after a refusal
            waited = time.monotonic() - start
        assert status == 408 and _is_error_shape(answer), answer
        assert BODY_TIMEOUT * 0.9 <= waited < BODY_TIMEOUT + 5, waited

        # Announced too large: refused before the body is read.
        big = b'{"features": {"x": "' + b"y" * MAX_BODY + b'"}}'
        r = httpx.post(f"{svc.base}{PREDICT}", content=big, headers=json_headers)
        assert r.status_code == 413 and _is_error_shape(r.content), r.text
        # Streamed (chunked, no Content-Length) past the limit: refused once it is passed.
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth('predict')['Authorization']}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = b"%x\r\n%s\r\n" % (1024, b"y" * 1024)
        outcome = send_request(port, head, body=chunk * (8 * MAX_BODY // 1024), timeout=10)
        assert outcome.status == 413 and _is_error_shape(outcome.body), outcome

        # Each refusal is counted as what the client was told; none as a server error.
        m = svc.metrics()
        requests = "ml_api_requests_total"
        assert metric_sum(m, requests, status="408") == 1
        assert metric_sum(m, requests, status="413") == 2
        assert metric_sum(m, requests, status="500") == 0
        assert metric_sum(m, "ml_errors_total") == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_full_disk_answers_503_and_loses_nothing(
    proxy: TcpProxy, proxied_url: str, pg_url: str, model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(
        models=model_dir,
        data_dir=tmp_path / "data",
        database_url=proxied_url,
        ML_WRITER_MAX_PENDING="20",
    )
    statuses: list[int] = []
    ids: list[str] = []
    # A full disk, for the service only: its writes past FILE_LIMIT in any file fail with EFBIG
    # (Python ignores SIGXFSZ), as writes to a full filesystem fail with ENOSPC.
    command = [sys.executable, "-c", _LIMITED, str(FILE_LIMIT), *uvicorn_command(port, 5)[3:]]
    with Service(command, env, port, tmp_path / "service.log") as svc:
        svc.start()
        proxy.cut()  # nothing leaves: every record must be held in memory or in the journal
        with httpx.Client(base_url=svc.base, headers=auth("predict"), timeout=10) as c:
            for features in feature_rows(50) * 4:  # 200 requests, bounded
                r = c.post(PREDICT, json={"features": features})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    ids.append(r.json()["id"])
        proxy.restore()
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        assert 503 in statuses, "memory and journal never both refused a record"
        # Every prediction answered 200 was held somewhere and reaches the database, once;
        # the refused ones were never recorded (nor answered).
        poll(lambda: stored_once(pg_url, ids), timeout=90, interval=0.5, what="all stored once")
        poll(lambda: journal_ids(tmp_path / "data" / "spill") == [], timeout=30, what="drained")
    print(f"full disk: {statuses.count(200)} answered 200, {statuses.count(503)} refused with 503")
