"""``@monitor_prediction`` / ``@monitor_training``: timing, counts and errors for model code.

Both work on ``def`` and ``async def`` (functions or methods) and time the awaited
work, not coroutine creation. The same object is also a context manager::

    @monitor_prediction("diagnostic")
    async def predict(self, features): ...

    with monitor_prediction("diagnostic") as rec:
        rec.observe(confidence, predicted_class, version="3")

Accepted prediction return shapes (anything else counts one prediction with
``version`` and ``predicted_class`` = ``"unknown"`` and observes no confidence):

* a mapping or an object with ``confidence`` and ``predicted_class`` (or
  ``prediction``), and optionally ``version``;
* a list or tuple of those (a batch: each item is counted and observed);
* a mapping or object with ``predictions`` (a list/tuple of the above) and an
  optional ``version`` that items without their own inherit.

Training return values may carry ``n_samples`` / ``n_features`` (or
``training_samples`` / ``features_count``), as a mapping or attributes.

``metrics=None`` resolves, at the first call, to :func:`default_metrics`, so model
code can use the bare decorator and a service built on the default registry
exports the same series.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from prometheus_client import REGISTRY

from nexus_ml.monitoring.metrics import Metrics, build_metrics

__all__ = [
    "PredictionMonitor",
    "PredictionRecorder",
    "TrainingMonitor",
    "TrainingRecorder",
    "default_metrics",
    "monitor_prediction",
    "monitor_training",
]

F = TypeVar("F", bound=Callable[..., Any])
UNKNOWN = "unknown"
_INF, _NEG_INF = float("inf"), float("-inf")
_perf = time.perf_counter

_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide ``Metrics`` in prometheus_client's global REGISTRY, built once on demand."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = build_metrics(REGISTRY)
    return _default


def _field(obj: Any, *names: str) -> Any:
    """First present, non-None field among ``names`` of a mapping or an object."""
    if isinstance(obj, Mapping):
        for name in names:
            value = obj.get(name)
            if value is not None:
                return value
        return None
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _fill(cache: list[Any], resolve: Callable[[], Any]) -> Any:
    """First call of a decorated function: resolve the metrics and keep the children."""
    children = resolve()
    if not cache:
        cache.append(children)
    return cache[0]


class _ErrorChildren:
    """Error counter children per exception class name, for one component."""

    __slots__ = ("_by_type", "_component", "_counter")

    def __init__(self, metrics: Metrics, component: str) -> None:
        self._counter = metrics.errors_total
        self._component = component
        self._by_type: dict[type, Any] = {}

    def count(self, exc: BaseException) -> None:
        typ = type(exc)
        child = self._by_type.get(typ)
        if child is None:
            child = self._by_type[typ] = self._counter.labels(self._component, typ.__name__)
        child.inc()


class _PredictionChildren:
    """Label children of one model, resolved once: ``.labels()`` alone costs about 2 µs."""

    __slots__ = ("_by_key", "_counter", "confidence", "duration", "errors", "model")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.model = model
        self.duration = metrics.model_prediction_duration_seconds.labels(model)
        self.confidence = metrics.model_confidence_score.labels(model)
        self.errors = _ErrorChildren(metrics, "model")
        self._counter = metrics.model_predictions_total
        self._by_key: dict[tuple[Any, Any], Any] = {}

    def observe(self, confidence: Any, predicted_class: Any, version: Any) -> None:
        key = (version, predicted_class)
        child = self._by_key.get(key)
        if child is None:
            child = self._by_key[key] = self._counter.labels(
                self.model, str(version), str(predicted_class)
            )
        child.inc()
        if confidence is not None:
            conf = float(confidence)
            if _NEG_INF < conf < _INF:  # NaN or +/-inf would poison the histogram's _sum for good
                self.confidence.observe(conf)

    def record(self, result: Any, version: Any = UNKNOWN) -> None:
        if type(result) is dict and "predictions" not in result:
            # The common case, inlined: every 100 ns counts against the 4 µs budget.
            cls = result.get("predicted_class")
            if cls is None:
                cls = result.get("prediction")
            self.observe(
                result.get("confidence"),
                UNKNOWN if cls is None else cls,
                result.get("version") or version,
            )
            return
        if isinstance(result, list | tuple):
            for item in result:
                self._record_one(item, version)
            return
        batch = _field(result, "predictions")
        if isinstance(batch, list | tuple):
            version = _field(result, "version") or version
            for item in batch:
                self._record_one(item, version)
            return
        self._record_one(result, version)

    def _record_one(self, item: Any, version: Any) -> None:
        if isinstance(item, Mapping):
            get = item.get
            cls = get("predicted_class")
            if cls is None:
                cls = get("prediction")
            self.observe(
                get("confidence"), UNKNOWN if cls is None else cls, get("version") or version
            )
            return
        cls = _field(item, "predicted_class", "prediction")
        self.observe(
            getattr(item, "confidence", None),
            UNKNOWN if cls is None else cls,
            getattr(item, "version", None) or version,
        )


class _TrainingChildren:
    __slots__ = ("_metrics", "_model", "duration", "errors", "failure", "success")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self._model = model
        self.duration = metrics.model_training_duration_seconds.labels(model)
        # Both outcomes exist from the first run on, so rate() sees a 0 -> 1 step.
        self.success = metrics.model_training_runs_total.labels(model, "success")
        self.failure = metrics.model_training_runs_total.labels(model, "failure")
        self.errors = _ErrorChildren(metrics, "training")

    def succeeded(self, result: Any) -> None:
        # The gauges are touched only with a value: a 0 timestamp or sample count
        # after a failed run would be a lie, not a missing value. Training is rare,
        # so the uncached .labels() here costs nothing that matters.
        m, model = self._metrics, self._model
        self.success.inc()
        m.model_last_training_timestamp_seconds.labels(model).set(time.time())
        if result is None:
            return
        samples = _field(result, "n_samples", "training_samples")
        if samples is not None:
            m.model_training_samples.labels(model).set(float(samples))
        features = _field(result, "n_features", "features_count")
        if features is not None:
            m.model_features_count.labels(model).set(float(features))

    def failed(self, exc: BaseException) -> None:
        self.failure.inc()
        self.errors.count(exc)


class PredictionRecorder:
    """What ``with monitor_prediction(...) as rec`` yields: report the outcome through it."""

    __slots__ = ("_children", "_start")

    def __init__(self, children: _PredictionChildren) -> None:
        self._children = children
        self._start = _perf()

    def observe(self, confidence: float | None, predicted_class: Any, version: Any = None) -> None:
        """Count one prediction of ``predicted_class`` and observe its confidence."""
        self._children.observe(confidence, predicted_class, UNKNOWN if version is None else version)

    def record(self, result: Any) -> None:
        """Count a prediction result of any shape the decorator accepts."""
        self._children.record(result)


class TrainingRecorder:
    """What ``with monitor_training(...) as run`` yields."""

    __slots__ = ("_start", "result")

    def __init__(self) -> None:
        self._start = _perf()
        self.result: Any = None

    def set_result(self, result: Any) -> None:
        """Remember the run's result (``n_samples`` / ``n_features``), published on success."""
        self.result = result


class _Monitor:
    """Shared plumbing: lazy metrics, one-shot children, a non-reentrant context manager."""

    _children_type: type

    def __init__(self, model_name: str, metrics: Metrics | None) -> None:
        self.model_name = model_name
        self._metrics = metrics
        self._children_cache: Any = None
        self._active: Any = None

    def _children(self) -> Any:
        children = self._children_cache
        if children is None:
            metrics = self._metrics if self._metrics is not None else default_metrics()
            children = self._children_cache = self._children_type(metrics, self.model_name)
        return children

    def _enter_guard(self) -> None:
        # State lives on the object, so one object cannot time two blocks at once;
        # write ``with monitor_prediction("m")`` inline to get a fresh one each time.
        if self._active is not None:
            raise RuntimeError(f"{type(self).__name__} is already timing a block; not reentrant")


class PredictionMonitor(_Monitor):
    """Decorator and context manager recording latency, predictions, confidence and errors."""

    _children_type = _PredictionChildren

    def __call__(self, fn: F) -> F:
        children_of = self._children
        cache: list[_PredictionChildren] = []  # filled at the first call, read in a closure

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                children = cache[0] if cache else _fill(cache, children_of)
                start = _perf()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    children.duration.observe(_perf() - start)
                    children.errors.count(exc)
                    raise
                children.duration.observe(_perf() - start)
                children.record(result)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            children = cache[0] if cache else _fill(cache, children_of)
            start = _perf()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                children.duration.observe(_perf() - start)
                children.errors.count(exc)
                raise
            children.duration.observe(_perf() - start)
            children.record(result)
            return result

        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> PredictionRecorder:
        self._enter_guard()
        self._active = PredictionRecorder(self._children())
        return self._active

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        recorder, self._active = self._active, None
        children = recorder._children
        children.duration.observe(_perf() - recorder._start)
        if exc is not None and isinstance(exc, Exception):
            children.errors.count(exc)


class TrainingMonitor(_Monitor):
    """Decorator and context manager recording training duration, outcome and size."""

    _children_type = _TrainingChildren

    def __call__(self, fn: F) -> F:
        children_of = self._children
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                children = children_of()
                start = _perf()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    children.duration.observe(_perf() - start)
                    children.failed(exc)
                    raise
                children.duration.observe(_perf() - start)
                children.succeeded(result)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            children = children_of()
            start = _perf()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                children.duration.observe(_perf() - start)
                children.failed(exc)
                raise
            children.duration.observe(_perf() - start)
            children.succeeded(result)
            return result

        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> TrainingRecorder:
        self._enter_guard()
        self._children()  # resolve before the clock starts
        self._active = TrainingRecorder()
        return self._active

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        recorder, self._active = self._active, None
        children = self._children()
        children.duration.observe(_perf() - recorder._start)
        if exc is None:
            children.succeeded(recorder.result)
        elif isinstance(exc, Exception):
            children.failed(exc)


def monitor_prediction(model_name: str, *, metrics: Metrics | None = None) -> PredictionMonitor:
    """Monitor predictions of ``model_name``: decorator (def/async def) or context manager."""
    return PredictionMonitor(model_name, metrics)


def monitor_training(model_name: str, *, metrics: Metrics | None = None) -> TrainingMonitor:
    """Monitor training runs of ``model_name``: decorator (def/async def) or context manager."""
    return TrainingMonitor(model_name, metrics)
