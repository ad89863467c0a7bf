"""Background jobs: each runs every few seconds until the service stops; a failure is counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nexus_ml.monitoring.metrics import Metrics

log = logging.getLogger("nexus_ml.api")


class Scheduler:
    """Runs coroutines periodically as asyncio tasks."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []

    def every(
        self, seconds: float, job: Callable[[], Awaitable[Any]], name: str, *, delay: bool = False
    ) -> None:
        """Run ``job`` now (or after ``seconds`` when ``delay``), then every ``seconds``."""

        async def loop() -> None:
            if delay:
                await asyncio.sleep(seconds)
            while True:
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a job failing must not stop the service
                    self._count_failure(name, exc)
                await asyncio.sleep(seconds)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    def paced(
        self,
        first: float,
        job: Callable[[], Awaitable[float]],
        name: str,
        *,
        on_error: Callable[[], float],
    ) -> None:
        """Run ``job`` after ``first`` seconds, then after the seconds each run returns.

        A failing run is counted and the next one comes after ``on_error()`` seconds.
        """

        async def loop() -> None:
            wait = first
            while True:
                await asyncio.sleep(wait)
                try:
                    wait = await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a job failing must not stop the service
                    self._count_failure(name, exc)
                    wait = on_error()

        self._tasks.append(asyncio.create_task(loop(), name=name))

    def _count_failure(self, name: str, exc: Exception) -> None:
        self._metrics.errors_total.labels("scheduler", type(exc).__name__).inc()
        log.warning(
            "background job failed", extra={"component": name, "error_type": type(exc).__name__}
        )

    async def stop(self) -> None:
        """Cancel every job and wait for it to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
