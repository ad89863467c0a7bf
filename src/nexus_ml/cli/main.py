"""``nexus-ml serve`` and ``train``; the app every subcommand registers on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import TaskID

from nexus_ml.cli.console import make_console, problem, progress_bar
from nexus_ml.config import Settings

if TYPE_CHECKING:
    from nexus_ml.ml.operating import Declarations
    from nexus_ml.thresholds import Thresholds

app = typer.Typer(
    help="Nexus ML: diagnostic models with Prometheus-native monitoring.", no_args_is_help=True
)
# Messages and progress go to stderr, literally (cli.console); results go to stdout.
console = make_console(stderr=True)


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.parsed_api_keys()
    except ValueError as exc:
        console.print(problem("configuration error:", exc))
        raise typer.Exit(2) from None
    return settings


def _thresholds(settings: Settings) -> Thresholds:
    """Defaults, ML_THRESHOLDS_FILE, ML_THRESHOLD_*: or exit 2 naming the key and the rule."""
    from nexus_ml.thresholds import ThresholdError, load_thresholds

    try:
        return load_thresholds(settings)
    except (ThresholdError, OSError) as exc:
        console.print(problem("thresholds:", exc))
        raise typer.Exit(2) from None


def _policies(settings: Settings) -> None:
    """ML_PROMOTION_POLICY_FILE parses, or exit 2 naming the key and the rule."""
    from nexus_ml.ml.promotion import PolicyError, load_policies

    try:
        load_policies(settings.promotion_policy_file)
    except PolicyError as exc:
        console.print(problem("promotion policy:", exc))
        raise typer.Exit(2) from None


def _ensure_models(settings: Settings) -> None:
    from nexus_ml.ml.sources import ensure_bundled_models

    with progress_bar(console) as progress:
        task: list[TaskID] = []

        def report(name: str, done: int, total: int) -> None:
            if not task:
                task.append(progress.add_task("training bundled models", total=total))
            progress.update(task[0], completed=done, description=f"training bundled model '{name}'")

        trained = ensure_bundled_models(settings.model_path, progress=report)
    if trained:
        console.print(f"trained bundled models: {', '.join(trained)} → {settings.model_path}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (the guide's is 8001).")] = 8001,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Serve the API; trains the bundled models first if the model folder holds none."""
    import uvicorn

    from nexus_ml.api.auth import ensure_first_start_key
    from nexus_ml.api.edge import PROTOCOL
    from nexus_ml.api.logs import configure_logging

    settings = _settings()
    _thresholds(settings)  # a bad override stops the start here, before any worker exists
    _policies(settings)
    configure_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _ensure_models(settings)
    settings, new_key = ensure_first_start_key(settings)
    key_file = None
    if not os.environ.get("ML_API_KEYS"):
        key_file = settings.data_dir / "api_key"
        # Workers read their settings from the environment; the generated key
        # (stored 0600 under the data folder) reaches them this way.
        os.environ["ML_API_KEYS"] = settings.api_keys.get_secret_value()
        key = settings.api_keys.get_secret_value().split(":", 1)[1]
        label = "new admin API key" if new_key else "admin API key"
        console.print(f"{label} (stored in {settings.data_dir / 'api_key'}):", key, soft_wrap=True)
    base = f"http://{host}:{port}"
    console.print(f"API docs:   {base}/docs")
    console.print(f"dashboard:  {base}/dashboard")
    console.print(f"metrics:    {base}/metrics")
    console.print(f"health:     {base}/health")
    console.print(f"database:   {_safe_url(settings.resolved_database_url)}")
    _print_next_steps(console, base, key_file)

    if workers > 1:
        # prometheus_client reads PROMETHEUS_MULTIPROC_DIR when a worker imports
        # it; the folder is wiped here, before any worker exists, so counters of
        # a previous run never leak into this one.
        from nexus_ml.monitoring.multiproc import prepare_multiproc_dir

        mp_dir = Path(
            os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.data_dir / "prometheus"
        )
        prepare_multiproc_dir(mp_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir.resolve())
        from nexus_ml.storage.migrate import migrate

        migrate(settings.resolved_database_url)
        uvicorn.run(
            "nexus_ml.api.asgi:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            http=PROTOCOL,
            log_config=None,
            # uvicorn kills a worker that does not answer its supervisor's ping
            # within this; a worker importing scikit-learn on a loaded host needs
            # several seconds, and the 5 s default made them crash-loop.
            timeout_worker_healthcheck=30,
            timeout_graceful_shutdown=_request_drain_seconds(settings),
        )
        return
    from nexus_ml.api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        http=PROTOCOL,
        log_config=None,
        timeout_graceful_shutdown=_request_drain_seconds(settings),
    )


def _print_next_steps(out: Console, base: str, key_file: Path | None) -> None:
    """What a newcomer does next: the README's quickstart in three lines."""
    # The key itself is printed above only when it was generated; here it is referred to.
    key = f"$(cat {key_file})" if key_file is not None else "$YOUR_KEY"
    out.print("next:")
    out.print(
        f'  list models: curl -s {base}/api/v1/models -H "Authorization: Bearer {key}"',
        soft_wrap=True,
    )
    out.print("  dashboard:   open the dashboard URL, paste the admin key (it has every scope)")
    out.print(
        "  traffic:     .venv/bin/nexus-ml simulate --rate 5 --feedback-rate 0.5", soft_wrap=True
    )
    out.print('  more:        README, "Quickstart"')


def _request_drain_seconds(settings: Settings) -> int:
    # Half of the grace for in-flight requests; the lifespan's writer drain has
    # the other half (api/state.py), so SIGTERM exits within the grace.
    return max(1, int(settings.shutdown_grace_seconds / 2))


def champion_before(settings: Settings, name: str) -> str | None:
    """The champion of ``name`` before a change (None: none, or an unreadable CURRENT)."""
    from nexus_ml.ml.bundle import BundleError
    from nexus_ml.ml.pointers import current_version

    try:
        return current_version(settings.model_path, name)
    except BundleError:
        return None


def record_change(
    settings: Settings, name: str, before: str | None, version: str, action: str
) -> None:
    """HISTORY and the audit log for a version a command made champion.

    The version is already serving-ready on disk; a database outage loses only the audit row
    (HISTORY holds the change), and says so.
    """
    from nexus_ml.cli.audit import cli_actor, governance
    from nexus_ml.storage.errors import DatabaseUnavailable

    try:
        with governance(settings) as gov:
            change = gov.record_new_champion(name, before, version, cli_actor(), action)
    except DatabaseUnavailable:
        console.print(
            problem(
                "warning:",
                "database unavailable: the audit entry was not written "
                "(the model's HISTORY file records the change)",
                style="yellow",
            )
        )
        return
    if change.action == "breaking_replace":
        console.print(
            f"breaking replacement of '{name}' recorded: " + "; ".join(change.differences)
        )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _column_list(text: str) -> list[str]:
    """Column names from a comma-separated option (surrounding spaces trimmed)."""
    return [part.strip() for part in text.split(",") if part.strip()]


# What a model declares beyond its data, shared by `train` and `import`.
SegmentsOption = Annotated[
    str,
    typer.Option(
        help="Segment features its metrics are reported for: categories or numeric values by "
        "name, numeric bins with edges, e.g. 'sex,age:0-40-65-120'."
    ),
]
PositiveClassOption = Annotated[
    str | None,
    typer.Option(
        help="Binary models: the class whose recall is the sensitivity (default: 1, true, yes "
        "or positive if the classes are such a pair, else the rarer class)."
    ),
]
ReplaceIncompatibleOption = Annotated[
    bool,
    typer.Option(
        "--replace-incompatible",
        help="Replace a champion whose features, types or classes differ (clients of the old "
        "schema will fail); audited as breaking_replace. Without it such a change is refused.",
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="Binary models: serve the positive class when its probability is at least this "
        "(strictly between 0 and 1; default: the most probable class)."
    ),
]


def declarations(
    settings: Settings, segments: str, positive_class: str | None, threshold: float | None
) -> Declarations:
    """What the options declare, capped by ``ML_SEGMENT_MAX_GROUPS`` (ml imported here:
    `nexus-ml --help` stays light)."""
    from nexus_ml.ml.operating import Declarations

    return Declarations(
        segments=segments or None,
        positive_class=positive_class,
        threshold=threshold,
        max_segment_groups=settings.segment_max_groups,
    )


@app.command()
def train(
    data: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV file with a header row.")
    ],
    target: Annotated[str, typer.Option(help="Name of the class column.")],
    name: Annotated[str, typer.Option(help="Model name: lowercase letters, digits, underscores.")],
    estimator: Annotated[
        str,
        typer.Option(help="logistic, hist_gradient_boosting or random_forest."),
    ] = "logistic",
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
    """Train your own scikit-learn model from a CSV and save it as a bundle.

    Column types are inferred (text is a category, an empty cell is missing) unless given.
    A name that exists gets a new champion version, refused if its schema differs from the
    champion's (see --replace-incompatible); the change is audited as cli:<os user>.
    """
    from nexus_ml.cli.audit import cli_actor
    from nexus_ml.ml.bundle import BundleError
    from nexus_ml.ml.sources import train_from_csv
    from nexus_ml.ml.training import TrainingDataError

    settings = _settings()
    before = champion_before(settings, name)
    try:
        version, metrics = train_from_csv(
            data,
            target,
            name,
            settings.model_path,
            estimator=estimator,  # type: ignore[arg-type]  # train_from_csv checks it
            categorical=_column_list(categorical),
            nullable=_column_list(nullable),
            declared=declarations(settings, segments, positive_class, threshold),
            replace_incompatible=replace_incompatible,
            created_by=cli_actor(),
        )
    except (TrainingDataError, BundleError, ValueError) as exc:
        console.print(problem("cannot train:", exc))
        raise typer.Exit(2) from None
    record_change(settings, name, before, version, "train")
    console.print(
        f"saved model '{name}' version {version}: holdout accuracy "
        f"{metrics['holdout_accuracy']:.3f} on {metrics['n_holdout']} rows "
        f"({metrics['n_features']} features)"
    )
    console.print("a running service picks it up within a few seconds (or at its next start)")
