"""``nexus-ml``: serve, train, import, models, seal, simulate, drift, purge, render, stack.

Each command lives in its own module; importing them here registers them on ``app``.
"""

from nexus_ml.cli import (  # noqa: F401
    drift,
    importing,
    models,
    purge,
    render,
    seal,
    simulate,
    stack,
)
from nexus_ml.cli.main import app

__all__ = ["app"]
