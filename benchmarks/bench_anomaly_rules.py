"""What do the anomaly rules cost Prometheus: series added, and evaluation time per group?

A real Prometheus (the Debian binary, 127.0.0.1 only) with 22 days of the six signals' history
backfilled at one sample a minute (``promtool tsdb create-blocks-from openmetrics``: two models
of two classes, so every seasonal window reads real samples), scraping a small exporter of the
service's raw metrics (so the signal rules have something to rate), loads ``ml_alerts.yml`` and
``ml_anomaly.yml`` together. Both files' groups are evaluated in the same process and the same
minutes, so the ratio of the anomaly group to the existing groups is measured side by side;
``prometheus_rule_group_last_duration_seconds`` is read after each evaluation.

    .venv/bin/python benchmarks/bench_anomaly_rules.py [--evaluations 12]
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import yaml

from nexus_ml.render.anomaly_rules import anomaly_group
from nexus_ml.render.rules import render_rules, to_yaml
from nexus_ml.thresholds import JOB

DAYS = 22
INTERVAL = 10  # seconds between evaluations of every group (both files) in this benchmark
MODELS = ("a", "b")
CLASSES = ("yes", "no")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _history(path: Path, end: int) -> None:
    """OpenMetrics text: each signal a minute for DAYS days up to ``end`` (a daily wave)."""
    t = np.arange(end - DAYS * 86400, end, 60)
    rng = np.random.default_rng(1)
    wave = 1 + 0.5 * np.sin(2 * np.pi * (t % 86400) / 86400)
    job = f'job="{JOB}"'
    series: dict[str, list[tuple[str, np.ndarray]]] = {
        "request_rate": [(job, 20 * wave + rng.normal(0, 0.5, len(t)))],
        "error_ratio": [(job, np.abs(rng.normal(0.005, 0.001, len(t))))],
        "latency_p95": [(job, 0.05 * wave * rng.lognormal(0, 0.05, len(t)))],
        "predictions": [
            (f'{job},model="{m}"', 5 * wave + rng.normal(0, 0.2, len(t))) for m in MODELS
        ],
        "confidence": [(f'{job},model="{m}"', 0.85 + rng.normal(0, 0.01, len(t))) for m in MODELS],
        "class_share": [
            (f'{job},model="{m}",predicted_class="{c}"', 0.5 + rng.normal(0, 0.02, len(t)))
            for m in MODELS
            for c in CLASSES
        ],
    }
    with path.open("w", encoding="utf-8") as out:
        for signal, rows in series.items():
            name = f"ml:anomaly_{signal}"
            out.write(f"# TYPE {name} gauge\n")
            for labels, values in rows:
                for ts, v in zip(t, values, strict=True):
                    out.write(f"{name}{{{labels}}} {v:.6g} {ts}\n")
        out.write("# EOF\n")


def _exporter(port: int, started: float) -> http.server.ThreadingHTTPServer:
    """The service's raw metrics, counters growing with the wall clock."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            s = time.time() - started
            route = 'method="POST",endpoint="/predict"'
            lines = [
                f'ml_api_requests_total{{{route},status="200"}} {20 * s}',
                f'ml_api_requests_total{{{route},status="500"}} {0.1 * s}',
            ]
            for le, share in (("0.05", 0.97), ("0.1", 1.0), ("+Inf", 1.0)):
                lines.append(
                    f'ml_api_request_duration_seconds_bucket{{le="{le}"}} {20 * s * share}'
                )
            for m in MODELS:
                for c in CLASSES:
                    lines.append(
                        f'ml_model_predictions_total{{model="{m}",version="1",'
                        f'predicted_class="{c}"}} {2.5 * s}'
                    )
                lines.append(f'ml_model_confidence_score_sum{{model="{m}"}} {0.85 * 5 * s}')
                lines.append(f'ml_model_confidence_score_count{{model="{m}"}} {5 * s}')
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _query(base: str, expr: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - 127.0.0.1 only
        return json.load(r)["data"]["result"]  # type: ignore[no-any-return]


def _own(base: str, metric: str) -> dict[str, float]:
    """Per rule group: ``metric`` from Prometheus's own /metrics (it does not scrape itself)."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:  # noqa: S310 - 127.0.0.1
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            group = labels.split('rule_group="', 1)[1].split('"', 1)[0].rsplit(";", 1)[1]
            out[group] = float(value)
    return out


def _poll(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        now = int(time.time()) // 60 * 60
        _history(root / "history.om", now - 60)
        data = root / "data"
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
             str(root / "history.om"), str(data)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        anomaly = anomaly_group()
        anomaly["interval"] = f"{INTERVAL}s"
        (root / "anomaly.yml").write_text(to_yaml({"groups": [anomaly]}))
        (root / "alerts.yml").write_text(to_yaml(render_rules()))
        exporter_port, prom_port = _free_port(), _free_port()
        exporter = _exporter(exporter_port, time.time() - 600)
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": f"{INTERVAL}s"},
            "rule_files": [str(root / "alerts.yml"), str(root / "anomaly.yml")],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
            ],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        base = f"http://127.0.0.1:{prom_port}"
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=60d",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _poll("ready", lambda: urllib.request.urlopen(base + "/-/ready", timeout=2), 120)  # noqa: S310
            # Scores need the signal now: two scrapes for the rates, then an evaluation.
            _poll("scores", lambda: _query(base, "count(ml:anomaly_class_share:score)"), 120)
            durations: dict[str, list[float]] = {}
            last = 0.0
            while min((len(v) for v in durations.values()), default=0) < args.evaluations:
                stamp = max(
                    _own(base, "prometheus_rule_group_last_evaluation_timestamp_seconds").values()
                )
                if stamp > last:
                    last = stamp
                    time.sleep(2)  # every group of this round has run
                    for group, value in _own(
                        base, "prometheus_rule_group_last_duration_seconds"
                    ).items():
                        durations.setdefault(group, []).append(value)
                time.sleep(1)
            seasonal = _query(base, 'count(ml:anomaly_predictions:centre{baseline="21d"})')
            added = _query(base, 'count({__name__=~"ml:anomaly_.+"})')
            load = Path("/proc/loadavg").read_text().split()[:3]
        finally:
            prom.terminate()
            prom.wait(timeout=30)
            exporter.shutdown()
    print(f"host load (1, 5, 15 min): {' '.join(load)}")
    print(f"anomaly series now: {added[0]['value'][1]}; 21d centres of predictions: "  # type: ignore[index]
          f"{seasonal[0]['value'][1] if seasonal else 0}")  # fmt: skip
    print("| group | rules | median ms | max ms |\n|---|---|---|---|")
    groups = {g["name"]: len(g["rules"]) for g in [*render_rules()["groups"], anomaly]}
    for group, values in sorted(durations.items()):
        ms = [v * 1000 for v in values]
        print(f"| {group} | {groups.get(group, '?')} | {statistics.median(ms):.2f} | "
              f"{max(ms):.2f} |")  # fmt: skip
    if not math.isfinite(sum(sum(v) for v in durations.values())):
        raise SystemExit("a duration is not finite")


if __name__ == "__main__":
    main()
