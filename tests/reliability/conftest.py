"""Fixtures of the fault tests: a PostgreSQL schema reached through a cuttable TCP proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url
from tests.helpers import postgres_schema_url
from tests.reliability.tcp_proxy import TcpProxy


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL schema, reached directly (the test's view of the database)."""
    yield from postgres_schema_url()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the PostgreSQL server of ``pg_url``."""
    url = make_url(pg_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as p:
        yield p


@pytest.fixture
def proxied_url(pg_url: str, proxy: TcpProxy) -> str:
    """``pg_url`` through the proxy (same schema): what the service is given."""
    url = make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)
