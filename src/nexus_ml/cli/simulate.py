"""``nexus-ml simulate``."""

from __future__ import annotations

from nexus_ml.cli.main import app, console


@app.command("simulate")
def simulate() -> None:
    """Not available yet."""
    console.print("[red]nexus-ml simulate is not available in this build[/red]")
    raise SystemExit(2)
