"""``nexus-ml purge``: run the retention purge once, now, and print what it removed.

The service's own :class:`RetentionJob` built from its collaborators (same code, same
cluster-wide lock as the daily round), audited as ``purge`` by ``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import json
import re
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from nexus_ml.cli.console import make_console, problem
from nexus_ml.cli.main import _settings, app, console

_DURATION = re.compile(r"(\d{1,6})([dh])")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1)}


def parse_duration(text: str) -> timedelta:
    """``30d`` or ``12h`` as a timedelta; raises ValueError for anything else."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30d or 12h (days or hours)")
    return int(match[1]) * _UNITS[match[2]]


def minimum(accuracy_window_seconds: float) -> timedelta:
    """The youngest data ``purge`` removes without ``--force``: the realised-accuracy window
    (rows younger than it feed metrics the service is computing now), at least a day."""
    return max(timedelta(days=1), timedelta(seconds=accuracy_window_seconds))


def run_purge(older_than: timedelta) -> dict[str, Any]:
    """The purge against the configured database and this host's spill folder."""
    from prometheus_client import CollectorRegistry

    from nexus_ml.monitoring.metrics import build_metrics
    from nexus_ml.service.retention_job import RetentionJob
    from nexus_ml.storage.db import make_engine
    from nexus_ml.storage.errors import DatabaseUnavailable
    from nexus_ml.storage.migrate import migrate
    from nexus_ml.storage.repositories import Store

    settings = _settings()
    store = Store(make_engine(settings.resolved_database_url))
    job = RetentionJob(settings=settings, store=store, metrics=build_metrics(CollectorRegistry()))
    try:
        migrate(store.engine)  # idempotent; the service does the same at start
        return job.run(older_than, f"cli:{getpass.getuser()}")
    except DatabaseUnavailable as exc:
        console.print(problem("database unavailable:", exc))
        raise typer.Exit(1) from None
    finally:
        store.engine.dispose()


@app.command("purge")
def purge(
    older_than: Annotated[
        str | None,
        typer.Option(help="Purge data older than this (30d, 12h); default ML_RETENTION_DAYS."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Allow --older-than below the realised-accuracy window (7d default)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Delete raw predictions, their feedback and spilled records older than a cutoff, now."""
    settings = _settings()
    if older_than is None:
        if not settings.retention_days:
            console.print("ML_RETENTION_DAYS=0: data is kept forever; nothing purged")
            return
        age = timedelta(days=settings.retention_days)
    else:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            console.print(problem("--older-than:", exc))
            raise typer.Exit(2) from None
        floor = minimum(settings.accuracy_window_seconds)
        if age < floor and not force:
            console.print(
                problem(
                    "--older-than:",
                    f"{older_than} is younger than {floor.days}d, the realised-accuracy window "
                    "(ML_ACCURACY_WINDOW_SECONDS); pass --force to purge it anyway",
                )
            )
            raise typer.Exit(2)
    outcome = run_purge(age)
    if as_json:
        typer.echo(json.dumps(outcome))
    if not outcome.get("ran"):
        console.print(problem("not run:", outcome.get("reason", ""), style="yellow"))
        raise typer.Exit(1)
    if not as_json:
        table = Table(title="purged", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in outcome["result"].items():
            table.add_row(key.replace("_", " "), str(value))
        make_console().print(table)
