"""The signature rules, pinned to the spec's worked vectors and this project's interpretation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_aidol.testing.verifier import (
    canonical_body,
    canonical_number,
    canonical_query,
    canonical_value,
    expected_signature,
    signature_base,
    verify,
)
from tests.spec_vectors import SECRET, SPEC_VECTORS, USER_ID, SpecVector

NOW = 1773298769.0


@pytest.mark.parametrize("vector", SPEC_VECTORS)
def test_spec_vector_base_and_signature(vector: SpecVector) -> None:
    query, body = canonical_query(vector.raw_query), canonical_body(vector.body)
    built = signature_base(vector.method, vector.path, vector.timestamp, USER_ID, query, body)
    assert built == vector.base
    assert expected_signature(SECRET, built) == vector.signature


@pytest.mark.parametrize("vector", SPEC_VECTORS)
def test_spec_vector_passes_verify(vector: SpecVector) -> None:
    headers = {
        "authorization": "Bearer demo-key",
        "x-timestamp": vector.timestamp,
        "x-signature": vector.signature,
        "x-request-id": "r" * 32,
        "x-user-id": USER_ID,
    }
    failure = verify(
        method=vector.method,
        path=vector.path,
        raw_query=vector.raw_query,
        body=vector.body,
        headers=headers,
        api_key="demo-key",
        api_secret=SECRET,
        now=float(vector.timestamp),
    )
    assert failure is None


def test_body_drops_null_and_blank_strings_but_keeps_falsy_values() -> None:
    body: dict[str, object] = {
        "a": None,
        "b": "",
        "c": " \t\n",
        "d": False,
        "e": 0,
        "f": {},
        "g": [],
        "h": 0.0,
    }
    assert canonical_body(body) == "d=false&e=0&f={}&g=[]&h=0"


def test_body_trims_strings_and_sorts_by_code_point() -> None:
    body = {"b": "  two  ", "a": "\u3000full-width space is whitespace\u3000", "B": "upper", "_": "x"}
    assert canonical_body(body) == "B=upper&_=x&a=full-width space is whitespace&b=two"


def test_body_values_are_not_url_encoded() -> None:
    assert canonical_body({"text": "a&b=c 你好 %20"}) == "text=a&b=c 你好 %20"


def test_empty_or_missing_body_signs_as_empty() -> None:
    assert canonical_body(None) == ""
    assert canonical_body({}) == ""


def test_objects_and_arrays_are_compact_json_in_given_key_order() -> None:
    value = {"z": 1, "a": [1.0, 2.5, None, True, "x"], "nested": {"é": " keeps spaces ", "q": '"'}}
    expected = '{"z":1,"a":[1,2.5,null,true,"x"],"nested":{"é":" keeps spaces ","q":"\\""}}'
    assert canonical_value(value) == expected


def test_json_strings_are_escaped_like_python_json() -> None:
    assert canonical_value(["tab\t", "line\n", "\u0001", "😀"]) == '["tab\\t","line\\n","\\u0001","😀"]'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-7, "-7"),
        (12345678901234567890, "12345678901234567890"),
    ],
)
def test_scalars_render_as_json_literals(value: object, text: str) -> None:
    assert canonical_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (100.0, "100"),
        (1e20, "100000000000000000000"),
        (2.0**60, "1152921504606847000"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1 / 3, "0.3333333333333333"),
        (-2.5, "-2.5"),
        (123.456, "123.456"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (5e-7, "5e-7"),
        (-1.5e-7, "-1.5e-7"),
        (1.23e-18, "1.23e-18"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_floats_render_like_javascript_string(value: float, text: str) -> None:
    assert canonical_number(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_round_trips(value: float) -> None:
    assert float(canonical_number(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
def test_exponent_form_only_outside_the_plain_decimal_range(value: float) -> None:
    assert ("e" in canonical_number(value)) == (not 1e-6 <= abs(value) < 1e21)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, math.nan]])
def test_nan_and_infinity_cannot_be_signed(value: object) -> None:
    with pytest.raises(ValueError, match="cannot be signed"):
        canonical_value(value)


def test_non_json_values_cannot_be_signed() -> None:
    with pytest.raises(TypeError, match="set is not JSON data"):
        canonical_value({1, 2})


def test_query_keeps_blank_values_then_drops_them_and_sorts() -> None:
    assert canonical_query("size=20&page=1&keyword=&blank=%20%20") == "page=1&size=20"


def test_query_values_are_decoded_trimmed_and_signed_unencoded() -> None:
    assert canonical_query("text=%E4%BD%A0%E5%A5%BD&q=a+b&pad=%20x%20") == "pad=x&q=a b&text=你好"


def test_repeated_query_names_keep_their_order() -> None:
    assert canonical_query("tag=b&id=1&tag=a") == "id=1&tag=b&tag=a"


def test_no_query_signs_as_empty() -> None:
    assert canonical_query("") == ""


def _signed_headers(**overrides: str) -> dict[str, str]:
    base = signature_base("POST", "/v1/chat/conversation", "1773298769", "user-123", "", "agentId=a")
    headers = {
        "Authorization": "Bearer key",
        "X-Timestamp": "1773298769",
        "X-Signature": expected_signature("secret", base),
        "X-Request-ID": "0" * 32,
        "X-User-ID": "user-123",
    }
    return {**headers, **overrides}


def _verify(
    headers: dict[str, str],
    *,
    now: float = NOW,
    method: str = "POST",
    path: str = "/v1/chat/conversation",
    raw_query: str = "",
    body: dict[str, object] | None = None,
    api_secret: str = "secret",
) -> str | None:
    return verify(
        method=method,
        path=path,
        raw_query=raw_query,
        body={"agentId": "a"} if body is None else body,
        headers=headers,
        api_key="key",
        api_secret=api_secret,
        now=now,
    )


def test_a_correctly_signed_request_verifies() -> None:
    assert _verify(_signed_headers()) is None


def test_header_names_are_case_insensitive() -> None:
    assert _verify({name.upper(): value for name, value in _signed_headers().items()}) is None


@pytest.mark.parametrize("name", ["Authorization", "X-Timestamp", "X-Signature", "X-Request-ID", "X-User-ID"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_or_blank_header_is_named(name: str, value: str | None) -> None:
    headers = _signed_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    assert _verify(headers) == f"Missing required header: {name}"


def test_missing_headers_are_reported_in_a_fixed_order() -> None:
    assert _verify({}) == "Missing required header: Authorization"
    assert _verify({"Authorization": "Bearer key"}) == "Missing required header: X-Timestamp"


@pytest.mark.parametrize("authorization", ["Bearer other", "Basic key", "key", "Bearer"])
def test_wrong_api_key_or_scheme_is_an_invalid_api_key(authorization: str) -> None:
    assert _verify(_signed_headers(Authorization=authorization)) == "Invalid API key"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_within_five_minutes_is_accepted(skew: int) -> None:
    assert _verify(_signed_headers(), now=NOW + skew) is None


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_timestamp_beyond_five_minutes_is_expired(skew: int) -> None:
    assert _verify(_signed_headers(), now=NOW + skew) == "Request timestamp expired"


@pytest.mark.parametrize("timestamp", ["1773298769000", "1773298769.0", "1.77e9", "-1773298769", "soon"])
def test_timestamp_must_be_integer_seconds_near_now(timestamp: str) -> None:
    assert _verify(_signed_headers(**{"X-Timestamp": timestamp})) == "Request timestamp expired"


def test_uppercase_hex_signature_is_rejected() -> None:
    headers = _signed_headers()
    headers["X-Signature"] = headers["X-Signature"].upper()
    assert _verify(headers) == "Invalid signature"


@pytest.mark.parametrize(
    "changed",
    [
        {"method": "PUT"},
        {"path": "/v1/chat/image"},
        {"raw_query": "page=2"},
        {"body": {"agentId": "b"}},
        {"body": {"agentId": "a", "text": "added"}},
        {"api_secret": "other-secret"},
    ],
)
def test_signature_covers_method_path_query_body_and_secret(changed: dict[str, Any]) -> None:
    assert _verify(_signed_headers(), **changed) == "Invalid signature"


def test_signature_covers_the_user_id() -> None:
    assert _verify(_signed_headers(**{"X-User-ID": "someone-else"})) == "Invalid signature"
