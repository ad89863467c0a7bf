"""Host CPU, memory and disk gauges, published by ONE elected collector per host.

Every worker runs a :class:`SystemCollector`; the one holding a non-blocking
``flock`` on ``<lock_dir>/system-collector.lock`` publishes, the others retry the
lock every interval, so when the holder dies (the kernel drops its lock) another
worker takes over within one interval. The gauges use ``multiprocess_mode=
"mostrecent"``, so the newest write wins whichever worker made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from nexus_ml.monitoring.metrics import Metrics

__all__ = ["LOCK_FILE_NAME", "SystemCollector", "SystemSnapshot", "cpu_percent_between"]

LOCK_FILE_NAME = "system-collector.lock"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    """One reading of the host (percent 0-100, ratios 0-1, bytes)."""

    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    memory_ratio: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_ratio: float


def _tot(times: Any) -> float:
    # Same arithmetic as psutil.cpu_percent: guest time is already inside user/nice.
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def cpu_percent_between(before: Any, after: Any) -> float:
    """Host CPU busy percent between two ``psutil.cpu_times()`` readings (psutil's formula)."""
    deltas = type(after)(*(max(0.0, b - a) for a, b in zip(before, after, strict=True)))
    total = _tot(deltas)
    if total <= 0:
        return 0.0
    busy = total - deltas.idle - getattr(deltas, "iowait", 0.0)
    return round(100.0 * busy / total, 1)


class SystemCollector:
    """Publishes host gauges every ``interval`` seconds while it holds the host-wide lock."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval: float = 30.0,
        disk_path: str | os.PathLike[str],
        lock_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._m = metrics
        self.interval = interval
        self.disk_path = Path(disk_path)
        # None means single-process: no election, this collector always publishes.
        self.lock_path = Path(lock_dir) / LOCK_FILE_NAME if lock_dir is not None else None
        self._lock_fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        # psutil.cpu_percent(interval=None) keeps its baseline per *thread*, so a call
        # from a fresh thread (to_thread, a sync /health) would read 0.0; keep our own.
        self._cpu_before = psutil.cpu_times()

    @property
    def is_leader(self) -> bool:
        """Whether this collector currently publishes the host gauges."""
        return self.lock_path is None or self._lock_fd is not None

    def try_acquire(self) -> bool:
        """Take the host-wide lock if free (non-blocking); True if this collector holds it."""
        if self.is_leader:
            return True
        assert self.lock_path is not None  # noqa: S101 - is_leader covers None
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for operators
        log.info("system collector elected in pid %d", os.getpid())
        return True

    def release(self) -> None:
        """Give up the lock so another worker can take over at its next interval."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def sample(self) -> SystemSnapshot:
        """Read the host now without publishing (CPU is measured since the previous sample)."""
        snap, self._cpu_before = self._read()
        return snap

    def peek(self) -> SystemSnapshot:
        """Read the host now, leaving the CPU baseline alone (for /health between ticks)."""
        return self._read()[0]

    def _read(self) -> tuple[SystemSnapshot, Any]:
        after = psutil.cpu_times()
        cpu = cpu_percent_between(self._cpu_before, after)
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.disk_path))
        mem_used = mem.total - mem.available
        return SystemSnapshot(
            cpu_percent=cpu,
            memory_used_bytes=mem_used,
            memory_total_bytes=mem.total,
            memory_ratio=mem_used / mem.total if mem.total else 0.0,
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
            # used/total, not psutil's percent (which excludes root-reserved blocks)
            disk_ratio=disk.used / disk.total if disk.total else 0.0,
        ), after

    def collect_once(self) -> SystemSnapshot:
        """Sample the host and set the gauges (regardless of election; for tests and /health)."""
        snap = self.sample()
        m = self._m
        m.system_cpu_usage_percent.set(snap.cpu_percent)
        m.system_memory_usage_bytes.set(snap.memory_used_bytes)
        m.system_memory_total_bytes.set(snap.memory_total_bytes)
        m.system_memory_usage_ratio.set(snap.memory_ratio)
        m.system_disk_usage_bytes.set(snap.disk_used_bytes)
        m.system_disk_total_bytes.set(snap.disk_total_bytes)
        m.system_disk_usage_ratio.set(snap.disk_ratio)
        return snap

    def tick(self) -> bool:
        """One interval's work: try the election, publish if leader; True if it published."""
        if not self.try_acquire():
            return False
        self.collect_once()
        return True

    async def start(self) -> None:
        """Prime the CPU baseline and start the periodic loop (idempotent)."""
        if self._task is not None:
            return
        self._cpu_before = psutil.cpu_times()
        self._task = asyncio.create_task(self._run(), name="system-collector")

    async def stop(self) -> None:
        """Stop the loop and release the lock."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.release()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # The first reading comes soon after start (the CPU figure needs a window of
        # some length), then one per interval.
        delay = min(self.interval, 1.0)
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            try:
                # statvfs on a network data folder can block; keep it off the loop.
                await loop.run_in_executor(None, self.tick)
            except Exception:
                log.exception("system collector tick failed")
