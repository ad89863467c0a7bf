"""The dashboard's renderers in headless Chromium, fed known answers (no service).

Every request of the page is answered by the test: the static files from ``api/static/`` and
the monitoring API from the dicts below, so each panel can be checked against the exact
numbers it was given, edge cases included (a segment below the minimum count, a drift window
too small to decide, a feature with too few values). The real service and its real answers
are in tests/api/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import mimetypes
import time
from pathlib import Path
from typing import Any

import pytest
from tests.api.test_dashboard_browser import CHROMIUM_ARGS, _canvases_drawn, _wait
from tests.helpers import require_binary

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "src" / "nexus_ml" / "api" / "static"
ORIGIN = "http://dashboard.test"
CLINICAL_PANELS = (
    "clinical-summary",
    "clinical-recall",
    "clinical-precision",
    "clinical-alert-rate",
    "clinical-reliability",
)
KEY = "fixture-key-0123456789"
NOW = "2026-12-01T12:00:00Z"


def _iv(value: float | None, n: int, half: float = 0.05) -> dict[str, Any]:
    if value is None:
        return {"value": None, "lower": None, "upper": None, "n": n}
    return {
        "value": value,
        "lower": max(0.0, value - half),
        "upper": min(1.0, value + half),
        "n": n,
    }


def _est(value: float, stderr: float, n: int) -> dict[str, Any]:
    return {"value": value, "stderr": stderr, "n": n}


def _class(recall: float | None, precision: float | None, rate: float, n: int) -> dict[str, Any]:
    return {
        "recall": _iv(recall, n // 3),
        "precision": _iv(precision, n // 4),
        "f1": None,
        "prevalence": _iv(rate * 0.9 if recall is not None else None, n),
        "positive_rate": _iv(rate, n, 0.03),
        "recall_estimated": _est(0.8, 0.02, n),
        "precision_estimated": _est(0.7, 0.03, n),
    }


def _segment(name: str, n: int, recall: float | None, precision: float | None) -> dict[str, Any]:
    bins = [
        {
            "lower": i / 10,
            "upper": (i + 1) / 10,
            "mean_predicted": (i + 0.5) / 10 if i != 7 else None,
            "observed": min(1.0, (i + 0.5) / 10 + 0.04) if i != 7 else None,
            "count": 0 if i == 7 else 10 + i,
        }
        for i in range(10)
    ]
    return {
        "segment": name,
        "labelled": n,
        "predictions": n + 20,
        "accuracy": _iv(0.75, n),
        "classes": {
            "low": _class(0.7, 0.8, 0.6, n),
            "high": _class(recall, precision, 0.4, n),
        },
        "roc_auc": _iv(0.81, n),
        "roc_auc_estimated": _est(0.8, 0.02, n),
        "brier_score": 0.171,
        "calibration_error": 0.043,
        "reliability": bins,
    }


CLINICAL = {
    "model": "diabetes_risk",
    "version": "v-fixture",
    "since": "2026-11-30T12:00:00Z",
    "until": NOW,
    "hours": 24.0,
    "positive_class": "high",
    "threshold": None,
    "classes": ["low", "high"],
    "min_count": 30,
    "baseline": {
        "n": 89,
        "accuracy": _iv(0.72, 89),
        "classes": {
            "low": {"recall": _iv(0.75, 50), "precision": _iv(0.7, 50)},
            "high": {
                "recall": _iv(0.69, 39),
                "precision": _iv(0.66, 40),
                "positive_rate": _iv(0.45, 89),
            },
        },
        "roc_auc": _iv(0.8, 89),
        "brier_score": 0.18,
        "calibration_error": 0.05,
        "reliability": [
            {
                "lower": i / 10,
                "upper": (i + 1) / 10,
                "mean_predicted": (i + 0.5) / 10,
                "observed": (i + 0.5) / 10,
                "count": 9,
            }
            for i in range(10)
        ],
    },
    "segments": [
        _segment("all", 300, 0.712, 0.654),
        _segment("sex=1", 150, 0.733, 0.61),
        _segment("sex=2", 138, 0.695, 0.7),
        _segment("age=0-40", 12, None, None),  # below the minimum count: counts, no values
    ],
}

DRIFT = {
    "drift_threshold": 0.1,
    "models": [
        {
            "model": "diabetes_risk",
            "computed_at": NOW,
            "version": "v-fixture",
            "window_size": 400,
            "decided": True,
            "features": [
                {
                    "feature": "bmi",
                    "scores": {"psi": 0.31, "decision": 0.31},
                    "n": 400,
                    "drifted": True,
                    "decided": True,
                },
                {
                    "feature": "age",
                    "scores": {"psi": 0.02},  # stored before `decision` existed: PSI decided
                    "n": 400,
                    "drifted": False,
                    "decided": True,
                },
                # A category decided on its share change: PSI 0.05 would sit under the line.
                {
                    "feature": "smoker",
                    "scores": {"l1": 0.2, "psi": 0.05, "js": 0.1, "decision": 0.2},
                    "n": 400,
                    "drifted": True,
                    "decided": True,
                },
                # Mostly missing in this window: too few values to decide, a huge noisy score.
                {
                    "feature": "s4",
                    "scores": {"psi": 5.5},
                    "n": 3,
                    "drifted": False,
                    "decided": False,
                },
            ],
        },
        {
            "model": "diagnostic",
            "computed_at": NOW,
            "version": "v-fixture",
            "window_size": 2,
            "decided": False,  # a 2-row window: PSI 7-8 that means nothing
            "features": [
                {
                    "feature": "mean_radius",
                    "scores": {"psi": 7.9},
                    "n": 2,
                    "drifted": False,
                    "decided": False,
                },
            ],
        },
    ],
}


def _percentiles(p50: float, p95: float, p99: float) -> dict[str, float]:
    return {"p50": p50, "p95": p95, "p99": p99, "mean": p50, "max": p99}


PREDICTIONS = {
    "window": {"since": "2026-11-30T12:00:00Z", "until": NOW, "seconds": 86400.0},
    "total": 120,
    "models": [
        {
            "model": "diabetes_risk",
            "count": 120,
            "latency_seconds": _percentiles(4e-05, 9e-05, 0.00012),
            "confidence": {
                "mean": 0.7,
                "p50": 0.7,
                "histogram": {"edges": [i / 20 for i in range(21)], "counts": [6] * 20},
            },
            "class_counts": {"low": 70, "high": 50},
        },
        {
            "model": "diagnostic",
            "count": 0,
            "latency_seconds": {},
            "confidence": {"histogram": {"edges": [i / 20 for i in range(21)], "counts": [0] * 20}},
            "class_counts": {},
        },
    ],
}

SUMMARY = {
    "uptime_seconds": 60.0,
    "requests": {"total": 50, "by_class": {"2xx": 50}, "availability": 1.0},
    "predictions": {"diabetes_risk": 120},
    "predictions_total": 120,
    "feedback": {"correct": 0, "incorrect": 0},
    "errors": {},
    "training_runs": {},
    "database": {
        "records_written": 120,
        "records_pending": 0,
        "records_spilled": 0,
        "operations": {"insert_predictions": 3},
        "mean_seconds": {"insert_predictions": 0.002},
        "errors": {},
    },
    "alerts_firing": 0,
    "request_latency_seconds": {
        "POST /api/v1/models/{name}/predict": _percentiles(0.0031, 0.0072, 0.0095),
        "GET /api/v1/monitoring/health": _percentiles(0.001, 0.002, 0.003),
    },
}

HEALTH = {
    "status": "ok",
    "ready": True,
    "uptime_seconds": 60.0,
    "database": {"status": "ok", "latency_seconds": 0.001},
    "models": ["diabetes_risk", "diagnostic"],
    "records_pending": 0,
    "shutting_down": False,
    "system": {"cpu_percent": 5.0, "memory_ratio": 0.2, "disk_ratio": 0.3},
    "alerts_firing": 0,
}

SYSTEM = {
    "cpu_percent": 5.0,
    "memory": {"used_bytes": 2**30, "total_bytes": 2**33, "ratio": 0.125},
    "load_average": [0.5, 0.4, 0.3],
    "thresholds": {"cpu_usage_high": 80.0, "memory_usage_high": 85.0},
}

ANSWERS = {
    "/health": HEALTH,
    "/performance/system": SYSTEM,
    "/metrics/predictions": PREDICTIONS,
    "/metrics/summary": SUMMARY,
    "/data-quality/overview": DRIFT,
    "/performance/clinical": CLINICAL,
}


def _serve(route: Any) -> None:
    """Answer one request of the page: a static file, a known API answer, or 404."""
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/dashboard":
        path = "/dashboard/static/index.html"
    if path.startswith("/dashboard/static/"):
        file = STATIC / path.removeprefix("/dashboard/static/")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        route.fulfill(status=200, body=file.read_bytes(), content_type=kind)
        return
    answer = ANSWERS.get(path.removeprefix("/api/v1/monitoring"))
    if answer is None:
        route.fulfill(status=404, body='{"detail": "not in this test"}', content_type="text/json")
        return
    route.fulfill(status=200, body=json.dumps(answer), content_type="application/json")


CHART_DATA = """(name) => {
    const chart = Chart.getChart(document.querySelector(`#panel-${name} canvas`));
    return {
        labels: chart.data.labels ?? null,
        datasets: chart.data.datasets.map((d) => ({ label: d.label, data: d.data })),
    };
}"""


def _datasets(page: Any, name: str) -> tuple[list[str] | None, dict[str, list[Any]]]:
    chart = page.evaluate(CHART_DATA, name)
    return chart["labels"], {d["label"]: d["data"] for d in chart["datasets"]}


def _class_values(metric: str) -> list[float | None]:
    return [s["classes"]["high"][metric]["value"] for s in CLINICAL["segments"]]


def test_panels_draw_exactly_what_the_api_answers() -> None:
    require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            errors: list[str] = []
            clinical_asked: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    clinical_asked.append(r.url) if "/performance/clinical" in r.url else None
                ),
            )
            page.route(f"{ORIGIN}/**", _serve)
            page.goto(f"{ORIGIN}/dashboard")
            page.fill("#api-key", KEY)
            page.click("#login button[type=submit]")
            names = ("latency", "drift", *CLINICAL_PANELS)
            ready = " && ".join(
                f"document.querySelector('#panel-{n}').dataset.state === 'ready'" for n in names
            )
            _wait(page, ready, 15)
            assert errors == []

            # Clinical: every segment in order, values and 95 % bounds as answered; the
            # segment below the minimum count keeps its label and count but draws nothing.
            labels, recall = _datasets(page, "clinical-recall")
            assert labels == [
                "all (n=100)",
                "sex=1 (n=50)",
                "sex=2 (n=46)",
                "age=0-40 (n=4 too few)",
            ]
            assert recall["realised (labels)"] == _class_values("recall")
            bounds = [s["classes"]["high"]["recall"] for s in CLINICAL["segments"]]
            assert recall["95% interval"] == [
                None if b["value"] is None else [b["lower"], b["upper"]] for b in bounds
            ]
            assert recall["estimated (no labels)"] == [0.8, 0.8, 0.8, 0.8]
            assert recall["holdout baseline 0.690"] == [0.69] * 4
            _, precision = _datasets(page, "clinical-precision")
            assert precision["realised (labels)"] == _class_values("precision")
            assert precision["holdout baseline 0.660"] == [0.66] * 4
            _, rate = _datasets(page, "clinical-alert-rate")
            assert rate["alert rate (share predicted high)"] == _class_values("positive_rate")
            assert rate["prevalence (labels)"] == _class_values("prevalence")
            assert rate["holdout baseline 0.450"] == [0.45] * 4
            assert page.get_attribute("#panel-clinical-recall", "data-points") == "3"
            _, reliability = _datasets(page, "clinical-reliability")
            observed = reliability["observed (segment all)"]
            assert len(observed) == 9  # the empty bin is not a point
            assert observed[0] == {"x": 0.05, "y": pytest.approx(0.09)}
            summary = page.text_content("#panel-clinical-summary") or ""
            assert "sensitivity 71.2%" in summary
            assert "recall (sensitivity): 0.712 [0.662–0.762], n=100" in summary
            assert "estimated 0.800 ± 0.020 · baseline 0.690" in summary
            assert "specificity (recall of low): 0.700 [0.650–0.750], n=100" in summary
            assert "ROC AUC: 0.810 [0.760–0.860], n=300" in summary
            reliability_text = page.text_content("#panel-clinical-reliability") or ""
            assert "calibration error (ECE): 0.043 · baseline 0.050" in reliability_text
            assert page.input_value("#clinical-model") == "diabetes_risk"
            assert page.input_value("#clinical-class") == "high"

            # Choosing the other class redraws the panels for it.
            page.select_option("#clinical-class", "low")
            _wait(page, "document.querySelector('#panel-clinical-summary').textContent"
                  ".includes('recall of low 70.0%')", 10)  # fmt: skip
            _, recall = _datasets(page, "clinical-recall")
            assert recall["realised (labels)"] == [0.7, 0.7, 0.7, 0.7]

            # Drift: decided windows and decided features only, each colour in the legend.
            labels, drift = _datasets(page, "drift")
            assert labels == ["diabetes_risk/bmi", "diabetes_risk/smoker", "diabetes_risk/age"]
            assert drift == {
                "drift statistic, feature judged drifted": [0.31, 0.2, None],
                "drift statistic, not drifted": [None, None, 0.02],
                "drift limit (0.1)": [0.1, 0.1, 0.1],
            }
            legend = page.evaluate(
                "Chart.getChart(document.querySelector('#panel-drift canvas'))"
                ".options.plugins.legend.display"
            )
            assert legend is not False
            drift_text = page.text_content("#panel-drift") or ""
            assert "diagnostic: window of 2 predictions" in drift_text
            assert "too small to decide" in drift_text
            assert "1 feature(s) with too few values not plotted" in drift_text

            # Latency: end-to-end requests and model compute, each named, in ms.
            labels, latency = _datasets(page, "latency")
            assert labels == [["request", "end-to-end"], ["diabetes_risk", "compute"]]
            assert latency["P50"] == [pytest.approx(3.1), pytest.approx(0.04)]
            assert latency["P99"] == [pytest.approx(9.5), pytest.approx(0.12)]

            # No chart animates, on the first draw or after updates (a second refresh and the
            # class change above went through the update path).
            _wait(page, "Number(document.querySelector('#panel-cpu').dataset.points) >= 2", 15)
            # The clinical answer is costly and slow to change: the second 10 s refresh did
            # not ask again (the first refresh and the class change did).
            assert len(clinical_asked) == 2, clinical_asked
            animated = page.evaluate(
                """() => [...document.querySelectorAll('.panel canvas')]
                    .map((c) => [c.closest('.panel').dataset.panel, Chart.getChart(c)])
                    .filter(([, chart]) => chart && chart.options.animation !== false)
                    .map(([name]) => name)"""
            )
            assert animated == []
            for name in names:
                if name != "clinical-summary":
                    assert _canvases_drawn(page)[name] > 100, name
        finally:
            browser.close()


def test_a_late_answer_for_the_previous_model_is_not_drawn() -> None:
    """The periodic refresh asked for the first model; the user then chose another, whose
    answer came first. The first model's answer, arriving last, must not be drawn."""
    require_binary("chromium")
    from playwright.sync_api import Route, sync_playwright

    other = {**CLINICAL, "model": "diagnostic", "version": "v-other"}
    held: list[Route] = []

    def serve(route: Route) -> None:
        url = route.request.url
        if "/performance/clinical" in url and "model=diabetes_risk" in url:
            held.append(route)  # answered later, by the test
        elif "/performance/clinical" in url:
            route.fulfill(status=200, body=json.dumps(other), content_type="application/json")
        else:
            _serve(route)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/dashboard")
            page.fill("#api-key", KEY)
            page.click("#login button[type=submit]")
            _wait(page, "document.querySelector('#clinical-model').options.length === 2", 15)
            deadline = time.monotonic() + 15
            while not held:  # the first refresh's request for the first model, held
                assert time.monotonic() < deadline, "no request for diabetes_risk"
                page.evaluate("1")  # lets Playwright dispatch the route callback
            page.select_option("#clinical-model", "diagnostic")
            window = "document.querySelector('#clinical-window').textContent"
            _wait(page, f"{window}.startsWith('diagnostic v-other')", 15)
            # The held answer arrives now; the refresh that asked for it then reports its
            # failed sources (the endpoints this test does not answer): it has run to the end.
            held[0].fulfill(status=200, body=json.dumps(CLINICAL), content_type="application/json")
            status = "document.querySelector('#refresh-status').textContent"
            _wait(page, f"{status}.includes('source(s) failed')", 15)
            assert page.evaluate(window).startswith("diagnostic v-other")
            assert page.input_value("#clinical-model") == "diagnostic"
        finally:
            browser.close()


def _multiclass() -> dict[str, Any]:
    """A three-class model: no positive class, no baseline (a bundle from before issue 14)."""
    segment = _segment("all", 90, 0.6, 0.5)
    segment["classes"] = {k: _class(0.6, 0.5, 0.3, 90) for k in ("mild", "moderate", "severe")}
    return {
        **CLINICAL,
        "model": "triage",
        "positive_class": None,
        "classes": ["mild", "moderate", "severe"],
        "baseline": None,
        "segments": [segment],
    }


def test_a_multiclass_model_without_baseline_shows_per_class_recall() -> None:
    require_binary("chromium")
    from playwright.sync_api import Route, sync_playwright

    answer = _multiclass()

    def serve(route: Route) -> None:
        if "/performance/clinical" in route.request.url:
            route.fulfill(status=200, body=json.dumps(answer), content_type="application/json")
        else:
            _serve(route)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/dashboard")
            page.fill("#api-key", KEY)
            page.click("#login button[type=submit]")
            ready = " && ".join(
                f"document.querySelector('#panel-{n}').dataset.state === 'ready'"
                for n in CLINICAL_PANELS
            )
            _wait(page, ready, 15)
            # No positive class: the first class, named as such; no specificity/NPV lines.
            assert page.input_value("#clinical-class") == "mild"
            summary = page.text_content("#panel-clinical-summary") or ""
            assert "recall of mild 60.0%" in summary and "specificity" not in summary
            _, recall = _datasets(page, "clinical-recall")
            assert set(recall) == {"95% interval", "realised (labels)", "estimated (no labels)"}
            title = page.evaluate(
                "Chart.getChart(document.querySelector('#panel-clinical-reliability canvas'))"
                ".options.scales.x.title.text"
            )
            assert title == "confidence (top class)"
            page.select_option("#clinical-class", "severe")
            _wait(page, "document.querySelector('#panel-clinical-summary').textContent"
                  ".includes('recall of severe')", 10)  # fmt: skip
        finally:
            browser.close()
