"""The real service in a subprocess, a bounded prediction load, and what a test reads back.

Used by the fault tests and by ``benchmarks/soak.py``. Every subprocess runs in its own
session, so cleanup can kill a supervisor and all its workers by process group, even when a
test fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tests.helpers import KEYS

from nexus_ml.api.edge import PROTOCOL
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.storage.journal import decode, list_segments

MODEL = "diagnostic"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Call ``check`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:  # the service may be (re)starting
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f} s (last: {last!r})")
        time.sleep(interval)


def service_env(
    *, models: Path, data_dir: Path, database_url: str, **overrides: str | None
) -> dict[str, str]:
    """Environment for one service: test keys, fast writer, slow background jobs."""
    env = {
        **os.environ,
        "ML_MODEL_PATH": str(models),
        "ML_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
        "ML_WRITER_FLUSH_SECONDS": "0.05",
        "ML_SYSTEM_INTERVAL_SECONDS": "1",
        "ML_ALERT_INTERVAL_SECONDS": "3600",
        "ML_DRIFT_INTERVAL_SECONDS": "3600",
        "ML_DRIFT_FIRST_RUN_SECONDS": "3600",
        "ML_SHUTDOWN_GRACE_SECONDS": "5",
        "ML_LOG_LEVEL": "INFO",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("ML_DATABASE_URL", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def uvicorn_command(port: int, grace: float) -> list[str]:
    """The documented single-process entry point (one app built from the environment)."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "nexus_ml.api.asgi:app_from_env",
        "--http", PROTOCOL,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--timeout-graceful-shutdown", str(int(grace)),
    ]  # fmt: skip


def serve_command(port: int, workers: int) -> list[str]:
    """``nexus-ml serve`` exactly as an operator runs it."""
    return [
        sys.executable, "-c", "from nexus_ml.cli import app; app()",
        "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


@dataclass
class Service:
    """One service subprocess (``start``/``stop``; also a context manager that always cleans up)."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def base(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Pid of the top process (uvicorn's supervisor when there are workers)."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, ready_timeout: float = 90) -> Service:
        """Start and wait for /health/ready to answer 200."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            start_new_session=True,
        )
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll /health/ready until 200 (AssertionError with the log tail if it dies first)."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"service exited early:\n{self.log_tail()}")
            return httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200

        poll(ready, timeout=timeout, what="service ready")

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def terminate(self, timeout: float = 60) -> float:
        """SIGTERM; wait for the exit; returns seconds from the signal to the exit."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - start

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole process group if it lingers; idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.kill()

    def kill(self) -> None:
        """SIGKILL every process of the service's group (workers included) and reap."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def workers(self) -> list[psutil.Process]:
        """uvicorn's worker processes (children of the supervisor that serve requests)."""
        assert self.proc is not None
        workers = []
        for child in psutil.Process(self.proc.pid).children():
            try:
                # multiprocessing's resource tracker is a child too; it runs no app.
                if "resource_tracker" not in " ".join(child.cmdline()):
                    workers.append(child)
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                continue  # a killed worker the supervisor has not reaped yet serves nothing
        return workers

    def rss(self) -> int:
        """Resident memory of the service (supervisor and workers), bytes."""
        assert self.proc is not None
        top = psutil.Process(self.proc.pid)
        procs = [top, *top.children(recursive=True)]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def log_tail(self, n: int = 4000) -> str:
        """The end of the service's combined stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Parse /metrics into {(name, labels): value}."""
        body = httpx.get(f"{self.base}/metrics", timeout=10).text
        return parse_metrics(body)


def parse_metrics(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format to {(name, frozenset(labels)): value} (enough for our metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric_sum(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= ls)


# -- load -------------------------------------------------------------------------------------


def feature_rows(n: int = 50, model: str = MODEL) -> list[dict[str, float]]:
    """``n`` real rows of a bundled dataset, as request features."""
    data = load_dataset(model)
    return [dict(zip(data.feature_names, map(float, data.X[i]), strict=True)) for i in range(n)]


@dataclass(slots=True)
class Result:
    """One request: when it was sent, how long it took, and how it ended."""

    sent: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no HTTP answer
    id: str | None = None
    error: str | None = None  # "connect" (never accepted), "timeout", "broken", or a type name


@dataclass
class Load:
    """Single predictions from ``threads`` threads at ``rate`` per second in total (0 = flat out).

    Always bounded: it stops by itself after ``max_seconds`` or ``max_requests``.
    """

    base: str
    rate: float
    max_seconds: float
    threads: int = 4
    max_requests: int = 1_000_000
    timeout: float = 10.0
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        """Start the client threads."""
        rows = feature_rows()
        begin = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i, rows, begin), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> list[Result]:
        """Stop, join (bounded by the request timeout), and return every result so far."""
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        return self.results

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self) -> bool:
        with self._lock:
            if self._count >= self.max_requests:
                return False
            self._count += 1
            return True

    def _run(self, index: int, rows: Sequence[dict[str, float]], begin: float) -> None:
        headers = {"Authorization": f"Bearer {KEYS['predict']}"}
        interval = self.threads / self.rate if self.rate > 0 else 0.0
        url = f"/api/v1/models/{MODEL}/predict"
        k = sent = 0
        with httpx.Client(base_url=self.base, headers=headers, timeout=self.timeout) as client:
            while not self._stop.is_set() and time.monotonic() - begin < self.max_seconds:
                if interval:
                    # Paced, staggered between threads. A thread more than one slot late skips
                    # the missed slots and sends at once, rather than bursting to catch up.
                    offset = index / self.threads
                    delay = begin + (k + offset) * interval - time.monotonic()
                    if delay < -interval:
                        k = int((time.monotonic() - begin) / interval - offset)
                    k += 1
                    if delay > 0 and self._stop.wait(delay):
                        break
                if not self._take():
                    break
                sent += 1
                self.results.append(self._one(client, url, rows[(sent + index) % len(rows)]))

    @staticmethod
    def _one(client: httpx.Client, url: str, features: dict[str, float]) -> Result:
        sent = time.monotonic()
        try:
            r = client.post(url, json={"features": features})
        except httpx.ConnectError:
            return Result(sent, time.monotonic() - sent, None, error="connect")
        except httpx.TimeoutException:
            return Result(sent, time.monotonic() - sent, None, error="timeout")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return Result(sent, time.monotonic() - sent, None, error="broken")
        except httpx.HTTPError as exc:
            return Result(sent, time.monotonic() - sent, None, error=type(exc).__name__)
        pid = r.json().get("id") if r.status_code == 200 else None
        return Result(sent, time.monotonic() - sent, r.status_code, id=pid)


def ok_ids(results: Sequence[Result]) -> list[str]:
    """Ids of every prediction the client received (answered 200)."""
    return [r.id for r in results if r.status == 200 and r.id is not None]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- what the database and the journal hold ---------------------------------------------------


def stored_ids(database_url: str) -> list[str]:
    """Every prediction id stored (duplicates included, if the table allowed them)."""
    url = make_url(database_url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text("SELECT id FROM predictions"))]
    finally:
        engine.dispose()


def id_counts(database_url: str) -> tuple[int, int]:
    """(count(*), count(distinct id)) of the predictions table."""
    engine = create_engine(make_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM predictions")).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


def stored_once(database_url: str, ids: Sequence[str], *, exact: bool = True) -> bool:
    """Every id in ``ids`` is stored exactly once (and, if ``exact``, nothing else is)."""
    total, distinct = id_counts(database_url)
    if total != distinct:
        return False  # a duplicate: the table's primary key should make this impossible
    stored = set(stored_ids(database_url))
    if exact:
        return total == len(ids) and stored == set(ids)
    return set(ids) <= stored


def journal_ids(spill_dir: Path) -> list[str]:
    """Prediction ids in the journal segments under ``spill_dir`` (duplicates kept)."""
    out = []
    for path in list_segments(spill_dir):
        for line in path.read_bytes().splitlines():
            if line.strip():
                out.append(decode(line).id)
    return out
