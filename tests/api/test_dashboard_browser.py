"""The dashboard in a real headless Chromium against the real service (uvicorn subprocess).

Never downloads a browser: Debian's /usr/bin/chromium is driven through Playwright's
``executable_path``. Skips without chromium locally; fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers import KEYS, free_port, require_binary

from nexus_ml.ml.datasets import load_dataset

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PANELS = (
    "health", "cpu", "memory", "alerts", "requests", "latency",
    "accuracy", "confidence", "training", "errors", "database", "drift",
    "clinical-summary", "clinical-recall", "clinical-precision", "clinical-alert-rate",
    "clinical-reliability",
)  # fmt: skip
# The clinical section shows the bundled diagnostic model (positive class: malignant).
CLINICAL_MODEL = "diagnostic"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def service(db_url: str, bundled_models: Path, tmp_path: Path) -> Iterator[str]:
    """The real service in a uvicorn subprocess; yields its base URL, stops it after."""
    models = tmp_path / "models"
    shutil.copytree(bundled_models, models)
    port = free_port()
    env = {
        **os.environ,
        "ML_MODEL_PATH": str(models),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": db_url,
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
        "ML_WRITER_FLUSH_SECONDS": "0.1",
        "ML_SYSTEM_INTERVAL_SECONDS": "1",
        "ML_DRIFT_MIN_WINDOW": "10",
        # A handful of labels per segment is enough to draw: the test checks the plumbing.
        "ML_CLINICAL_MIN_COUNT": "5",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "service.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "--factory", "nexus_ml.api.asgi:app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"service exited: {(tmp_path / 'service.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("service not ready within 30 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rows(name: str, n: int) -> list[dict[str, float]]:
    data = load_dataset(name)
    return [dict(zip(data.feature_names, map(float, data.X[i]), strict=True)) for i in range(n)]


def _truth(name: str, n: int) -> list[str]:
    """The true classes of the rows ``_rows`` sends: the feedback a clinician would give."""
    return [str(y) for y in load_dataset(name).y[:n]]


def _populate(base: str) -> None:
    """Predictions, feedback, one training run and one model-quality round."""
    admin = {"Authorization": f"Bearer {KEYS['admin']}"}
    with httpx.Client(base_url=base, headers=admin, timeout=30) as c:
        preds, truth = [], []
        for name, n in (("diagnostic", 60), ("diabetes_risk", 40)):
            r = c.post(f"/api/v1/models/{name}/predict", json={"instances": _rows(name, n)})
            assert r.status_code == 200, r.text
            preds += r.json()["predictions"]
            truth += _truth(name, n)
        for i in range(5):  # single predictions too: their latency is per call
            r = c.post(
                "/api/v1/models/diagnostic/predict", json={"features": _rows("diagnostic", 5)[i]}
            )
            assert r.status_code == 200, r.text
        for i in [*range(0, 50), *range(60, 75)]:
            r = c.post(f"/api/v1/predictions/{preds[i]['id']}/feedback", json={"actual": truth[i]})
            assert r.status_code == 201, r.text
        run = c.post("/api/v1/models/diabetes_risk/train", json={"seed": 3}).json()
        deadline = time.monotonic() + 40
        while c.get(f"/api/v1/training/runs/{run['id']}").json()["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, "training did not finish"
            time.sleep(0.3)
        r = c.post("/api/v1/monitoring/drift/run")
        assert r.status_code == 200 and r.json()["ran"], r.text


def _wait(page: Any, expression: str, timeout: float) -> None:
    """Poll ``expression`` in the page until truthy (``wait_for_function`` polls through eval,
    which the page's CSP rightly forbids; ``evaluate`` goes through DevTools instead)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        time.sleep(0.2)


def _canvases_drawn(page: Any) -> dict[str, int]:
    """Per panel with a canvas: how many non-transparent pixels it holds."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.panel canvas')].map((c) => {
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
            return [c.closest('.panel').dataset.panel, n];
        }))"""
    )


ANIMATED = """() => [...document.querySelectorAll('.panel canvas')]
    .map((c) => [c.closest('.panel').dataset.panel, Chart.getChart(c)])
    .filter(([, chart]) => !chart || chart.options.animation !== false)
    .map(([name]) => name)"""

CHART_DATA = """(name) => {
    const chart = Chart.getChart(document.querySelector(`#panel-${name} canvas`));
    return {
        labels: chart.data.labels ?? null,
        datasets: Object.fromEntries(chart.data.datasets.map((d) => [d.label, d.data])),
    };
}"""


def _chart(page: Any, name: str) -> tuple[list[str] | None, dict[str, list[Any]]]:
    """Labels and data (by dataset label) of one panel's chart, as Chart.js holds them."""
    chart = page.evaluate(CHART_DATA, name)
    return chart["labels"], chart["datasets"]


def _monitor(base: str, path: str) -> Any:
    r = httpx.get(
        f"{base}/api/v1/monitoring{path}",
        headers={"Authorization": f"Bearer {KEYS['monitor']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _check_clinical(page: Any, base: str) -> None:
    """The clinical panels draw the numbers GET /performance/clinical answers."""
    answer = _monitor(base, f"/performance/clinical?model={CLINICAL_MODEL}")
    positive = answer["positive_class"]
    assert positive == "malignant" and page.input_value("#clinical-class") == positive
    segments = answer["segments"]
    assert segments[0]["segment"] == "all"
    for panel, metric in (
        ("clinical-recall", "recall"),
        ("clinical-precision", "precision"),
        ("clinical-alert-rate", "positive_rate"),
    ):
        labels, data = _chart(page, panel)
        values = [s["classes"][positive][metric] for s in segments]
        assert labels is not None and len(labels) == len(segments), panel
        assert [label.split(" (n=")[0] for label in labels] == [s["segment"] for s in segments]
        realised = next(v for k, v in data.items() if k.startswith(("realised", "alert rate")))
        assert realised == [v["value"] for v in values], panel
        assert data["95% interval"] == [
            None if v["value"] is None else [v["lower"], v["upper"]] for v in values
        ], panel
        assert any(v is not None for v in realised), f"{panel}: no value drawn"
    recall = segments[0]["classes"][positive]["recall"]
    summary = page.text_content("#panel-clinical-summary") or ""
    assert f"sensitivity {recall['value'] * 100:.1f}%" in summary
    assert (
        f"recall (sensitivity): {recall['value']:.3f} "
        f"[{recall['lower']:.3f}–{recall['upper']:.3f}], n={recall['n']}"
    ) in summary
    _, reliability = _chart(page, "clinical-reliability")
    drawn = [
        {"x": b["mean_predicted"], "y": b["observed"]}
        for b in segments[0]["reliability"]
        if b["count"] > 0 and b["mean_predicted"] is not None and b["observed"] is not None
    ]
    assert reliability["observed (segment all)"] == drawn and drawn


def _check_drift_and_latency(page: Any, base: str) -> None:
    """Drift: decided scores only, three colours named; latency: both kinds, named."""
    overview = _monitor(base, "/data-quality/overview")
    decided = {
        f"{m['model']}/{f['feature']}"
        for m in overview["models"]
        if m["decided"]
        for f in m["features"]
        if f["decided"]
    }
    labels, drift = _chart(page, "drift")
    assert labels and set(labels) <= decided
    assert set(drift) == {
        "drift statistic, feature judged drifted",
        "drift statistic, not drifted",
        f"drift limit ({overview['drift_threshold']})",
    }
    labels, _ = _chart(page, "latency")
    assert labels is not None and labels[0] == ["request", "end-to-end"]
    assert ["diagnostic", "compute"] in labels


def test_dashboard_draws_every_panel(service: str, tmp_path: Path) -> None:
    require_binary("chromium")
    from playwright.sync_api import ConsoleMessage, Response, sync_playwright

    _populate(service)
    page_response = httpx.get(f"{service}/dashboard")
    assert page_response.status_code == 200
    for path in ("/dashboard", "/dashboard/static/dashboard.js"):
        h = httpx.get(service + path).headers
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "no-referrer"
    assert "<script>" not in page_response.text  # every script is a file (CSP)

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            # A wrong key is refused with the reason shown (own context: its 401s are expected).
            bad = browser.new_context().new_page()
            bad.goto(f"{service}/dashboard")
            bad.fill("#api-key", "wrong-key-0123456789abcdef")
            bad.click("#login button[type=submit]")
            _wait(bad, "document.querySelector('#login-error').textContent.length > 0", 10)
            assert bad.is_visible("#login") and bad.evaluate("sessionStorage.length") == 0

            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = context.new_page()

            def on_console(m: ConsoleMessage) -> None:
                if m.type == "error":
                    problems.append(f"console: {m.text}")

            def on_response(r: Response) -> None:
                if r.status >= 400:
                    problems.append(f"HTTP {r.status}: {r.url}")

            page.on("console", on_console)
            page.on("response", on_response)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
            page.goto(f"{service}/dashboard")
            page.fill("#api-key", KEYS["monitor"])
            page.click("#login button[type=submit]")
            page.select_option("#clinical-model", CLINICAL_MODEL)
            _wait(
                page,
                "document.querySelector('#clinical-window').textContent"
                f".startsWith('{CLINICAL_MODEL} ')",
                30,
            )
            _wait(
                page,
                "document.querySelectorAll('.panel[data-state=\"ready\"]').length === "
                f"{len(PANELS)}",
                30,
            )
            # Live series (CPU, memory, error rate) gain a point per 10 s refresh: wait for two.
            _wait(page, "Number(document.querySelector('#panel-cpu').dataset.points) >= 2", 15)
            states = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('.panel')]"
                ".map((p) => [p.dataset.panel, [p.dataset.state, Number(p.dataset.points)]]))"
            )
            assert set(states) == set(PANELS)
            for name, (state, points) in states.items():
                assert state == "ready" and points > 0, (name, state, points)
            for name, drawn in _canvases_drawn(page).items():
                assert drawn > 100, f"{name} canvas is blank"
            # A second refresh went through every chart's update path: none animates.
            assert page.evaluate(ANIMATED) == []
            _check_clinical(page, service)
            _check_drift_and_latency(page, service)
            health = page.text_content("#panel-health [data-role=value]")
            assert health in ("OK", "DEGRADED")
            assert "firing" in (page.text_content("#panel-alerts [data-role=value]") or "")
            # The key is in this tab's sessionStorage only: not in the URL, not in localStorage.
            assert KEYS["monitor"] not in page.url
            assert page.evaluate("localStorage.length") == 0
            assert (
                page.evaluate("sessionStorage.getItem('nexus-ml.monitor-key')") == KEYS["monitor"]
            )
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
            # The README's picture is refreshed only on request, so a test run
            # never leaves the working tree modified.
            if os.environ.get("NEXUS_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
        finally:
            browser.close()
    assert problems == []
