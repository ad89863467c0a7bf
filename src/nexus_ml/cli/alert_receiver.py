"""The local Alertmanager webhook receiver that ``nexus-ml stack up`` starts on 127.0.0.1.

Alerts become visible without mail or Slack: each alert of each notification is printed as
one JSON line (stdout, i.e. ``receiver.log`` in the stack folder) and the last ``--keep`` are
kept in memory, in ``--file`` (rewritten atomically) and at ``GET /notifications``. Only
bounded labels are kept (alert, severity, model, version, feature, segment, instance, job,
category), never annotations: an annotation is free text and could carry anything.

The standard library's threading HTTP server is enough for a loopback receiver of a few
notifications a minute and adds no dependency; it runs as ``python -m`` in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
MODULE = "nexus_ml.cli.alert_receiver"
KEPT_LABELS = (
    "alertname",
    "severity",
    "model",
    "version",
    "feature",
    "segment",
    "instance",
    "job",
    "category",
)
STATUSES = ("firing", "resolved")
MAX_BODY_BYTES = 1_048_576  # Alertmanager's payloads are a few KiB; refuse anything huge
MAX_VALUE_CHARS = 128
MAX_ALERTS_PER_PAYLOAD = 1000
DEFAULT_KEEP = 100


class BadPayload(ValueError):
    """The body is not an Alertmanager webhook payload."""


def _short(value: object) -> str:
    return str(value)[:MAX_VALUE_CHARS]


def summarise(payload: object) -> list[dict[str, Any]]:
    """One entry per alert of an Alertmanager webhook payload: bounded labels and status."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadPayload("expected an Alertmanager webhook payload with an 'alerts' list")
    alerts = payload["alerts"]
    if len(alerts) > MAX_ALERTS_PER_PAYLOAD:
        raise BadPayload(f"more than {MAX_ALERTS_PER_PAYLOAD} alerts in one payload")
    out = []
    for alert in alerts:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise BadPayload("each alert needs a 'labels' object")
        status = alert.get("status")
        labels = alert["labels"]
        out.append(
            {
                "receiver": _short(payload.get("receiver", "")),
                "status": status if status in STATUSES else "unknown",
                "starts_at": _short(alert.get("startsAt", "")),
                "labels": {k: _short(labels[k]) for k in KEPT_LABELS if k in labels},
            }
        )
    return out


class Inbox:
    """The last ``keep`` alerts, each with a sequence number that never repeats."""

    def __init__(self, keep: int, path: Path | None) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self.path = path
        self.next_seq = 0
        self._lock = threading.Lock()

    def add(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Number, timestamp, keep and persist ``alerts``; return them as stored."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._lock:
            stored = []
            for alert in alerts:
                entry = {"seq": self.next_seq, "received_at": now, **alert}
                self.next_seq += 1
                self.entries.append(entry)
                stored.append(entry)
            if self.path is not None:
                self._persist(self.path)
        return stored

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /notifications`` answers."""
        with self._lock:
            return {"notifications": list(self.entries), "next_seq": self.next_seq}

    def _persist(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        body = {"notifications": list(self.entries), "next_seq": self.next_seq}
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file


def make_server(port: int, inbox: Inbox) -> ThreadingHTTPServer:
    """The receiver bound to 127.0.0.1:``port`` (0: any free port)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/-/ready":
                self._reply(200, {"status": "ready"})
            elif self.path == "/notifications":
                self._reply(200, inbox.snapshot())
            else:
                self._reply(404, {"detail": "GET /notifications or /-/ready"})

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(411, {"detail": "Content-Length required"})
                return
            if int(length) > MAX_BODY_BYTES:
                self.close_connection = True  # the unread body must not be taken for a request
                self._reply(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
                return
            try:
                alerts = summarise(json.loads(self.rfile.read(int(length))))
            except (ValueError, UnicodeDecodeError) as exc:  # BadPayload, JSONDecodeError
                detail = str(exc) if isinstance(exc, BadPayload) else "body is not JSON"
                self._reply(400, {"detail": detail})
                return
            for entry in inbox.add(alerts):
                print(json.dumps(entry, sort_keys=True), flush=True)
            self._reply(200, {"received": len(alerts)})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one JSON line per alert is the log; the access log would only repeat it

    return ThreadingHTTPServer((HOST, port), Handler)


def main(argv: list[str] | None = None) -> None:
    """``python -m nexus_ml.cli.alert_receiver [--port 5001] [--keep 100] [--file F]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    parser.add_argument("--file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    server = make_server(args.port, Inbox(args.keep, args.file))
    print(f"alert receiver listening on http://{HOST}:{args.port}/", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
