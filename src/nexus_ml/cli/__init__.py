"""``nexus-ml``: serve, train, import, models, seal, simulate, drift, render, stack.

Each command lives in its own module; importing them here registers them on ``app``.
"""

from nexus_ml.cli import drift, importing, models, render, seal, simulate, stack  # noqa: F401
from nexus_ml.cli.main import app

__all__ = ["app"]
