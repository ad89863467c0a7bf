"""RequestMiddleware's limits, driven directly: the body deadline, refusals through CORS.

The middleware replaced three (request id, metrics, limits; issue 16). What its single body
timer must keep from ``asyncio.timeout_at`` around every ``receive``: a wait in ``receive`` past
the deadline becomes a 408; a deadline passed between two reads refuses the next one; after the
body, ``receive`` has no deadline; a cancellation that is not ours passes through untouched; and
the timer never outlives the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware

from nexus_ml.api.limits import RefusalApp, RequestLimits
from nexus_ml.api.middleware import UNMATCHED, RequestMiddleware
from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.request_tally import RequestTally

DEADLINE = 0.05  # seconds: every wait below is bounded by WAIT
WAIT = 5.0
ORIGIN = "https://ward.example"


@pytest.fixture
def metrics() -> Metrics:
    return build_metrics(CollectorRegistry())


def limits(**overrides: Any) -> RequestLimits:
    values: dict[str, Any] = {
        "max_url_bytes": 100,
        "max_header_bytes": 4096,
        "max_header_count": 20,
        "header_timeout": 1.0,
        "max_body_bytes": 1000,
        "body_timeout": DEADLINE,
    }
    return RequestLimits(**{**values, **overrides})


def scope(path: str = "/x", method: str = "POST", headers: Any = ()) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [*headers]}


async def answer(send: Any, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class Client:
    """The client side of one request: body chunks handed out, then a wait for the test."""

    def __init__(self, *chunks: bytes, more: bool = False) -> None:
        """``more``: the last chunk announces more body, which never comes."""
        self.chunks = list(chunks)
        self.more = more
        self.after = asyncio.Event()  # set to let the client disconnect
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.chunks:
            body = self.chunks.pop(0)
            return {
                "type": "http.request",
                "body": body,
                "more_body": bool(self.chunks) or self.more,
            }
        await self.after.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def body(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if "body" in m))


def run(middleware: Any, client: Client, request: dict[str, Any] | None = None) -> None:
    """Serve one request; it must end by itself within WAIT (``serve``).

    Not inside ``asyncio.timeout``: a guard that cancels the request would itself be taken
    for the deadline by a broken timer (a 408 after WAIT, not after DEADLINE), and pass.
    """

    asyncio.run(serve(middleware, request or scope(), client.receive, client.send))


async def serve(middleware: Any, request: dict[str, Any], receive: Any, send: Any) -> None:
    task = asyncio.create_task(middleware(request, receive, send))
    done, _ = await asyncio.wait({task}, timeout=WAIT)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pytest.fail(f"the request was still being served after {WAIT} s")
    task.result()


def total(m: Metrics, status: str, method: str = "POST") -> float:
    labels = {"method": method, "endpoint": UNMATCHED, "status": status}
    return m.registry.get_sample_value("ml_api_requests_total", labels) or 0.0


def series_of(m: Metrics, name: str) -> list[dict[str, str]]:
    return [s.labels for f in m.registry.collect() for s in f.samples if s.name == name]


def test_a_body_that_stops_coming_is_refused_408_when_the_deadline_passes(metrics: Metrics) -> None:
    async def reads_all(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await answer(send)

    client = Client(b"first part", more=True)  # the rest never comes
    run(RequestMiddleware(reads_all, metrics, limits()), client)
    assert client.status == 408
    assert client.body == {"detail": "request body not received in time", "field": None}
    assert total(metrics, "408") == 1
    assert series_of(metrics, "ml_errors_total") == []  # answered, not an error


def test_a_deadline_passed_between_two_reads_refuses_the_next_read(metrics: Metrics) -> None:
    async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(DEADLINE * 4)  # busy elsewhere (not in receive) past the deadline
        await receive()
        await answer(send)

    client = Client(b"a", b"b")
    run(RequestMiddleware(slow_reader, metrics, limits()), client)
    assert client.status == 408
    assert client.body == {"detail": "request body not received in time", "field": None}
    assert total(metrics, "408") == 1


def test_after_the_body_receive_waits_without_a_deadline(metrics: Metrics) -> None:
    got: list[str] = []
    client = Client(b"whole body")

    async def waits_for_disconnect(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await answer(send)
        loop = asyncio.get_running_loop()
        loop.call_later(DEADLINE * 4, client.after.set)  # the client leaves after the deadline
        got.append((await receive())["type"])

    run(RequestMiddleware(waits_for_disconnect, metrics, limits()), client)
    assert got == ["http.disconnect"]
    assert client.status == 200 and total(metrics, "200") == 1


def test_a_cancellation_that_is_not_the_deadline_passes_through(metrics: Metrics) -> None:
    client = Client()  # no body yet: the application waits in receive
    in_receive = asyncio.Event()

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        in_receive.set()
        await receive()

    async def go() -> None:
        middleware = RequestMiddleware(reader, metrics, limits(body_timeout=WAIT))
        task = asyncio.create_task(middleware(scope(), client.receive, client.send))
        async with asyncio.timeout(WAIT):
            await in_receive.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert client.sent == []  # no 408 for a cancellation of someone else's


def test_the_deadline_timer_ends_with_the_request(metrics: Metrics) -> None:
    async def ignores_body(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the first chunk of a longer body, then answers without the rest
        await answer(send)

    async def go() -> None:
        client = Client(b"a", b"b")
        await RequestMiddleware(ignores_body, metrics, limits())(
            scope(), client.receive, client.send
        )
        # The same task goes on past the request's deadline: nothing may cancel it.
        await asyncio.sleep(DEADLINE * 4)

    asyncio.run(asyncio.wait_for(go(), WAIT))


def test_a_body_over_the_limit_while_streamed_is_413(metrics: Metrics) -> None:
    async def reads_all(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await answer(send)

    client = Client(b"x" * 600, b"y" * 600)
    run(RequestMiddleware(reads_all, metrics, limits()), client)
    assert client.status == 413
    assert client.body["detail"] == "request body exceeds the limit of 1000 bytes"


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(metrics: Metrics) -> None:
    async def reads_all(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await answer(send)

    at_limit = Client(b"x" * 600, b"y" * 400)  # 1,000 bytes: limits() allows 1,000
    run(RequestMiddleware(reads_all, metrics, limits()), at_limit)
    assert at_limit.status == 200
    over = Client(b"x" * 600, b"y" * 401)
    run(RequestMiddleware(reads_all, metrics, limits()), over)
    assert over.status == 413
    assert (total(metrics, "200"), total(metrics, "413")) == (1, 1)


def test_a_chunk_without_more_body_is_the_whole_body(metrics: Metrics) -> None:
    # ASGI: "more_body" defaults to False. Once the body is whole, receive has no deadline.
    got: list[str] = []
    client = Client()
    after_deadline = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not got:
            got.append("body")
            return {"type": "http.request", "body": b"whole"}  # no "more_body"
        await after_deadline.wait()
        return {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"whole"
        await answer(send)
        asyncio.get_running_loop().call_later(DEADLINE * 4, after_deadline.set)
        got.append((await receive())["type"])

    asyncio.run(serve(RequestMiddleware(app, metrics, limits()), scope(), receive, client.send))
    assert got == ["body", "http.disconnect"]
    assert client.status == 200 and total(metrics, "200") == 1


def test_each_request_is_added_to_the_tally(metrics: Metrics) -> None:
    now = [1_800_000_000.0 + 5]  # inside one minute
    tally = RequestTally(clock=lambda: now[0])

    async def status_from_path(scope: Any, receive: Any, send: Any) -> None:
        await answer(send, int(scope["path"][1:]))

    middleware = RequestMiddleware(status_from_path, metrics, limits(), tally=tally)
    for status in (200, 201, 404, 503):
        run(middleware, Client(b""), scope(f"/{status}"))
    [counts] = tally.take().values()
    assert {k: v for k, v in counts.items() if k[0] == "status"} == {
        ("status", "2xx"): 2,
        ("status", "4xx"): 1,
        ("status", "5xx"): 1,
    }
    assert sum(v for k, v in counts.items() if k[0] == "latency") == 4


def cors_refusals() -> Any:
    return CORSMiddleware(RefusalApp(), allow_origins=[ORIGIN], allow_methods=["POST"])


def test_a_refusal_through_cors_carries_the_cors_headers_and_the_id(metrics: Metrics) -> None:
    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused request never reaches the application")

    client = Client(b"")
    middleware = RequestMiddleware(never, metrics, limits(), refusals=cors_refusals())
    run(middleware, client, scope("/" + "u" * 200, headers=[(b"origin", ORIGIN.encode())]))
    assert client.status == 414
    headers = dict(client.sent[0]["headers"])
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert len(headers[b"x-request-id"]) == 32
    assert total(metrics, "414") == 1


def test_a_preflight_of_a_refused_url_gets_the_cors_answer(metrics: Metrics) -> None:
    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a preflight never reaches the application")

    client = Client(b"")
    preflight = scope(
        "/" + "u" * 200,
        "OPTIONS",
        [(b"origin", ORIGIN.encode()), (b"access-control-request-method", b"POST")],
    )
    run(RequestMiddleware(never, metrics, limits(), refusals=cors_refusals()), client, preflight)
    assert client.status == 200  # as when CORS answered before the limits were asked
    assert total(metrics, "200", "OPTIONS") == 1
