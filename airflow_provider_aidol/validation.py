"""Checks of user input, shared by the hook, the batch and the operators (standard library only)."""

from __future__ import annotations

import math
import re

# Header values go out as Latin-1 bytes; control characters would break or smuggle headers.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\xff]")


def require_text(name: str, value: object) -> str:
    """Return ``value`` when it is a non-blank string, else raise ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def require_header_value(name: str, value: object) -> str:
    """Return ``value`` when it can be sent as an HTTP header as it is, else raise ``ValueError``.

    It must be a non-blank string without surrounding whitespace, control characters or
    characters outside Latin-1 (HTTP headers cannot carry them).
    """
    text = require_text(name, value)
    if text != text.strip() or _UNSAFE_IN_HEADER.search(text):
        raise ValueError(
            f"{name} must be sent as an HTTP header: no surrounding whitespace, control characters "
            f"or characters outside Latin-1, got {value!r}."
        )
    return text


def require_positive_number(name: str, value: object, *, unit: str = "") -> float:
    """Return ``value`` when it is a finite number > 0, else raise ``ValueError`` naming ``name``.

    :param unit: how the message words the number, e.g. ``" of seconds"``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a number{unit} > 0, got {value!r}.")
    return value


def require_whole_number(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` when it is a whole number >= ``minimum``; else raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return value
