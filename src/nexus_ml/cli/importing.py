"""``nexus-ml import``: bring in a pipeline fitted elsewhere, saved with ``skops.io.dump``.

The reference CSV (training or validation rows with labels) gives the schema, the metrics and
the reference profile; the pipeline must take its columns and predict its labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nexus_ml.cli.console import problem
from nexus_ml.cli.main import (
    PositiveClassOption,
    ReplaceIncompatibleOption,
    SegmentsOption,
    ThresholdOption,
    _column_list,
    _settings,
    app,
    champion_before,
    console,
    declarations,
    record_change,
)


@app.command("import")
def import_model(
    model: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="The pipeline, saved with skops.io.dump."),
    ],
    reference: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="CSV of training or validation rows, with labels."
        ),
    ],
    target: Annotated[str, typer.Option(help="Name of the class column in the CSV.")],
    name: Annotated[str, typer.Option(help="Model name: lowercase letters, digits, underscores.")],
    categorical: Annotated[
        str, typer.Option(help="Comma-separated columns to treat as categories.")
    ] = "",
    nullable: Annotated[
        str, typer.Option(help="Comma-separated columns that may be missing (null) at serving.")
    ] = "",
    segments: SegmentsOption = "",
    positive_class: PositiveClassOption = None,
    threshold: ThresholdOption = None,
    replace_incompatible: ReplaceIncompatibleOption = False,
) -> None:
    """Import a scikit-learn pipeline fitted elsewhere (on a pandas DataFrame) as a bundle."""
    from nexus_ml.cli.audit import cli_actor
    from nexus_ml.ml.bundle import BundleError
    from nexus_ml.ml.compat import IncompatibleVersion
    from nexus_ml.ml.importing import ImportRefused, import_pipeline
    from nexus_ml.ml.tables import TrainingDataError

    settings = _settings()
    before = champion_before(settings, name)
    try:
        version, metrics = import_pipeline(
            model,
            reference,
            target,
            name,
            settings.model_path,
            categorical=_column_list(categorical),
            nullable=_column_list(nullable),
            declared=declarations(settings, segments, positive_class, threshold),
            replace_incompatible=replace_incompatible,
            created_by=cli_actor(),
        )
    except (ImportRefused, BundleError, TrainingDataError, IncompatibleVersion) as exc:
        console.print(problem("cannot import:", exc))
        raise typer.Exit(2) from None
    record_change(settings, name, before, version, "import")
    console.print(
        f"saved model {name!r} version {version}: accuracy "
        f"{metrics['holdout_accuracy']:.3f} on the {metrics['n_holdout']} reference rows "
        f"({metrics['n_features']} features; optimistic if these are the rows it was fitted on)"
    )
    console.print("a running service picks it up within a few seconds (or at its next start)")
