"""prometheus_client multiprocess mode: directory lifecycle and dead-worker bookkeeping.

Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set *before Python
starts* (prometheus_client picks its value class at import). Each process then
writes ``counter_<pid>.db``, ``histogram_<pid>.db`` and ``gauge_<mode>_<pid>.db``.

Counter and histogram files of dead workers are kept on purpose, so totals never
go backwards; only ``live*`` gauge files are removed when their process is gone.

This module doubles as a gunicorn config module::

    gunicorn -c python:nexus_ml.monitoring.multiproc ...

or import :func:`on_starting` and :func:`child_exit` into your own gunicorn config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import multiprocess

from nexus_ml.monitoring.system import LOCK_FILE_NAME

__all__ = [
    "MULTIPROC_ENV",
    "child_exit",
    "live_gauge_pids",
    "mark_dead_workers",
    "on_starting",
    "pid_alive",
    "prepare_multiproc_dir",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiproc_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and delete the previous run's ``*.db`` files and collector lock."""
    # Only our own files: a misconfigured path must not cost someone their home folder.
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("*.db"):
        f.unlink(missing_ok=True)
    (folder / LOCK_FILE_NAME).unlink(missing_ok=True)
    return folder


def _pid_of(name: str) -> int | None:
    # "<kind>[_<mode>]_<pid>.db"; prometheus_client itself splits on "_" the same way.
    stem = name[:-3] if name.endswith(".db") else name
    tail = stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def live_gauge_pids(path: str | os.PathLike[str]) -> set[int]:
    """Pids that still own a ``gauge_live*`` file in ``path``."""
    pids = set()
    for entry in os.scandir(path):
        if entry.name.startswith("gauge_live") and entry.name.endswith(".db"):
            pid = _pid_of(entry.name)
            if pid is not None:
                pids.add(pid)
    return pids


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def mark_dead_workers(path: str | os.PathLike[str]) -> list[int]:
    """Drop the ``live*`` gauges of every pid in ``path`` that no longer runs; return those pids."""
    # Only pids that still have live files are checked: once marked they have none,
    # so the cost per scrape stays proportional to live workers, not to restarts.
    dead = sorted(pid for pid in live_gauge_pids(path) if not pid_alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


# --- gunicorn server hooks (names are gunicorn's; server/worker are gunicorn objects) ---


def on_starting(server: Any) -> None:
    """Gunicorn master hook: wipe the multiprocess dir before any worker forks."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        prepare_multiproc_dir(path)


def child_exit(server: Any, worker: Any) -> None:
    """Gunicorn master hook: a worker exited, drop its ``live*`` gauges now."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(worker.pid, path)
