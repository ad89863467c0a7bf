"""Multiprocess mode with real worker processes: exact sums, dead workers' live gauges vanish."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from nexus_ml.monitoring import multiproc
from nexus_ml.monitoring.exposition import render_metrics
from nexus_ml.monitoring.multiproc import (
    child_exit,
    live_gauge_pids,
    mark_dead_workers,
    on_starting,
    pid_alive,
    prepare_multiproc_dir,
)
from nexus_ml.monitoring.system import LOCK_FILE_NAME


def _worker(n: int, ready: Any) -> None:
    """Child body: PROMETHEUS_MULTIPROC_DIR was in the environment before this interpreter began."""
    from nexus_ml.monitoring.metrics import build_metrics

    m = build_metrics(CollectorRegistry())
    for _ in range(n):
        m.model_predictions_total.labels("diag", "1", "a").inc()
        m.model_prediction_duration_seconds.labels("diag").observe(0.01)
    m.db_records_pending.set(n)  # livesum
    m.model_info.labels("diag", "1").set(1)  # livemax
    m.system_cpu_usage_percent.set(float(n))  # mostrecent
    m.model_last_training_timestamp_seconds.labels("diag").set(1000.0 + n)  # max
    ready.set()
    # Stay alive until terminated; a shared stop Event would deadlock its notify()
    # once one of its waiters has been SIGKILLed.
    time.sleep(120)


def _scrape(path: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_real_workers_sum_exactly_and_dead_live_gauges_vanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "prom")
    # Inherited by spawned children, so it is set before their prometheus_client import.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mp_dir))
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    try:
        for n in (3, 5, 7):  # one after the other, so the mostrecent write is n=7's
            ready = ctx.Event()
            proc = ctx.Process(target=_worker, args=(n, ready), daemon=True)
            proc.start()
            assert ready.wait(60), "worker did not start"
            procs.append(proc)
        pids = [p.pid for p in procs]

        reg = _scrape(mp_dir)
        assert (
            reg.get_sample_value(
                "ml_model_predictions_total",
                {"model": "diag", "version": "1", "predicted_class": "a"},
            )
            == 15
        )
        assert (
            reg.get_sample_value("ml_model_prediction_duration_seconds_count", {"model": "diag"})
            == 15
        )
        assert reg.get_sample_value("ml_db_records_pending") == 15
        # livemax: one series per model version, whatever the number of workers.
        assert reg.get_sample_value("ml_model_info", {"model": "diag", "version": "1"}) == 1
        assert reg.get_sample_value("ml_system_cpu_usage_percent") == 7
        assert (
            reg.get_sample_value("ml_model_last_training_timestamp_seconds", {"model": "diag"})
            == 1007
        )
        assert mark_dead_workers(mp_dir) == []

        victim = procs[2]
        victim.kill()  # SIGKILL: no chance to clean up, like an OOM kill
        victim.join(30)
        assert mark_dead_workers(mp_dir) == [pids[2]]
        assert mark_dead_workers(mp_dir) == []  # nothing left to do for it

        reg = _scrape(mp_dir)
        # Counters and histograms keep the dead worker's share: totals never go backwards.
        assert (
            reg.get_sample_value(
                "ml_model_predictions_total",
                {"model": "diag", "version": "1", "predicted_class": "a"},
            )
            == 15
        )
        assert (
            reg.get_sample_value("ml_model_prediction_duration_seconds_count", {"model": "diag"})
            == 15
        )
        # live* gauges lose it.
        assert reg.get_sample_value("ml_db_records_pending") == 8
        # Still loaded in the live workers; no per-pid series appears.
        assert reg.get_sample_value("ml_model_info", {"model": "diag", "version": "1"}) == 1
        assert not [
            s
            for m in reg.collect()
            if m.name == "ml_model_info"
            for s in m.samples
            if "pid" in s.labels
        ]
        # Non-live modes keep the dead worker's value (by design for max; see report
        # on mostrecent: it persists until another process writes that label set).
        assert reg.get_sample_value("ml_system_cpu_usage_percent") == 7
        assert (
            reg.get_sample_value("ml_model_last_training_timestamp_seconds", {"model": "diag"})
            == 1007
        )

        body, content_type = render_metrics(CollectorRegistry(), None, mp_dir)
        assert content_type.startswith("text/plain")
        assert b"ml_model_predictions_total" in body
        assert b'ml_model_info{model="diag",version="1"} 1.0' in body
        assert b"pid=" not in body
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(30)


def test_prepare_wipes_only_our_files(tmp_path: Path) -> None:
    for name in ("counter_1.db", "gauge_livesum_1.db", LOCK_FILE_NAME, "notes.txt"):
        (tmp_path / name).write_text("x")
    assert prepare_multiproc_dir(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert prepare_multiproc_dir(tmp_path / "new").is_dir()


def test_mark_dead_workers_only_touches_dead_live_files(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    names = [
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_max_{dead}.db",
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"counter_{alive}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert live_gauge_pids(tmp_path) == {dead, alive}
    assert mark_dead_workers(tmp_path) == [dead]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(n for n in names if not n.startswith("gauge_live") or str(alive) in n)


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())


def test_gunicorn_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(multiproc.MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_42.db").write_bytes(b"")
    on_starting(SimpleNamespace())
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "gauge_livesum_42.db").write_bytes(b"")
    (tmp_path / "counter_42.db").write_bytes(b"")
    child_exit(SimpleNamespace(), SimpleNamespace(pid=42))
    assert [p.name for p in tmp_path.iterdir()] == ["counter_42.db"]
