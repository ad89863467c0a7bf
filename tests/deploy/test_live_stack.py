"""The monitoring stack as code, proven live: service → Prometheus → Alertmanager → webhook.

One test, in phases, against real processes on 127.0.0.1: the service under uvicorn on
PostgreSQL reached through a cuttable TCP proxy, and Prometheus and Alertmanager started by
``nexus-ml stack up`` from the Debian binaries with the rendered configs. Every breach is
real: drifted traffic, a database that refuses connections, a stopped service.

``for`` durations, and the range DatabaseConnectionErrors counts errors over, are shortened
through ``ML_THRESHOLD_*`` (the service and ``stack up`` both read them, and the test checks
the rendered rules equal the overridden rendering); the limits themselves stay the shipped
defaults.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from tests.deploy.live_helpers import (
    Notification,
    PromClient,
    ReceiverClient,
    ServiceProcess,
    TcpProxy,
    free_port,
    poll,
    run_cli,
)
from tests.helpers import KEYS, auth, postgres_schema_url, require_binary
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.cli.alert_receiver import KEPT_LABELS
from nexus_ml.cli.stack import stop_stack
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.render.dashboards import dashboard_queries
from nexus_ml.render.rules import render_rules_yaml
from nexus_ml.render.stack import (
    StackOptions,
    alertmanager_command,
    prometheus_command,
    receiver_command,
    render_stack,
)
from nexus_ml.thresholds import JOB, Thresholds, load_thresholds

pytestmark = pytest.mark.stack

DRIFT_MODEL, DRIFT_FEATURE = "diagnostic", "mean_radius"
TRAIN_MODEL = "diabetes_risk"
WINDOW = 300  # count-based drift window: one batch of drifted traffic fills it
MAX_5XX = 80  # enough for HighErrorRate's 0.1/s over 5m, few enough to dilute quickly
DB_ALERT = "DatabaseConnectionErrors"
DB_WINDOW = "15s"  # DatabaseConnectionErrors resolves this long after the last error
# Test-sized `for` durations and DB error range; every limit keeps its shipped default.
OVERRIDES = {
    "ML_THRESHOLD_DATA_DRIFT_HIGH_FOR": "2s",
    "ML_THRESHOLD_ERROR_RATE_HIGH_FOR": "2s",
    "ML_THRESHOLD_DB_CONNECTION_ERRORS_FOR": "2s",
    "ML_THRESHOLD_DB_CONNECTION_ERRORS_WINDOW": DB_WINDOW,
    "ML_THRESHOLD_SERVICE_DOWN_FOR": "2s",
}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


@dataclass
class Live:
    """Everything the phases drive."""

    service: ServiceProcess
    client: httpx.Client
    prom: PromClient
    proxy: TcpProxy
    webhook: ReceiverClient
    state_dir: Path
    env: dict[str, str]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL schema (skips, or fails under CI=true, without PostgreSQL)."""
    yield from postgres_schema_url()


@pytest.fixture
def live(tmp_path: Path, model_dir: Path, pg_url: str) -> Iterator[Live]:
    """Service on PostgreSQL via a proxy, plus `nexus-ml stack up`; everything stopped after."""
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    pg = make_url(pg_url)
    state_dir = tmp_path / "stack"
    with TcpProxy(pg.host or "127.0.0.1", pg.port or 5432) as proxy:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ML_")},
            "DATABASE_URL": pg.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            ),
            "ML_MODEL_PATH": str(model_dir),
            "ML_DATA_DIR": str(tmp_path / "data"),
            "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
            "ML_SYSTEM_INTERVAL_SECONDS": "1",
            "ML_ALERT_INTERVAL_SECONDS": "1",
            "ML_DRIFT_INTERVAL_SECONDS": "2",
            "ML_DRIFT_WINDOW_SIZE": str(WINDOW),
            "ML_DRIFT_MIN_WINDOW": "100",
            # The test labels 60 predictions: with a value per class and segment from 5
            # rows, every clinical gauge the alert rules and the dashboards read is exported
            # (the alerts' own minimum counts, 100 and 200 labelled, keep them quiet).
            "ML_CLINICAL_MIN_COUNT": "5",
            "ML_WRITER_FLUSH_SECONDS": "0.1",
            "ML_SHUTDOWN_GRACE_SECONDS": "5",
            **OVERRIDES,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        service = ServiceProcess(env, free_port(), tmp_path / "service.log")
        prom_port, am_port, receiver_port = free_port(), free_port(), free_port()
        prom = PromClient(f"http://127.0.0.1:{prom_port}")
        # The stack's own local receiver (no --webhook-url): what a newcomer gets.
        hook = ReceiverClient(f"http://127.0.0.1:{receiver_port}")
        try:
            service.start()
            # The stack starts while the service boots: the first scrapes simply fail.
            up = run_cli(
                "stack", "up", "--state-dir", str(state_dir),
                "--prometheus-port", str(prom_port), "--alertmanager-port", str(am_port),
                "--service-target", f"127.0.0.1:{service.port}",
                "--scrape-interval", "1s", "--evaluation-interval", "1s",
                "--receiver-port", str(receiver_port), "--receiver-keep", "1000", "--fast",
                env=env,
            )  # fmt: skip
            assert up.returncode == 0, up.stdout + up.stderr
            service.wait_ready()
            poll(prom.alertmanagers, timeout=30, what="Prometheus discovers Alertmanager")
            poll(
                lambda: prom.query(f'up{{job="{JOB}"}} == 1'),
                timeout=30,
                what="first successful scrape of the service",
            )
            with httpx.Client(base_url=service.url, headers=auth("admin"), timeout=15) as client:
                yield Live(service, client, prom, proxy, hook, state_dir, env)
        finally:
            # The test itself runs `stack down`; this catches every way of failing before it.
            prom.close()
            try:
                stop_stack(state_dir, grace=5)
            finally:
                service.stop()


# -- traffic -------------------------------------------------------------------------------------


class Traffic:
    """Rows of the bundled datasets (what the reference profiles were built from)."""

    def __init__(self, client: httpx.Client, seed: int = 20250921) -> None:
        self.client = client
        self.rng = np.random.default_rng(seed)
        self.data = {m: load_dataset(m) for m in (DRIFT_MODEL, TRAIN_MODEL)}
        self.labelled: list[tuple[str, str]] = []  # (prediction id, true class)

    def rows(self, model: str, n: int, shift: float = 0.0) -> tuple[list[dict[str, float]], Any]:
        """``n`` dataset rows; ``shift`` standard deviations added to DRIFT_FEATURE only."""
        ds = self.data[model]
        idx = self.rng.integers(0, len(ds.X), n)
        X = ds.X[idx].copy()
        if shift:
            j = ds.feature_names.index(DRIFT_FEATURE)
            X[:, j] += shift * ds.X[:, j].std()
        rows = [dict(zip(ds.feature_names, map(float, x), strict=True)) for x in X]
        return rows, ds.y[idx]

    def batch(self, model: str, n: int, shift: float = 0.0) -> None:
        """One batch request of ``n`` instances; remembers ids with their true class."""
        rows, y = self.rows(model, n, shift)
        r = self.client.post(f"/api/v1/models/{model}/predict", json={"instances": rows})
        assert r.status_code == 200, r.text
        ids = [p["id"] for p in r.json()["predictions"]]
        self.labelled += list(zip(ids, map(str, y), strict=True))

    def singles(self, n: int) -> None:
        """``n`` one-instance predictions, alternating the two models."""
        for i in range(n):
            model = (DRIFT_MODEL, TRAIN_MODEL)[i % 2]
            rows, y = self.rows(model, 1)
            r = self.client.post(f"/api/v1/models/{model}/predict", json={"features": rows[0]})
            assert r.status_code == 200, r.text
            self.labelled.append((r.json()["id"], str(y[0])))

    def feedback(self, n: int, expect: int = 201) -> None:
        """Label ``n`` past predictions with their true class."""
        for _ in range(n):
            pid, actual = self.labelled.pop(0)
            r = self.client.post(f"/api/v1/predictions/{pid}/feedback", json={"actual": actual})
            assert r.status_code == expect, r.text


def _drift_flag(client: httpx.Client) -> bool | None:
    """Run the model-quality job now; DRIFT_FEATURE's verdict (None if it did not run)."""
    r = client.post("/api/v1/monitoring/drift/run")
    assert r.status_code == 200, r.text
    body = r.json()
    if not body.get("ran"):
        return None  # the background round holds the lock: ask again
    drift = body["models"][DRIFT_MODEL]["drift"]
    if drift["window_size"] != WINDOW or not drift["decided"]:
        return None  # the writer has not flushed the whole batch yet
    return bool(drift["features"][DRIFT_FEATURE]["drifted"])


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_alerts_flow_from_real_breaches_to_the_webhook(live: Live) -> None:
    started = time.monotonic()
    client, prom, hook = live.client, live.prom, live.webhook
    _stack_is_ready_with_overridden_rules(live)
    traffic = Traffic(client)

    # Traffic: one training run, predictions on both models, feedback, the drift job.
    run = client.post(f"/api/v1/models/{TRAIN_MODEL}/train", json={"seed": 7})
    assert run.status_code == 202, run.text
    run_url = f"/api/v1/training/runs/{run.json()['id']}"
    poll(
        lambda: client.get(run_url).json()["status"] == "succeeded",
        timeout=120,
        what="training run succeeds",
    )
    traffic.singles(40)
    traffic.batch(TRAIN_MODEL, WINDOW)
    traffic.batch(DRIFT_MODEL, WINDOW)
    traffic.feedback(60)
    assert poll(lambda: _drift_flag(client) is False, timeout=30, what="no drift on normal data")

    # DataDriftDetected: one feature of one model shifted by 3 standard deviations.
    traffic.batch(DRIFT_MODEL, WINDOW, shift=3.0)
    poll(lambda: _drift_flag(client), timeout=30, what=f"{DRIFT_FEATURE} judged drifted")
    labels = {"model": DRIFT_MODEL, "feature": DRIFT_FEATURE}
    fired = hook.wait("DataDriftDetected", "firing", timeout=60, labels=labels)
    _the_receiver_logged_and_kept(live.state_dir, fired)
    traffic.batch(DRIFT_MODEL, WINDOW)  # the window is normal traffic again
    poll(lambda: _drift_flag(client) is False, timeout=30, what=f"{DRIFT_FEATURE} back to normal")
    hook.wait("DataDriftDetected", "resolved", after=fired.index, timeout=60, labels=labels)

    # The database refuses connections: HighErrorRate and DatabaseConnectionErrors.
    live.proxy.cut()
    sent_5xx = 0

    def during_outage() -> None:
        # Predictions are still answered (records wait in the writer, whose inserts now
        # fail: connection errors); labels cannot be stored, so feedback answers 503.
        nonlocal sent_5xx
        traffic.singles(1)
        for _ in range(2):
            if sent_5xx < MAX_5XX:
                traffic.feedback(1, expect=503)
                sent_5xx += 1

    errors_fired = hook.wait("HighErrorRate", "firing", timeout=90, while_waiting=during_outage)
    db_fired = hook.wait(DB_ALERT, "firing", timeout=60, while_waiting=during_outage)
    assert db_fired.labels["instance"] == f"127.0.0.1:{live.service.port}"

    # Now every event the dashboards show has happened: each query must return data.
    _every_dashboard_query_has_data(prom)
    _every_metric_an_alert_reads_is_present(prom, live.state_dir)

    # The database is still out. One more failed read renews DatabaseConnectionErrors' short
    # range; once Prometheus, the webhook's latest word and the service's own evaluator (same
    # overridden range) all say firing, a "resolved" that follows can only come from the
    # database's return: the range cannot run out before it.
    traffic.feedback(1, expect=503)
    db_firing = f'ALERTS{{alertname="{DB_ALERT}",alertstate="firing"}}'
    poll(
        lambda: (
            prom.query(db_firing)
            and _latest(hook, DB_ALERT) == "firing"
            and _in_process_states(client, DB_ALERT) == {"firing"}
        ),
        timeout=15,
        what=f"{DB_ALERT} still firing just before the database returns",
    )
    outage_ended = hook.latest_index()
    live.proxy.restore()
    poll(
        lambda: prom.query("sum(ml_db_records_pending) == 0"),
        timeout=60,
        what="buffered records written after the outage",
    )
    traffic.feedback(1)  # labels are stored again
    # HighErrorRate clears when healthy requests outweigh the 5xx in its 5m window.
    hook.wait(
        "HighErrorRate",
        "resolved",
        after=errors_fired.index,
        timeout=120,
        while_waiting=lambda: traffic.singles(300),
    )
    # DatabaseConnectionErrors resolves one DB_WINDOW after the last connection error
    # (usually already while HighErrorRate was clearing).
    hook.wait(DB_ALERT, "resolved", after=outage_ended, timeout=60)
    assert not prom.query(db_firing)
    # Resolved because the errors stopped: the counter stays put over three more scrapes.
    errors = 'sum(ml_db_operation_errors_total{error_type="connection"})'
    scraped_at = 'max(timestamp(ml_db_operation_errors_total{error_type="connection"}))'
    before = prom.query(errors)[0]["value"][1]
    since = float(prom.query(scraped_at)[0]["value"][1])
    poll(
        lambda: float(prom.query(scraped_at)[0]["value"][1]) >= since + 3,
        timeout=30,
        what="three more scrapes",
    )
    assert prom.query(errors)[0]["value"][1] == before
    poll(
        lambda: not _in_process_states(client, DB_ALERT),
        timeout=15,
        what=f"in-process {DB_ALERT} cleared",
    )

    # MLServiceDown: the service stops; it is resolved when the service is back.
    live.service.stop()
    down = hook.wait("MLServiceDown", "firing", timeout=60)
    assert down.labels["instance"] == f"127.0.0.1:{live.service.port}"
    assert down.receiver == "ml-pager"
    live.service.start()
    live.service.wait_ready()
    hook.wait("MLServiceDown", "resolved", after=down.index, timeout=60)

    down_cmd = run_cli(
        "stack", "down", "--state-dir", str(live.state_dir), "--grace", "5", env=live.env
    )
    assert down_cmd.returncode == 0, down_cmd.stdout + down_cmd.stderr
    assert down_cmd.stderr.count(": stopped") == 3, down_cmd.stderr
    assert (
        run_cli("stack", "status", "--state-dir", str(live.state_dir), env=live.env).returncode == 1
    )
    elapsed = time.monotonic() - started
    assert elapsed < 240, f"the live phases took {elapsed:.0f}s"


def _stack_is_ready_with_overridden_rules(live: Live) -> None:
    status = run_cli("stack", "status", "--state-dir", str(live.state_dir), env=live.env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stderr.count(": ready") == 3, status.stderr
    environ = {k: v for k, v in live.env.items() if k.startswith("ML_THRESHOLD_")}
    rendered = (live.state_dir / "ml_alerts.yml").read_text(encoding="utf-8")
    assert rendered == render_rules_yaml(load_thresholds(None, environ=environ))
    rules = prom_rules(live.prom)
    assert rules["DataDriftDetected"] == 2.0  # the overridden `for`, as Prometheus loaded it
    assert f"[{DB_WINDOW}]" in prom_queries(live.prom)[DB_ALERT]  # and the overridden range


def _the_receiver_logged_and_kept(state_dir: Path, fired: Notification) -> None:
    """The local receiver printed the alert as a JSON line and wrote it to its file."""
    lines = (state_dir / "receiver.log").read_text(encoding="utf-8").splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(e["seq"] == fired.index and e["labels"] == fired.labels for e in logged), lines
    kept = json.loads((state_dir / "notifications.json").read_text(encoding="utf-8"))
    assert any(e["seq"] == fired.index for e in kept["notifications"])
    assert fired.labels["severity"] == "warning" and fired.receiver == "ml-tickets"
    assert set(fired.labels) <= set(KEPT_LABELS)  # bounded labels only, no annotation


def _latest(hook: ReceiverClient, alertname: str) -> str | None:
    """The status of the newest notification of ``alertname`` (None before the first)."""
    found = [n for n in hook.notifications() if n.labels.get("alertname") == alertname]
    return found[-1].status if found else None


def _in_process_states(client: httpx.Client, alertname: str) -> set[str]:
    """States (pending/firing) of ``alertname`` in the service's own evaluator."""
    r = client.get("/api/v1/monitoring/alerts")
    assert r.status_code == 200, r.text
    return {a["state"] for a in r.json()["alerts"] if a["name"] == alertname}


def prom_queries(prom: PromClient) -> dict[str, str]:
    """Alert name -> expression, as Prometheus reports its loaded rules."""
    groups = prom.http.get("/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
    return {r["name"]: str(r["query"]) for g in groups for r in g["rules"]}


def prom_rules(prom: PromClient) -> dict[str, float]:
    """Alert name -> ``for`` duration in seconds, as Prometheus reports its loaded rules."""
    groups = prom.http.get("/api/v1/rules", params={"type": "alert"}).json()["data"]["groups"]
    return {r["name"]: float(r["duration"]) for g in groups for r in g["rules"]}


def _every_dashboard_query_has_data(prom: PromClient) -> None:
    # An anomaly band (a baseline's centre ± k spread) needs min_samples minutes of its signal
    # within the window (30 of the last hour, stats/anomaly.py): more than this test lives. Its
    # panel says so (noValue) and shows the signal itself, which must have data here; the bands
    # are proven by promtool and tests/deploy/test_anomaly_rules.py. Each must still evaluate.
    bands = [q for q in dashboard_queries() if ":centre{" in q]
    assert bands
    for band in bands:
        prom.query(band)  # fails on a query Prometheus refuses
    queries = [q for q in dashboard_queries() if q not in bands]
    # The anomaly group runs once a minute whatever the stack's evaluation interval (its
    # windows count one sample a minute): its first run after the traffic may be a minute away.
    anomaly = [q for q in queries if q.startswith("ml:anomaly_")]
    assert anomaly
    missing: list[str] = []

    def none_missing(among: list[str]) -> bool:
        missing[:] = [q for q in among if not prom.query(q)]
        return not missing

    try:
        # Recording rules and rates need a scrape or two after the events happened.
        poll(lambda: none_missing([q for q in queries if q not in anomaly]), timeout=20,
             what="dashboard queries with data")  # fmt: skip
        poll(lambda: none_missing(anomaly), timeout=75, what="anomaly signals with data")
    except AssertionError:
        pytest.fail("dashboard queries without data:\n" + "\n".join(missing))


# A metric an alert reads that a healthy service does not export, and why.
ONLY_WHILE_TRUE = {
    # 1 while a model's bundle is refused, removed when a good one loads (ModelBundleRefused);
    # tests/api/test_bad_bundles.py checks it appears and goes.
    "ml_model_bundle_refused": "a bundle is refused",
}


def _metric_names() -> set[str]:
    """Every sample name the service's metrics module defines (a typo'd rule fails here)."""
    registry = CollectorRegistry()
    build_metrics(registry)
    return {family.name for family in registry.collect()}


def _every_metric_an_alert_reads_is_present(prom: PromClient, state_dir: Path) -> None:
    document = yaml.safe_load((state_dir / "ml_alerts.yml").read_text(encoding="utf-8"))
    names = {
        name
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
        for name in SELECTOR.findall(rule["expr"])
    }
    assert {"up", "ml_data_drift_score", "ml_db_operation_errors_total"} <= names
    # Series that exist only while their condition holds, each checked where it is made.
    only_while = set(ONLY_WHILE_TRUE)
    assert only_while <= names and only_while <= _metric_names()  # still read, still defined
    absent = sorted(n for n in names - only_while if not prom.query(f'{n}{{job="{JOB}"}}'))
    assert not absent, f"metrics read by alert rules but absent from Prometheus: {absent}"


# -- the stack's configs and command lines, without starting anything ----------------------------


def test_rendered_stack_passes_promtool_and_amtool(tmp_path: Path) -> None:
    options = StackOptions(
        state_dir=tmp_path / "stack",
        prometheus_port=19090,
        alertmanager_port=19093,
        scrape_interval="1s",
        evaluation_interval="1s",
        webhook_url="http://127.0.0.1:5001/",
        fast=True,
    )
    paths = render_stack(options, Thresholds())
    promtool, amtool = require_binary("promtool"), require_binary("amtool")
    # `check config` also loads and checks the rule file the config names (absolute path).
    for cmd in (
        [promtool, "check", "config", str(paths.prometheus_config)],
        [amtool, "check-config", str(paths.alertmanager_config)],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(paths.prometheus_config.read_text(encoding="utf-8"))
    assert config["rule_files"] == [str(paths.rules), str(paths.anomaly_rules)]
    assert config["global"]["scrape_timeout"] == "1s"  # never longer than the interval
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert all(t.startswith("127.0.0.1:") for t in targets), targets


def test_command_lines_bind_loopback_with_own_storage(tmp_path: Path) -> None:
    options = StackOptions(state_dir=tmp_path)
    paths = render_stack(options, Thresholds())
    prom = prometheus_command(options, paths, "prometheus")
    am = alertmanager_command(options, paths, "prometheus-alertmanager")
    assert "--web.listen-address=127.0.0.1:9090" in prom
    assert "--web.external-url=http://127.0.0.1:9090/" in prom
    assert f"--storage.tsdb.path={tmp_path / 'prometheus-data'}" in prom
    assert "--web.listen-address=127.0.0.1:9093" in am
    assert "--web.external-url=http://127.0.0.1:9093/" in am
    assert f"--storage.path={tmp_path / 'alertmanager-data'}" in am
    assert "--cluster.listen-address=" in am  # no gossip listener on 0.0.0.0:9094
    # No --webhook-url: the local receiver starts, and every receiver of Alertmanager uses it.
    assert options.components == ("prometheus", "alertmanager", "receiver")
    receiver = receiver_command(options, paths, "python")
    assert receiver[1:3] == ["-m", "nexus_ml.cli.alert_receiver"]
    assert "--port=5001" in receiver and f"--file={tmp_path / 'notifications.json'}" in receiver
    am_config = yaml.safe_load(paths.alertmanager_config.read_text(encoding="utf-8"))
    urls = {c["url"] for r in am_config["receivers"] for c in r["webhook_configs"]}
    assert urls == {"http://127.0.0.1:5001/"}
    other = StackOptions(state_dir=tmp_path, webhook_url="http://127.0.0.1:7000/x")
    assert other.components == ("prometheus", "alertmanager")
    assert other.delivery_url == "http://127.0.0.1:7000/x"


def test_stack_up_names_the_packages_when_a_binary_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither binary is found
    result = CliRunner().invoke(app, ["stack", "up", "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "apt-get install prometheus prometheus-alertmanager" in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()
