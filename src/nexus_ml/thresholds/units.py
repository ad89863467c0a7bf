"""The units of the thresholds: a type per unit (range, finiteness, durations), duration text.

Split from ``thresholds/__init__.py`` (the limits themselves) to keep each module short; every
name here is re-exported there.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

Unit = Literal["percent", "ratio", "seconds", "bytes", "per_second", "count", "score"]

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(value: object) -> object:
    """Seconds from a number or a Prometheus-style duration such as ``5m`` or ``1h30m``."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.match(text)
        if text and match and any(match.groups()):
            return sum(
                int(g or 0) * s for g, (_, s) in zip(match.groups(), _DURATION_UNITS, strict=True)
            )
        try:
            return float(text)
        except ValueError:
            # The value is not echoed: it may come from a request body (see api/errors.py).
            raise ValueError("not a duration (seconds, or e.g. 90s, 5m, 1h30m, 7d)") from None
    return value


def format_duration(seconds: float) -> str:
    """Prometheus duration text for whole ``seconds`` (``300`` -> ``5m``, ``0`` -> ``0s``)."""
    remaining = round(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for suffix, size in _DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


def _unit(unit: Unit, description: str, **limits: Any) -> Any:
    return Field(description=description, json_schema_extra={"unit": unit}, **limits)


def _number(value: object) -> object:
    """A finite number, or text for pydantic to parse (environment variables are text)."""
    # pydantic's lax mode reads true as 1 (YAML's `yes` too); "inf" and 1e999 parse as floats.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except ValueError:
        return value  # not a number: pydantic's own message says so
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return value


# Latency histogram buckets (0.5 ms to 10 s): defined here, not next to the metric, because
# they bound two limits: latency_slo_threshold must be one of them (the SLO counts requests
# under a bucket's `le`), and a P95 limit at or above the last finite one can never be
# exceeded (histogram_quantile answers at most that bound). metrics.py builds the histograms
# from this tuple.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def check_latency_bucket(value: float) -> float:
    """``value`` if it is one of the latency histogram's bucket bounds (else ValueError).

    The one check of ``latency_slo_threshold``, shared by the model, the API and the rule
    renderer: a bound between buckets cannot be counted exactly from the histogram.
    """
    if value not in LATENCY_BUCKETS:
        raise ValueError(
            "must be one of the latency histogram's bucket bounds "
            f"({', '.join(f'{b:g}' for b in LATENCY_BUCKETS)})"
        )
    return value


# Every limit is finite and bounded: an infinite or absurd value either never fires (a
# silent alert) or breaks the arithmetic that renders and evaluates it. The bounds are
# generous; each type is one unit's rule and docs/thresholds.md lists them.
MAX_DURATION_SECONDS = 366 * 86400
MAX_COUNT = 1e9
MAX_RATE = 1e9
MAX_SCORE = 1e3
MAX_BYTES = 2**53  # the largest whole number a float holds exactly
_Num = BeforeValidator(_number)
Percent = Annotated[float, _Num, Field(ge=0, le=100, allow_inf_nan=False)]
Ratio = Annotated[float, _Num, Field(ge=0, le=1, allow_inf_nan=False)]
Score = Annotated[float, _Num, Field(ge=0, le=MAX_SCORE, allow_inf_nan=False)]
Count = Annotated[float, _Num, Field(ge=0, le=MAX_COUNT, multiple_of=1, allow_inf_nan=False)]
Rate = Annotated[float, _Num, Field(ge=0, le=MAX_RATE, allow_inf_nan=False)]
Bytes = Annotated[float, _Num, Field(gt=0, le=MAX_BYTES, multiple_of=1, allow_inf_nan=False)]
# A P95 limit: above 0, below the last finite bucket (see LATENCY_BUCKETS).
Latency = Annotated[float, _Num, Field(gt=0, lt=LATENCY_BUCKETS[-1], allow_inf_nan=False)]
LatencyBound = Annotated[
    float, _Num, Field(allow_inf_nan=False), AfterValidator(check_latency_bucket)
]
# Durations are whole seconds: Prometheus gets them as duration text (format_duration), and
# the in-process evaluator must wait exactly as long as the rendered rule.
_Dur = BeforeValidator(parse_duration)
Window = Annotated[
    float,
    _Num,
    _Dur,
    Field(gt=0, le=MAX_DURATION_SECONDS, multiple_of=1, allow_inf_nan=False),
]
# A range the in-process evaluator must also compute: at most the hour of history
# ``MetricHistory`` keeps.
MAX_RANGE_SECONDS = 3600
RangeWindow = Annotated[
    float, _Num, _Dur, Field(ge=1, le=MAX_RANGE_SECONDS, multiple_of=1, allow_inf_nan=False)
]
ForDuration = Annotated[
    float,
    _Num,
    _Dur,
    Field(ge=0, le=MAX_DURATION_SECONDS, multiple_of=1, allow_inf_nan=False),
]
# The type of each unit's limits (a test checks every field's type against its unit).
TYPES_OF_UNIT: dict[Unit, tuple[object, ...]] = {
    "percent": (Percent,),
    "ratio": (Ratio,),
    "score": (Score,),
    "count": (Count,),
    "per_second": (Rate,),
    "bytes": (Bytes,),
    "seconds": (Latency, LatencyBound, Window, RangeWindow, ForDuration),
}
