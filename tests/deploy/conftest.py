"""Deploy-test fixtures: the deploy/ folder, and external tools (skip locally, fail in CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="session")
def deploy_dir() -> Path:
    """The repository's deploy/ folder."""
    return DEPLOY


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """``require_tool(name)``: the binary's path; skips with the reason, or fails when CI=true."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            message = f"{name} is not installed (apt-get install {name})"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{message}; CI must run this test")
            pytest.skip(message)
        return path

    return find
