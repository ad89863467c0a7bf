"""Clinical gauges across worker processes: a later worker's NaN withdraws an earlier value."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

EXPORT = """
import sys
from prometheus_client import CollectorRegistry
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.clinical_gauges import export
value = None if sys.argv[1] == "none" else float(sys.argv[1])
sample = ("model_recall", ("diag", "pos", "all"))
export(build_metrics(CollectorRegistry()), {sample: value}, known={sample})
"""


def worker_exports(multiproc_dir: Path, value: str) -> None:
    """One short-lived worker process exports the recall sample (``none``: it has no value)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    subprocess.run([sys.executable, "-c", EXPORT, value], env=env, check=True, timeout=60)


def recall(multiproc_dir: Path) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))
    return registry.get_sample_value(
        "ml_model_recall", {"model": "diag", "class": "pos", "segment": "all"}
    )


def test_the_newest_worker_wins_and_its_nan_withdraws_the_value(tmp_path: Path) -> None:
    worker_exports(tmp_path, "0.8")
    assert recall(tmp_path) == 0.8
    worker_exports(tmp_path, "none")  # another worker: below the minimum count now
    value = recall(tmp_path)
    assert value is not None and math.isnan(value)
    worker_exports(tmp_path, "0.7")  # a third worker restores a stored result at start
    assert recall(tmp_path) == 0.7
