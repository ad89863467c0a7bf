"""Hostile HTTP clients on raw sockets, and a liveness prober to run beside them.

Used by ``test_edge_limits.py`` and ``benchmarks/bench_edge.py``. Every attack is bounded in
bytes, connections and time; all of them talk to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the server dealt with one hostile request."""

    status: int | None  # None: closed (or reset) without an answer
    seconds: float  # from the first byte sent to the answer or the close
    sent: int  # bytes of the request the server let us send
    body: bytes = b""
    head: bytes = b""  # status line and headers


def _read_response(sock: socket.socket, deadline: float) -> tuple[int | None, bytes, bytes]:
    """Status, head and body of the response on ``sock`` (None when closed without one)."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(CHUNK)
        except TimeoutError:
            break
        except OSError:  # reset: what arrived before it is all there is
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and _complete(head, body):
            break
    if not data.startswith(b"HTTP/"):
        return None, b"", b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def _complete(head: bytes, body: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def send_request(port: int, head: bytes, *, body: bytes = b"", timeout: float = 60.0) -> Outcome:
    """Send ``head`` (+ ``body``) in 64 KiB writes, stopping as soon as the server answers or
    closes; return what it did."""
    payload = head + body
    start = time.monotonic()
    deadline = start + timeout
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        try:
            while sent < len(payload) and time.monotonic() < deadline:
                events = sel.select(timeout=max(0.0, deadline - time.monotonic()))
                if any(mask & selectors.EVENT_READ for _, mask in events):
                    break  # an answer (or a close) before the request was sent in full
                if events:
                    try:
                        sent += sock.send(payload[sent : sent + CHUNK])
                    except OSError:
                        break  # the server closed or reset: read what it said
        finally:
            sel.close()
        status, head, answer = _read_response(sock, deadline)
    return Outcome(status, time.monotonic() - start, sent, answer, head)


def big_header_request(path: str, header_bytes: int) -> bytes:
    """A GET whose single header value is ``header_bytes`` long."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ".encode()
        + b"a" * header_bytes
        + b"\r\n\r\n"
    )


def long_url_request(path: str, url_bytes: int) -> bytes:
    """A GET whose query string makes the request target ``url_bytes`` long."""
    query = b"q=" + b"a" * max(0, url_bytes - len(path) - 3)
    return f"GET {path}?".encode() + query + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def many_headers_request(path: str, count: int) -> bytes:
    """A GET with ``count`` small distinct headers."""
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + lines + b"\r\n"


SLOW_START = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class SlowHeaders:
    """``connections`` clients that each send ``start``, then a header line every ``interval``
    seconds (``None``: nothing more), and never finish their request head (slowloris; with an
    empty ``start`` and no interval, idle connections). ``run(seconds)`` records, per
    connection, how long the server kept it open (None: still open when the attack stopped)
    and what it answered (None: closed without an answer)."""

    port: int
    connections: int
    interval: float | None = 1.0
    start: bytes = SLOW_START
    closed_after: list[float | None] = field(default_factory=list)
    statuses: list[int | None] = field(default_factory=list)

    def run(self, seconds: float) -> SlowHeaders:
        """Attack for at most ``seconds``; stops early once the server closed every connection."""
        socks: dict[socket.socket, int] = {}
        opened = [0.0] * self.connections
        self.closed_after = [None] * self.connections
        self.statuses = [None] * self.connections
        data: list[bytes] = [b""] * self.connections
        sel = selectors.DefaultSelector()
        try:
            for i in range(self.connections):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                if self.start:
                    s.sendall(self.start)
                s.setblocking(False)
                opened[i] = time.monotonic()
                socks[s] = i
                sel.register(s, selectors.EVENT_READ)
            end = time.monotonic() + seconds
            next_send = time.monotonic() + (self.interval or seconds)
            while socks and time.monotonic() < end:
                for key, _ in sel.select(timeout=min(0.2, max(0.0, end - time.monotonic()))):
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    i = socks[s]
                    try:
                        chunk = s.recv(CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        data[i] += chunk
                        continue
                    self._closed(s, i, opened, data, sel, socks)
                if self.interval is not None and time.monotonic() >= next_send:
                    next_send += self.interval
                    for s, i in list(socks.items()):
                        try:
                            s.send(b"X-Slow: a\r\n")
                        except OSError:
                            self._closed(s, i, opened, data, sel, socks)
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()
            sel.close()
        return self

    def _closed(
        self,
        s: socket.socket,
        i: int,
        opened: list[float],
        data: list[bytes],
        sel: selectors.BaseSelector,
        socks: dict[socket.socket, int],
    ) -> None:
        self.closed_after[i] = time.monotonic() - opened[i]
        if data[i].startswith(b"HTTP/"):
            self.statuses[i] = int(data[i].split(b" ", 2)[1])
        sel.unregister(s)
        s.close()
        del socks[s]


@dataclass
class LivenessProbe:
    """A thread that GETs ``/health/live`` on a fresh connection every ``interval`` seconds and
    records each answer's latency (a failure or timeout counts as ``timeout`` seconds)."""

    port: int
    interval: float = 0.1
    timeout: float = 30.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LivenessProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        request = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout) as s:
                    s.sendall(request)
                    status, _, _ = _read_response(s, start + self.timeout)
            except OSError:
                status = None
            elapsed = time.monotonic() - start
            if status != 200:
                self.failures += 1
                elapsed = max(elapsed, self.timeout)
            self.latencies.append(elapsed)
            self._stop.wait(self.interval)

    @property
    def worst(self) -> float:
        """The slowest answer (0 when none was made)."""
        return max(self.latencies, default=0.0)
