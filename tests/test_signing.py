"""The signer reproduces the vendor's worked vectors and keeps the canonicalisation rules."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_aidol.signing import (
    canonical_body,
    canonical_query,
    format_number,
    sign,
    signature_base,
    to_json,
)

SECRET = "demo-secret"

# The four worked vectors of the protocol reference (copied, not read at test time).
VECTORS = [
    pytest.param(
        "POST",
        "/v1/chat/stream",
        "1742000000",
        None,
        {"agentId": "agent-uuid", "conversationId": "conv-uuid", "text": "你好"},
        "POST\n/v1/chat/stream\n1742000000\nuser-123\n\nagentId=agent-uuid&conversationId=conv-uuid&text=你好",
        "b812125081b5a8c633906bcf87a99af4580a98073d0f19bd66cc2a95b51c7ff6",
        id="stream-unicode",
    ),
    pytest.param(
        "POST",
        "/v1/chat/conversation",
        "1773298769",
        None,
        {"agentId": "agent-uuid"},
        "POST\n/v1/chat/conversation\n1773298769\nuser-123\n\nagentId=agent-uuid",
        "063e0cf383ed8475be7508212980a1578dfcc113b8c6b32513b1a1fcd318261f",
        id="create-conversation",
    ),
    pytest.param(
        "POST",
        "/v1/chat/image",
        "1773298769",
        None,
        {
            "agentId": " agent-uuid ",
            "conversationId": "conv-uuid",
            "text": "a girl",
            "language": "",
            "note": "   ",
            "extra": None,
            "metadata": {},
        },
        "POST\n/v1/chat/image\n1773298769\nuser-123\n\n"
        "agentId=agent-uuid&conversationId=conv-uuid&metadata={}&text=a girl",
        "d346fe43a7f339248779b3101dbef20f8211a6321620be74a3af4ec1d5f0d68d",
        id="image-drops-blank-and-null",
    ),
    pytest.param(
        "GET",
        "/v1/agent/list",
        "1773298769",
        {"size": 20, "page": 1, "keyword": ""},
        None,
        "GET\n/v1/agent/list\n1773298769\nuser-123\npage=1&size=20\n",
        "a686872d26d64eacff72fa250caf0d320554cadceebb2450cbdcba83d157f79b",
        id="list-query",
    ),
]


@pytest.mark.parametrize(("method", "path", "timestamp", "query", "body", "base", "signature"), VECTORS)
def test_worked_vectors(method, path, timestamp, query, body, base, signature):
    built = signature_base(method, path, timestamp, "user-123", canonical_query(query), canonical_body(body))
    assert built == base
    assert sign(SECRET, built) == signature


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
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        to_json({"x": value})


def test_containers_are_compact_json_in_caller_order_with_unicode_as_itself():
    value = {"b": [1.0, True, None, "é\n"], "a": {}, "z": []}
    assert to_json(value) == '{"b":[1,true,null,"é\\n"],"a":{},"z":[]}'


def test_top_level_values_render_by_type():
    body = {"flag": False, "count": 3, "ratio": 2.50, "tags": ["x", "y"], "obj": {"k": " v "}}
    assert canonical_body(body) == 'count=3&flag=false&obj={"k":" v "}&ratio=2.5&tags=["x","y"]'


def test_query_values_must_be_scalars():
    with pytest.raises(TypeError, match="query parameter 'ids'"):
        canonical_query({"ids": [1, 2]})


def test_non_string_keys_are_refused():
    with pytest.raises(TypeError, match="must be strings"):
        to_json({1: "x"})


def test_unsupported_values_are_refused():
    with pytest.raises(TypeError, match="set values cannot be sent as JSON"):
        to_json({"x": {1, 2}})


# --- properties ---------------------------------------------------------------------------

keys = st.text(min_size=1, max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)
bodies = st.dictionaries(keys, json_values, max_size=8)


@given(bodies)
def test_canonical_body_ignores_field_order(body):
    reordered = dict(reversed(list(body.items())))
    assert canonical_body(reordered) == canonical_body(body)


@given(bodies, keys, st.sampled_from([None, "", " ", "\t\n "]))
def test_null_and_blank_fields_do_not_change_the_signature(body, name, blank):
    assert canonical_body({**body, name: blank}) == canonical_body({k: v for k, v in body.items() if k != name})


@given(bodies, keys, st.text(min_size=1, max_size=10).filter(str.strip), st.sampled_from([" ", "\t", "\n "]))
def test_surrounding_whitespace_of_strings_is_not_signed(body, name, text, pad):
    assert canonical_body({**body, name: pad + text + pad}) == canonical_body({**body, name: text})


plain_keys = st.text(alphabet=st.characters(exclude_characters="=&"), min_size=1, max_size=12)


@given(st.dictionaries(plain_keys, plain_keys.filter(str.strip) | st.integers(), max_size=8))
def test_signed_pairs_are_sorted_by_name(body):
    names = [pair.split("=", 1)[0] for pair in canonical_body(body).split("&")] if body else []
    assert names == sorted(body)


def _as_floats(value):
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
