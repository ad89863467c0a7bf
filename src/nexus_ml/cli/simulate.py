"""``nexus-ml simulate``: realistic, bounded traffic against a running service over HTTP.

Every model in the model folder gets traffic (``--model`` picks some). A bundled model's rows
are its dataset's own rows (``cli.traffic.RowSampler``), so its answers are realistic and the
feedback carries each row's true label; any other model, imported ones included, gets rows
drawn from the reference profile in its bundle (``ProfileSampler``) and labels drawn from its
calibration. ``run_simulation`` takes an ``httpx.AsyncClient`` so tests can point it anywhere.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from nexus_ml.cli.console import make_console, problem, progress_bar
from nexus_ml.cli.main import _settings, app, console
from nexus_ml.cli.traffic import (
    ProfileSampler,
    RowSampler,
    Shift,
    interval_for,
    parse_shift,
    percentiles,
    split_shifts,
    status_class,
    to_json_ready,
)
from nexus_ml.ml.datasets import BUNDLED_DATASETS, load_dataset

Sampler = RowSampler | ProfileSampler

DEFAULT_URL = "http://127.0.0.1:8001"
REQUEST_TIMEOUT = 10.0
# Feedback still in flight when the traffic ends gets this long beyond its delay, then is dropped.
FEEDBACK_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to send; at least one of ``count`` and ``duration`` bounds the run."""

    models: Sequence[str] = BUNDLED_DATASETS
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    batch: int = 1
    shifts: Sequence[Shift] = ()
    bad_rate: float = 0.0
    feedback_rate: float = 0.0
    feedback_delay: float = 0.0
    seed: int = 0
    concurrency: int = 8

    def __post_init__(self) -> None:
        if self.count is None and self.duration is None:
            raise ValueError("bound the run with --count or --duration")
        if self.count is not None and self.count < 1:
            raise ValueError("--count must be at least 1")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("--duration must be positive")
        if not self.models:
            raise ValueError("choose at least one model")
        for name, share in (("--bad-rate", self.bad_rate), ("--feedback-rate", self.feedback_rate)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass
class SimulationResult:
    """Counts and latencies of one run."""

    sent: int = 0
    by_class: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("ok", "4xx", "5xx", "error"), 0)
    )
    predictions: int = 0
    bad_rows: int = 0
    feedback_sent: int = 0
    feedback_ok: int = 0
    feedback_failed: int = 0
    correct: int = 0  # predictions whose class equals the row's true label
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (latencies in seconds)."""
        return to_json_ready(
            {
                "sent": self.sent,
                **self.by_class,
                "predictions": self.predictions,
                "bad_rows": self.bad_rows,
                "feedback_sent": self.feedback_sent,
                "feedback_ok": self.feedback_ok,
                "feedback_failed": self.feedback_failed,
                "accuracy_vs_true_labels": self.correct / self.predictions
                if self.predictions
                else None,
                "seconds": self.seconds,
                "requests_per_second": self.sent / self.seconds if self.seconds else None,
                "latency_seconds": percentiles(self.latencies),
            }
        )


class _Run:
    """One simulation's state: samplers, counters and the feedback tasks still pending."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: SimulationConfig,
        samplers: Mapping[str, Sampler] | None,
        progress: Callable[[SimulationResult], None] | None,
    ) -> None:
        self.client = client
        self.config = config
        self.samplers = samplers or make_samplers(config, {})
        self.progress = progress
        self.coin = np.random.default_rng(config.seed + 7919)
        self.result = SimulationResult()
        self.feedback: set[asyncio.Task[None]] = set()

    async def predict(self, model: str) -> None:
        sampler = self.samplers[model]
        samples = [sampler.sample() for _ in range(self.config.batch)]
        body: dict[str, Any] = (
            {"features": samples[0].features}
            if len(samples) == 1
            else {"instances": [s.features for s in samples]}
        )
        r = self.result
        r.sent += 1
        r.bad_rows += sum(s.bad is not None for s in samples)
        start = time.perf_counter()
        try:
            response = await self.client.post(f"/api/v1/models/{model}/predict", json=body)
        except httpx.HTTPError:
            r.by_class["error"] += 1
            if self.progress:
                self.progress(r)
            return
        r.latencies.append(time.perf_counter() - start)
        r.by_class[status_class(response.status_code)] += 1
        if self.progress:
            self.progress(r)
        if response.status_code != 200:
            return
        answer = response.json()
        preds = answer.get("predictions", [answer])
        for sample, pred in zip(samples, preds, strict=True):
            label = sample.label if sample.label is not None else sampler.label_for(pred)
            r.predictions += 1
            r.correct += pred["predicted_class"] == label
            if self.config.feedback_rate and self.coin.random() < self.config.feedback_rate:
                task = asyncio.create_task(self.send_feedback(pred["id"], label))
                self.feedback.add(task)
                task.add_done_callback(self.feedback.discard)

    async def send_feedback(self, prediction_id: str, label: str) -> None:
        await asyncio.sleep(self.config.feedback_delay)
        r = self.result
        r.feedback_sent += 1
        try:
            response = await self.client.post(
                f"/api/v1/predictions/{prediction_id}/feedback", json={"actual": label}
            )
        except httpx.HTTPError:
            r.feedback_failed += 1
            return
        if response.status_code == 201:
            r.feedback_ok += 1
        else:
            r.feedback_failed += 1


# How often a run whose output is not a terminal prints its counts.
PLAIN_PROGRESS_SECONDS = 5.0


def live_counts(r: SimulationResult, elapsed: float) -> str:
    """The running counts of a simulation in one line: sent, how answered, how fast."""
    c = r.by_class
    rate = r.sent / elapsed if elapsed > 0 else 0.0
    return (
        f"sent {r.sent} · ok {c['ok']} · 4xx {c['4xx']} · 5xx {c['5xx']} · "
        f"errors {c['error']} · {rate:.1f}/s"
    )


async def run_simulation(
    client: httpx.AsyncClient,
    config: SimulationConfig,
    samplers: Mapping[str, Sampler] | None = None,
    progress: Callable[[SimulationResult], None] | None = None,
) -> SimulationResult:
    """Send the configured traffic through ``client`` (its base URL and auth already set).

    ``samplers`` (default: the bundled datasets' rows) make each model's rows; ``progress``
    is called with the running counts after each answer (or transport error).
    """
    run = _Run(client, config, samplers, progress)
    interval = interval_for(config.rate)
    limit = asyncio.Semaphore(config.concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    deadline = started + config.duration if config.duration is not None else math.inf
    count = config.count if config.count is not None else math.inf
    i = 0

    async def one(model: str) -> None:
        try:
            await run.predict(model)
        finally:
            limit.release()

    while i < count and time.perf_counter() < deadline:
        # Open loop at --rate, but never more than `concurrency` in flight: a slow service
        # slows the simulation instead of piling up unbounded requests.
        await limit.acquire()
        task = asyncio.create_task(one(config.models[i % len(config.models)]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        i += 1
        if interval:
            await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
    if in_flight:
        await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT + 1)
    run.result.seconds = time.perf_counter() - started
    if run.feedback:
        _, late = await asyncio.wait(
            run.feedback, timeout=config.feedback_delay + FEEDBACK_GRACE_SECONDS
        )
        for task in late:
            task.cancel()
    return run.result


def make_samplers(
    config: SimulationConfig, metadata: Mapping[str, dict[str, Any]]
) -> dict[str, Sampler]:
    """A sampler per model: the dataset's rows for a bundled model, else its profile.

    ``metadata`` holds the bundles' metadata.json by model name. A bundled dataset's rows are
    used when its feature names are the bundle's (or no bundle is given); a model without
    either cannot be simulated. Raises ValueError naming the model or the feature.
    """
    rows: dict[str, list[str]] = {}
    for m in config.models:
        if m in BUNDLED_DATASETS:
            data = load_dataset(m)
            names = list(data.feature_names)
            served = [f["name"] for f in metadata[m]["features"]] if m in metadata else names
            if np.issubdtype(np.asarray(data.X).dtype, np.floating) and served == names:
                rows[m] = list(data.feature_names)
        if m not in rows and m not in metadata:
            raise ValueError(
                f"model {m!r}: no bundle to draw rows from (simulate reads the reference "
                "profile of each model in ML_MODEL_PATH)"
            )
    samplers: dict[str, Sampler] = {}
    numeric_features: dict[str, Sequence[str]] = {}
    for m in config.models:
        if m not in rows:
            samplers[m] = ProfileSampler(m, metadata[m], (), 0.0)
        numeric_features[m] = rows.get(m) or samplers[m].numeric
    per_model = split_shifts(config.shifts, numeric_features)
    # One generator per model, each seeded from the run's seed: reproducible per model.
    for i, m in enumerate(config.models):
        seed = config.seed * 1000 + i
        if m in rows:
            samplers[m] = RowSampler(m, per_model[m], config.bad_rate, seed=seed)
        else:
            samplers[m] = ProfileSampler(m, metadata[m], per_model[m], config.bad_rate, seed)
    return samplers


def local_metadata(model_path: Path, models: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """metadata.json of the CURRENT version of ``models`` (default: every model) on disk."""
    from nexus_ml.ml.bundle import BundleError, list_bundles, load_metadata

    on_disk = [b.name for b in list_bundles(model_path) if b.current]
    out: dict[str, dict[str, Any]] = {}
    for m in on_disk if models is None else models:
        if m not in on_disk:
            continue
        try:
            out[m] = load_metadata(model_path, m)
        except BundleError as exc:
            raise ValueError(f"model {m!r}: {exc}") from None
    return out


def resolve_api_key(explicit: str | None, scopes: Sequence[str]) -> str:
    """``--api-key``, else the first configured key of ``scopes``, else the generated key file."""
    if explicit:
        return explicit
    settings = _settings()
    keys = settings.parsed_api_keys()
    for scope in scopes:
        for key, key_scope in keys.items():
            if key_scope == scope:
                return key
    path = settings.data_dir / "api_key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    console.print(
        problem(
            "no API key:",
            f"pass --api-key, set ML_API_KEYS ({'/'.join(scopes)}) "
            f"or start the service once so it writes {path}",
        )
    )
    raise typer.Exit(2)


def print_summary(result: SimulationResult, out: Console) -> None:
    """The run as a Rich table."""
    s = result.summary()
    table = Table(title="simulated traffic", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("sent", "ok", "4xx", "5xx", "error", "predictions", "bad_rows"):
        table.add_row(key, str(s[key]))
    table.add_row("feedback ok / sent", f"{s['feedback_ok']} / {s['feedback_sent']}")
    acc = s["accuracy_vs_true_labels"]
    table.add_row("accuracy vs true labels", "-" if acc is None else f"{acc:.3f}")
    rps = s["requests_per_second"]
    table.add_row("requests/s", "-" if rps is None else f"{rps:.1f}")
    for q, v in s["latency_seconds"].items():
        table.add_row(f"latency {q}", "-" if v is None else f"{v * 1000:.2f} ms")
    out.print(table)


@app.command("simulate")
def simulate(
    url: Annotated[str, typer.Option(help="Base URL of the running service.")] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(help="Key with scope predict (default: ML_API_KEYS, then data/api_key)."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="Model to call (repeatable; default: both bundled).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Requests per second (default: flat out).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=1, max=10_000_000, help="Requests to send.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.001, max=86_400, help="Seconds to send for.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Rows per request.")] = 1,
    shift: Annotated[
        list[str] | None,
        typer.Option(help="FEATURE=DELTA (training stds) or FEATURE=xFACTOR; repeatable."),
    ] = None,
    bad_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of rows with a bad value.")
    ] = 0.0,
    feedback_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of predictions given their true label.")
    ] = 0.0,
    feedback_delay: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds before a label is sent.")
    ] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same traffic).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send realistic prediction traffic (and later feedback) to a running service."""
    settings = _settings()
    try:
        metadata = local_metadata(settings.model_path, model)
        config = SimulationConfig(
            models=tuple(model or metadata or BUNDLED_DATASETS),
            count=count,
            duration=duration,
            rate=rate,
            batch=batch,
            shifts=tuple(parse_shift(s) for s in shift or ()),
            bad_rate=bad_rate,
            feedback_rate=feedback_rate,
            feedback_delay=feedback_delay,
            seed=seed,
            concurrency=concurrency,
        )
        samplers = make_samplers(config, metadata)
    except ValueError as exc:
        console.print(problem("invalid options:", exc))
        raise typer.Exit(2) from None
    key = resolve_api_key(api_key, ("predict", "admin"))
    bound = f"{count} requests" if count is not None else f"{duration:g} s"
    console.print(f"simulating {bound} to {url} for {', '.join(config.models)}")

    async def go() -> SimulationResult:
        async with httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=REQUEST_TIMEOUT,
            limits=httpx.Limits(max_connections=concurrency),
        ) as client:
            with progress_bar(console) as bar:
                # By requests when --count bounds the run, else by seconds of --duration.
                task = bar.add_task("requests", total=count or duration)
                started = time.perf_counter()
                # A bar redraws only on a terminal: elsewhere (a log, CI) a line now and then.
                last_line = [started]

                def advance(r: SimulationResult) -> None:
                    now = time.perf_counter()
                    done = r.sent if count is not None else now - started
                    line = live_counts(r, now - started)
                    bar.update(task, completed=done, description=line)
                    if not console.is_terminal and now - last_line[0] >= PLAIN_PROGRESS_SECONDS:
                        last_line[0] = now
                        console.print(line)

                return await run_simulation(client, config, samplers, advance)

    result = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(result.summary()))
    else:
        print_summary(result, make_console())
    if result.sent and result.by_class["error"] == result.sent:
        console.print(problem(f"no response from {url}:", "is the service running?"))
        raise typer.Exit(1)
