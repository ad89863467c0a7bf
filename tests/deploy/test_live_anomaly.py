"""An anomaly alert proven live: a real Prometheus scraping the real service, against history.

The service runs under uvicorn (SQLite); Prometheus 2.42 starts on a TSDB into which
``promtool tsdb create-blocks-from openmetrics`` wrote a baseline of the recorded signals one
season back (as benchmarks/bench_anomaly_rules.py does for 22 days). The anomaly group is the
generated one (``render.anomaly_rules.anomaly_group``), rendered from ``band_specs`` at a step
of 5 s instead of a minute — a one-minute window, a one-hour season, ``for`` one step — so the
whole test takes well under two minutes instead of the minutes the shipped ``for`` and the
1-minute group interval would need. Checked, every wait a poll:

* the seasonal baseline is the backfilled history (its centre is the backfilled level), and the
  live signals — an idle service: scrapes, probes, a prediction now and then — stand far below
  it: RequestRateAnomaly and PredictionVolumeAnomaly go pending,
  then firing, in ``/api/v1/alerts``, with bounded labels only (job, model, severity, category);
* a signal at its usual level (the 5xx share, 0 then and now) raises no ErrorRatioAnomaly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from tests.deploy.live_helpers import PromClient, ServiceProcess, free_port, poll
from tests.helpers import KEYS, auth, require_binary

from nexus_ml.ml.datasets import load_dataset
from nexus_ml.render.anomaly_rules import anomaly_group, series
from nexus_ml.render.rules import to_yaml
from nexus_ml.stats.anomaly import band_specs
from nexus_ml.thresholds import JOB

pytestmark = [pytest.mark.stack, pytest.mark.slow]

STEP = 5.0  # seconds: the group's interval and the bands' step in this test
SEASON = 3600.0
MODEL = "diagnostic"
# The recorded signals' level one season back (a busy hour), and their noise.
HISTORY = {
    "request_rate": ({"job": JOB}, 50.0, 0.5),
    "predictions": ({"job": JOB, "model": MODEL}, 20.0, 0.2),
    "error_ratio": ({"job": JOB}, 0.0, 0.0),
}
BOUNDED = {"alertname", "job", "model", "predicted_class", "severity", "category"}


def _specs() -> dict[str, Any]:
    return band_specs(
        step_seconds=STEP,
        window_seconds=60,
        season_seconds=(SEASON,),
        k=5.0,
        for_seconds=STEP,
        keep_seconds=0,
    )


def _backfill(path: Path, now: float) -> None:
    """OpenMetrics text: each signal every STEP seconds, from a season and 5 minutes back to a
    season less 10 minutes back (the seasonal windows of the next 10 minutes read it)."""
    rng = np.random.default_rng(17)
    t = np.arange(now - SEASON - 300, now - SEASON + 600, STEP).astype(int)
    with path.open("w", encoding="utf-8") as out:
        for signal, (labels, level, noise) in HISTORY.items():
            name = series(signal)
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.write(f"# TYPE {name} gauge\n")
            values = level + (rng.normal(0, noise, len(t)) if noise else np.zeros(len(t)))
            for ts, v in zip(t, values, strict=True):
                out.write(f"{name}{{{text}}} {v:.6g} {ts}\n")
        out.write("# EOF\n")


@pytest.fixture
def stack(tmp_path: Path, bundled_models: Path) -> Iterator[tuple[ServiceProcess, PromClient]]:
    """The service and a Prometheus on the backfilled TSDB, on 127.0.0.1; both stopped after."""
    prometheus, promtool = require_binary("prometheus"), require_binary("promtool")
    history = tmp_path / "history.om"
    _backfill(history, time.time())
    data = tmp_path / "tsdb"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    models = tmp_path / "models"
    shutil.copytree(bundled_models, models)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ML_", "PROMETHEUS_"))},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'nexus.db'}",
        "ML_MODEL_PATH": str(models),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
        "ML_SHUTDOWN_GRACE_SECONDS": "5",
    }
    service = ServiceProcess(env=env, port=free_port(), log_path=tmp_path / "serve.log")
    group = anomaly_group(specs=_specs(), step=STEP)
    assert group["interval"] == "5s"
    (tmp_path / "anomaly.yml").write_text(to_yaml({"groups": [group]}), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "5s"},
        "rule_files": [str(tmp_path / "anomaly.yml")],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{service.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    prom_port = free_port()
    prom = PromClient(f"http://127.0.0.1:{prom_port}")
    proc = None
    try:
        service.start()
        with (tmp_path / "prometheus.log").open("wb") as log:
            proc = subprocess.Popen(
                [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=2d",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        service.wait_ready(timeout=90)
        poll(
            lambda: httpx.get(f"{prom.http.base_url}/-/ready", timeout=2).status_code == 200,
            timeout=60,
            what="prometheus ready",
        )
        yield service, prom
    finally:
        prom.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        service.stop()


def _alerts(prom: PromClient) -> list[dict[str, Any]]:
    body = prom.http.get("/api/v1/alerts").json()
    assert body["status"] == "success", body
    return list(body["data"]["alerts"])


def test_an_anomaly_alert_fires_against_backfilled_history(
    stack: tuple[ServiceProcess, PromClient], request: pytest.FixtureRequest
) -> None:
    service, prom = stack
    ds = load_dataset(MODEL)
    row = dict(zip(ds.feature_names, map(float, ds.X[0]), strict=True))
    client = httpx.Client(base_url=service.url, headers=auth("predict"), timeout=30)
    request.addfinalizer(client.close)

    def predict() -> None:
        """One prediction: the model's series exists and grows, at a trickle of its usual rate."""
        r = client.post(f"/api/v1/models/{MODEL}/predict", json={"features": row})
        assert r.status_code == 200, r.text

    predict()
    # The seasonal baseline is the backfilled hour, not the live trailing window.
    centre = poll(
        lambda: prom.query(f'{series("request_rate")}:centre{{baseline="1h"}}'),
        timeout=60,
        what="request-rate centre a season back",
    )
    assert abs(float(centre[0]["value"][1]) - 50) < 1, centre

    def states(name: str) -> list[dict[str, Any]]:
        predict()
        return [a for a in _alerts(prom) if a["labels"]["alertname"] == name]

    for name in ("RequestRateAnomaly", "PredictionVolumeAnomaly"):
        pending = poll(
            lambda n=name: states(n), timeout=60, interval=1, what=f"{name} pending or firing"
        )
        firing = poll(
            lambda n=name: [a for a in states(n) if a["state"] == "firing"],
            timeout=30,
            interval=1,
            what=f"{name} firing",
        )
        for alert in pending + firing:
            assert set(alert["labels"]) <= BOUNDED, alert["labels"]
            assert alert["labels"]["severity"] == "warning" and alert["labels"]["job"] == JOB
        if name == "PredictionVolumeAnomaly":
            assert {a["labels"]["model"] for a in firing} == {MODEL}
        # The live level: a few requests a second at most (scrapes, probes, the predictions
        # above; rate() also ramps up over its first 5 minutes), far under the usual 50 and 20.
        assert 0 <= float(firing[0]["value"]) < 5, firing
    # The 5xx share is scored against its (zero) history too, and stays quiet.
    assert prom.query(f'{series("error_ratio")}:score{{baseline="1h"}}')
    assert states("ErrorRatioAnomaly") == []
