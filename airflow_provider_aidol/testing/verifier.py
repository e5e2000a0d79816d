"""The AI-DOL request signature, verified as the server sees a request.

An implementation of the wire spec (docs/protocol.md, "The signature") written independently of the
provider's signer, so the embedded server can catch a client that signs wrongly.
Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TypedDict, Unpack
from urllib.parse import parse_qsl

REQUIRED_HEADERS = ("Authorization", "X-Timestamp", "X-Signature", "X-Request-ID", "X-User-ID")
TIMESTAMP_WINDOW_SECONDS = 300

MISSING_HEADER = "Missing required header: {}"
INVALID_API_KEY = "Invalid API key"
TIMESTAMP_EXPIRED = "Request timestamp expired"
INVALID_SIGNATURE = "Invalid signature"

_INTEGER_SECONDS = re.compile(r"[0-9]+")


def canonical_number(value: float) -> str:
    """Render a float as JavaScript's ``String(number)`` does.

    ``1.0`` is ``1``; ``2.0**60`` is ``1152921504606847000``; ``1e-7`` is ``1e-7``.

    Raises:
        ValueError: NaN and infinities cannot be signed.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be signed")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + canonical_number(-value)
    return _ecmascript_layout(*_shortest_digits(value))


def _shortest_digits(value: float) -> tuple[str, int]:
    """Return (digits, n) with value == 0.digits * 10**n, digits the shortest round-trip ones."""
    decimal = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, decimal.digits)).rstrip("0")
    trailing_zeros = len(decimal.digits) - len(digits)
    return digits, int(decimal.exponent) + trailing_zeros + len(digits)


def _ecmascript_layout(digits: str, n: int) -> str:
    """Lay out the digits of a positive number as ECMAScript Number::toString does."""
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{n - 1:+d}"


def canonical_value(value: object) -> str:
    """Render one signed value: strings trimmed, everything else as compact JSON text.

    Raises:
        TypeError: the value is not JSON data.
        ValueError: the value holds NaN or an infinity.
    """
    if isinstance(value, str):
        return value.strip()
    return _json_text(value)


def _json_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return canonical_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        fields = (f"{_json_text(str(key))}:{_json_text(item)}" for key, item in value.items())
        return "{" + ",".join(fields) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON data and cannot be signed")


def _join_sorted(fields: list[tuple[str, object]]) -> str:
    """Drop null and blank values, trim strings, sort by name and join as ``k=v&k=v``."""
    kept = [(name, canonical_value(value)) for name, value in fields if value is not None]
    kept = [(name, rendered) for name, rendered in kept if rendered]
    kept.sort(key=lambda field: field[0])
    return "&".join(f"{name}={rendered}" for name, rendered in kept)


def canonical_query(raw_query: str) -> str:
    """Return the signed form of a raw (still percent-encoded) URL query string."""
    pairs: list[tuple[str, object]] = list(parse_qsl(raw_query, keep_blank_values=True))
    return _join_sorted(pairs)


def canonical_body(body: Mapping[str, object] | None) -> str:
    """Return the signed form of a JSON object body's top-level fields (empty for no body)."""
    return _join_sorted(list(body.items())) if body else ""


def signature_base(method: str, path: str, timestamp: str, user_id: str, query: str, body: str) -> str:
    """Join the signed parts; ``query`` and ``body`` are already canonical."""
    return "\n".join((method, path, timestamp, user_id, query, body))


def expected_signature(api_secret: str, base: str) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``base`` keyed with ``api_secret``."""
    return hmac.new(api_secret.encode(), base.encode(), hashlib.sha256).hexdigest()


def _lowercase_names(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def check_headers(headers: Mapping[str, str], *, api_key: str, now: float) -> str | None:
    """Check presence, API key and timestamp window; return the failure message or None.

    ``headers`` may use any letter case for names; ``now`` is the server clock in epoch seconds.
    """
    present = _lowercase_names(headers)
    for name in REQUIRED_HEADERS:
        if not present.get(name.lower(), "").strip():
            return MISSING_HEADER.format(name)
    scheme, _, token = present["authorization"].partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        return INVALID_API_KEY
    timestamp = present["x-timestamp"]
    if not _INTEGER_SECONDS.fullmatch(timestamp) or abs(int(timestamp) - now) > TIMESTAMP_WINDOW_SECONDS:
        return TIMESTAMP_EXPIRED
    return None


class SignedRequest(TypedDict):
    """What the signature covers, as the server received it."""

    method: str
    path: str
    raw_query: str
    body: Mapping[str, object] | None
    headers: Mapping[str, str]
    api_secret: str


def check_signature(**request: Unpack[SignedRequest]) -> str | None:
    """Check X-Signature against the request; return the failure message or None."""
    present = _lowercase_names(request["headers"])
    base = signature_base(
        request["method"],
        request["path"],
        present.get("x-timestamp", ""),
        present.get("x-user-id", ""),
        canonical_query(request["raw_query"]),
        canonical_body(request["body"]),
    )
    expected = expected_signature(request["api_secret"], base).encode()
    if hmac.compare_digest(expected, present.get("x-signature", "").encode()):
        return None
    return INVALID_SIGNATURE


def verify(*, api_key: str, now: float, **request: Unpack[SignedRequest]) -> str | None:
    """Run every signature-related check in the server's order; return the first failure or None."""
    return check_headers(request["headers"], api_key=api_key, now=now) or check_signature(**request)
