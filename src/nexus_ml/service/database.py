"""The store as async code calls it: in a thread, an outage counted and raised as a domain error."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.errors import Unavailable
from nexus_ml.storage.errors import DatabaseUnavailable
from nexus_ml.storage.repositories import Store

T = TypeVar("T")


class Database:
    """Runs blocking :class:`Store` calls off the event loop."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self._metrics = metrics
        # Database calls run here, not in the loop's default executor, so close() can wait
        # for those still running before the engine is disposed of: a cancelled job's thread
        # goes on, and its connection would come back to a discarded pool and leak.
        self._threads = ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="nexus-db"
        )

    async def thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the database threads, errors as they are."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(fn, *args, **kwargs))

    async def close(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for running calls, then take no more."""
        try:
            async with asyncio.timeout(max(0.1, timeout)):
                await asyncio.to_thread(self._threads.shutdown, wait=True)
        except TimeoutError:
            pass

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread; an unreachable database becomes Unavailable.

        Every such failure is counted, so an outage seen only by reads (feedback,
        training runs, monitoring) still fires DatabaseConnectionErrors.
        """
        try:
            return await self.thread(fn, *args, **kwargs)
        except DatabaseUnavailable:
            self._metrics.db_operation_errors_total.labels("query", "connection").inc()
            self._metrics.errors_total.labels("database", "connection").inc()
            raise Unavailable("database unavailable: retry later") from None
