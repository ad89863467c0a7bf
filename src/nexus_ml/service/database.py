"""The store as async code calls it: in a thread, an outage counted and raised as a domain error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread; an unreachable database becomes Unavailable.

        Every such failure is counted, so an outage seen only by reads (feedback,
        training runs, monitoring) still fires DatabaseConnectionErrors.
        """
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except DatabaseUnavailable:
            self._metrics.db_operation_errors_total.labels("query", "connection").inc()
            self._metrics.errors_total.labels("database", "connection").inc()
            raise Unavailable("database unavailable: retry later") from None
