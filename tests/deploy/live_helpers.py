"""Parts of the live stack test: a cuttable database proxy, the receiver, the service, Prometheus.

Everything binds 127.0.0.1 only; every wait polls against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:  # a process may be (re)starting
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


# -- database proxy --------------------------------------------------------------------------


class TcpProxy:
    """Forward 127.0.0.1:<port> to PostgreSQL on an asyncio loop in its own thread.

    ``cut()`` stops listening (new connections are refused, as by a server that is down)
    and aborts every forwarded connection (pooled connections break mid-use);
    ``restore()`` listens again on the same port. PostgreSQL itself is never touched.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        self._run(self._cut())

    def restore(self) -> None:
        """Accept and forward again."""
        self._run(self._listen())

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, HOST, self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 3)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= pair

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other, so the outage is not hidden by a half-open pipe.
            writer.transport.abort()


# -- webhook -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One alert out of one Alertmanager webhook payload, in arrival order."""

    index: int
    status: str
    labels: dict[str, str]
    receiver: str


class ReceiverClient:
    """Reads what the stack's local alert receiver (``nexus-ml stack up``) has received."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url

    def notifications(self) -> list[Notification]:
        """Every alert the receiver still keeps, oldest first; ``index`` is its sequence number."""
        body = httpx.get(f"{self.url}/notifications", timeout=5).json()
        return [
            Notification(n["seq"], n["status"], n["labels"], n["receiver"])
            for n in body["notifications"]
        ]

    def latest_index(self) -> int:
        """The sequence number of the newest notification (-1 before the first)."""
        found = self.notifications()
        return found[-1].index if found else -1

    def find(
        self,
        alertname: str,
        status: str,
        *,
        after: int = -1,
        labels: Mapping[str, str] | None = None,
    ) -> Notification | None:
        """The first matching notification that arrived after index ``after``."""
        wanted = dict(labels or {})
        for n in self.notifications():
            if (
                n.index > after
                and n.status == status
                and n.labels.get("alertname") == alertname
                and all(n.labels.get(k) == v for k, v in wanted.items())
            ):
                return n
        return None

    def wait(
        self,
        alertname: str,
        status: str,
        *,
        timeout: float,
        after: int = -1,
        while_waiting: Callable[[], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Notification:
        """Poll until ``alertname`` arrives with ``status``; ``while_waiting`` runs each round."""

        def check() -> Notification | None:
            if while_waiting is not None:
                while_waiting()
            return self.find(alertname, status, after=after, labels=labels)

        return poll(check, timeout=timeout, what=f"webhook: {alertname} {status}")


# -- the service -------------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """The service under uvicorn in its own session, stoppable and restartable on one port."""

    env: Mapping[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start (returns at once; see ``wait_ready``)."""
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "nexus_ml.api.asgi:app_from_env"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--host", HOST, "--port", str(self.port)],
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until ``/health/ready`` answers 200 (fails at once if the process died)."""

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200

        poll(ready, timeout=timeout, what="service ready")

    def stop(self, grace: float = 15) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# -- Prometheus --------------------------------------------------------------------------------


class PromClient:
    """Instant queries against the real Prometheus."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=5)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of ``expr`` now, as a list of samples (a scalar becomes one sample)."""
        reply = self.http.get("/api/v1/query", params={"query": expr})
        body = reply.json()
        assert body.get("status") == "success", f"{expr!r}: {body}"
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def alertmanagers(self) -> list[dict[str, Any]]:
        """The Alertmanagers Prometheus has discovered and will notify."""
        body = self.http.get("/api/v1/alertmanagers").json()
        return list(body["data"]["activeAlertmanagers"])

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()
