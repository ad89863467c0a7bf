"""RequestMiddleware on a tiny FastAPI app: templates, bounded labels, errors, timing, size."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router

from nexus_ml.api import middleware as middleware_module
from nexus_ml.api.middleware import UNMATCHED, RequestMiddleware
from nexus_ml.monitoring.exposition import render_metrics
from nexus_ml.monitoring.metrics import Metrics, build_metrics

BACKGROUND_SECONDS = 0.2
PREDICT = "/api/v1/models/{name}/predict"


class Boom(RuntimeError):
    pass


@pytest.fixture
def metrics() -> Metrics:
    return build_metrics(CollectorRegistry())


def make_app(metrics: Metrics) -> tuple[FastAPI, dict[str, Any]]:
    state: dict[str, Any] = {}
    app = FastAPI()
    models = APIRouter(prefix="/models")

    @models.post("/{name}/predict")
    async def predict(name: str) -> dict[str, str]:
        return {"model": name}

    app.include_router(models, prefix="/api/v1")

    @app.get("/boom")
    async def boom() -> None:
        state["boom"] = err = Boom("kaput")
        raise err

    @app.get("/bytes/{n}")
    async def some_bytes(n: int) -> Response:
        return Response(b"x" * n, media_type="application/octet-stream")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for size in (100, 200, 300):
                yield b"y" * size

        return StreamingResponse(chunks())

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        async def slow() -> None:
            await asyncio.sleep(BACKGROUND_SECONDS)
            state["background_done"] = True

        tasks.add_task(slow)
        return {"ok": True}

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = render_metrics(metrics.registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    app.mount(
        "/legacy/{tenant}",
        Starlette(
            routes=[
                Route("/items/{item}", lambda request: PlainTextResponse("ok")),
            ]
        ),
    )
    app.add_middleware(RequestMiddleware, metrics=metrics)
    return app, state


def run(
    app: Any, *requests: tuple[str, str], headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(m, p, headers=headers) for m, p in requests]

    return asyncio.run(go())


def requests_total(m: Metrics, method: str, endpoint: str, status: str) -> float:
    return (
        m.registry.get_sample_value(
            "ml_api_requests_total", {"method": method, "endpoint": endpoint, "status": status}
        )
        or 0.0
    )


def series(m: Metrics, name: str) -> list[dict[str, str]]:
    return [s.labels for f in m.registry.collect() for s in f.samples if s.name == name]


def test_labels_by_route_template_including_router_prefixes(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    responses = run(app, *[("POST", f"/api/v1/models/m{i}/predict") for i in range(5)])
    assert {r.status_code for r in responses} == {200}
    assert requests_total(metrics, "POST", PREDICT, "200") == 5
    assert (
        metrics.registry.get_sample_value(
            "ml_api_request_duration_seconds_count", {"method": "POST", "endpoint": PREDICT}
        )
        == 5
    )
    assert all("m1" not in s["endpoint"] for s in series(metrics, "ml_api_requests_total"))


def test_mounted_app_gets_full_template(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    run(app, ("GET", "/legacy/acme/items/42"))
    assert requests_total(metrics, "GET", "/legacy/{tenant}/items/{item}", "200") == 1


def test_405_keeps_template(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    (response,) = run(app, ("GET", "/api/v1/models/x/predict"))
    assert response.status_code == 405
    assert requests_total(metrics, "GET", PREDICT, "405") == 1


def test_unmatched_paths_and_odd_methods_stay_bounded(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    paths = [f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}" for _ in range(2000)]
    responses = run(app, *[("GET", p) for p in paths], ("BREW", "/coffee"), ("PROPFIND", "/boom"))
    assert {r.status_code for r in responses[:2000]} == {404}
    assert requests_total(metrics, "GET", UNMATCHED, "404") == 2000
    endpoints = {s["endpoint"] for s in series(metrics, "ml_api_requests_total")}
    methods = {s["method"] for s in series(metrics, "ml_api_requests_total")}
    assert endpoints == {UNMATCHED, "/boom"}
    assert methods == {"GET", "OTHER"}
    assert len(series(metrics, "ml_api_requests_total")) == 3


def test_unhandled_exception_is_500_and_counted(metrics: Metrics) -> None:
    app, state = make_app(metrics)
    (response,) = run(app, ("GET", "/boom"))
    assert response.status_code == 500
    assert isinstance(state["boom"], Boom)
    assert requests_total(metrics, "GET", "/boom", "500") == 1
    assert (
        metrics.registry.get_sample_value(
            "ml_errors_total", {"component": "api", "error_type": "Boom"}
        )
        == 1
    )


def test_exception_propagates_unchanged(metrics: Metrics) -> None:
    err = Boom("inner")

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise err

    middleware = RequestMiddleware(inner, metrics)
    scope = {"type": "http", "method": "GET", "path": "/x", "root_path": "", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        raise AssertionError("nothing should be sent")

    with pytest.raises(Boom) as excinfo:
        asyncio.run(middleware(scope, receive, send))
    assert excinfo.value is err
    assert requests_total(metrics, "GET", UNMATCHED, "500") == 1


def test_background_task_not_counted_in_duration(metrics: Metrics) -> None:
    app, state = make_app(metrics)
    started = time.perf_counter()
    (response,) = run(app, ("GET", "/background"))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert state.get("background_done") is True
    assert elapsed >= BACKGROUND_SECONDS  # the transport waited for the task...
    duration = metrics.registry.get_sample_value(
        "ml_api_request_duration_seconds_sum", {"method": "GET", "endpoint": "/background"}
    )
    assert duration is not None and duration < BACKGROUND_SECONDS  # ...the metric did not


def test_response_size_counts_body_bytes(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    run(app, ("GET", "/bytes/1234"), ("GET", "/stream"))

    def size_sum(method: str, endpoint: str) -> float | None:
        return metrics.registry.get_sample_value(
            "ml_response_size_bytes_sum", {"method": method, "endpoint": endpoint}
        )

    assert size_sum("GET", "/bytes/{n}") == 1234
    assert size_sum("GET", "/stream") == 600  # the sum of the chunks, no content-length


def test_openmetrics_negotiation(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    plain, om = run(app, ("GET", "/metrics"), ("GET", "/metrics"))
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    (om,) = run(
        app, ("GET", "/metrics"), headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.content.endswith(b"# EOF\n")
    assert b'ml_api_requests_total{endpoint="/metrics",method="GET",status="200"}' in om.content


def spy_labels(monkeypatch: pytest.MonkeyPatch, family: Any) -> list[tuple[str, ...]]:
    """Records every ``labels()`` lookup on one metric family."""
    calls: list[tuple[str, ...]] = []
    original = family.labels

    def spy(*labels: str) -> Any:
        calls.append(labels)
        return original(*labels)

    monkeypatch.setattr(family, "labels", spy)
    return calls


def test_label_children_cached(metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = make_app(metrics)
    calls = spy_labels(monkeypatch, metrics.api_requests_total)
    run(app, *[("POST", f"/api/v1/models/m{i}/predict") for i in range(20)])
    assert calls == [("POST", PREDICT, "200")]


def test_non_http_scopes_pass_through(metrics: Metrics) -> None:
    seen: list[tuple[str, Any, Any]] = []
    receive, send = object(), object()  # passed on untouched, not wrapped

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], receive, send))

    middleware = RequestMiddleware(inner, metrics)
    asyncio.run(middleware({"type": "lifespan"}, receive, send))  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "websocket", "path": "/ws"}, receive, send))  # type: ignore[arg-type]
    assert seen == [("lifespan", receive, send), ("websocket", receive, send)]
    assert series(metrics, "ml_api_requests_total") == []


def test_plain_starlette_app(metrics: Metrics) -> None:
    app = Starlette(
        routes=[
            Route("/users/{uid}", lambda request: PlainTextResponse("u")),
            Mount("/v2", routes=[Route("/users/{uid}", lambda request: PlainTextResponse("u"))]),
        ]
    )
    app.add_middleware(RequestMiddleware, metrics=metrics)
    run(app, ("GET", "/users/1"), ("GET", "/v2/users/2"), ("GET", "/v2/nothing"))
    assert requests_total(metrics, "GET", "/users/{uid}", "200") == 1
    assert requests_total(metrics, "GET", "/v2/users/{uid}", "200") == 1
    endpoints = {s["endpoint"] for s in series(metrics, "ml_api_requests_total")}
    assert len(endpoints) == 3  # the mount's own 404 gets one bounded label too


def call_raw(middleware: RequestMiddleware, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive a middleware directly with one request; returns the messages it let through."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(middleware({"root_path": "", "headers": [], **scope}, receive, send))
    return sent


def size_of(m: Metrics, endpoint: str) -> tuple[float | None, float | None]:
    labels = {"method": "GET", "endpoint": endpoint}
    return (
        m.registry.get_sample_value("ml_response_size_bytes_sum", labels),
        m.registry.get_sample_value("ml_response_size_bytes_count", labels),
    )


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app answering 200 "ok"."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("headers", "size"),
    [
        ([(b"content-type", b"text/plain"), (b"Content-Length", b"2048")], 2048),
        ([(b"content-length", b"not a number")], 0),
        ([(b"content-type", b"text/plain")], 0),
        (None, 0),  # a start message may leave its headers out (ASGI: empty)
    ],
)
def test_a_file_sent_by_pathsend_counts_its_content_length(
    metrics: Metrics, headers: list[tuple[bytes, bytes]] | None, size: int
) -> None:
    """Zero-copy file responses send no body chunks: the size is the declared length (a header
    name in any case), and a missing or malformed one counts as 0 bytes, not as a crash."""

    async def file_app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send(start if headers is None else {**start, "headers": headers})
        await send({"type": "http.response.pathsend", "path": "/srv/report.pdf"})

    sent = call_raw(
        RequestMiddleware(file_app, metrics), {"type": "http", "method": "GET", "path": "/f"}
    )
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    assert size_of(metrics, UNMATCHED) == (size, 1)
    assert requests_total(metrics, "GET", UNMATCHED, "200") == 1


def test_a_file_response_through_pathsend_is_counted_once_with_its_size(
    metrics: Metrics, tmp_path: Any
) -> None:
    """The same through Starlette's FileResponse when the server offers the extension."""
    from starlette.responses import FileResponse

    path = tmp_path / "report.bin"
    path.write_bytes(b"z" * 777)

    async def file_app(scope: Any, receive: Any, send: Any) -> None:
        await FileResponse(path)(scope, receive, send)

    sent = call_raw(
        RequestMiddleware(file_app, metrics),
        {
            "type": "http",
            "method": "GET",
            "path": "/f",
            "extensions": {"http.response.pathsend": {}},
        },
    )
    assert sent[-1]["type"] == "http.response.pathsend"
    assert size_of(metrics, UNMATCHED) == (777, 1)


def test_an_app_that_returns_without_answering_is_counted_as_500(metrics: Metrics) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    call_raw(RequestMiddleware(silent, metrics), {"type": "http", "method": "GET", "path": "/x"})
    assert requests_total(metrics, "GET", UNMATCHED, "500") == 1
    assert series(metrics, "ml_errors_total") == []


def test_an_error_after_the_response_keeps_the_status_sent_and_counts_the_error(
    metrics: Metrics,
) -> None:
    """A background task failing after a complete 200 is an error of the service, but the client
    got its 200: the request is not re-labelled 500."""
    app = FastAPI()

    @app.get("/late")
    async def late(tasks: BackgroundTasks) -> dict[str, bool]:
        async def fail() -> None:
            raise Boom("after the response")

        tasks.add_task(fail)
        return {"ok": True}

    app.add_middleware(RequestMiddleware, metrics=metrics)
    (response,) = run(app, ("GET", "/late"))
    assert response.status_code == 200
    assert requests_total(metrics, "GET", "/late", "200") == 1
    assert requests_total(metrics, "GET", "/late", "500") == 0
    assert (
        metrics.registry.get_sample_value(
            "ml_errors_total", {"component": "api", "error_type": "Boom"}
        )
        == 1
    )


def test_a_streamed_response_is_timed_until_its_last_chunk(metrics: Metrics) -> None:
    pause = 0.05
    app = FastAPI()

    @app.get("/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"first"
            await asyncio.sleep(pause)
            yield b"last"

        return StreamingResponse(chunks())

    app.add_middleware(RequestMiddleware, metrics=metrics)
    run(app, ("GET", "/slow-stream"))
    duration = metrics.registry.get_sample_value(
        "ml_api_request_duration_seconds_sum", {"method": "GET", "endpoint": "/slow-stream"}
    )
    assert duration is not None and duration >= pause
    assert size_of(metrics, "/slow-stream") == (9, 1)


def test_one_route_included_under_two_prefixes_gets_each_template(metrics: Metrics) -> None:
    """The same route object reached under two templates is told apart by its path, also
    behind a root path (a proxy prefix the app is served under)."""
    app, _ = two_prefix_app(metrics)

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app, root_path="/proxy")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            paths = ("/proxy/b/items/1", "/proxy/a/items/2", "/proxy/b/items/3")
            return [(await client.get(p)).status_code for p in paths]

    assert asyncio.run(go()) == [200, 200, 200]
    assert requests_total(metrics, "GET", "/a/items/{item}", "200") == 1
    assert requests_total(metrics, "GET", "/b/items/{item}", "200") == 2


def test_a_route_added_after_the_first_request_gets_its_template(metrics: Metrics) -> None:
    app, _ = make_app(metrics)
    run(app, ("POST", "/api/v1/models/m/predict"))

    @app.get("/added/{x}")
    async def added(x: str) -> dict[str, str]:
        return {"x": x}

    (response,) = run(app, ("GET", "/added/1"))
    assert response.status_code == 200
    assert requests_total(metrics, "GET", "/added/{x}", "200") == 1


def test_a_stream_that_fails_midway_is_counted_as_a_500_and_an_error(metrics: Metrics) -> None:
    """The status line said 200, but the client got a broken body: a failure of the service."""
    app = FastAPI()

    @app.get("/broken-stream")
    async def broken_stream() -> StreamingResponse:
        async def chunks() -> Any:
            yield b"first"
            raise Boom("midway")

        return StreamingResponse(chunks())

    app.add_middleware(RequestMiddleware, metrics=metrics)
    run(app, ("GET", "/broken-stream"))
    assert requests_total(metrics, "GET", "/broken-stream", "500") == 1
    assert requests_total(metrics, "GET", "/broken-stream", "200") == 0
    assert (
        metrics.registry.get_sample_value(
            "ml_errors_total", {"component": "api", "error_type": "Boom"}
        )
        == 1
    )


def count_walks(monkeypatch: pytest.MonkeyPatch, routes: Any) -> list[int]:
    """Counts walks of the app's whole route tree (the costly part of labelling)."""
    walks: list[int] = []
    original = middleware_module.route_templates

    def spy(tree: Any, prefix: str = "") -> Any:
        if tree is routes:
            walks.append(1)
        return original(tree, prefix)

    monkeypatch.setattr(middleware_module, "route_templates", spy)
    return walks


def two_prefix_app(metrics: Metrics) -> tuple[FastAPI, Any]:
    app = FastAPI()
    items = APIRouter()

    @items.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    app.include_router(items, prefix="/a")
    app.include_router(items, prefix="/b")
    app.add_middleware(RequestMiddleware, metrics=metrics)
    return app, items.routes[0]


def test_the_route_tree_is_walked_once_not_per_request(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = two_prefix_app(metrics)
    walks = count_walks(monkeypatch, app.router.routes)
    paths = [f"/{p}/items/{i}" for i in range(3) for p in "ab"]
    responses = run(app, *[("GET", p) for p in paths], ("GET", "/nowhere"))
    assert [r.status_code for r in responses] == [200] * 6 + [404]
    assert requests_total(metrics, "GET", "/a/items/{item}", "200") == 3
    assert requests_total(metrics, "GET", "/b/items/{item}", "200") == 3
    assert len(walks) == 1


def test_a_route_object_outside_the_tree_is_matched_by_path_and_walked_for_once(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route object the tree does not hold (a framework's internal wrapper) is labelled by
    matching its path, and remembered: the tree is not walked again for it."""
    app, _ = make_app(metrics)
    walks = count_walks(monkeypatch, app.router.routes)
    stranger = object()

    middleware = RequestMiddleware(answer_ok, metrics)
    scope = {"type": "http", "method": "POST", "route": stranger, "router": app.router}
    for name in ("m1", "m2", "m3"):
        call_raw(middleware, {**scope, "path": f"/api/v1/models/{name}/predict"})
    assert requests_total(metrics, "POST", PREDICT, "200") == 3
    assert len(walks) == 2  # built at the first request, then once more for the stranger


def test_a_path_outside_the_root_path_is_matched_whole(metrics: Metrics) -> None:
    """Servers that leave the root path out of ``path``: nothing is cut off before matching."""
    app, route = two_prefix_app(metrics)

    middleware = RequestMiddleware(answer_ok, metrics)
    scope = {"type": "http", "method": "GET", "route": route, "router": app.router}
    call_raw(middleware, {**scope, "root_path": "/proxy", "path": "/b/items/1"})
    call_raw(middleware, {**scope, "root_path": "/proxy", "path": "/proxy/a/items/2"})
    assert requests_total(metrics, "GET", "/b/items/{item}", "200") == 1
    assert requests_total(metrics, "GET", "/a/items/{item}", "200") == 1


@pytest.mark.parametrize(
    ("route", "endpoint"),
    [(SimpleNamespace(path="/v/{x}"), "/v/{x}"), (SimpleNamespace(), UNMATCHED)],
)
def test_behind_no_starlette_router_a_route_is_labelled_by_its_own_path(
    metrics: Metrics, route: Any, endpoint: str
) -> None:
    scope = {"type": "http", "method": "GET", "path": "/v/1", "route": route}
    call_raw(RequestMiddleware(answer_ok, metrics), scope)
    assert requests_total(metrics, "GET", endpoint, "200") == 1


def test_routes_added_later_keep_their_own_template_where_another_path_would_match(
    metrics: Metrics,
) -> None:
    """``/things/new`` (POST) also matches ``/things/{thing}`` (GET, declared first): the label
    comes from the route the router chose, not from the first template matching the path."""
    app, _ = make_app(metrics)
    run(app, ("POST", "/api/v1/models/m/predict"))

    @app.get("/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @app.post("/things/new")
    async def new_thing() -> dict[str, bool]:
        return {"created": True}

    responses = run(app, ("POST", "/things/new"), ("POST", "/things/new"))
    assert [r.status_code for r in responses] == [200, 200]
    assert requests_total(metrics, "POST", "/things/new", "200") == 2


def test_routes_before_behind_and_after_a_host_get_their_templates(metrics: Metrics) -> None:
    def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/files/{path}", ok),  # its own template ends in /{path}: not a mount
            Host("api.example.org", app=Router([Route("/v/{x}", ok)])),
            Route("/after/{y}", ok),
        ]
    )
    app.add_middleware(RequestMiddleware, metrics=metrics)
    run(app, ("GET", "/files/a.txt"), ("GET", "/after/2"))
    run(app, ("GET", "/v/1"), headers={"host": "api.example.org"})
    for endpoint in ("/files/{path}", "/v/{x}", "/after/{y}"):
        assert requests_total(metrics, "GET", endpoint, "200") == 1, endpoint


def test_error_children_cached(metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = make_app(metrics)
    calls = spy_labels(monkeypatch, metrics.errors_total)
    run(app, ("GET", "/boom"), ("GET", "/boom"), ("GET", "/boom"))
    assert calls == [("api", "Boom")]
    assert (
        metrics.registry.get_sample_value(
            "ml_errors_total", {"component": "api", "error_type": "Boom"}
        )
        == 3
    )


def test_a_host_inside_a_mount_keeps_the_mount_prefix(metrics: Metrics) -> None:
    def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Router([Route("/v/{x}", ok)])
    app = Starlette(routes=[Mount("/m", routes=[Host("api.example.org", app=inner)])])
    app.add_middleware(RequestMiddleware, metrics=metrics)
    run(app, ("GET", "/m/v/1"), headers={"host": "api.example.org"})
    assert requests_total(metrics, "GET", "/m/v/{x}", "200") == 1


def test_an_app_that_stops_mid_body_without_an_error_keeps_the_status_it_sent(
    metrics: Metrics,
) -> None:
    """No exception: the server ends the response, and its status line was a 200."""

    async def cut_short(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    call_raw(RequestMiddleware(cut_short, metrics), {"type": "http", "method": "GET", "path": "/"})
    assert requests_total(metrics, "GET", UNMATCHED, "200") == 1
    assert requests_total(metrics, "GET", UNMATCHED, "500") == 0
