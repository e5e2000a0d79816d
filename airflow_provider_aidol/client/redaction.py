"""Cleaning what a server or a connection said before it goes into an error, a log line or an XCom.

A server, or a proxy in front of it, may echo the credentials it was sent: in a message, a
header such as ``Location``, a traceId, an HTML error page; and not only as they are, but JSON-,
percent- or HTML-escaped, or with its whitespace folded. So everything taken from outside is
cleaned here before it is formatted, in this order: every form of the key and secret is blanked
out of the whole text, the text is cut to a length, any run of ``RUN`` characters of a form that
is still there (a fragment: the server's own cut) is blanked out too, and control characters are
escaped, so a server cannot forge log lines either. Standard library only.
"""

from __future__ import annotations

import functools
import html
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import quote as percent_encode
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MASK", "RUN", "clean", "quoted", "redact"]

#: What a credential, or a piece of one, is replaced by.
MASK = "***"
#: The shortest run of a credential's characters that is blanked out wherever it appears.
RUN = 6

_WHITESPACE = re.compile(r"\s+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def redact(text: str, secrets: Sequence[str]) -> str:
    """Return ``text`` with every form of each non-empty string of ``secrets`` replaced by ``***``.

    The forms are the string as it is, JSON-, Python-, percent- and HTML-escaped, and with its
    whitespace folded; any run of ``RUN`` characters of one of them is replaced as well.
    """
    forms, runs = _forms_and_runs(tuple(secret for secret in secrets if secret))
    return _mask_runs(_replace_forms(text, forms), runs)


def clean(text: str, secrets: Sequence[str], *, limit: int) -> str:
    """Return ``text`` redacted of ``secrets``, cut to ``limit`` characters, control characters escaped.

    The credentials are blanked out before the cut, so one that crosses it cannot leave its start.
    """
    forms, runs = _forms_and_runs(tuple(secret for secret in secrets if secret))
    text = _escape_controls(_cut(_replace_forms(text, forms), limit, runs))
    return _mask_runs(_replace_forms(text, forms), runs)


def quoted(text: str, secrets: Sequence[str], *, limit: int, fold: bool = False) -> str:
    """Return ``text`` redacted and cut like ``clean()``, quoted as a Python literal (``repr``).

    :param fold: fold runs of whitespace into one space first (for snippets of HTML pages).
    """
    forms, runs = _forms_and_runs(tuple(secret for secret in secrets if secret))
    text = _replace_forms(text, forms)
    if fold:
        text = _replace_forms(_WHITESPACE.sub(" ", text).strip(), forms)
    text = repr(_cut(text, limit, runs))
    return _mask_runs(_replace_forms(text, forms), runs)


def _cut(text: str, limit: int, runs: frozenset[str]) -> str:
    """Cut ``text`` to ``limit`` characters (marked by …), then blank out fragments of credentials."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return _mask_runs(text, runs)


@functools.lru_cache(maxsize=32)
def _forms_and_runs(secrets: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    """Every form of ``secrets``, longest first, and every run of ``RUN`` characters of them."""
    forms = {form for secret in secrets for form in _forms(secret) if form}
    runs = frozenset(
        form[start : start + RUN]
        for form in forms
        if len(form) >= RUN
        for start in range(len(form) - RUN + 1)
    )
    return tuple(sorted(forms, key=len, reverse=True)), runs


def _forms(secret: str) -> Iterable[str]:
    """Yield the ways a server may write ``secret`` back: as sent, escaped, encoded, folded."""
    yield secret
    yield json.dumps(secret)[1:-1]
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    yield repr(secret)[1:-1]
    yield secret.replace("\\", "\\\\").replace("'", "\\'")
    yield secret.replace("\\", "\\\\").replace('"', '\\"')
    yield secret.encode("unicode_escape").decode("ascii")
    for encoding in ("utf-8", "latin-1"):
        for encoded in (
            percent_encode(secret, safe="", encoding=encoding, errors="replace"),
            percent_encode(secret, safe="/", encoding=encoding, errors="replace"),
            quote_plus(secret, safe="", encoding=encoding, errors="replace"),
        ):
            yield encoded
            yield _PERCENT_ESCAPE.sub(lambda escape: escape.group().lower(), encoded)
    yield html.escape(secret)
    yield html.escape(secret, quote=False)
    yield " ".join(secret.split())
    # The header went out as Latin-1 bytes; a server may have read them as UTF-8.
    yield secret.encode("latin-1", errors="replace").decode("utf-8", errors="replace")


def _replace_forms(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def _mask_runs(text: str, runs: frozenset[str]) -> str:
    """Replace every stretch of ``text`` covered by runs of a credential's characters with ``***``."""
    if not runs or len(text) < RUN:
        return text
    covered_until = -1
    spans: list[list[int]] = []
    for start in range(len(text) - RUN + 1):
        if text[start : start + RUN] in runs:
            if spans and start <= covered_until:
                spans[-1][1] = start + RUN
            else:
                spans.append([start, start + RUN])
            covered_until = start + RUN
    if not spans:
        return text
    pieces, position = [], 0
    for start, end in spans:
        pieces += [text[position:start], MASK]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _escape_controls(text: str) -> str:
    """Write control and other unprintable characters (CR, LF, …) as escapes: no forged log lines."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
