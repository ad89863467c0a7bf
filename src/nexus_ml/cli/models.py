"""``nexus-ml models list|versions|promote|rollback|shadow``: roles of model versions.

Works on the model folder and the database directly (no running service needed): workers and
replicas pick a change up within seconds by polling CURRENT/SHADOW. Every change is audited
as ``cli:<os user>``; a refusal exits 2 with the reason, a database outage 1 (nothing changed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nexus_ml.cli.audit import cli_actor, governance
from nexus_ml.cli.console import problem
from nexus_ml.cli.main import ReplaceIncompatibleOption, _settings, app, console

if TYPE_CHECKING:
    from nexus_ml.service.governance import Change, Governance

models_app = typer.Typer(help="Model versions and their roles (champion, challenger, retired).")
app.add_typer(models_app, name="models")

Name = Annotated[str, typer.Argument(help="Model name.")]
Version = Annotated[str, typer.Argument(help="Version, e.g. 20260101T000000Z-0123abcd.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _refusals() -> Iterator[None]:
    """Domain refusals → exit 2 with the reason; a database outage → exit 1."""
    from nexus_ml.service.errors import ServiceError
    from nexus_ml.storage.errors import DatabaseUnavailable

    try:
        yield
    except ServiceError as exc:
        console.print(problem("refused:", exc.detail))
        raise typer.Exit(2) from None
    except DatabaseUnavailable:
        console.print(problem("database unavailable:", "nothing changed; retry later"))
        raise typer.Exit(1) from None


def _run(action: Callable[[Governance], Any]) -> Any:
    with _refusals(), governance(_settings()) as gov:
        return action(gov)


def _report(change: Change) -> None:
    if not change.changed:
        console.print(f"{change.model}: nothing to do ({change.action}: already in force)")
        return
    console.print(f"{change.model}: {change.action} {change.before} → {change.after}")
    for difference in change.differences:
        console.print(f"  breaking: {difference}")


@models_app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """Every model on disk with its champion and challenger."""
    from nexus_ml.ml.bundle import list_bundles

    infos = list_bundles(_settings().model_path)
    rows = [
        {
            "model": i.name,
            "champion": i.current,
            "challenger": i.shadow,
            "versions": len(i.versions),
        }
        for i in infos
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(
            f"{row['model']:<24} champion {row['champion'] or '-':<26} "
            f"challenger {row['challenger'] or '-':<26} {row['versions']} version(s)"
        )


@models_app.command("versions")
def versions(name: Name, as_json: JsonOption = False) -> None:
    """A model's versions, newest first, with role, provenance and holdout accuracy."""
    entries = _run(lambda gov: gov.versions(name))
    if as_json:
        typer.echo(json.dumps(entries, indent=2, default=str))
        return
    for v in entries:
        accuracy = (v.get("holdout") or {}).get("accuracy")
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        typer.echo(
            f"{v['version']}  {v['role']:<10} {v.get('created_at') or '-':<21} "
            f"by {v.get('created_by') or '-':<20} accuracy {shown}  "
            f"source {(v.get('source') or {}).get('kind') or '-'}"
        )


@models_app.command("promote")
def promote(
    name: Name, version: Version, replace_incompatible: ReplaceIncompatibleOption = False
) -> None:
    """Make a version the champion (idempotent); incompatible ones need --replace-incompatible."""
    actor = cli_actor()
    _report(
        _run(lambda gov: gov.promote(name, version, actor, allow_incompatible=replace_incompatible))
    )


@models_app.command("rollback")
def rollback(name: Name) -> None:
    """Make the previous champion (from the model's HISTORY) the champion again."""
    actor = cli_actor()
    _report(_run(lambda gov: gov.rollback(name, actor)))


@models_app.command("shadow")
def shadow(
    name: Name,
    version: Annotated[
        str | None, typer.Argument(help="Version to score in shadow (omit with --stop).")
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the challenger.")] = False,
) -> None:
    """Score a version in shadow beside the champion, or stop it with --stop."""
    actor = cli_actor()
    if stop == (version is not None):
        console.print(problem("usage:", "give a VERSION to start, or --stop (not both)"))
        raise typer.Exit(2)
    if version is None:
        _report(_run(lambda gov: gov.stop_shadow(name, actor)))
    else:
        _report(_run(lambda gov: gov.start_shadow(name, version, actor)))
