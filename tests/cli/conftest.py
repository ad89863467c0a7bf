"""A real service on a free loopback port, served by uvicorn in a thread, for the CLI tests.

The CLI talks HTTP, so the tests give it a real HTTP server (the same ``create_app`` with a
fresh registry) rather than an in-process transport: what runs is exactly what ships.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from tests.helpers import LiveService, free_port

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings

START_TIMEOUT = 20.0


@pytest.fixture
def live(settings: Settings, registry: CollectorRegistry) -> Iterator[LiveService]:
    """The service on 127.0.0.1:<free port>; stopped (lifespan shutdown) after the test."""
    app = create_app(settings, registry=registry)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("the test service did not start")
        time.sleep(0.02)
    try:
        yield LiveService(f"http://127.0.0.1:{port}", app.state.service, registry, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
