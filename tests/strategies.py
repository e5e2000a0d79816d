"""Hypothesis strategies for JSON bodies and query parameters."""

from __future__ import annotations

from hypothesis import strategies as st

#: Unicode text as it can be sent: lone surrogates are not text (the signer refuses them).
characters = st.characters(exclude_categories=["Cs"])
keys = st.text(characters, min_size=1, max_size=12)
words = st.text(characters, min_size=1, max_size=12).filter(str.strip)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(characters, max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(keys, json_values, max_size=8)
queries = st.dictionaries(keys, scalars, max_size=8)
