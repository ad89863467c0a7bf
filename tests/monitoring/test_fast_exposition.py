"""The fast /metrics encoders produce prometheus_client's output, one process and many."""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from nexus_ml.monitoring.exposition import (
    multiproc_families,
    multiproc_renderer,
    render_metrics,
)
from nexus_ml.monitoring.exposition.merged import MultiprocRenderer
from nexus_ml.monitoring.exposition.mmap_files import CorruptFile
from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.multiproc import prepare_multiproc_dir

TEXT = None
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ACCEPTS = [pytest.param(TEXT, id="text"), pytest.param(OM, id="openmetrics")]
TRICKY = 'say "hi"\\path\nnext line, ünï'  # quote, backslash, newline, non-ASCII


def populate(m: Metrics, seed: int) -> None:
    """Every metric of metrics.py, a few label sets each, values that differ by seed."""
    m.api_requests_total.labels("GET", "/api/v1/models/{name}", "200").inc(seed)
    m.api_requests_total.labels("POST", TRICKY, "500").inc()
    for method in ("GET", "POST"):
        m.api_request_duration_seconds.labels(method, "/x").observe(0.003 * seed)
        m.response_size_bytes.labels(method, "/x").observe(700 * seed)
    for model in ("diag", TRICKY):
        m.model_info.labels(model, str(seed)).set(1)
        m.model_predictions_total.labels(model, "1", "flu").inc(seed)
        m.model_prediction_duration_seconds.labels(model).observe(0.0004 * seed)
        m.model_confidence_score.labels(model).observe(0.51)
        m.model_accuracy.labels(model).set(0.9 + seed / 100)
        m.model_accuracy_samples.labels(model).set(100 * seed)
        m.model_holdout_accuracy.labels(model, "1").set(0.93)
        m.model_estimated_accuracy.labels(model).set(0.88)
        m.model_estimated_accuracy_stderr.labels(model).set(0.01)
        m.model_feedback_total.labels(model, "true").inc(seed)
        m.model_training_duration_seconds.labels(model).observe(42.0)
        m.model_training_samples.labels(model).set(1000)
        m.model_features_count.labels(model).set(12)
        m.model_training_runs_total.labels(model, "success").inc()
        m.model_last_training_timestamp_seconds.labels(model).set(1_700_000_000 + seed)
        m.data_quality_score.labels(model).set(0.99)
        m.data_quality_issues_total.labels(model, "age", "missing").inc(seed)
        m.data_drift_score.labels(model, "age", "psi").set(0.05 * seed)
        m.data_drift_detected.labels(model, "age").set(seed % 2)
        m.data_drift_share.labels(model).set(0.25)
        m.data_drift_window_size.labels(model).set(500)
    m.errors_total.labels("api", "ValueError").inc(seed)
    m.db_operation_duration_seconds.labels("insert").observe(0.002)
    m.db_operation_errors_total.labels("insert", "connection").inc()
    m.db_records_pending.set(seed)
    m.db_records_spilled.set(0)
    m.db_records_written_total.inc(10 * seed)
    m.alerts_active.labels("HighErrorRate", "critical").set(1)
    for field in fields(Metrics):
        if field.name.startswith("system_"):  # unlabelled host gauges
            getattr(m, field.name).set(seed * 1.5)


def families(body: bytes, accept: str | None) -> dict[str, tuple[str, str, list[Any]]]:
    """name -> (type, help, samples sorted), parsed by prometheus_client's own parsers."""
    parse = parse_om if accept == OM else parse_text
    return {
        f.name: (
            f.type,
            f.documentation,
            sorted((s.name, sorted(s.labels.items()), s.value) for s in f.samples),
        )
        for f in parse(body.decode())
    }


def reference_single(registry: CollectorRegistry, accept: str | None) -> bytes:
    encoder, _ = choose_encoder(accept or "")
    return encoder(registry)


def reference_files(path: Path, accept: str | None) -> bytes:
    encoder, _ = choose_encoder(accept or "")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return encoder(registry)


def assert_same(ours: bytes, theirs: bytes, accept: str | None) -> None:
    assert families(ours, accept) == families(theirs, accept)
    assert ours == theirs  # same order too


# --- one process: the registry ----------------------------------------------------------


@pytest.mark.parametrize("accept", ACCEPTS)
def test_single_process_matches_prometheus_client(accept: str | None) -> None:
    m = build_metrics(CollectorRegistry())
    populate(m, 3)
    body, _ = render_metrics(m.registry, accept)
    assert_same(body, reference_single(m.registry, accept), accept)
    names = {name.removesuffix("_total") for name in families(body, accept)}
    for field in fields(Metrics):
        if field.name != "registry":
            metric = getattr(m, field.name)
            assert metric._name in names, field.name  # every metric is covered


@pytest.mark.parametrize("accept", ACCEPTS)
def test_single_process_new_series_between_scrapes(accept: str | None) -> None:
    m = build_metrics(CollectorRegistry())
    populate(m, 1)
    render_metrics(m.registry, accept)
    m.errors_total.labels("database", "OperationalError").inc()
    m.model_predictions_total.labels("diag", "1", "flu").inc(2)
    body, _ = render_metrics(m.registry, accept)
    assert_same(body, reference_single(m.registry, accept), accept)


@pytest.mark.parametrize("accept", ACCEPTS)
def test_label_values_are_escaped(accept: str | None) -> None:
    m = build_metrics(CollectorRegistry())
    m.errors_total.labels(TRICKY, "x").inc()
    body, _ = render_metrics(m.registry, accept)
    assert b'component="say \\"hi\\"\\\\path\\nnext line, \xc3\xbcn\xc3\xaf"' in body
    (sample,) = [s for s in families(body, accept)["ml_errors"][2] if s[0] == "ml_errors_total"]
    assert dict(sample[1])["component"] == TRICKY


def test_exemplars_and_other_escapings_fall_back_to_prometheus_client() -> None:
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", registry=registry)
    counter.inc(exemplar={"trace_id": "abc"})
    body, _ = render_metrics(registry, OM)
    assert b'# {trace_id="abc"} 1.0' in body
    assert body == reference_single(registry, OM)
    dots = "application/openmetrics-text; version=1.0.0; escaping=dots"
    body, content_type = render_metrics(registry, dots)
    assert content_type.endswith("escaping=dots")
    assert body == reference_single(registry, dots)


# --- many processes: files written with prometheus_client's own MmapedDict --------------


def write(path: Path, file: str, *entries: tuple[str, str, dict[str, str], float, float]) -> None:
    """Append (metric, sample, labels, value, timestamp) entries to ``path/file``."""
    db = MmapedDict(str(path / file))
    try:
        for metric, sample, labels, value, stamp in entries:
            key = mmap_key(metric, sample, list(labels), list(labels.values()), f"{metric} help")
            db.write_value(key, value, stamp)
    finally:
        db.close()


GAUGE_MODES = [
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
]


def every_kind(path: Path, pid: int, seed: float) -> None:
    m = {"model": "diag"}
    write(
        path,
        f"counter_{pid}.db",
        ("jobs", "jobs_total", {"kind": TRICKY}, seed, 0.0),
        ("jobs", "jobs_total", {"kind": "b"}, 2 * seed, 0.0),
    )
    write(
        path,
        f"histogram_{pid}.db",
        ("lat", "lat_sum", m, 0.3 * seed, 0.0),
        *[("lat", "lat_bucket", {**m, "le": le}, seed, 0.0) for le in ("0.1", "1.0", "+Inf")],
        ("lat", "lat_bucket", {**m, "le": "10.0"}, 0.0, 0.0),  # out of order on purpose
    )
    write(path, f"summary_{pid}.db", ("sz", "sz_count", m, seed, 0.0), ("sz", "sz_sum", m, 9, 0))
    for i, mode in enumerate(GAUGE_MODES):
        write(
            path,
            f"gauge_{mode}_{pid}.db",
            (f"g_{mode}", f"g_{mode}", m, seed * (i + 1), 1000.0 + seed),
            (f"g_{mode}", f"g_{mode}", {"model": "never"}, 7.0, 0.0),  # created, never set
        )


def live_pids() -> tuple[int, int]:
    return os.getpid(), os.getppid()  # running, so mark_dead_workers keeps their files


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("accept", ACCEPTS)
def test_every_kind_and_gauge_mode_matches_the_collector(
    tmp_path: Path, accept: str | None
) -> None:
    for seed, pid in enumerate(live_pids(), start=1):
        every_kind(tmp_path, pid, float(seed))
    body, _ = render_metrics(CollectorRegistry(), accept, tmp_path)
    assert_same(body, reference_files(tmp_path, accept), accept)
    assert b'g_mostrecent{model="never"}' not in body  # never written: no sample, as upstream
    assert b'g_all{model="never",pid=' in body


@pytest.mark.parametrize("accept", ACCEPTS)
def test_new_series_and_files_between_scrapes(tmp_path: Path, accept: str | None) -> None:
    a, b = live_pids()
    every_kind(tmp_path, a, 1.0)
    renderer = MultiprocRenderer(tmp_path)
    fmt = "openmetrics" if accept == OM else "text"
    renderer.render(fmt)
    write(tmp_path, f"counter_{a}.db", ("jobs", "jobs_total", {"kind": "new"}, 5.0, 0.0))
    write(tmp_path, f"gauge_max_{a}.db", ("g_max", "g_max", {"model": "new"}, 3.0, 1.0))
    assert_same(renderer.render(fmt), reference_files(tmp_path, accept), accept)
    every_kind(tmp_path, b, 2.0)  # a second worker appears
    assert_same(renderer.render(fmt), reference_files(tmp_path, accept), accept)
    write(tmp_path, f"counter_{b}.db", ("jobs", "jobs_total", {"kind": "b"}, 40.0, 0.0))
    assert_same(renderer.render(fmt), reference_files(tmp_path, accept), accept)  # values only


def test_dead_workers_live_gauges_vanish(tmp_path: Path) -> None:
    alive, dead = os.getpid(), dead_pid()
    every_kind(tmp_path, alive, 1.0)
    every_kind(tmp_path, dead, 2.0)
    before, _ = render_metrics(CollectorRegistry(), None, tmp_path)  # marks `dead` dead
    assert not list(tmp_path.glob(f"gauge_live*_{dead}.db"))
    assert f'g_liveall{{model="diag",pid="{dead}"}}'.encode() not in before
    assert f'g_all{{model="diag",pid="{dead}"}}'.encode() in before  # non-live files stay
    assert_same(before, reference_files(tmp_path, None), None)
    # Files planned by one scrape and gone at the next, nothing else changed.
    later = dead_pid()
    every_kind(tmp_path, later, 3.0)
    planned = multiproc_renderer(tmp_path).render("text")  # no mark_dead_workers here
    assert f'g_liveall{{model="diag",pid="{later}"}}'.encode() in planned
    body, _ = render_metrics(CollectorRegistry(), None, tmp_path)  # same renderer, marks dead
    assert f'g_liveall{{model="diag",pid="{later}"}}'.encode() not in body
    assert_same(body, reference_files(tmp_path, None), None)


def test_file_recreated_under_the_same_name(tmp_path: Path) -> None:
    pid = os.getpid()
    write(tmp_path, f"gauge_livesum_{pid}.db", ("old", "old", {"a": "1"}, 1.0, 1.0))
    renderer = MultiprocRenderer(tmp_path)
    assert b'old{a="1"} 1.0' in renderer.render("text")
    # Same size (a pid reused by a worker that wrote the same amount), then larger.
    for labels in ({"b": "2"}, {"b": "2", "c": "33"}):
        (tmp_path / f"gauge_livesum_{pid}.db").unlink()
        write(tmp_path, f"gauge_livesum_{pid}.db", ("new", "new", labels, 2.0, 1.0))
        body = renderer.render("text")
        assert b"old" not in body
        assert b'new{b="2"' in body
        assert body == reference_files(tmp_path, None)


def test_recovers_after_a_corrupt_file(tmp_path: Path) -> None:
    pid = os.getpid()
    write(tmp_path, f"counter_{pid}.db", ("jobs", "jobs_total", {"kind": "a"}, 1.0, 0.0))
    renderer = MultiprocRenderer(tmp_path)
    renderer.render("text")
    write(tmp_path, f"counter_{pid}.db", ("jobs", "jobs_total", {"kind": "new"}, 2.0, 0.0))
    bad = tmp_path / "histogram_1.db"
    bad.write_bytes(struct.pack("i", 10_000) + bytes(60))  # `used` past the end
    with pytest.raises(CorruptFile):
        renderer.render("text")
    bad.unlink()
    assert renderer.render("text") == reference_files(tmp_path, None)


def test_a_metric_with_two_gauge_modes_falls_back(tmp_path: Path) -> None:
    a, b = live_pids()
    write(tmp_path, f"gauge_max_{a}.db", ("g", "g", {}, 1.0, 1.0))
    write(tmp_path, f"gauge_min_{b}.db", ("g", "g", {}, 2.0, 1.0))
    for accept in (TEXT, OM):
        body, _ = render_metrics(CollectorRegistry(), accept, tmp_path)
        assert body == reference_files(tmp_path, accept)


# --- versions no live worker serves are left out -------------------------------------------

INFO, HOLDOUT = "ml_model_info", "ml_model_holdout_accuracy"


def version_of(model: str, version: str) -> dict[str, str]:
    return {"model": model, "version": version}


def served_reference(path: Path, accept: str | None) -> bytes:
    """prometheus_client's merge and encoder, with unserved versions dropped."""

    class Families:
        def collect(self) -> list[Any]:
            return multiproc_families(path)

    registry = CollectorRegistry()
    registry.register(Families())  # type: ignore[arg-type]
    encoder, _ = choose_encoder(accept or "")
    return encoder(registry)


def series(body: bytes, accept: str | None, name: str) -> list[tuple[str, str, float]]:
    samples = families(body, accept).get(name, ("", "", []))[2]
    return sorted((dict(lb)["model"], dict(lb)["version"], v) for _, lb, v in samples)


@pytest.mark.parametrize("accept", ACCEPTS)
def test_versions_no_live_worker_serves_are_left_out(tmp_path: Path, accept: str | None) -> None:
    a, b = live_pids()
    dead = dead_pid()
    # Worker a swapped diag v1 -> v2; worker b still serves v1 (its watcher is behind); a dead
    # worker served v0, and its holdout gauge (mostrecent: not a live file) outlived it.
    write(
        tmp_path,
        f"gauge_livemax_{a}.db",
        (INFO, INFO, version_of("diag", "v1"), 0.0, 0.0),
        (INFO, INFO, version_of("diag", "v2"), 1.0, 0.0),
        (INFO, INFO, version_of("other", "o1"), 1.0, 0.0),
    )
    write(
        tmp_path,
        f"gauge_mostrecent_{a}.db",
        (HOLDOUT, HOLDOUT, version_of("diag", "v1"), 0.90, 1.0),
        (HOLDOUT, HOLDOUT, version_of("diag", "v2"), 0.95, 2.0),
        (HOLDOUT, HOLDOUT, version_of("other", "o1"), 0.80, 1.0),
        (HOLDOUT, HOLDOUT, version_of("diag", "v0"), 0.85, 0.5),
    )
    write(tmp_path, f"gauge_livemax_{b}.db", (INFO, INFO, version_of("diag", "v1"), 1.0, 0.0))
    write(tmp_path, f"gauge_livemax_{dead}.db", (INFO, INFO, version_of("diag", "v0"), 1.0, 0.0))
    write(tmp_path, f"counter_{a}.db", ("jobs", "jobs_total", {"kind": "a"}, 3.0, 0.0))
    every_kind(tmp_path, a, 1.0)  # unrelated metrics are not touched

    body, _ = render_metrics(CollectorRegistry(), accept, tmp_path)
    assert body == served_reference(tmp_path, accept)
    assert series(body, accept, INFO) == [
        ("diag", "v1", 1.0),
        ("diag", "v2", 1.0),
        ("other", "o1", 1.0),
    ]
    assert series(body, accept, HOLDOUT) == [
        ("diag", "v1", 0.90),
        ("diag", "v2", 0.95),
        ("other", "o1", 0.80),
    ]
    assert b"jobs_total" in body and b'g_all{model="diag",pid=' in body

    # Worker b catches up: v1 is served nowhere, so its series go, in both encoders.
    write(
        tmp_path,
        f"gauge_livemax_{b}.db",
        (INFO, INFO, version_of("diag", "v1"), 0.0, 0.0),
        (INFO, INFO, version_of("diag", "v2"), 1.0, 0.0),
    )
    body, _ = render_metrics(CollectorRegistry(), accept, tmp_path)
    assert body == served_reference(tmp_path, accept)
    assert series(body, accept, INFO) == [("diag", "v2", 1.0), ("other", "o1", 1.0)]
    assert series(body, accept, HOLDOUT) == [("diag", "v2", 0.95), ("other", "o1", 0.80)]
    assert b"# HELP ml_model_info" in body  # the family stays, with its served series


def test_a_renderer_without_serving_gauge_keeps_every_series(tmp_path: Path) -> None:
    pid = os.getpid()
    write(tmp_path, f"gauge_livemax_{pid}.db", (INFO, INFO, version_of("diag", "v1"), 0.0, 0.0))
    assert MultiprocRenderer(tmp_path).render("text") == reference_files(tmp_path, None)


def test_renderers_are_shared_per_directory(tmp_path: Path) -> None:
    assert multiproc_renderer(tmp_path) is multiproc_renderer(str(tmp_path))


# --- many processes: real workers -------------------------------------------------------


def _worker(seed: int, ready: Any, more: Any, done: Any) -> None:
    """PROMETHEUS_MULTIPROC_DIR was set before this interpreter started."""
    m = build_metrics(CollectorRegistry())
    populate(m, seed)
    ready.set()
    if more.wait(60):  # the test asks for a new series
        m.errors_total.labels("worker", f"Error{seed}").inc()
        m.model_predictions_total.labels("diag", "1", "flu").inc()
        done.set()
    time.sleep(120)  # stay alive until terminated or killed


@pytest.mark.slow
@pytest.mark.parametrize("accept", ACCEPTS)
def test_real_workers_match_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "prom")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(mp_dir))  # inherited by spawned children
    ctx = mp.get_context("spawn")
    workers: list[tuple[Any, Any, Any]] = []
    try:
        for seed in (1, 2, 3):  # one after the other, so mostrecent writes are ordered
            ready, more, done = ctx.Event(), ctx.Event(), ctx.Event()
            proc = ctx.Process(target=_worker, args=(seed, ready, more, done), daemon=True)
            proc.start()
            assert ready.wait(60), "worker did not start"
            workers.append((proc, more, done))
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")

        body, _ = render_metrics(CollectorRegistry(), accept, mp_dir)
        assert_same(body, reference_files(mp_dir, accept), accept)
        assert families(body, accept)["ml_db_records_pending"][2][0][2] == 6  # livesum 1+2+3

        _, more, done = workers[1]
        more.set()
        assert done.wait(60)
        body, _ = render_metrics(CollectorRegistry(), accept, mp_dir)
        assert b'error_type="Error2"' in body
        assert_same(body, reference_files(mp_dir, accept), accept)

        victim = workers[2][0]
        victim.kill()  # SIGKILL, like an OOM kill
        victim.join(30)
        body, _ = render_metrics(CollectorRegistry(), accept, mp_dir)
        assert f'pid="{victim.pid}"'.encode() not in body
        assert families(body, accept)["ml_db_records_pending"][2][0][2] == 3
        assert_same(body, reference_files(mp_dir, accept), accept)
    finally:
        for proc, _, _ in workers:
            proc.terminate()
            proc.join(30)


BINS, SHARE = "ml_feature_bin", "ml_feature_reference_share"


@pytest.mark.parametrize("accept", ACCEPTS)
def test_bin_counters_of_an_unserved_version_are_left_out(
    tmp_path: Path, accept: str | None
) -> None:
    # Worker a swapped v1 -> v2: v1's bin counters (files cannot forget them) and its
    # reference shares leave /metrics with it; v2's and every other counter stay.
    a, b = live_pids()
    write(
        tmp_path,
        f"gauge_livemax_{a}.db",
        (INFO, INFO, version_of("diag", "v1"), 0.0, 0.0),
        (INFO, INFO, version_of("diag", "v2"), 1.0, 0.0),
    )
    bin_labels = {"feature": "age", "bin": "0"}
    write(
        tmp_path,
        f"counter_{a}.db",
        (BINS, f"{BINS}_total", {**version_of("diag", "v1"), **bin_labels}, 7.0, 0.0),
        (BINS, f"{BINS}_total", {**version_of("diag", "v2"), **bin_labels}, 3.0, 0.0),
        ("jobs", "jobs_total", version_of("diag", "v1"), 2.0, 0.0),
    )
    write(
        tmp_path,
        f"counter_{b}.db",
        (BINS, f"{BINS}_total", {**version_of("diag", "v2"), **bin_labels}, 4.0, 0.0),
    )
    write(
        tmp_path,
        f"gauge_mostrecent_{a}.db",
        (SHARE, SHARE, {**version_of("diag", "v1"), **bin_labels}, 0.1, 1.0),
        (SHARE, SHARE, {**version_of("diag", "v2"), **bin_labels}, 0.2, 1.0),
    )
    body, _ = render_metrics(CollectorRegistry(), accept, tmp_path)
    assert body == served_reference(tmp_path, accept)
    assert series(body, accept, BINS) == [("diag", "v2", 7.0)]  # both workers added
    assert series(body, accept, SHARE) == [("diag", "v2", 0.2)]
    assert series(body, accept, "jobs") == [("diag", "v1", 2.0)]  # not a per-version metric
