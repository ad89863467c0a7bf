"""The README's quickstart, run exactly as the README prints it.

The commands are read from the README's "Quickstart" section, not copied here, so the README
cannot drift from the code: the first block is terminal 1 (`make run`, left running), every
later block runs, in order, in one bash session standing for terminal 2. They run in a scratch
folder holding the project's Makefile and pyproject.toml and a link to its `.venv`, so the
service's data and models land there and the checkout stays untouched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## Quickstart"
BASE = "http://127.0.0.1:8001"
# The first start trains the bundled models: minutes on a loaded 2-core host.
START_SECONDS = 300.0
BLOCKS_SECONDS = 600.0

pytestmark = pytest.mark.slow


def quickstart_blocks(text: str) -> list[str]:
    """The ```bash blocks of the README's quickstart section, in order."""
    start = text.index(SECTION)
    nxt = text.find("\n## ", start + len(SECTION))
    section = text[start : nxt if nxt != -1 else len(text)]
    return [m.group(1) for m in re.finditer(r"```bash\n(.*?)```", section, re.S)]


def test_the_quickstart_section_holds_the_steps_a_newcomer_needs() -> None:
    blocks = quickstart_blocks(README.read_text(encoding="utf-8"))
    assert blocks[0].strip() == "make run"
    later = "\n".join(blocks[1:])
    # Predict, label that same prediction, shift traffic with delayed labels, see drift,
    # see the alert fire: the path the quickstart promises.
    steps = ("/predict", "/predictions/$ID/feedback", "simulate", "--shift", "drift", "firing")
    for step in (*steps, "stack up", "/notifications", "stack down"):
        assert step in later, step


def _port_free(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    except httpx.TransportError:
        return True
    return False


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            if IN_CI:
                pytest.fail(f"{binary} not installed: the quickstart starts the stack")
            pytest.skip(f"{binary} not installed (Debian package): the quickstart starts it")
    venv = ROOT / ".venv"
    if not (venv / ".serve").exists():
        if IN_CI:
            pytest.fail("no .venv/.serve: the Makefile's install did not run")
        pytest.skip("no .venv/.serve here: run `make run` or `make test` once first")
    taken = [p for p in (8001, 9090, 9093, 5001) if not _port_free(p)]
    if taken:
        if IN_CI:
            pytest.fail(f"port(s) {taken} taken: the quickstart uses the README's ports")
        pytest.skip(f"port(s) {taken} taken (a service or stack already running?)")
    for name in ("Makefile", "pyproject.toml"):
        # copy2 keeps the times: make then finds the venv's install stamp newer and reuses it.
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / ".venv").symlink_to(venv)
    return tmp_path


def _clean_env(folder: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: none of the test run's ML_ or Prometheus settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "PROMETHEUS_"))}
    env["HOME"] = str(folder)
    return env


def _wait_ready(server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`make run` exited {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{BASE}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"`make run` not ready within {START_SECONDS:.0f} s:\n{log.read_text()[-3000:]}")


def test_the_readme_quickstart_runs_as_printed(scratch: Path) -> None:
    blocks = quickstart_blocks(README.read_text(encoding="utf-8"))
    env = _clean_env(scratch)
    log = scratch / "make-run.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", blocks[0]],
            cwd=scratch,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(server, log)
        script = "set -euo pipefail\n" + "\n".join(blocks[1:])
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCKS_SECONDS,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        # The feedback was accepted for the prediction just made (its answer names it).
        assert '"prediction_id"' in out
        # `nexus-ml drift` found the shifted features drifted, and the alert fired.
        assert "bmi" in out and "s5" in out
        names = [ln for ln in out.splitlines() if "DataDriftDetected" in ln]
        # Fired in process, then delivered by Alertmanager to the local receiver.
        assert len(names) >= 2, out[-2000:]
        assert "stopped" in done.stderr  # `stack down` stopped what `stack up` started
        # `make run` printed what to do next, and the key the quickstart reads.
        printed = log.read_text()
        assert "next:" in printed and "dashboard" in printed
        assert (scratch / "data" / "api_key").exists()
    finally:
        # A failure between `stack up` and `stack down` must not leave the stack running.
        subprocess.run(
            [str(scratch / ".venv" / "bin" / "nexus-ml"), "stack", "down"],
            cwd=scratch,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
