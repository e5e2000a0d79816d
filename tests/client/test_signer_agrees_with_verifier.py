"""The client's signer and the embedded server's separately written verifier agree.

The verifier sees what the server sees: the body as parsed from the wire bytes and the query as
parsed from the URL requests builds.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_aidol.client import signing
from airflow_provider_aidol.client.prepared import prepare_request, signed_headers
from airflow_provider_aidol.testing import verifier
from tests.strategies import bodies, characters, queries, words


@given(bodies)
def test_bodies_canonicalise_alike_after_the_wire(body):
    on_the_wire = json.loads(signing.to_json(body).encode())
    assert verifier.canonical_body(on_the_wire) == signing.canonical_body(body)


@given(queries)
def test_queries_canonicalise_alike_after_the_url(params):
    query = urlencode(signing.wire_query(params) or {})
    assert verifier.canonical_query(query) == signing.canonical_query(params)


@given(bodies, words)
def test_signatures_match(body, user_id):
    client = signing.signature_base("POST", "/v1/x", "1773298769", user_id, "", signing.canonical_body(body))
    server = verifier.signature_base(
        "POST", "/v1/x", "1773298769", user_id, "", verifier.canonical_body(json.loads(signing.to_json(body)))
    )
    assert signing.sign("secret", client) == verifier.expected_signature("secret", server)


# --- a one-character change anywhere breaks verification -------------------------------------

SECRET = "property-secret"
KEY = "property-key"
NOW = 1773298769
signed_text = words.filter(lambda text: text == text.strip())
header_characters = st.characters(min_codepoint=0x21, max_codepoint=0x7E)  # what an X-User-ID may hold
user_ids = st.text(header_characters, min_size=1, max_size=12)


def signed_request(body: dict[str, object], params: dict[str, object], user_id: str) -> dict[str, object]:
    """A request as the server receives it, signed by the client."""
    prepared = prepare_request("POST", "/v1/x", json=body, params=params, user_id=user_id)
    headers = {"Authorization": f"Bearer {KEY}", **signed_headers(prepared, SECRET, NOW)}
    return {
        "method": "POST",
        "path": "/v1/x",
        "raw_query": urlencode(prepared.wire_params or {}),
        "body": json.loads(prepared.wire_body or b"{}"),
        "headers": headers,
    }


def verified(request: dict[str, object]) -> str | None:
    return verifier.verify(**request, api_key=KEY, api_secret=SECRET, now=NOW)  # type: ignore[arg-type]


def changed(text: str, data: st.DataObject, alphabet: st.SearchStrategy[str] = characters) -> str:
    """``text`` with one character replaced by another (from ``alphabet``) that is not whitespace."""
    index = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(alphabet.filter(lambda char: char != text[index] and not char.isspace()))
    return text[:index] + other + text[index + 1 :]


@given(bodies, queries, user_ids, signed_text, signed_text, st.data())
def test_a_one_character_change_anywhere_breaks_verification(body, params, user_id, field, value, data):
    body = {**body, field: value}  # at least one signed string field
    request = signed_request(body, params, user_id)
    assert verified(request) is None

    part = data.draw(st.sampled_from(["path", "user", "timestamp", "body", "signature"]))
    headers = dict(request["headers"])  # type: ignore[call-overload]
    if part == "path":
        request["path"] = "/" + changed(str(request["path"])[1:], data)
    elif part == "user":
        headers["X-User-ID"] = changed(user_id, data, header_characters)
    elif part == "timestamp":
        headers["X-Timestamp"] = str(
            NOW + data.draw(st.integers(1, 10**6)) * data.draw(st.sampled_from([1, -1]))
        )
    elif part == "body":
        request["body"] = {**body, field: changed(value, data)}
    else:
        headers["X-Signature"] = changed(headers["X-Signature"], data)
    request["headers"] = headers
    assert verified(request) is not None, f"changing the {part} went unnoticed"
