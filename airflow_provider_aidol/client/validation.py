"""Checks of user input, shared by the hook, the batch and the operators (standard library only)."""

from __future__ import annotations

import math
import re

#: The longest time any setting may name, in seconds (a day): a longer timeout, wait or pause is a
#: mistake, and far larger values overflow the clocks and sleeps they reach.
MAX_SECONDS = 86_400.0

#: The longest id (agent, user, conversation, trace) accepted, in characters: what the SQL
#: registry's columns hold (our rule, the same for every store, so a batch that runs without a
#: registry also runs with one).
MAX_ID_LENGTH = 255

# Header values go out as Latin-1 bytes; control characters would break or smuggle headers.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\xff]")
# What no id may hold: control characters (NUL, line breaks, C1) and lone surrogates, which no
# UTF-8 file, JSON line or database can store.
_UNSAFE_IN_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def require_text(name: str, value: object) -> str:
    """Return ``value`` when it is a non-blank string, else raise ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def require_id(name: str, value: object, *, max_length: int | None = MAX_ID_LENGTH) -> str:
    """Return ``value`` when it is an id every store can keep, else raise ``ValueError`` naming ``name``.

    It must be a string that is not blank, holds no control character (NUL, line breaks, ...)
    and no lone surrogate (U+D800 to U+DFFF, which cannot be encoded as UTF-8), and is at most
    ``max_length`` characters long (``None``: any length).
    """
    text = require_text(name, value)
    unsafe = _UNSAFE_IN_ID.search(text)
    if unsafe is not None:
        kind = "a lone surrogate" if "\ud800" <= unsafe.group() <= "\udfff" else "a control character"
        raise ValueError(
            f"{name} holds {kind} ({unsafe.group()!r} at position {unsafe.start()}), which cannot be "
            f"sent or recorded, got {value!r}. Fix the id where it comes from (a file decoded with "
            "errors='surrogateescape' leaves lone surrogates; a template can leave a line break)."
        )
    if max_length is not None and len(text) > max_length:
        raise ValueError(
            f"{name} is {len(text)} characters long; ids may have at most {max_length} (what the SQL "
            "registry's columns hold): shorten it."
        )
    return text


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


def require_positive_number(name: str, value: object, *, unit: str = "", maximum: float = math.inf) -> float:
    """Return ``value`` when it is a finite number > 0, else raise ``ValueError`` naming ``name``.

    :param unit: how the message words the number, e.g. ``" of seconds"``.
    :param maximum: the largest value accepted.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf
        or value > maximum
    ):
        bound = f" and at most {maximum:g}" if maximum < math.inf else ""
        raise ValueError(f"{name} must be a number{unit} > 0{bound}, got {value!r}.")
    return value


def require_seconds(name: str, value: object) -> float:
    """Return ``value`` when it is a number of seconds > 0 and at most ``MAX_SECONDS`` (a day)."""
    return require_positive_number(name, value, unit=" of seconds", maximum=MAX_SECONDS)


def require_rate(name: str, value: object, *, unit: str = "") -> float:
    """Return ``value`` when it is a pace in requests per second of at least one a day.

    A slower pace would space two requests further apart than any sleep can wait.

    :param unit: how the message words the number, e.g. ``" of requests per second"``.
    """
    rate = require_positive_number(name, value, unit=unit)
    if rate * MAX_SECONDS < 1:
        raise ValueError(
            f"{name} must be at least 1/{MAX_SECONDS:g} (one request a day), got {value!r}; "
            "leave it empty for no pacing."
        )
    return rate


def require_whole_number(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` when it is a whole number >= ``minimum``; else raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return value


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def require_flag(name: str, value: object) -> bool:
    """Return ``value`` as a bool: a bool, or the text a template renders (``"True"``, ``"false"``)."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be True or False (or a template rendering to one), got {value!r}.")
