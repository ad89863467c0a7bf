"""SystemCollector: sane values, one publisher per lock dir, takeover when the holder dies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.system import LOCK_FILE_NAME, SystemCollector, cpu_percent_between


def fresh() -> Metrics:
    return build_metrics(CollectorRegistry())


def gauge(m: Metrics, name: str) -> float | None:
    return m.registry.get_sample_value(name)


def test_collect_once_values_are_sane(tmp_path: Path) -> None:
    m = fresh()
    snap = SystemCollector(m, disk_path=tmp_path).collect_once()
    assert 0.0 <= snap.cpu_percent <= 100.0
    assert 0 < snap.memory_used_bytes <= snap.memory_total_bytes
    assert 0.0 < snap.memory_ratio <= 1.0
    assert 0 < snap.disk_used_bytes <= snap.disk_total_bytes
    assert 0.0 < snap.disk_ratio <= 1.0
    assert gauge(m, "ml_system_cpu_usage_percent") == snap.cpu_percent
    assert gauge(m, "ml_system_memory_total_bytes") == snap.memory_total_bytes
    assert gauge(m, "ml_system_memory_usage_bytes") == snap.memory_used_bytes
    assert gauge(m, "ml_system_memory_usage_ratio") == pytest.approx(snap.memory_ratio)
    assert gauge(m, "ml_system_disk_usage_bytes") == snap.disk_used_bytes
    assert gauge(m, "ml_system_disk_total_bytes") == psutil.disk_usage(str(tmp_path)).total
    assert gauge(m, "ml_system_disk_usage_ratio") == pytest.approx(snap.disk_ratio)


def test_cpu_percent_matches_psutil_formula() -> None:
    times = type(psutil.cpu_times())
    zero = times(*([0.0] * len(times._fields)))
    busy = zero._replace(
        user=30.0, idle=60.0, **({"iowait": 10.0} if "iowait" in times._fields else {})
    )
    expected = 30.0 if "iowait" in times._fields else round(100 * 30 / 90, 1)
    assert cpu_percent_between(zero, busy) == expected
    assert cpu_percent_between(busy, busy) == 0.0  # no time passed


def test_cpu_reading_works_from_any_thread(tmp_path: Path) -> None:
    # psutil.cpu_percent(None) keeps a per-thread baseline and reads 0.0 from a new
    # thread; the collector keeps its own, so a worker thread gets a real window.
    collector = SystemCollector(fresh(), disk_path=tmp_path)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # burn CPU so the window is not idle
        pass

    async def from_thread() -> float:
        return (await asyncio.to_thread(collector.sample)).cpu_percent

    assert asyncio.run(from_thread()) > 0.0


def test_only_one_collector_per_lock_dir(tmp_path: Path) -> None:
    a_metrics, b_metrics = fresh(), fresh()
    a = SystemCollector(a_metrics, disk_path=tmp_path, lock_dir=tmp_path)
    b = SystemCollector(b_metrics, disk_path=tmp_path, lock_dir=tmp_path)
    try:
        assert a.tick() is True
        assert b.tick() is False
        assert b.tick() is False  # keeps retrying, keeps losing while a holds it
        assert a.is_leader and not b.is_leader
        # Unlabelled gauges exist at 0 from creation; only the leader wrote a value.
        assert (gauge(a_metrics, "ml_system_memory_total_bytes") or 0) > 0
        assert gauge(b_metrics, "ml_system_memory_total_bytes") == 0
        a.release()
        assert b.tick() is True  # takes over at its next interval
        assert a.tick() is False
    finally:
        a.release()
        b.release()


def test_takeover_when_holder_process_dies(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE_NAME
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        collector = SystemCollector(fresh(), disk_path=tmp_path, lock_dir=tmp_path)
        assert collector.tick() is False
        holder.kill()
        holder.wait()
        assert collector.tick() is True  # the kernel dropped the dead holder's lock
        assert lock.read_text().strip().isdigit()
        collector.release()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_no_lock_dir_means_always_leader(tmp_path: Path) -> None:
    collector = SystemCollector(fresh(), disk_path=tmp_path)
    assert collector.is_leader and collector.tick() is True


def test_start_publishes_and_stop_releases(tmp_path: Path) -> None:
    m = fresh()

    async def scenario() -> None:
        collector = SystemCollector(m, interval=0.02, disk_path=tmp_path, lock_dir=tmp_path)
        await collector.start()
        deadline = time.monotonic() + 5.0
        while not gauge(m, "ml_system_disk_total_bytes"):  # poll, don't guess a sleep
            assert time.monotonic() < deadline, "collector never published"
            await asyncio.sleep(0.01)
        assert collector.is_leader
        await collector.stop()
        assert not collector.is_leader
        other = SystemCollector(fresh(), disk_path=tmp_path, lock_dir=tmp_path)
        assert other.tick() is True
        other.release()

    asyncio.run(scenario())


def test_peek_reads_the_host_without_moving_the_cpu_baseline(tmp_path: Path) -> None:
    collector = SystemCollector(fresh(), disk_path=tmp_path)
    baseline = collector._cpu_before
    snap = collector.peek()
    assert collector._cpu_before is baseline  # /health between ticks changes nothing
    assert 0 <= snap.cpu_percent <= 100 and 0 < snap.memory_ratio < 1
    assert 0 < snap.disk_ratio <= 1
    collector.sample()
    assert collector._cpu_before is not baseline  # a real sample starts a new window
