"""``nexus-ml seal``: write the manifest of bundles saved before manifests existed (format 1).

A running service refuses such bundles (reason ``unsealed``): their metadata carries no hash, so
nothing shows whether it was edited. Sealing runs every check a load runs and then records the
sha256 of each file; from then on any change to the bundle is refused. It vouches for the files
as they are now, so seal only bundles whose origin you trust (or retrain instead).
"""

from __future__ import annotations

from typing import Annotated

import typer

from nexus_ml.cli.console import problem
from nexus_ml.cli.main import _settings, app, console


@app.command()
def seal(
    name: Annotated[
        str | None, typer.Argument(help="Model to seal (default: every model).")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="One version (default: every version on disk).")
    ] = None,
) -> None:
    """Check format 1 bundles in full and write their manifests (trust their origin first)."""
    from nexus_ml.ml.bundle import BundleError, list_bundles, seal_bundle

    settings = _settings()
    infos = [i for i in list_bundles(settings.model_path) if name is None or i.name == name]
    if name is not None and not infos:
        console.print(problem(f"no model {name!r} under {settings.model_path}"))
        raise typer.Exit(2)
    refused = 0
    for info in infos:
        for v in [version] if version is not None else info.versions:
            try:
                sealed = seal_bundle(settings.model_path, info.name, v)
            except BundleError as exc:
                console.print(problem(f"{info.name} {v} refused ({exc.reason}):", exc))
                refused += 1
                continue
            console.print(f"{info.name} {v}: {'sealed' if sealed else 'already sealed'}")
    if refused:
        raise typer.Exit(1)
