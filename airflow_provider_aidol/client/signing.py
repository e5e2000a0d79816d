"""Request signing for the AI-DOL Open API (pure functions, standard library only).

The vendor signs ``METHOD, PATH, X-Timestamp, X-User-ID, canonicalQuery, canonicalBody``
joined by newlines with HMAC-SHA256. Where the vendor's documentation is silent this module
follows the project's stated interpretation (docs/protocol.md): containers are signed as
compact JSON, numbers the way JavaScript's ``String(number)`` writes them, and the body on the
wire is serialised by ``to_json()``, the same way it is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "canonical_body",
    "canonical_query",
    "format_number",
    "sign",
    "signature_base",
    "to_json",
    "wire_query",
]

_SCALARS = (str, bool, int, float)
#: The deepest nesting of arrays and objects a value sent as JSON may have.
MAX_JSON_DEPTH = 64


def format_number(value: float) -> str:
    """Write a number as JavaScript's ``String(number)`` does (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``)."""
    if isinstance(value, bool):
        raise ValueError("booleans are not numbers here; use to_json()")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be sent as JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-trip digits, as ECMAScript's Number::toString does;
    # only the layout (where the point goes, when to use an exponent) differs.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    return sign + _layout(digits, point)


def _layout(digits: str, point: int) -> str:
    """Place the decimal point per ECMAScript Number::toString (``point`` counts from the left)."""
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    exponent_text = f"e+{exponent}" if exponent >= 0 else f"e{exponent}"
    head = digits if count == 1 else f"{digits[0]}.{digits[1:]}"
    return head + exponent_text


def to_json(value: Any) -> str:
    """Serialise ``value`` as compact JSON, keys in the caller's order, numbers as JavaScript writes them.

    This is both the signed form of objects and arrays and the request body sent on the wire,
    so the server parses exactly what was signed. Arrays and objects nested deeper than
    ``MAX_JSON_DEPTH`` (or containing themselves) raise ``ValueError``.
    """
    return _to_json(value, MAX_JSON_DEPTH)


def _to_json(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str):
        return json.dumps(_utf8_text(value), ensure_ascii=False)
    if isinstance(value, Mapping | Sequence) and not isinstance(value, bytes | bytearray) and depth <= 0:
        raise ValueError(f"arrays and objects nest more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(
                f"{to_json(_checked_key(key))}:{_to_json(item, depth - 1)}" for key, item in value.items()
            )
            + "}"
        )
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ",".join(_to_json(item, depth - 1) for item in value) + "]"
    raise ValueError(f"{type(value).__name__} values cannot be sent as JSON")


def _utf8_text(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not valid Unicode text (it holds a lone surrogate)") from None
    return value


def _checked_key(key: object) -> str:
    if not isinstance(key, str):
        raise ValueError(f"names must be strings, got {type(key).__name__} {key!r}")
    return key


def _signed_value(value: Any) -> str | None:
    """Return the signed text of one top-level value, or ``None`` when the value is dropped."""
    if value is None:
        return None
    if isinstance(value, str):
        return _utf8_text(value).strip() or None
    return to_json(value)


def _canonical_pairs(fields: Mapping[str, Any], kind: str) -> str:
    """Join ``name=value`` pairs sorted by name (code-point order), dropped values left out.

    A value that cannot be signed raises ``ValueError`` naming it, e.g. ``json field 'x': …``.
    """
    signed = []
    for name, value in fields.items():
        try:
            signed.append((_checked_key(name), _signed_value(value)))
        except ValueError as problem:
            raise ValueError(f"{kind} field {name!r}: {problem}") from None
    return "&".join(f"{name}={text}" for name, text in sorted(signed) if text is not None)


def canonical_query(params: Mapping[str, Any] | None) -> str:
    """Return the canonical query (scalar values only): nulls and blank strings dropped, sorted by name."""
    if not params:
        return ""
    for name, value in params.items():
        if value is not None and not isinstance(value, _SCALARS):
            raise ValueError(
                f"params field {name!r} must be a string, number or boolean, got {type(value).__name__}"
            )
    return _canonical_pairs(params, "params")


def wire_query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Return query parameters as sent: strings as given, other values as signed, nulls left out."""
    if not params:
        return None
    return {
        name: value if isinstance(value, str) else to_json(value)
        for name, value in params.items()
        if value is not None
    }


def canonical_body(body: Mapping[str, Any] | None) -> str:
    """Return the canonical body: top-level fields, nulls and blank strings dropped, sorted by name."""
    if not body:
        return ""
    return _canonical_pairs(body, "json")


def signature_base(
    method: str, path: str, timestamp: str, user_id: str, query: str = "", body: str = ""
) -> str:
    """Join the six signed parts with newlines; an empty part leaves an empty line."""
    return "\n".join((method, path, timestamp, user_id, query, body))


def sign(api_secret: str, base: str) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``base`` keyed with ``api_secret``."""
    return hmac.new(api_secret.encode(), base.encode(), hashlib.sha256).hexdigest()
