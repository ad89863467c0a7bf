"""Stopping the service: a database call of a cancelled job returns its connection first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from nexus_ml.config import Settings
from nexus_ml.service.wiring import Service

SLOW_QUERY_SECONDS = 0.5  # a query still running when the service is told to stop


def test_stop_waits_for_a_cancelled_jobs_database_call(
    make_settings: Callable[..., Settings],
) -> None:
    async def scenario() -> dict[str, Any]:
        nexus = Service(make_settings(), CollectorRegistry())
        await nexus.start()
        seen: dict[str, Any] = {}
        started = threading.Event()
        original_overrides = nexus.store.threshold_overrides
        original_dispose = nexus.store.engine.dispose

        def slow_overrides() -> Any:
            started.set()
            time.sleep(SLOW_QUERY_SECONDS)
            result = original_overrides()
            seen["query_done"] = True
            return result

        def dispose(*args: Any, **kwargs: Any) -> None:
            seen["query_done_at_dispose"] = seen.get("query_done", False)
            original_dispose(*args, **kwargs)

        nexus.store.threshold_overrides = slow_overrides  # type: ignore[method-assign]
        nexus.store.engine.dispose = dispose  # type: ignore[method-assign]
        # The alert loop's threshold refresh, cancelled mid-query as stop() cancels jobs.
        job = asyncio.create_task(nexus.alerts.evaluate())
        assert await asyncio.to_thread(started.wait, 10)
        job.cancel()
        await nexus.stop()
        return seen

    seen = asyncio.run(scenario())
    # The query finished (its connection back in the pool) before the pool was disposed of.
    assert seen["query_done_at_dispose"] is True
