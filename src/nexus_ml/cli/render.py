"""``nexus-ml render``: the files for Prometheus, Alertmanager, Grafana and Kubernetes.

The rules carry the limits the service applies: defaults, then ``ML_THRESHOLDS_FILE``, then
``ML_THRESHOLD_*``, then the overrides saved through ``PUT /config/thresholds`` in the
configured database, in the service's order and with its checks (a stored override that no
longer validates is refused alone, by name). ``--defaults`` ignores all of them: that is how
the checked-in ``deploy/`` files are made (``make render``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nexus_ml.cli.console import problem
from nexus_ml.cli.main import _settings, _thresholds, app, console
from nexus_ml.config import AlertReceiverSettings, Settings
from nexus_ml.thresholds import Thresholds, apply_valid_overrides

if TYPE_CHECKING:
    from nexus_ml.render.alertmanager_config import Receivers


def stored_overrides(url: str) -> dict[str, object]:
    """The overrides saved in the database at ``url`` (none if it holds no table for them)."""
    from sqlalchemy import inspect

    from nexus_ml.storage.db import make_engine, sqlite_path
    from nexus_ml.storage.repositories import Store

    path = sqlite_path(url)
    if path is not None and not path.exists():
        return {}  # a service never ran here; rendering must not create a database
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table("threshold_overrides"):
            return {}  # created by the service's first start (migrations)
        return {k: r.value for k, r in Store(engine).threshold_overrides().items()}
    finally:
        engine.dispose()


def thresholds_to_render(
    settings: Settings, *, database: bool, database_required: bool = True
) -> Thresholds:
    """What the service would apply: file and environment, then (if asked) the database.

    With ``database_required=False`` an unreadable database is a warning, and the file and
    environment thresholds are used (``stack up`` must start even when the service's
    database is down: that is when its alerts matter).
    """
    thresholds = _thresholds(settings)
    if not database:
        return thresholds
    # Here, not at the top: every CLI command imports this module, few read a database.
    from sqlalchemy.exc import SQLAlchemyError

    from nexus_ml.storage.errors import DatabaseUnavailable

    url = settings.resolved_database_url
    try:
        overrides = stored_overrides(url)
    except (DatabaseUnavailable, SQLAlchemyError) as exc:  # the type says which (no URL)
        if not database_required:
            console.print(
                problem(
                    "threshold overrides not read from the database:",
                    f"{type(exc).__name__}; the rules use the file and environment only",
                    style="yellow",
                )
            )
            return thresholds
        console.print(
            problem(
                "cannot read the threshold overrides stored in the database:",
                f"{type(exc).__name__}; render without them with --no-database",
            )
        )
        raise typer.Exit(1) from None
    result, refused = apply_valid_overrides(thresholds, overrides, source="database")
    if refused:
        console.print(
            problem(
                "stored overrides refused (invalid now, as in the service):",
                ", ".join(refused),
                style="yellow",
            )
        )
    if overrides:
        console.print(f"applied {len(overrides) - len(refused)} override(s) stored in the database")
    return result


def _receivers() -> Receivers:
    """Alertmanager's receivers from ``ML_ALERT_*``, or exit 2 naming what is wrong."""
    from nexus_ml.render.alertmanager_config import Receivers

    try:
        return Receivers.from_settings(AlertReceiverSettings())
    except ValueError as exc:
        console.print(problem("alert receivers (ML_ALERT_*):", exc))
        raise typer.Exit(2) from None


@app.command()
def render(
    out: Annotated[Path, typer.Argument(help="Folder to write (the repo's deploy/).")] = Path(
        "deploy"
    ),
    defaults: Annotated[
        bool,
        typer.Option(
            "--defaults", help="Ignore every override: the checked-in deploy/ files (make render)."
        ),
    ] = False,
    database: Annotated[
        bool,
        typer.Option(
            "--database/--no-database",
            help="Also apply the overrides saved through PUT /config/thresholds.",
        ),
    ] = True,
) -> None:
    """Regenerate alert rules, Alertmanager config, dashboards and manifests from the code.

    Alertmanager's receivers come from the ML_ALERT_* settings (docs/operations.md); with
    --defaults, or none of them set, alerts go to the local receiver of "nexus-ml stack up".
    """
    from nexus_ml.render.alertmanager_config import Receivers
    from nexus_ml.render.files import render_all

    thresholds = Thresholds() if defaults else thresholds_to_render(_settings(), database=database)
    receivers = Receivers() if defaults else _receivers()
    for path in render_all(out, thresholds, receivers):
        console.print(f"wrote {path}")
