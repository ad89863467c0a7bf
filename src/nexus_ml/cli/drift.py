"""``nexus-ml drift``: run the model-quality job once and print what it found.

Either against the configured database directly (the service's own ``QualityJob``, built from
its collaborators without building the service: same code, same lock, so it never races a
running worker), or through a running service's ``POST /api/v1/monitoring/drift/run``.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from nexus_ml.cli.console import make_console, problem
from nexus_ml.cli.main import _settings, app, console
from nexus_ml.cli.simulate import REQUEST_TIMEOUT, resolve_api_key
from nexus_ml.cli.traffic import to_json_ready

TOP_SCORES = 3  # features shown per drift method
DRIFT_RUN = "/api/v1/monitoring/drift/run"


def run_local() -> dict[str, Any]:
    """One model-quality round against the configured database, in this process."""
    # Imported here, like every command's heavy imports: `nexus-ml --help` loads no model code.
    from prometheus_client import CollectorRegistry

    from nexus_ml.ml.registry import ModelRegistry
    from nexus_ml.monitoring.metrics import build_metrics
    from nexus_ml.service.quality_job import QualityJob
    from nexus_ml.service.threshold_state import ThresholdState
    from nexus_ml.storage.db import make_engine
    from nexus_ml.storage.errors import DatabaseUnavailable
    from nexus_ml.storage.migrate import migrate
    from nexus_ml.storage.repositories import Store
    from nexus_ml.thresholds import load_thresholds

    settings = _settings()
    store = Store(make_engine(settings.resolved_database_url))
    models = ModelRegistry(settings.model_path)
    job = QualityJob(
        settings=settings,
        store=store,
        models=models,
        # A private registry: the gauges the job sets die with this process; the stored
        # drift_results row is what outlives it (and what the dashboard reads).
        metrics=build_metrics(CollectorRegistry()),
        # The job re-reads the overrides saved through the API before deciding.
        thresholds=ThresholdState(load_thresholds(settings), store),
    )
    try:
        migrate(store.engine)  # idempotent; the service does the same at start
        for name, error in models.load_all().items():
            console.print(problem(f"model {name} refused:", error, style="yellow"))
        return job.run()
    except DatabaseUnavailable as exc:
        console.print(problem("database unavailable:", exc))
        raise typer.Exit(1) from None
    finally:
        store.engine.dispose()


def run_remote(url: str, key: str) -> dict[str, Any]:
    """One model-quality round run by the service at ``url``."""
    try:
        response = httpx.post(
            url.rstrip("/") + DRIFT_RUN,
            headers={"Authorization": f"Bearer {key}"},
            timeout=REQUEST_TIMEOUT * 6,  # the job reads a whole window from the database
        )
    except httpx.HTTPError as exc:
        console.print(problem(f"cannot reach {url}:", type(exc).__name__))
        raise typer.Exit(1) from None
    if response.status_code != 200:
        detail = response.text[:300]
        console.print(problem(f"{DRIFT_RUN} answered {response.status_code}:", detail))
        raise typer.Exit(2 if response.status_code in (401, 403) else 1)
    result: dict[str, Any] = response.json()
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def top_scores(drift: dict[str, Any], k: int = TOP_SCORES) -> dict[str, list[tuple[str, float]]]:
    """Per method, the ``k`` features with the highest score (NaN/None skipped)."""
    by_method: dict[str, list[tuple[str, float]]] = {}
    for feature, fd in drift.get("features", {}).items():
        for method, score in fd["scores"].items():
            if score is not None and math.isfinite(score):
                by_method.setdefault(method, []).append((feature, score))
    return {m: sorted(v, key=lambda fs: -fs[1])[:k] for m, v in by_method.items()}


def _drifted_label(feature: str, fd: dict[str, Any]) -> str:
    """A drifted feature's name, with its missing-rate change when that is what drifted."""
    missing = fd.get("missing") or {}
    if not missing.get("drifted"):
        return feature
    was, now = missing.get("reference_share", 0.0), missing.get("share", 0.0)
    return f"{feature} (missing {was:.0%} → {now:.0%})"


def model_table(name: str, r: dict[str, Any]) -> Table:
    """One model's round as a two-column table."""
    table = Table(title=f"{name} (version {r.get('version', '?')})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    drift = r.get("drift", {})
    table.add_row("window size", str(r.get("window_size", 0)))
    drifted = drift.get("drifted_features", [])
    if not drift.get("decided"):
        table.add_row(
            "features drifted", problem("not decided:", drift.get("reason", ""), style="yellow")
        )
    elif drifted:
        n = len(drift.get("features", {}))
        named = ", ".join(_drifted_label(f, drift["features"].get(f, {})) for f in drifted)
        table.add_row("features drifted", problem(f"{len(drifted)}/{n}:", named))
    else:
        table.add_row("features drifted", problem("none", style="green"))
    for method, top in top_scores(drift).items():
        table.add_row(f"top {method}", ", ".join(f"{f} {s:.3f}" for f, s in top))
    q = r.get("quality", {})
    table.add_row("quality score", f"{_fmt(q.get('score'))} ({q.get('n_issues', 0)} issues)")
    acc = r.get("accuracy", {})
    table.add_row("accuracy (feedback)", f"{_fmt(acc.get('accuracy'))} (n={acc.get('n', 0)})")
    est = r.get("estimated_accuracy", {})
    table.add_row(
        "estimated accuracy",
        f"{_fmt(est.get('accuracy'))} ± {_fmt(est.get('stderr'))} (n={est.get('n', 0)})",
    )
    return table


@app.command("drift")
def drift(
    url: Annotated[
        str | None,
        typer.Option(help="Ask this running service instead of using the database directly."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Admin key for --url (default: ML_API_KEYS, then data/api_key)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw result as JSON.")] = False,
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit 1 if any model has a drifted feature (for cron/CI).")
    ] = False,
) -> None:
    """Run drift, window quality, accuracy and estimated accuracy once; print a table per model."""
    result = run_remote(url, resolve_api_key(api_key, ("admin",))) if url else run_local()
    if as_json:
        typer.echo(json.dumps(to_json_ready(result)))
    if not result.get("ran"):
        console.print(problem("skipped:", result.get("reason", "not run"), style="yellow"))
        return
    models: dict[str, Any] = result.get("models", {})
    if not as_json:
        out = make_console()
        if not models:
            out.print("no models loaded")
        for name, r in models.items():
            out.print(model_table(name, r))
        out.print(f"computed in {result.get('seconds', 0.0):.3f} s")
    if fail_on_drift and any(r.get("drift", {}).get("drifted_features") for r in models.values()):
        raise typer.Exit(1)
