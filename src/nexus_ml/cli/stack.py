"""``nexus-ml stack up|down|status``: Prometheus, Alertmanager and a webhook receiver on loopback.

Prometheus and Alertmanager are the Debian binaries; the receiver is ``cli/alert_receiver.py``
(unless ``--webhook-url`` names another one). The configs and command lines come from
``render/stack.py``; this module only runs the processes. They are started in their own
session (a Ctrl-C in the terminal that ran ``stack up`` does not kill them), with a pid file
and a log each under the state folder, and ``stack down`` stops exactly those pids (after
checking the pid still runs that program, so a recycled pid is never signalled).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from nexus_ml.cli.console import problem
from nexus_ml.cli.main import app, console
from nexus_ml.cli.render import thresholds_to_render
from nexus_ml.config import Settings
from nexus_ml.render.alertmanager_config import LOCAL_RECEIVER_PORT
from nexus_ml.render.stack import (
    COMPONENTS,
    HOST,
    INSTALL_HINT,
    RECEIVER,
    StackOptions,
    StackPaths,
    binary_for,
    command_for,
    is_component,
    missing_binaries,
    render_stack,
)

stack_app = typer.Typer(
    help="Local Prometheus + Alertmanager (Debian binaries) and an alert receiver on 127.0.0.1.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")

STATE_FILE = "stack.json"
READY_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.2

StateDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder for configs, storage, pid files and logs (default: <data dir>/stack)"
    ),
]


def _state_dir(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    try:
        return (Settings().data_dir / "stack").resolve()
    except ValueError as exc:
        console.print(problem("configuration error:", exc))
        raise typer.Exit(2) from None


# -- processes -----------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _runs(pid: int, component: str) -> bool:
    """True if ``pid`` is alive (not a zombie) and is running ``component``."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            raw = (proc / "cmdline").read_bytes().split(b"\0")
            args = [a.decode(errors="replace") for a in raw if a]
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        # A zombie has an empty cmdline; a recycled pid runs something else.
        return state != "Z" and is_component(args, component)
    try:  # no /proc (not Linux): liveness is the best we can check
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _running_pid(paths: StackPaths, component: str) -> int | None:
    pid = _read_pid(paths.pid_file(component))
    return pid if pid is not None and _runs(pid, component) else None


def _stop(pid: int, component: str, grace: float) -> str:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; how it ended."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _runs(pid, component):
            return "stopped"
        time.sleep(POLL_SECONDS)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _runs(pid, component):
        time.sleep(POLL_SECONDS)
    return "killed after the grace period"


def stop_stack(state_dir: Path, grace: float = STOP_GRACE_SECONDS) -> dict[str, str]:
    """Stop every component ``stack up`` started in ``state_dir``; component -> outcome."""
    paths = StackPaths(state_dir)
    outcome: dict[str, str] = {}
    for component in COMPONENTS:  # in their stop order (render/stack.py)
        pid = _running_pid(paths, component)
        outcome[component] = "not running" if pid is None else _stop(pid, component, grace)
        paths.pid_file(component).unlink(missing_ok=True)
    return outcome


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(component: str, options: StackOptions, paths: StackPaths) -> subprocess.Popen[bytes]:
    binary = shutil.which(binary_for(component))
    assert binary is not None  # noqa: S101 - checked by missing_binaries() before
    if component != RECEIVER:  # the receiver has no storage folder: its file is in the root
        paths.storage(component).mkdir(parents=True, exist_ok=True)
    with paths.log_file(component).open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed binary, arguments built by us
            command_for(component, options, paths, binary),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            start_new_session=True,
        )
    paths.pid_file(component).write_text(f"{proc.pid}\n", encoding="utf-8")
    return proc


def _wait_ready(
    procs: dict[str, subprocess.Popen[bytes]], options: StackOptions, timeout: float
) -> str | None:
    """None when every component answers ``/-/ready``; else the problem."""
    waiting = set(procs)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for component in sorted(waiting):
            code = procs[component].poll()
            if code is not None:
                return f"{component} exited with code {code}"
            if _ready(options.url(component)):
                waiting.discard(component)
        if waiting:
            time.sleep(POLL_SECONDS)
    return f"{', '.join(sorted(waiting))} not ready after {timeout:g}s" if waiting else None


# -- commands ------------------------------------------------------------------


@stack_app.command()
def up(
    state_dir: StateDir = None,
    prometheus_port: Annotated[int, typer.Option(help="Prometheus port.")] = 9090,
    alertmanager_port: Annotated[int, typer.Option(help="Alertmanager port.")] = 9093,
    service_target: Annotated[
        list[str] | None, typer.Option(help="host:port of the service to scrape (repeatable).")
    ] = None,
    scrape_interval: Annotated[str, typer.Option(help="Prometheus scrape interval.")] = "15s",
    evaluation_interval: Annotated[str, typer.Option(help="Rule evaluation interval.")] = "15s",
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Deliver every notification here instead of starting the local receiver "
            "(no mail, no Slack locally)."
        ),
    ] = None,
    receiver_port: Annotated[
        int, typer.Option(help="Port of the local alert receiver.")
    ] = LOCAL_RECEIVER_PORT,
    receiver_keep: Annotated[
        int, typer.Option(min=1, help="Notifications the local receiver keeps.")
    ] = 100,
    fast: Annotated[
        bool, typer.Option(help="Group and send within seconds instead of the paging timings.")
    ] = False,
    metrics_token_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="File holding ML_METRICS_TOKEN, if the service has one.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /-/ready.")] = (
        READY_TIMEOUT_SECONDS
    ),
) -> None:
    """Render the loopback configs, start Prometheus, Alertmanager and the receiver; wait."""
    missing = missing_binaries()
    if missing:
        console.print(problem("not installed:", ", ".join(missing)))
        console.print(f"install them with: {INSTALL_HINT}", soft_wrap=True)
        raise typer.Exit(2)
    options = StackOptions(
        state_dir=_state_dir(state_dir),
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        service_targets=tuple(service_target or ("127.0.0.1:8001",)),
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        webhook_url=webhook_url,
        receiver_port=receiver_port,
        receiver_keep=receiver_keep,
        fast=fast,
        metrics_token_file=metrics_token_file,
    )
    paths = StackPaths(options.state_dir)
    running = [c for c in COMPONENTS if _running_pid(paths, c) is not None]
    if running:
        console.print(problem("already running:", f"{', '.join(running)} — `nexus-ml stack down`"))
        raise typer.Exit(1)
    ports = [options.prometheus_port, options.alertmanager_port]
    ports += [receiver_port] if RECEIVER in options.components else []
    taken = [p for p in ports if _port_taken(p)]
    if taken:
        console.print(problem(f"port(s) in use on {HOST}:", ", ".join(map(str, taken))))
        raise typer.Exit(1)
    try:
        settings = Settings()
    except ValueError as exc:
        console.print(problem("configuration error:", exc))
        raise typer.Exit(2) from None
    # The thresholds the service applies: file, ML_THRESHOLD_*, then the overrides saved
    # through PUT /config/thresholds, so Prometheus alerts on the limits the service shows.
    thresholds = thresholds_to_render(settings, database=True, database_required=False)
    render_stack(options, thresholds)
    _save_state(paths, options)
    procs = {c: _start(c, options, paths) for c in options.components}
    failure = _wait_ready(procs, options, timeout)
    if failure:
        console.print(problem("stack did not start:", failure))
        for component in options.components:
            console.print(f"--- {paths.log_file(component)} (last lines)")
            console.print(_log_tail(paths.log_file(component)))
        stop_stack(paths.root)
        raise typer.Exit(1)
    p, a = options.prometheus_url, options.alertmanager_url
    console.print(f"Prometheus:   {p}   (targets {p}/targets, alerts {p}/alerts)")
    console.print(f"Alertmanager: {a}   (every receiver delivers to {options.delivery_url})")
    if RECEIVER in options.components:
        r = options.receiver_url
        console.print(
            f"receiver:     {r}/   (last alerts: {r}/notifications, "
            f"{paths.notifications}; one line each in {paths.log_file(RECEIVER)})"
        )
    console.print(f"scraping:     {', '.join(options.service_targets)}")
    console.print(f"state, logs:  {paths.root}")


@stack_app.command()
def down(
    state_dir: StateDir = None,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = (
        STOP_GRACE_SECONDS
    ),
) -> None:
    """Stop the Prometheus, Alertmanager and receiver that "nexus-ml stack up" started."""
    for component, outcome in stop_stack(_state_dir(state_dir), grace).items():
        console.print(f"{component}: {outcome}")


@stack_app.command()
def status(state_dir: StateDir = None) -> None:
    """Pid, readiness and URL of each component; exit code 1 unless all are ready."""
    paths = StackPaths(_state_dir(state_dir))
    state = _load_state(paths)
    started = state.get("components")
    all_ready = True
    for component in started if isinstance(started, list) else COMPONENTS[:2]:
        pid = _running_pid(paths, component)
        url = state.get(f"{component}_url")
        ready = pid is not None and isinstance(url, str) and _ready(url)
        all_ready = all_ready and ready
        what = "ready" if ready else ("running, not ready" if pid else "not running")
        console.print(f"{component}: {what}" + (f" (pid {pid}, {url})" if pid else ""))
    if not all_ready:
        raise typer.Exit(1)


def _save_state(paths: StackPaths, options: StackOptions) -> None:
    state = {
        "prometheus_url": options.prometheus_url,
        "alertmanager_url": options.alertmanager_url,
        "service_targets": list(options.service_targets),
        "receiver_url": options.receiver_url if RECEIVER in options.components else None,
        "webhook_url": options.delivery_url,
        "components": list(options.components),
    }
    (paths.root / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def _load_state(paths: StackPaths) -> dict[str, Any]:
    try:
        data = json.loads((paths.root / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
