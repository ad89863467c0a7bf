"""The prediction body's parser reads every body exactly as json.loads does (issue 16).

``parse_json`` tries orjson first and falls back to json.loads; what it must never do is read a
body differently: another number, another type (an int for a float, a float for an int), a
value where json.loads refuses, or a refusal where json.loads reads a value. Each case below is
compared value for value and type for type with json.loads on the same bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_ml.api.errors import ApiError
from nexus_ml.api.routes.predictions import parse_json


def same(a: Any, b: Any) -> bool:
    """Equal values of identical types, all the way down; NaN equals NaN, -0.0 is not 0.0.

    Iterative: the deepest bodies below nest further than pytest leaves stack for.
    """
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if math.isnan(x) or math.isnan(y):
                if not (math.isnan(x) and math.isnan(y)):
                    return False
            elif x != y or math.copysign(1.0, x) != math.copysign(1.0, y):
                return False
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


def reference(body: bytes) -> Any:
    """json.loads's reading, or the ApiError the endpoint answers for it."""
    if not body:
        return ApiError
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return ApiError


def assert_read_as_json_loads(body: bytes) -> None:
    expected = reference(body)
    if expected is ApiError:
        with pytest.raises(ApiError) as refused:
            parse_json(body)
        assert refused.value.status_code in (400, 422)
    else:
        assert same(parse_json(body), expected), body[:200]


NUMBER = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?\Z", fullmatch=True
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans())
def test_any_json_document_reads_as_json_loads_reads_it(value: Any, ascii_only: bool) -> None:
    assert_read_as_json_loads(json.dumps(value, ensure_ascii=ascii_only).encode())


@settings(max_examples=600, deadline=None)
@given(NUMBER)
def test_every_number_literal_reads_as_json_loads_reads_it(number: str) -> None:
    # Long mantissas, long exponents, subnormals and overflow: the same float (correctly
    # rounded), the same int, the same infinity.
    assert_read_as_json_loads(number.encode())
    assert_read_as_json_loads(b'{"features": {"x": ' + number.encode() + b"}}")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_refused_or_read_as_json_loads_reads_them(body: bytes) -> None:
    assert_read_as_json_loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"features": {"x": NaN}}',
        b'{"features": {"x": -Infinity}}',
        b"1e400",
        b"-1.7976931348623159e308",
        b"-1e-400",
        b"-0",
        b"-0.0",
        b"9223372036854775807",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"123456789012345678901234567890",
        b'{"a": 1, "a": 2}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": 1}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-32-le"),
        b'"\\ud800"',
        b'"\\u00e9\\ud83d\\ude00"',
        b'"a\x01b"',
        b'{"a": 1} x',
        b" \n\t[1, 2.5, true, null] \r\n",
        b"[" * 500 + b"]" * 500,
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe",
        b"",
    ],
)
def test_bodies_orjson_refuses_or_reads_otherwise_read_as_json_loads_reads_them(
    body: bytes,
) -> None:
    assert_read_as_json_loads(body)


def test_an_integer_past_64_bits_stays_an_exact_integer() -> None:
    # orjson alone reads it as 1.2345678901234568e+29: a stored record would change.
    value = parse_json(b'{"features": {"x": 123456789012345678901234567890}}')
    assert value["features"]["x"] == 123456789012345678901234567890
    assert type(value["features"]["x"]) is int


def test_nesting_json_loads_refused_only_for_the_stack_depth_now_parses() -> None:
    # The one documented difference (parse_json's docstring): 1,000 levels are valid JSON.
    body = b"[" * 1000 + b"]" * 1000
    assert reference(body) is ApiError
    depth, value = 0, parse_json(body)
    while value:
        value, depth = value[0], depth + 1
    assert depth == 999


def test_an_empty_body_is_a_422_and_invalid_json_a_400() -> None:
    with pytest.raises(ApiError) as empty:
        parse_json(b"")
    assert empty.value.status_code == 422
    with pytest.raises(ApiError) as invalid:
        parse_json(b"{")
    assert invalid.value.status_code == 400
