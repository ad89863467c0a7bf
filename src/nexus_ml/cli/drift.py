"""``nexus-ml drift``."""

from __future__ import annotations

from nexus_ml.cli.main import app, console


@app.command("drift")
def drift() -> None:
    """Not available yet."""
    console.print("[red]nexus-ml drift is not available in this build[/red]")
    raise SystemExit(2)
