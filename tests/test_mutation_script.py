"""scripts/mutation.py: its module table matches the tree and its equivalents table parses.

The mutation runs are not part of CI (hours); these checks are, so that a moved module or test
file, or a malformed row of docs/testing.md, shows at once and not in the next run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_every_module_and_test_file_it_names_exists(mutation: ModuleType) -> None:
    assert mutation.stale_paths() == []


def test_the_equivalents_table_is_read_with_a_reason_for_each(mutation: ModuleType) -> None:
    known = mutation.equivalents()
    assert len(known) > 100
    assert all(name.startswith("nexus_ml.") and ".x" in name for name in known)
    assert all(reason for reason in known.values())
    names = {name.split(".x", 1)[0] for name in known}
    sources = {m.source for m in mutation.MODULES.values()}
    # Each listed mutant belongs to a module the script runs (a renamed module's rows would
    # otherwise never match a mutant again).
    for module in names:
        path = "src/" + module.replace(".", "/") + ".py"
        assert any(Path(path).match(s) or path == s for s in sources), module


def test_a_second_pass_runs_only_when_named(mutation: ModuleType) -> None:
    second = [n for n, m in mutation.MODULES.items() if m.named_only]
    assert second == ["alerts-cases"]
    assert mutation.MODULES["alerts-cases"].source == mutation.MODULES["alerts"].source
