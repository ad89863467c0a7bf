"""Each alert's promtool cases against its own rule alone, with default and overridden limits.

The whole rule file's tests run in tests/deploy/test_rules.py (26 s: every group evaluates
every rule). Here one alert's rule is rendered beside the recording rules it reads, and only
its own cases run: a failure names the alert, it takes a fraction of a second, and it reads
nothing of any other definition, so a change to one alert is checked by its own test alone
(the mutation runs pick tests by the functions they reach; docs/testing.md).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers import PROMTOOL_OVERRIDES

from nexus_ml.monitoring.alerts import ALERTS, Alert
from nexus_ml.render.drift_rules import GROUP as DRIFT_GROUP
from nexus_ml.render.drift_rules import drift_recording_rules
from nexus_ml.render.rule_tests import promtool_test
from nexus_ml.render.rules import alert_rule, recording_rules, to_yaml
from nexus_ml.thresholds import RUNBOOK_BASE, Thresholds

pytestmark = pytest.mark.stack

LIMITS = {"defaults": {}, "overrides": PROMTOOL_OVERRIDES}


@pytest.mark.parametrize("limits", list(LIMITS))
@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_an_alerts_cases_pass_against_its_rule_alone(
    alert: Alert, limits: str, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    t = Thresholds(**LIMITS[limits])
    cases = alert.promtool_cases(t)
    # Every alert has a firing case and a quiet one (test_definitions.py checks which).
    assert any(c.fires for c in cases) and not all(c.fires for c in cases)
    rules = {
        "groups": [
            {"name": "nexus-ml-recording", "rules": recording_rules(t)},
            {"name": DRIFT_GROUP, "rules": drift_recording_rules(t)},
            {"name": "nexus-ml-alert", "rules": [alert_rule(alert, t)]},
        ]
    }
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "group_eval_order": [g["name"] for g in rules["groups"]],
        "tests": [promtool_test(alert, case, t, RUNBOOK_BASE) for case in cases],
    }
    (tmp_path / "rules.yml").write_text(to_yaml(rules))
    (tmp_path / "tests.yml").write_text(to_yaml(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
