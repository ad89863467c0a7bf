"""A TCP proxy on 127.0.0.1 that can be cut and restored: a real outage, seen from the service.

The service's DATABASE_URL points at the proxy; the proxy forwards to PostgreSQL. ``cut()``
closes every forwarded connection (the service's pooled connections break mid-use) and then
treats new ones as ``mode`` says: ``"refuse"`` resets them at once (a server that is down),
``"blackhole"`` accepts and never answers (a network partition: the client's connect timeout
decides). ``"freeze"`` is a partition that also catches the open connections: they stay open
but nothing passes any more, in either direction (what a client sees when packets are dropped
and no TCP timeout is configured). ``restore()`` forwards again. The PostgreSQL server itself
is never touched.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

Mode = Literal["refuse", "blackhole", "freeze"]

_ACCEPT_TICK = 0.1  # how often the accept loop looks at the stop flag
_BUFFER = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), so the peer sees the break at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        # close() alone does not wake a thread blocked in recv() on this socket; shutdown does.
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; ``cut()`` and ``restore()`` from any thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()  # both ends of every forwarded connection
        self._held: list[socket.socket] = []  # blackholed clients
        self._mode: Mode | None = None  # None: forwarding
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self.refused = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept")

    def __enter__(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        """True between ``cut()`` and ``restore()``."""
        return self._mode is not None

    def cut(self, mode: Mode = "refuse") -> None:
        """Break (or, for ``"freeze"``, silence) every connection; stop forwarding new ones."""
        with self._lock:
            self._mode = mode
            if mode == "freeze":
                return
            conns, self._conns = self._conns, set()
        for sock in conns:
            _reset(sock)

    def restore(self) -> None:
        """Forward new connections again (connections cut or frozen earlier stay broken)."""
        with self._lock:
            frozen = self._mode == "freeze"
            self._mode = None
            held, self._held = self._held, []
            if frozen:  # their streams lost data: they can only be broken now
                held += list(self._conns)
                self._conns = set()
        for sock in held:
            _reset(sock)

    def close(self) -> None:
        """Stop accepting, break everything, join the threads (bounded)."""
        self._stop.set()
        self.cut()
        self.restore()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        for t in self._threads:
            t.join(5)

    # -- internals ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], _ACCEPT_TICK)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                mode = self._mode
                if mode in ("blackhole", "freeze"):
                    self._held.append(client)
                    continue
            if mode == "refuse":
                self.refused += 1
                _reset(client)
                continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=3)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if self._mode is not None:  # cut while we were connecting
                _reset(client)
                _reset(upstream)
                return
            self._conns |= {client, upstream}
            self.accepted += 1
        for src, dst in ((client, upstream), (upstream, client)):
            t = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
            t.start()
            self._threads.append(t)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_BUFFER)
                if not data:
                    break
                if self._mode == "freeze":
                    continue  # dropped, as a partition would
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the other too (a half-open proxy would hide the outage).
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
