"""The client's signer and the embedded server's separately written verifier agree.

The verifier sees what the server sees: the body as parsed from the wire bytes and the query as
parsed from the URL requests builds.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import given

from airflow_provider_aidol import signing
from airflow_provider_aidol.testing import verifier
from tests.strategies import bodies, queries, words


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
