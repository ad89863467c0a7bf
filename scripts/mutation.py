"""Mutation testing (mutmut) of the code that guards patient records and alerts, per module.

Each module is mutated in a scratch copy of the tree (``.mutation/<module>/``) with only the
tests meant to guard it, so the worktree is never touched and runs never share state. A
surviving mutant listed in the "Equivalent mutants" table of docs/testing.md (with its reason)
is not counted; the score is (killed + timed out) / (all mutants - equivalents). Exits 1 when a
module is below its goal (100 % for the record writer and the journal, 90 % elsewhere).

Run through scripts/mutation.sh (``make mutation``); see docs/testing.md for the durations.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "testing.md"
WORK = ROOT / ".mutation"

STORAGE_TESTS = (
    "tests/storage/test_writer.py",
    "tests/storage/test_writer_contract.py",
    "tests/storage/test_writer_poison.py",
    "tests/storage/test_writer_retries.py",
    "tests/storage/test_writer_replay.py",
    "tests/storage/test_writer_isolate.py",
    "tests/storage/test_journal_durability.py",
    "tests/storage/test_journal_files.py",
    "tests/storage/test_locks_journal.py",
)
# The writer's logic does not depend on the database; its PostgreSQL runs stay in `make test`.
SQLITE_ONLY = ("-k", "not postgres")


@dataclass(frozen=True)
class Module:
    source: str
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()
    goal: float = 0.90
    # Only when named, never in "every module": a second pass over another module's mutants.
    named_only: bool = False


MODULES: dict[str, Module] = {
    "journal": Module("src/nexus_ml/storage/journal.py", STORAGE_TESTS, SQLITE_ONLY, goal=1.0),
    "writer": Module("src/nexus_ml/storage/writer.py", STORAGE_TESTS, SQLITE_ONLY, goal=1.0),
    "replay": Module("src/nexus_ml/storage/replay.py", STORAGE_TESTS, SQLITE_ONLY),
    "repositories": Module(
        "src/nexus_ml/storage/repositories.py",
        (
            "tests/storage/test_repositories.py",
            "tests/storage/test_db.py",
            # The aggregates' and request tallies' reads and writes (issues 16 and 17), and
            # the look-up by id in the partitions around its time (its query is checked).
            "tests/storage/test_aggregates.py",
            "tests/storage/test_request_rollups.py",
            "tests/storage/test_partitions.py",
        ),
    ),
    # test_schema_types.py and test_typed_predictions.py hold the typed checks (issue 13).
    # Validation never reaches the database: the API tests' PostgreSQL runs only doubled the time.
    "schema": Module(
        "src/nexus_ml/ml/schema.py",
        (
            "tests/ml/test_schema.py",
            "tests/ml/test_schema_types.py",
            "tests/api/test_predictions.py",
            "tests/api/test_typed_predictions.py",
        ),
        SQLITE_ONLY,
    ),
    "predictor": Module(
        "src/nexus_ml/ml/predictor.py",
        (
            "tests/ml/test_predictor.py",
            "tests/ml/test_decision_ties.py",
            "tests/ml/test_threshold.py",
            # The overflow guarantees (headroom scaling, NotEvaluable) are tested there.
            "tests/ml/test_overflow.py",
        ),
    ),
    "segments": Module(
        "src/nexus_ml/ml/segments.py",
        ("tests/ml/test_segments.py", "tests/ml/test_metadata.py"),
    ),
    "operating": Module(
        "src/nexus_ml/ml/operating.py",
        ("tests/ml/test_operating.py", "tests/ml/test_threshold.py"),
    ),
    # test_drift_types.py holds the tie-aware bin edges (decile_gaps) and every feature type.
    "drift": Module(
        "src/nexus_ml/stats/drift.py",
        ("tests/stats/test_drift.py", "tests/stats/test_drift_types.py"),
    ),
    "drift_methods": Module(
        "src/nexus_ml/stats/drift_methods.py",
        (
            "tests/stats/test_drift_methods.py",
            "tests/stats/test_drift.py",
            "tests/stats/test_drift_types.py",
        ),
    ),
    "quality": Module("src/nexus_ml/stats/quality.py", ("tests/stats/test_quality.py",)),
    "performance": Module(
        "src/nexus_ml/stats/performance.py", ("tests/stats/test_performance.py",)
    ),
    "clinical": Module(
        "src/nexus_ml/stats/clinical.py",
        ("tests/stats/test_clinical.py", "tests/stats/test_clinical_forms.py"),
    ),
    "cbpe": Module(
        "src/nexus_ml/stats/cbpe.py",
        ("tests/stats/test_clinical.py", "tests/stats/test_clinical_forms.py"),
    ),
    "intervals": Module(
        "src/nexus_ml/stats/intervals.py",
        ("tests/stats/test_clinical.py", "tests/stats/test_clinical_forms.py"),
    ),
    "auth": Module(
        "src/nexus_ml/api/auth.py",
        (
            "tests/api/test_auth_keys.py",
            "tests/api/test_auth_health.py",
            "tests/security/test_scopes.py",
        ),
        SQLITE_ONLY,
    ),
    "middleware": Module(
        "src/nexus_ml/api/middleware.py",
        (
            "tests/api/test_middleware.py",
            # The limits' body timer, refusals through CORS (the one middleware since issue 16).
            "tests/api/test_request_middleware.py",
            "tests/api/test_request_id.py",
            # The per-minute request tally the middleware feeds (issue 17).
            "tests/service/test_request_counts.py",
        ),
        SQLITE_ONLY,
    ),
    "observer": Module(
        "src/nexus_ml/service/observer.py",
        (
            "tests/service/test_observer.py",
            "tests/api/test_predictions.py",
            "tests/api/test_model_quality_api.py",
            # The per-bin input counters the observer resolves once per model (issue 16).
            "tests/api/test_feature_bin_counts.py",
        ),
        SQLITE_ONLY,
    ),
    "availability": Module(
        "src/nexus_ml/service/views/reports.py",
        (
            "tests/api/test_availability.py",
            "tests/api/test_report_windows.py",
            "tests/api/test_monitoring_api.py",
            "tests/api/test_model_quality_api.py",
        ),
        SQLITE_ONLY,
    ),
    "measurements": Module(
        "src/nexus_ml/monitoring/measurements.py",
        (
            "tests/monitoring/test_measurements.py",
            "tests/monitoring/test_bucket_quantile.py",
            # Every promtool case of the alerts read at one instant, replayed through
            # MetricHistory: the in-process numbers must be the rules' numbers.
            "tests/monitoring/alerts/test_cases_in_process.py",
        ),
    ),
    "alerting": Module(
        "src/nexus_ml/monitoring/alerting.py", ("tests/monitoring/test_alerting.py",)
    ),
    # The alert definitions (one module per family since the move out of monitoring/alerts.py):
    # their conditions run in-process (every promtool case is replayed there too), their
    # expressions and cases through promtool, one alert at a time (test_rules_per_alert.py: a
    # mutant of one alert runs its own two promtool tests, about a second). Left out: the four
    # runs of the whole promtool suite (25 s each, every rule in every group: two minutes a
    # surviving mutant), and the check that the checked-in rule files are current, which fails
    # on any change to the rendering, right or wrong.
    "alerts": Module(
        "src/nexus_ml/monitoring/alerts/*.py",
        (
            "tests/monitoring/alerts/test_limits.py",
            "tests/monitoring/alerts/test_definitions.py",
            "tests/monitoring/alerts/test_cases_in_process.py",
            "tests/monitoring/test_alerting.py",
            "tests/deploy/test_rules.py",
            "tests/deploy/test_rules_per_alert.py",
        ),
        ("-k", "not promtool_unit_tests and not promtool_catches and not checked_in_rule_files"),
    ),
    # The cases are test data: the promtool tests the rule file ships with. A mutant that moves
    # a case but leaves it passing weakens a test and changes no behaviour; the check that the
    # checked-in test file is current is what stops it (a reviewed diff of the generated file),
    # beside the definitions' own tests of the cases. Run over the first pass's surviving case
    # mutants: --only <names>.
    "alerts-cases": Module(
        "src/nexus_ml/monitoring/alerts/*.py",
        (
            "tests/monitoring/alerts/test_definitions.py",
            "tests/deploy/test_rules.py",
        ),
        ("-k", "not promtool"),
        named_only=True,
    ),
    "rules": Module("src/nexus_ml/render/rules.py", ("tests/deploy/test_rules.py",)),
    "rule_tests": Module("src/nexus_ml/render/rule_tests.py", ("tests/deploy/test_rules.py",)),
}

KILLED = {"killed", "timeout"}  # a mutant that makes a test hang is detected too
LINE = re.compile(r"^\s*(\S+): (.+)$")


def equivalents() -> dict[str, str]:
    """Mutant name -> reason, from the "Equivalent mutants" table of docs/testing.md."""
    out: dict[str, str] = {}
    if not DOC.exists():
        return out
    on = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            on = line.strip() == "## Equivalent mutants"
            continue
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if on and line.startswith("|") and len(cells) >= 3 and ".x" in cells[1]:
            out[cells[1]] = cells[2]
    return out


def stale_paths() -> list[str]:
    """Sources (globs) that match no file and tests that do not exist: a moved module would
    otherwise be reported as zero mutants, or its tests silently not run."""
    stale = [m.source for m in MODULES.values() if not list(ROOT.glob(m.source))]
    tests = {t for m in MODULES.values() for t in m.tests}
    return stale + sorted(t for t in tests if not (ROOT / t).is_file())


def toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def prepare(name: str, module: Module) -> Path:
    """A fresh scratch copy of src/, tests/, deploy/, docs/ and pyproject.toml for this module."""
    scratch = WORK / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    # deploy/ and docs/ too: the rule tests compare the checked-in rule files and the alert
    # definitions' tests read docs/runbooks.md (without them every run fails before it starts).
    for folder in ("src", "tests", "deploy", "docs"):
        shutil.copytree(ROOT / folder, scratch / folder, ignore=ignore)
    config = (ROOT / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src/"]\n'
        'also_copy = ["deploy/", "docs/"]\n'
        f"only_mutate = {toml_list([module.source])}\n"
        f"pytest_add_cli_args = {toml_list(['-p', 'no:cacheprovider', *module.pytest_args])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(module.tests)}\n"
    )
    (scratch / "pyproject.toml").write_text(config)
    return scratch


def results(scratch: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run(  # noqa: S603 - our own mutmut, fixed arguments
        [mutmut, "results", "--all", "true"], cwd=scratch, capture_output=True, text=True
    ).stdout
    return {m.group(1): m.group(2).strip() for m in map(LINE.match, out.splitlines()) if m}


def show(scratch: Path, mutmut: str, mutant: str) -> str:
    out = subprocess.run(  # noqa: S603 - our own mutmut, fixed arguments
        [mutmut, "show", mutant], cwd=scratch, capture_output=True, text=True
    ).stdout
    return "\n".join(
        f"      {line}"
        for line in out.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def run(
    name: str, module: Module, mutmut: str, jobs: int, limit: float, only: list[str]
) -> dict[str, object]:
    scratch = prepare(name, module)
    started = time.monotonic()
    log = (scratch / "run.log").open("w")
    try:
        subprocess.run(  # noqa: S603 - our own mutmut, fixed arguments
            [mutmut, "run", "--max-children", str(jobs), *only],
            cwd=scratch,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=limit,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    finally:
        log.close()
    minutes = (time.monotonic() - started) / 60
    statuses = results(scratch, mutmut)
    if only:
        # Only the mutants asked for: the others are "not checked" by design, not by a failure.
        statuses = {m: s for m, s in statuses.items() if any(fnmatch.fnmatch(m, p) for p in only)}
    known = equivalents()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    equivalent = [m for m, s in statuses.items() if m in known and s not in KILLED]
    stale = [m for m, s in statuses.items() if m in known and s in KILLED]
    survivors = [m for m, s in statuses.items() if s not in KILLED and m not in known]
    killed = sum(counts.get(s, 0) for s in KILLED)
    counted = len(statuses) - len(equivalent)
    score = killed / counted if counted else 0.0
    print(f"\n== {name} ({module.source}): {minutes:.1f} min{'' if finished else ' (TIMED OUT)'}")
    unchecked = [m for m in survivors if statuses[m] == "not checked"]
    if unchecked:
        # The clean run failed or the time limit struck: run.log says which.
        print(f"  {len(unchecked)} mutants not checked (see {scratch / 'run.log'})")
    for mutant in survivors:
        if statuses[mutant] == "not checked":
            continue
        print(f"  {statuses[mutant]}: {mutant}")
        print(show(scratch, mutmut, mutant))
    for mutant in stale:
        print(
            f"  listed as equivalent but {statuses[mutant]} (remove it from {DOC.name}): {mutant}"
        )
    return {
        "module": name,
        "mutants": len(statuses),
        "killed": counts.get("killed", 0),
        "timeout": counts.get("timeout", 0),
        "survived": counts.get("survived", 0),
        "no tests": counts.get("no tests", 0),
        "other": len(statuses) - killed - counts.get("survived", 0) - counts.get("no tests", 0),
        "equivalent": len(equivalent),
        "score": score,
        "goal": module.goal,
        "minutes": minutes,
        "finished": finished,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules",
        nargs="*",
        help=f"default: all of {', '.join(n for n, m in MODULES.items() if not m.named_only)}",
    )
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("MUTATION_TIMEOUT", "5400")),
        help="seconds per module",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only the mutants whose name matches (repeatable), e.g. "
        "'nexus_ml.ml.schema.x_from_list*'; the score is then of those mutants",
    )
    args = parser.parse_args()
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; known: {', '.join(MODULES)}")
    stale = stale_paths()
    if stale:
        parser.error(f"MODULES names paths that do not exist: {', '.join(stale)}")
    mutmut = str(Path(sys.executable).parent / "mutmut")
    rows = [
        run(name, MODULES[name], mutmut, args.jobs, args.timeout, args.only)
        for name in (args.modules or [n for n, m in MODULES.items() if not m.named_only])
    ]
    header = "| module | mutants | killed | timeout | survived | no tests | other | equivalent "
    header += "| score | goal | minutes |"
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['module']} | {r['mutants']} | {r['killed']} | {r['timeout']} | "
            f"{r['survived']} | {r['no tests']} | {r['other']} | {r['equivalent']} | "
            f"{r['score']:.1%} | {r['goal']:.0%} | {r['minutes']:.1f}"
            f"{'' if r['finished'] else ' (timed out)'} |"
        )
    report = "\n".join(lines)
    print("\n" + report)
    (WORK / "report.md").write_text(report + "\n")
    below = [r["module"] for r in rows if r["score"] < r["goal"] or not r["finished"]]  # type: ignore[operator]
    if below:
        print(f"\nbelow goal or unfinished: {', '.join(map(str, below))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
