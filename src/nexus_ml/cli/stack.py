"""``nexus-ml stack``."""

from __future__ import annotations

from nexus_ml.cli.main import app, console


@app.command("stack")
def stack() -> None:
    """Not available yet."""
    console.print("[red]nexus-ml stack is not available in this build[/red]")
    raise SystemExit(2)
