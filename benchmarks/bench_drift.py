"""Drift scoring: ours vs plain scipy, Evidently and NannyML — time, peak memory, agreement.

Reference 100,000 x 30 and 1,000,000 x 30 standard normal features; one window of 20,000 rows
in which five features are shifted (f0 +0.5 sd, f1 +1 sd, f2 x1.5 sd, f3 x0.5 sd, f4 +0.75 sd).
Every measurement runs in a fresh subprocess; peak memory is the growth of the process's
maximum RSS over its value once the data (and for peers, the DataFrames) exist.

The peers run in a separate virtualenv so they never touch the service's dependencies::

    python -m venv .venv-bench && \
        .venv-bench/bin/pip install -e . -r benchmarks/requirements-peers.txt
    .venv/bin/python benchmarks/bench_drift.py            # peers found in .venv-bench
    .venv/bin/python benchmarks/bench_drift.py --quick    # 100k reference only

Targets: with the profile fitted, scoring one 20,000-row window over 30 features with every
method < 50 ms at either reference size; building the profile on 1,000,000 x 30 < 2 s and
< 500 MB extra.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
D, WINDOW = 30, 20_000
NAMES = [f"f{i}" for i in range(D)]
SHIFTED = ["f0", "f1", "f2", "f3", "f4"]


def make_data(n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded reference and window; the window shifts five features."""
    ref = np.random.default_rng(0).normal(size=(n_ref, D))
    win = np.random.default_rng(1).normal(size=(WINDOW, D))
    win[:, 0] += 0.5
    win[:, 1] += 1.0
    win[:, 2] *= 1.5
    win[:, 3] *= 0.5
    win[:, 4] += 0.75
    return ref, win


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn: Any, repeat: int = 5) -> tuple[float, Any]:
    """Minimum wall time of ``repeat`` calls (the least disturbed by other load) and a result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


# --------------------------------------------------------------------------- workers


def worker_ours(n_ref: int) -> dict[str, Any]:
    from nexus_ml.ml.profile import build_profile
    from nexus_ml.stats.drift import DriftDetector

    ref, win = make_data(n_ref)
    base = rss_mb()
    t = time.perf_counter()
    profile = build_profile(ref, NAMES)
    fit_s = time.perf_counter() - t
    fit_mb = rss_mb() - base
    det = DriftDetector.from_profile(profile)
    score_s, report = best_of(lambda: det.score(win, NAMES), repeat=7)
    feats = report.features
    return {
        "fit_s": fit_s,
        "score_s": score_s,
        "peak_mb": max(fit_mb, rss_mb() - base),
        "ks": [feats[f].scores["ks"] for f in NAMES],
        "wasserstein": [feats[f].scores["wasserstein"] for f in NAMES],
        "psi": [feats[f].scores["psi"] for f in NAMES],
        "js": [feats[f].scores["js"] for f in NAMES],
        "flagged": report.drifted_features,
        "profile_kb": len(json.dumps(profile)) / 1024,
    }


def worker_ours_exact(n_ref: int) -> dict[str, Any]:
    from nexus_ml.stats.drift import DriftDetector

    ref, win = make_data(n_ref)
    base = rss_mb()
    t = time.perf_counter()
    det = DriftDetector().fit(ref, NAMES)
    fit_s = time.perf_counter() - t
    score_s, report = best_of(lambda: det.score(win, NAMES), repeat=2)
    feats = report.features
    return {
        "fit_s": fit_s,
        "score_s": score_s,
        "peak_mb": rss_mb() - base,
        "ks": [feats[f].scores["ks"] for f in NAMES],
        "wasserstein": [feats[f].scores["wasserstein"] for f in NAMES],
        "flagged": report.drifted_features,
    }


def worker_scipy(n_ref: int) -> dict[str, Any]:
    from scipy import stats

    ref, win = make_data(n_ref)
    base = rss_mb()

    def run() -> list[Any]:
        return [stats.ks_2samp(ref[:, j], win[:, j]) for j in range(D)]

    score_s, res = best_of(run, repeat=2)
    w_s, wass = best_of(
        lambda: [
            stats.wasserstein_distance(ref[:, j], win[:, j]) / ref[:, j].std() for j in range(D)
        ],
        repeat=1,
    )
    # Bonferroni over 30 features at 5%: the classic "any significant KS test" rule.
    flagged = [NAMES[j] for j, r in enumerate(res) if r.pvalue < 0.05 / D]
    return {
        "fit_s": 0.0,
        "score_s": score_s,
        "peak_mb": rss_mb() - base,
        "ks": [float(r.statistic) for r in res],
        "wasserstein": [float(w) for w in wass],
        "wasserstein_s": w_s,
        "flagged": flagged,
    }


def worker_evidently(n_ref: int) -> dict[str, Any]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, win = make_data(n_ref)
    ref_df, win_df = pd.DataFrame(ref, columns=NAMES), pd.DataFrame(win, columns=NAMES)
    base = rss_mb()
    # Default preset: for > 1000 rows, normed Wasserstein (W1 / reference std), threshold 0.1.
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=win_df, reference_data=ref_df)
    score_s = time.perf_counter() - t
    values: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        name = m.get("metric_name", "")
        if name.startswith("ValueDrift(") and "column=" in name:
            col = name.split("column=")[1].split(",")[0].rstrip(")")
            values[col] = float(m["value"])
    return {
        "fit_s": 0.0,
        "score_s": score_s,
        "peak_mb": rss_mb() - base,
        "wasserstein": [values.get(f, float("nan")) for f in NAMES],
        "flagged": [f for f in NAMES if values.get(f, 0.0) >= 0.1],
    }


def worker_nannyml(n_ref: int) -> dict[str, Any]:
    import nannyml as nml
    import pandas as pd

    ref, win = make_data(n_ref)
    ref_df, win_df = pd.DataFrame(ref, columns=NAMES), pd.DataFrame(win, columns=NAMES)
    base = rss_mb()
    calc = nml.UnivariateDriftCalculator(
        column_names=NAMES,
        continuous_methods=["kolmogorov_smirnov", "jensen_shannon", "wasserstein"],
        chunk_size=WINDOW,
    )
    t = time.perf_counter()
    calc.fit(ref_df)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    result = calc.calculate(win_df)
    score_s = time.perf_counter() - t
    df = result.filter(period="analysis").to_df()

    def col(feature: str, method: str, field: str) -> Any:
        return df[(feature, method, field)].iloc[-1]

    std = ref.std(axis=0)
    return {
        "fit_s": fit_s,
        "score_s": score_s,
        "peak_mb": rss_mb() - base,
        "ks": [float(col(f, "kolmogorov_smirnov", "value")) for f in NAMES],
        "js": [float(col(f, "jensen_shannon", "value")) for f in NAMES],
        # NannyML reports raw W1; divide by the reference std to compare with ours.
        "wasserstein": [
            float(col(f, "wasserstein", "value")) / std[j] for j, f in enumerate(NAMES)
        ],
        "flagged": [f for f in NAMES if bool(col(f, "jensen_shannon", "alert"))],
    }


WORKERS = {
    "ours": worker_ours,
    "ours_exact": worker_ours_exact,
    "scipy": worker_scipy,
    "evidently": worker_evidently,
    "nannyml": worker_nannyml,
}
PEERS = {"evidently", "nannyml"}


# --------------------------------------------------------------------------- driver


def run_worker(tool: str, n_ref: int) -> dict[str, Any]:
    """Run one measurement in a fresh process (peers with the bench venv's interpreter)."""
    python = str(PEER_PYTHON) if tool in PEERS else sys.executable
    if tool in PEERS and not PEER_PYTHON.exists():
        return {"error": f"{PEER_PYTHON} missing: create the bench venv (see module docstring)"}
    proc = subprocess.run(
        [python, __file__, "--worker", tool, "--n-ref", str(n_ref)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def table(results: dict[tuple[str, int], dict[str, Any]]) -> str:
    """Markdown table, one row per tool and reference size."""
    lines = [
        "| tool | reference | fit (s) | score 20k×30 (ms) | peak extra (MB) "
        "| max abs KS − scipy | max abs W/σ − scipy | flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (tool, n_ref), r in results.items():
        if "error" in r:
            lines.append(f"| {tool} | {n_ref:,} | error: {r['error'][:90]} | | | | | |")
            continue
        truth = results.get(("scipy", n_ref), {})

        def diff(key: str, r: dict[str, Any] = r, truth: dict[str, Any] = truth) -> float | None:
            if key not in r or key not in truth:
                return None
            return float(np.nanmax(np.abs(np.subtract(r[key], truth[key]))))

        flagged = r.get("flagged", [])
        verdict = "the 5 shifted" if sorted(flagged) == SHIFTED else ", ".join(flagged) or "none"
        lines.append(
            f"| {tool} | {n_ref:,} | {fmt(r['fit_s'], '.2f')} | {fmt(r['score_s'] * 1e3, '.1f')} "
            f"| {fmt(r['peak_mb'], '.0f')} | {fmt(diff('ks'), '.1e')} "
            f"| {fmt(diff('wasserstein'), '.1e')} | {verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--n-ref", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100k reference only")
    parser.add_argument("--tools", default=",".join(WORKERS))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.n_ref)))
        return
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for n_ref in sizes:
        for tool in args.tools.split(","):
            results[(tool, n_ref)] = run_worker(tool, n_ref)
            print(f"done {tool} {n_ref:,}", file=sys.stderr)
    print(table(results))


if __name__ == "__main__":
    main()
