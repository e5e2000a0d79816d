"""The signer reproduces the vendor's worked vectors and keeps the canonicalisation rules."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_aidol.client.signing import (
    canonical_body,
    canonical_query,
    format_number,
    sign,
    signature_base,
    to_json,
)
from tests.spec_vectors import SECRET, SPEC_VECTORS, USER_ID, SpecVector
from tests.strategies import bodies, json_values, keys, words


@pytest.mark.parametrize("vector", SPEC_VECTORS)
def test_worked_vectors(vector: SpecVector):
    query, body = canonical_query(vector.params), canonical_body(vector.body)
    built = signature_base(vector.method, vector.path, vector.timestamp, USER_ID, query, body)
    assert built == vector.base
    assert sign(SECRET, built) == vector.signature


def test_signature_is_lowercase_hex_sha256():
    signature = sign("s", "base")
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


def test_every_separator_is_present_when_parts_are_empty():
    assert signature_base("GET", "/p", "1", "u") == "GET\n/p\n1\nu\n\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-2.0, "-2"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.456, "123.456"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e20, "100000000000000000000"),
        (2.0**60, "1152921504606847000"),
        (1e21, "1e+21"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (42, "42"),
        (-(2**70), "-1180591620717411303424"),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_on_the_wire(value):
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        to_json({"x": value})


def test_containers_are_compact_json_in_caller_order_with_unicode_as_itself():
    value = {"b": [1.0, True, None, "é\n"], "a": {}, "z": []}
    assert to_json(value) == '{"b":[1,true,null,"é\\n"],"a":{},"z":[]}'


def test_top_level_values_render_by_type():
    body = {"flag": False, "count": 3, "ratio": 2.50, "tags": ["x", "y"], "obj": {"k": " v "}}
    assert canonical_body(body) == 'count=3&flag=false&obj={"k":" v "}&ratio=2.5&tags=["x","y"]'


def test_query_values_must_be_scalars():
    with pytest.raises(ValueError, match="params field 'ids' must be a string, number or boolean"):
        canonical_query({"ids": [1, 2]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"when": {1, 2}}, "json field 'when': set values cannot be sent as JSON"),
        ({"raw": b"bytes"}, "json field 'raw': bytes values cannot be sent as JSON"),
        ({"ratio": math.nan}, "json field 'ratio': nan cannot be sent as JSON"),
        ({"nested": {"x": [math.inf]}}, "json field 'nested': inf cannot be sent as JSON"),
        ({"obj": {1: "x"}}, "json field 'obj': names must be strings"),
        ({"text": "\ud800"}, "json field 'text': '\\ud800' is not valid Unicode text"),
    ],
)
def test_values_that_cannot_be_signed_name_their_field(body, message):
    with pytest.raises(ValueError, match="json field") as caught:
        canonical_body(body)
    assert str(caught.value).startswith(message)


def test_non_string_field_names_are_refused():
    with pytest.raises(ValueError, match="names must be strings"):
        canonical_body({1: "x"})  # type: ignore[dict-item]


# --- properties ---------------------------------------------------------------------------


@given(bodies)
def test_canonical_body_ignores_field_order(body):
    reordered = dict(reversed(list(body.items())))
    assert canonical_body(reordered) == canonical_body(body)


@given(bodies, keys, st.sampled_from([None, "", " ", "\t\n "]))
def test_null_and_blank_fields_do_not_change_the_signature(body, name, blank):
    assert canonical_body({**body, name: blank}) == canonical_body(
        {k: v for k, v in body.items() if k != name}
    )


@given(bodies, keys, words, st.sampled_from([" ", "\t", "\n "]))
def test_surrounding_whitespace_of_strings_is_not_signed(body, name, text, pad):
    assert canonical_body({**body, name: pad + text + pad}) == canonical_body({**body, name: text})


plain_keys = st.text(
    st.characters(exclude_characters="=&", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@given(st.dictionaries(plain_keys, plain_keys.filter(str.strip) | st.integers(), max_size=8))
def test_signed_pairs_are_sorted_by_name(body):
    names = [pair.split("=", 1)[0] for pair in canonical_body(body).split("&")] if body else []
    assert names == sorted(body)


def _as_floats(value: Any) -> Any:
    """Compare numbers by value: JavaScript writes 1e16 as an integer literal."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {key: _as_floats(item) for key, item in value.items()}
    return [_as_floats(item) for item in value]


@given(json_values)
def test_wire_json_parses_back_to_the_same_value(value):
    assert _as_floats(json.loads(to_json(value))) == _as_floats(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_text_round_trips(value):
    assert float(format_number(value)) == value
